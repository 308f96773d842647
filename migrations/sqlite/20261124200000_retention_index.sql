-- Retention deletes finished deliveries by age: find the oldest ones of a status without a scan.
CREATE INDEX deliveries_finished ON deliveries (status, updated_at);
