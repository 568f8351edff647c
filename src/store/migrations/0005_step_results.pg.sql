-- What a finished action kept for the rule's later actions (`as = "name"`: `steps.name`),
-- as JSON; a retry of a later action reads it instead of asking again.
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS result TEXT;
