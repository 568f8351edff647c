-- The fingerprint of the action a delivery was made for (a reload must not swap it).
ALTER TABLE deliveries ADD COLUMN spec TEXT;
-- DingTalk robot (timestamp, sign) pairs accepted, with the body each carried (the sign
-- covers no body): shared by every process on the store, kept for the timestamp window.
CREATE TABLE robot_signs (
    receiver TEXT    NOT NULL,
    stamp    TEXT    NOT NULL,
    sign     TEXT    NOT NULL,
    digest   BLOB    NOT NULL,
    until_ms INTEGER NOT NULL,
    PRIMARY KEY (receiver, stamp, sign)
);
