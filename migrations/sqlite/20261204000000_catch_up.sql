-- When each linked account was last known to be current: catching up asks Chatwoot for what changed since.
ALTER TABLE chatwoot_links ADD COLUMN caught_up_at INTEGER;
-- Replies the relay never received as webhooks (it was off or unreachable), found by catching up with Chatwoot and
-- rebuilt in the webhook's shape: queued at once (`delivery_id`), or held for a decision in the panel when older
-- than CHATGOWA_CATCHUP_SEND_WITHIN.
CREATE TABLE chatwoot_recovered (
    id INTEGER PRIMARY KEY,
    link_id INTEGER NOT NULL,
    account_id INTEGER NOT NULL,
    inbox_id INTEGER NOT NULL,
    conversation_id INTEGER NOT NULL,
    message_id INTEGER NOT NULL,
    -- When the agent wrote it (unix ms).
    written_at INTEGER NOT NULL,
    body BLOB NOT NULL,
    delivery_id INTEGER,
    -- queued | held | discarded
    state TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (account_id, message_id)
);
CREATE INDEX chatwoot_recovered_delivery ON chatwoot_recovered (delivery_id);
