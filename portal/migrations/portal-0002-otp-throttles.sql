-- SMS code counters per bucket (portal/throttle.py). IF NOT EXISTS: before migrations
-- portal/throttle.py made this table itself at start, so an adopted database may hold it.

CREATE TABLE IF NOT EXISTS otp_throttles (
    bucket TEXT PRIMARY KEY, strikes INTEGER NOT NULL, first_at TEXT NOT NULL,
    last_at TEXT NOT NULL, blocked_until TEXT);
