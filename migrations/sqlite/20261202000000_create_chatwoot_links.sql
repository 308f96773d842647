-- Chatwoot accounts linked through their REST API with an administrator's access token, and the account webhook
-- registered there for this relay (its id, URL and the secret Chatwoot generated, which webhooks of that account
-- are verified with).
CREATE TABLE chatwoot_links (
    id INTEGER PRIMARY KEY,
    base_url TEXT NOT NULL,
    account_id INTEGER NOT NULL,
    account_name TEXT NOT NULL DEFAULT '',
    token TEXT NOT NULL,
    -- 1: from CHATGOWA_CHATWOOT_*; made again at every start.
    from_env INTEGER NOT NULL DEFAULT 0,
    webhook_id INTEGER,
    webhook_url TEXT,
    webhook_secret TEXT,
    created_at INTEGER NOT NULL,
    UNIQUE (base_url, account_id)
);
-- The linked accounts' inboxes as last read from Chatwoot: their names in the panel.
CREATE TABLE chatwoot_inboxes (
    link_id INTEGER NOT NULL,
    inbox_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    channel_type TEXT NOT NULL,
    PRIMARY KEY (link_id, inbox_id)
);
