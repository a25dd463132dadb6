-- Requesters' accounts, their sessions and API tokens, workspaces with members and roles
-- (portal/accounts/). A transaction belongs to one workspace: the rows from before go to
-- the workspace "default", made here. workspace_id stays nullable in SQL so the ALTER
-- works on SQLite; the code always sets it.

CREATE TABLE users (
    id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
    password_hash TEXT, totp_secret TEXT, totp_last_step BIGINT,
    oidc_subject TEXT UNIQUE, lang TEXT NOT NULL, notifications TEXT NOT NULL,
    is_service_admin INTEGER NOT NULL, created_at TEXT NOT NULL, suspended_at TEXT);

CREATE TABLE workspaces (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at TEXT NOT NULL, suspended_at TEXT);

CREATE TABLE workspace_members (
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    user_id TEXT NOT NULL REFERENCES users(id), role TEXT NOT NULL,
    added_at TEXT NOT NULL, PRIMARY KEY (workspace_id, user_id));

-- A browser's session: the SHA-256 of the cookie's secret; `stage` says which factor is
-- still due ("totp", "enrol") or "done"; idle and absolute expiry both checked.
CREATE TABLE account_sessions (
    digest TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id),
    stage TEXT NOT NULL, csrf TEXT NOT NULL, via TEXT NOT NULL, created_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL, expires_at TEXT NOT NULL);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY, digest TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL REFERENCES users(id),
    workspace_id TEXT NOT NULL REFERENCES workspaces(id), name TEXT NOT NULL,
    created_at TEXT NOT NULL, expires_at TEXT NOT NULL, last_used_at TEXT,
    revoked_at TEXT);

-- Single-use links (digest of the secret): workspace invitations and password resets.
CREATE TABLE invitations (
    digest TEXT PRIMARY KEY, workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    email TEXT NOT NULL, role TEXT NOT NULL, invited_by TEXT NOT NULL,
    created_at TEXT NOT NULL, expires_at TEXT NOT NULL, accepted_at TEXT);

CREATE TABLE password_resets (
    digest TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id),
    created_at TEXT NOT NULL, expires_at TEXT NOT NULL, used_at TEXT);

-- OpenID Connect sign-ins under way: state, nonce and PKCE verifier (RFC 7636), kept in
-- the store so the callback may reach another portal process.
CREATE TABLE oidc_logins (
    state TEXT PRIMARY KEY, nonce TEXT NOT NULL, verifier TEXT NOT NULL,
    created_at TEXT NOT NULL, expires_at TEXT NOT NULL);

ALTER TABLE transactions ADD COLUMN workspace_id TEXT;
ALTER TABLE transactions ADD COLUMN created_by TEXT;

INSERT INTO workspaces (id, name, created_at, suspended_at)
    SELECT 'default', 'Default workspace',
           COALESCE((SELECT MIN(created_at) FROM transactions), '2026-12-04T00:00:00+00:00'),
           NULL;

UPDATE transactions SET workspace_id = 'default' WHERE workspace_id IS NULL;

CREATE INDEX transactions_workspace ON transactions (workspace_id);
CREATE INDEX workspace_members_user ON workspace_members (user_id);
CREATE INDEX api_tokens_user ON api_tokens (user_id);
