-- Issue 17: the identity service's sessions kept in the store (portal/identity/sessions.py
-- writes each one's state as JSON), so that a restart loses no signer's progress. The
-- signer id is TEXT without a foreign key (the enrolment names the session, not the
-- other way round); expired rows are deleted as new sessions open.

CREATE TABLE identity_sessions (
    id TEXT PRIMARY KEY, signer TEXT NOT NULL, expires_at TEXT NOT NULL,
    state TEXT NOT NULL, updated_at TEXT NOT NULL);

CREATE INDEX identity_sessions_expiry ON identity_sessions (expires_at);
