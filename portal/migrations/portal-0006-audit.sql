-- Issue 15: the append-only, hash-chained audit log (portal/audit.py) and the identity
-- documents each workspace accepts from its first-time signers (no rows: the identity
-- service's own list). Workspace ids are TEXT, without foreign keys into portal-0004.

CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    subject TEXT NOT NULL, details TEXT NOT NULL, prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL);

CREATE TABLE workspace_identity_documents (
    workspace_id TEXT NOT NULL, issuing_state TEXT NOT NULL, kind TEXT NOT NULL,
    PRIMARY KEY (workspace_id, issuing_state, kind));
