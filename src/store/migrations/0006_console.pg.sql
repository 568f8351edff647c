-- The operator console and admin API (#17).
-- Each attempt a delivery made, one JSON line each: attempt, started_at_ms, duration_ms,
-- outcome (done | skipped | retry | dead), error.
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS history TEXT;
-- 0 for what the event planned when it arrived; n for the deliveries of its n-th replay.
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS replay INTEGER NOT NULL DEFAULT 0;
-- Dead letters, newest first (the console's view; /metrics counts them by rule).
CREATE INDEX IF NOT EXISTS deliveries_dead ON deliveries (id) WHERE status = 'dead';
-- Lists filtered by receiver or kind stay an index walk, newest first; a time filter finds
-- its first and last event by time.
CREATE INDEX IF NOT EXISTS events_receiver ON events (receiver, id);
CREATE INDEX IF NOT EXISTS events_kind ON events (kind, id);
CREATE INDEX IF NOT EXISTS events_time ON events (received_at_ms);
-- What operators did through the admin API and the CLI, and who.
CREATE TABLE IF NOT EXISTS audit (
    id     BIGSERIAL PRIMARY KEY,
    at_ms  BIGINT NOT NULL,
    who    TEXT   NOT NULL,
    action TEXT   NOT NULL,
    target TEXT   NOT NULL,
    detail TEXT
);
