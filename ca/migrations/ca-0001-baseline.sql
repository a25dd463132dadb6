-- The CA registry's schema as the code made it before migrations (CREATE TABLE IF NOT
-- EXISTS at every start): a database holding these tables and no version table is
-- adopted here. PostgreSQL's types; BYTEA is BLOB on SQLite (ground/migrations.py).

CREATE TABLE certificates (
    serial TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    spki_sha256 TEXT NOT NULL,
    evidence_id TEXT NOT NULL UNIQUE,
    issued_at TEXT NOT NULL,
    not_after TEXT NOT NULL,
    der BYTEA NOT NULL,
    status TEXT NOT NULL,
    revoked_at TEXT,
    reason TEXT);

CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL);
