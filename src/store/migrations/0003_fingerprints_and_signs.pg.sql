-- (A store made before the steps were paired has this as its second step: it is re-run
-- harmlessly, so the numbering of both backends can be the same.)
-- The fingerprint of the action a delivery was made for (a reload must not swap it).
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS spec TEXT;
-- DingTalk robot (timestamp, sign) pairs accepted, with the body each carried (the sign
-- covers no body): shared by every replica, kept for the timestamp window.
CREATE TABLE IF NOT EXISTS robot_signs (
    receiver TEXT   NOT NULL,
    stamp    TEXT   NOT NULL,
    sign     TEXT   NOT NULL,
    digest   BYTEA  NOT NULL,
    until_ms BIGINT NOT NULL,
    PRIMARY KEY (receiver, stamp, sign)
);
