CREATE TABLE IF NOT EXISTS events (
    id             INTEGER PRIMARY KEY,
    receiver       TEXT    NOT NULL,
    vendor         TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    dedupe_key     TEXT    NOT NULL,
    received_at_ms INTEGER NOT NULL,
    raw            TEXT    NOT NULL,
    UNIQUE (receiver, dedupe_key)
);
CREATE TABLE IF NOT EXISTS deliveries (
    id                 INTEGER PRIMARY KEY,
    event_id           INTEGER NOT NULL REFERENCES events (id),
    rule               TEXT    NOT NULL,
    action             INTEGER NOT NULL,
    kind               TEXT    NOT NULL,
    status             TEXT    NOT NULL,   -- waiting | pending | running | done | dead
    -- The previous action of the same rule and event: this one waits until it is done.
    after_id           INTEGER REFERENCES deliveries (id),
    -- Dead only because an earlier action of its rule is dead.
    skipped            INTEGER NOT NULL DEFAULT 0,
    -- The action's rendered `key`, which a later `cancel` names.
    correlation        TEXT,
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms INTEGER NOT NULL,
    deadline_ms        INTEGER NOT NULL,
    created_at_ms      INTEGER NOT NULL,
    updated_at_ms      INTEGER NOT NULL,
    last_error         TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (next_attempt_at_ms) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_after ON deliveries (after_id) WHERE after_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS deliveries_key ON deliveries (correlation) WHERE correlation IS NOT NULL;
-- Vendor access tokens, so a restart or a second process does not storm gettoken.
CREATE TABLE IF NOT EXISTS tokens (
    key           TEXT    PRIMARY KEY,
    token         TEXT    NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
-- Group chats created by group_create: one per (connection, key), never two.
CREATE TABLE IF NOT EXISTS groups (
    connection           TEXT    NOT NULL,
    key                  TEXT    NOT NULL,
    chat_id              TEXT    NOT NULL,
    open_conversation_id TEXT,
    name                 TEXT    NOT NULL,
    created_at_ms        INTEGER NOT NULL,
    updated_at_ms        INTEGER NOT NULL,
    PRIMARY KEY (connection, key)
);
