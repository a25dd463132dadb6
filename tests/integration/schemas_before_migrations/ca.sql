-- The CA registry's tables as the code before migrations made it (ca/registry.py),
-- copied from git fb06d71.
-- PostgreSQL's types; BYTEA was BLOB on SQLite (ground/sql.py). Do not edit.

CREATE TABLE IF NOT EXISTS certificates (
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

CREATE TABLE IF NOT EXISTS counters (
        name TEXT PRIMARY KEY,
        value BIGINT NOT NULL);

