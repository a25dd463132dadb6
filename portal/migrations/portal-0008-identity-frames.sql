-- Issue 17: the liveness frames the identity service accepted, by SHA-256 digest, with
-- the session that sent them (portal/identity/frames.py), so that every portal process
-- behind the load balancer, and one started after a restart, refuses them in another
-- session. The session id is TEXT without a foreign key (frames outlive no session:
-- each row expires with its session and is deleted when sessions are).

CREATE TABLE identity_frames (
    digest BYTEA PRIMARY KEY, session_id TEXT NOT NULL, expires_at TEXT NOT NULL);

CREATE INDEX identity_frames_expiry ON identity_frames (expires_at);
