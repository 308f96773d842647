-- Chatwoot's message id of `message_created` / `message_updated` deliveries: a conversation's replies go to GoWA
-- in message-id order (Sidekiq can send their webhooks out of order). NULL for every other event, and for
-- deliveries stored before this column existed (they keep arrival order).
ALTER TABLE deliveries ADD COLUMN message_id INTEGER;
-- `X-Chatwoot-Delivery` as received, forwarded to GoWA. `dedupe_key` now holds the message's identity where the
-- webhook has one (a twin Chatwoot fires carries a new delivery id), else this same value.
ALTER TABLE deliveries ADD COLUMN cw_delivery TEXT;
UPDATE deliveries SET cw_delivery = dedupe_key WHERE dedupe_key IS NOT NULL;
-- Repeats of this delivery that were answered `duplicate` and dropped (Chatwoot fires some events twice, with new
-- delivery ids). Rarely non-zero: the partial index lets the total be summed without reading every row.
ALTER TABLE deliveries ADD COLUMN duplicates INTEGER NOT NULL DEFAULT 0;
CREATE INDEX deliveries_duplicated ON deliveries (id) WHERE duplicates > 0;
-- An attempt that failed after the whole request was sent, with no answer (a timeout, a connection reset before
-- the status line): GoWA may have sent the message.
ALTER TABLE delivery_attempts ADD COLUMN ambiguous INTEGER NOT NULL DEFAULT 0;
