CREATE TABLE events (
    id             BIGSERIAL PRIMARY KEY,
    receiver       TEXT   NOT NULL,
    vendor         TEXT   NOT NULL,
    kind           TEXT   NOT NULL,
    dedupe_key     TEXT   NOT NULL,
    received_at_ms BIGINT NOT NULL,
    raw            TEXT   NOT NULL,
    UNIQUE (receiver, dedupe_key)
);
CREATE TABLE deliveries (
    id                 BIGSERIAL PRIMARY KEY,
    event_id           BIGINT  NOT NULL REFERENCES events (id),
    rule               TEXT    NOT NULL,
    action             BIGINT  NOT NULL,
    kind               TEXT    NOT NULL,
    status             TEXT    NOT NULL,   -- waiting | pending | running | done | dead | cancelled
    after_id           BIGINT  REFERENCES deliveries (id),
    skipped            BOOLEAN NOT NULL DEFAULT false,
    correlation        TEXT,
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms BIGINT  NOT NULL,
    deadline_ms        BIGINT  NOT NULL,
    created_at_ms      BIGINT  NOT NULL,
    updated_at_ms      BIGINT  NOT NULL,
    last_error         TEXT,
    -- The replica running it, and until when its claim holds without renewal.
    claimed_by         TEXT,
    lease_until_ms     BIGINT
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at_ms, id) WHERE status = 'pending';
CREATE INDEX deliveries_lease ON deliveries (lease_until_ms) WHERE status = 'running';
CREATE INDEX deliveries_after ON deliveries (after_id) WHERE after_id IS NOT NULL;
CREATE INDEX deliveries_key ON deliveries (correlation) WHERE correlation IS NOT NULL;
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE TABLE tokens (
    key           TEXT   PRIMARY KEY,
    token         TEXT   NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
CREATE TABLE groups (
    connection           TEXT   NOT NULL,
    key                  TEXT   NOT NULL,
    chat_id              TEXT   NOT NULL,
    open_conversation_id TEXT,
    name                 TEXT   NOT NULL,
    created_at_ms        BIGINT NOT NULL,
    updated_at_ms        BIGINT NOT NULL,
    PRIMARY KEY (connection, key)
);
