-- Robot sends in the last minute and vendor-imposed pauses: the per-webhook rate limits.
CREATE TABLE robot_sends (
    key   TEXT    NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE INDEX robot_sends_key ON robot_sends (key, at_ms);
CREATE TABLE robot_pauses (
    key      TEXT    PRIMARY KEY,
    until_ms INTEGER NOT NULL
);
