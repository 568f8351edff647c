-- Scheduled rules: the last slot each one handled (fired, or skipped as missed), and the
-- schedule as written then (a changed schedule starts afresh instead of making up slots).
CREATE TABLE IF NOT EXISTS schedules (
    rule         TEXT   PRIMARY KEY,
    written      TEXT   NOT NULL,
    last_slot_ms BIGINT NOT NULL
);
