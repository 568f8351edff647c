-- The backlog /metrics reports on every scrape (count and oldest of the pending and waiting
-- deliveries) read from an index of the open ones alone, not a scan of every delivery ever made
-- (#19: a scrape took seconds on a store of 10 M).
CREATE INDEX IF NOT EXISTS deliveries_open ON deliveries (created_at_ms, status) WHERE status IN ('pending', 'waiting');
