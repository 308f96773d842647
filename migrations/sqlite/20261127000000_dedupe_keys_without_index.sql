-- `X-Chatwoot-Delivery` keys move to a column without an index. Chatwoot's keys are random UUIDs, so the unique
-- index put every webhook's entry on some random page of it: a page written per webhook, in the WAL and again at
-- the checkpoint (measured: a third of the bytes written per webhook). The relay keeps the stored keys in memory
-- instead (store::dedupe), built from this column at start.
--
-- SQLite cannot drop a UNIQUE column or its constraint without rebuilding the table, and a rebuild inside the
-- migration's transaction (where foreign keys cannot be switched off) would cascade to every attempt and body.
-- So the old column stays, renamed and empty: its index then only gets NULL entries, appended in id order.
ALTER TABLE deliveries RENAME COLUMN dedupe_key TO unused_unique_key;
ALTER TABLE deliveries ADD COLUMN dedupe_key TEXT;
UPDATE deliveries SET dedupe_key = unused_unique_key, unused_unique_key = NULL WHERE unused_unique_key IS NOT NULL;

-- Held exactly what deliveries_status (status, id) holds for 'pending'.
DROP INDEX deliveries_pending;
