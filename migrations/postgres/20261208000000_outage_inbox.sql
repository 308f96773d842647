-- An outage is matched to its conversation's deliveries by inbox as well: conversation numbers are per account, so
-- conversation 5 of one linked account is not conversation 5 of another. Outages noted before this column keep
-- the inbox of the delivery their note was threaded under.
ALTER TABLE chatwoot_outages ADD COLUMN inbox_id bigint;
UPDATE chatwoot_outages SET inbox_id = (SELECT d.inbox_id FROM deliveries d WHERE d.id = chatwoot_outages.delivery_id);
