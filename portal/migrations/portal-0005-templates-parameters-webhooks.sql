-- Issue 15, the requester's templates and parameters (portal/store/templates.py,
-- parameters.py, webhooks.py): a signer's turn (signers sharing a turn sign in parallel,
-- turns follow each other), a transaction's parameters, reminders, templates and bulk
-- sends, webhooks with their durable delivery queue and log, a workspace's mail sender
-- and texts. Workspace and user ids are TEXT without foreign keys (other migrations'
-- tables).

-- Before: parallel transactions had every signer on turn 0, sequential ones on their position.
ALTER TABLE signers ADD COLUMN turn INTEGER;
UPDATE signers SET turn = CASE WHEN (SELECT t.sequential FROM transactions t
                                    WHERE t.id = signers.transaction_id) <> 0
                               THEN position ELSE 0 END;

CREATE TABLE transaction_parameters (
    transaction_id TEXT PRIMARY KEY REFERENCES transactions(id),
    signing_order TEXT NOT NULL, reminder_days INTEGER, second_factor TEXT NOT NULL,
    languages TEXT NOT NULL, download_unsigned INTEGER NOT NULL, message TEXT,
    template_id TEXT, cancelled_at TEXT, cancel_reason TEXT);

-- Per signer: the visible signature's place (JSON) and the next reminder, claimed by one
-- portal process at a time (UPDATE ... WHERE next_reminder_at = the value it read).
CREATE TABLE signer_parameters (
    signer_id TEXT PRIMARY KEY REFERENCES signers(id),
    transaction_id TEXT NOT NULL REFERENCES transactions(id), appearance TEXT,
    next_reminder_at TEXT, reminders_sent INTEGER NOT NULL);
CREATE INDEX signer_parameters_due ON signer_parameters (next_reminder_at);

CREATE TABLE templates (
    id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, name TEXT NOT NULL,
    body TEXT NOT NULL, created_by TEXT NOT NULL, created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL, revision INTEGER NOT NULL, deleted_at TEXT);
CREATE INDEX templates_workspace ON templates (workspace_id);

-- A bulk send keeps the template as it was when the CSV came, and one row per line: the
-- work survives a restart (rows are leased, then marked done or failed).
CREATE TABLE bulk_sends (
    id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL,
    template_id TEXT NOT NULL REFERENCES templates(id), template TEXT NOT NULL,
    requester TEXT NOT NULL, created_by TEXT NOT NULL, created_at TEXT NOT NULL,
    row_count INTEGER NOT NULL);

CREATE TABLE bulk_rows (
    bulk_id TEXT NOT NULL REFERENCES bulk_sends(id), line INTEGER NOT NULL,
    signers TEXT NOT NULL, state TEXT NOT NULL, lease_until TEXT,
    attempts INTEGER NOT NULL, transaction_id TEXT, error TEXT, done_at TEXT,
    PRIMARY KEY (bulk_id, line));
CREATE INDEX bulk_rows_state ON bulk_rows (state);

CREATE TABLE webhooks (
    id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, url TEXT NOT NULL,
    events TEXT NOT NULL, secret TEXT NOT NULL, created_by TEXT NOT NULL,
    created_at TEXT NOT NULL, deleted_at TEXT);
CREATE INDEX webhooks_workspace ON webhooks (workspace_id);

CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY, webhook_id TEXT NOT NULL REFERENCES webhooks(id),
    event TEXT NOT NULL, transaction_id TEXT, payload TEXT NOT NULL,
    created_at TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL,
    next_at TEXT NOT NULL, lease_until TEXT, delivered_at TEXT);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_at);

CREATE TABLE webhook_attempts (
    delivery_id TEXT NOT NULL REFERENCES webhook_deliveries(id), attempt INTEGER NOT NULL,
    at TEXT NOT NULL, status INTEGER, body TEXT, error TEXT,
    PRIMARY KEY (delivery_id, attempt));

CREATE TABLE workspace_mail (
    workspace_id TEXT PRIMARY KEY, sender_name TEXT, texts TEXT NOT NULL,
    updated_at TEXT NOT NULL);

ALTER TABLE outbox_mail ADD COLUMN sender_name TEXT;
