-- Issue 15, the master console (portal/audit.py, portal/console.py): the append-only,
-- hash-chained audit log; a user suspended by the service's administrator (workspaces
-- carry their own suspended_at); the identity documents each workspace accepts from its
-- first-time signers. Ids of other migrations' tables are TEXT, without foreign keys.

CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    subject TEXT NOT NULL, details TEXT NOT NULL, prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL);

CREATE TABLE user_suspensions (
    user_id TEXT PRIMARY KEY, suspended_at TEXT NOT NULL, suspended_by TEXT NOT NULL);

CREATE TABLE workspace_identity_documents (
    workspace_id TEXT NOT NULL, issuing_state TEXT NOT NULL, kind TEXT NOT NULL,
    PRIMARY KEY (workspace_id, issuing_state, kind));
