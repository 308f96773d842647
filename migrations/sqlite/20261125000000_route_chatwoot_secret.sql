-- Chatwoot's webhook secret(s) for one inbox (comma-separated during a rotation); when set, that inbox's
-- webhooks must carry a valid X-Chatwoot-Signature. Overrides CHATGOWA_CHATWOOT_SECRET for the inbox.
ALTER TABLE routes ADD COLUMN chatwoot_secret TEXT;
