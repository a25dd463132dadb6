-- The validation service's recent reports (portal/validating.py): the report each client
-- address had of a file, fetched again by its SHA-256 for a few minutes (the /validate
-- page's XML and PDF buttons, GET /api/v1/validations/{sha256}). Kept here, not in one
-- process's memory, so that behind the load balancer any portal process answers it.

CREATE TABLE validation_reports (
    bucket TEXT NOT NULL, sha256 TEXT NOT NULL, kept_at TEXT NOT NULL,
    report TEXT NOT NULL, PRIMARY KEY (bucket, sha256));

CREATE INDEX validation_reports_kept ON validation_reports (kept_at);
