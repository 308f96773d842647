-- What the relay tells a linked Chatwoot about replies: a reply marked failed, a private note under it, the mark set
-- back to sent, a note that a conversation's replies are delayed (and later delivered). Queued and retried like
-- deliveries, so that Chatwoot being down delays it without losing it; shown in the delivery log.
CREATE TABLE chatwoot_feedback (
    id INTEGER PRIMARY KEY,
    delivery_id INTEGER NOT NULL,
    -- The delivery's attempt count when this was decided: a delivery that dies again after a retry is told again.
    at_attempt INTEGER NOT NULL,
    link_id INTEGER,
    account_id INTEGER NOT NULL,
    conversation_id INTEGER NOT NULL,
    message_id INTEGER,
    -- mark_failed | note_dead | mark_sent | note_delayed | note_delivered | resent (Chatwoot's Retry) | none
    kind TEXT NOT NULL,
    -- The note or the reason shown to agents.
    text TEXT NOT NULL DEFAULT '',
    -- pending | done | gave_up
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER NOT NULL,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX chatwoot_feedback_pending ON chatwoot_feedback (next_at) WHERE status = 'pending';
CREATE INDEX chatwoot_feedback_delivery ON chatwoot_feedback (delivery_id);
-- Conversations whose replies are delayed and whose agents were told so: once per outage, until a reply of the
-- conversation is delivered again.
CREATE TABLE chatwoot_outages (
    account_id INTEGER NOT NULL,
    conversation_id INTEGER NOT NULL,
    -- The delivery the note was threaded under.
    delivery_id INTEGER NOT NULL,
    message_id INTEGER,
    link_id INTEGER,
    noted_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, conversation_id)
);
