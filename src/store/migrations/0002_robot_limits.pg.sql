-- Robot sends in the last minute and vendor-imposed pauses: the per-webhook rate limits.
-- (A store made before the steps were paired has these from its first step.)
CREATE TABLE IF NOT EXISTS robot_sends (
    key   TEXT   NOT NULL,
    at_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS robot_sends_key ON robot_sends (key, at_ms);
CREATE TABLE IF NOT EXISTS robot_pauses (
    key      TEXT   PRIMARY KEY,
    until_ms BIGINT NOT NULL
);
