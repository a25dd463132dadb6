-- The portal's schema as the code made it before migrations (CREATE TABLE IF NOT EXISTS
-- at every start): a database holding these tables and no version table is adopted here.
-- PostgreSQL's types; BYTEA is BLOB on SQLite (ground/migrations.py).

CREATE TABLE transactions (
    id TEXT PRIMARY KEY, title TEXT NOT NULL, requester_name TEXT NOT NULL,
    requester_email TEXT NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL, sequential INTEGER NOT NULL, qualified INTEGER NOT NULL,
    messaging INTEGER NOT NULL, level TEXT NOT NULL, closed_at TEXT);

CREATE TABLE documents (
    id TEXT PRIMARY KEY, transaction_id TEXT NOT NULL REFERENCES transactions(id),
    position INTEGER NOT NULL, name TEXT NOT NULL, pages INTEGER NOT NULL);

CREATE TABLE document_versions (
    document_id TEXT NOT NULL REFERENCES documents(id), version INTEGER NOT NULL,
    sha256 TEXT NOT NULL, size BIGINT NOT NULL, signer_id TEXT, created_at TEXT NOT NULL,
    PRIMARY KEY (document_id, version));

CREATE TABLE signers (
    id TEXT PRIMARY KEY, transaction_id TEXT NOT NULL REFERENCES transactions(id),
    position INTEGER NOT NULL, name TEXT NOT NULL, email TEXT NOT NULL,
    phone TEXT NOT NULL, lang TEXT NOT NULL, status TEXT NOT NULL,
    generation INTEGER NOT NULL, refusal_reason TEXT, accepted_at TEXT,
    signed_at TEXT, otp_locked_until TEXT);

CREATE TABLE consents (
    signer_id TEXT NOT NULL REFERENCES signers(id), generation INTEGER NOT NULL,
    kind TEXT NOT NULL, version TEXT NOT NULL, lang TEXT NOT NULL,
    sha256 TEXT NOT NULL, accepted_at TEXT NOT NULL,
    PRIMARY KEY (signer_id, generation, kind));

CREATE TABLE messages (
    id TEXT PRIMARY KEY, transaction_id TEXT NOT NULL REFERENCES transactions(id),
    author TEXT NOT NULL, signer_id TEXT, name TEXT NOT NULL, text TEXT NOT NULL,
    at TEXT NOT NULL);

CREATE TABLE signing_sessions (
    id TEXT PRIMARY KEY, signer_id TEXT NOT NULL REFERENCES signers(id),
    generation INTEGER NOT NULL, created_at TEXT NOT NULL, expires_at TEXT NOT NULL,
    certificate BYTEA NOT NULL, chain TEXT NOT NULL, hashes TEXT NOT NULL,
    state TEXT NOT NULL);

CREATE TABLE session_documents (
    session_id TEXT NOT NULL REFERENCES signing_sessions(id),
    position INTEGER NOT NULL, document_id TEXT NOT NULL, base_version INTEGER NOT NULL,
    prepared_sha256 TEXT NOT NULL, PRIMARY KEY (session_id, position));

CREATE TABLE otp_sessions (
    id TEXT PRIMARY KEY, purpose TEXT NOT NULL, subject TEXT NOT NULL,
    phone TEXT NOT NULL, hashes TEXT NOT NULL, code_digest TEXT,
    sent_at TEXT, expires_at TEXT, sends INTEGER NOT NULL, failures INTEGER NOT NULL,
    next_try_at TEXT, used_at TEXT, created_at TEXT NOT NULL);

CREATE TABLE outbox_sms (
    id TEXT PRIMARY KEY, to_phone TEXT NOT NULL, text TEXT NOT NULL, at TEXT NOT NULL);

CREATE TABLE outbox_mail (
    id TEXT PRIMARY KEY, to_addr TEXT NOT NULL, subject TEXT NOT NULL,
    body TEXT NOT NULL, at TEXT NOT NULL, attempts INTEGER NOT NULL,
    sent_at TEXT, last_error TEXT);

CREATE TABLE signer_certificates (
    email TEXT NOT NULL, sha256 TEXT NOT NULL, der BYTEA NOT NULL, chain TEXT NOT NULL,
    first_used TEXT NOT NULL, PRIMARY KEY (email, sha256));

CREATE TABLE enrolments (
    signer_id TEXT PRIMARY KEY REFERENCES signers(id), step TEXT NOT NULL,
    identity_session TEXT, identity TEXT, comparison TEXT, auth TEXT,
    spki_sha256 TEXT, certificate BYTEA, updated_at TEXT NOT NULL);

CREATE TABLE space_sessions (
    digest TEXT PRIMARY KEY, email TEXT NOT NULL, expires_at TEXT NOT NULL);
