-- Active content found in a document accepted under activeContent "warn", by its SHA-256
-- (portal/intake.py). IF NOT EXISTS: before migrations portal/intake.py made this table
-- itself at first use, so an adopted database may hold it.

CREATE TABLE IF NOT EXISTS document_active_content (
    sha256 TEXT PRIMARY KEY, kinds TEXT NOT NULL, findings TEXT NOT NULL);
