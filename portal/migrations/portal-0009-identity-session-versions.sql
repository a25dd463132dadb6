-- Issue 17: each identity session's version, so that a portal process writes a session
-- back only if no other process wrote it since it was read (UPDATE ... WHERE version = ?,
-- portal/identity/sessions.py): with several processes behind the load balancer, a
-- failed attempt or the lock one of them wrote is never overwritten by a stale copy.

ALTER TABLE identity_sessions ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
