-- Routes: which GoWA endpoint serves which Chatwoot inbox.
CREATE TABLE routes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    inbox_id    INTEGER NOT NULL UNIQUE CHECK (inbox_id > 0),
    webhook_url TEXT    NOT NULL,
    name        TEXT,
    enabled     INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    secret      TEXT,
    created_at  INTEGER NOT NULL, -- unix milliseconds
    updated_at  INTEGER NOT NULL
);

-- One row per accepted webhook: the raw body is stored once, byte for byte.
CREATE TABLE deliveries (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    inbox_id         INTEGER NOT NULL,
    conversation_id  INTEGER,          -- ordering lane within the inbox; NULL = the inbox's own lane
    event            TEXT    NOT NULL,
    dedupe_key       TEXT    UNIQUE,   -- X-Chatwoot-Delivery
    cw_timestamp     TEXT,             -- X-Chatwoot-Timestamp, passed through
    cw_signature     TEXT,             -- X-Chatwoot-Signature, passed through
    body             BLOB    NOT NULL,
    status           TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    trigger          TEXT    NOT NULL DEFAULT 'scheduled' CHECK (trigger IN ('scheduled', 'manual')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    last_status_code INTEGER,
    last_error       TEXT,
    received_at      INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);

CREATE INDEX deliveries_pending ON deliveries (id) WHERE status = 'pending';
CREATE INDEX deliveries_inbox ON deliveries (inbox_id, id);
CREATE INDEX deliveries_status ON deliveries (status, id);
CREATE INDEX deliveries_conversation ON deliveries (conversation_id, id);
CREATE INDEX deliveries_inbox_updated ON deliveries (inbox_id, updated_at);

-- One row per HTTP attempt, successful or not.
CREATE TABLE delivery_attempts (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id      INTEGER NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt          INTEGER NOT NULL,
    trigger          TEXT    NOT NULL CHECK (trigger IN ('scheduled', 'manual')),
    started_at       INTEGER NOT NULL,
    duration_ms      INTEGER NOT NULL,
    status_code      INTEGER,
    error            TEXT,
    response_snippet TEXT
);

CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, id);

-- Inbox ids that arrived without a route, so the admin can add one.
CREATE TABLE unrouted_inboxes (
    inbox_id   INTEGER PRIMARY KEY,
    count      INTEGER NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    last_event TEXT    NOT NULL
);
