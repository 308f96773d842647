-- Lanes for several relays on one database: a conversation's deliveries (or, with conversation_id 0, an inbox's
-- deliveries that belong to no conversation) go out one after another, worked by one relay at a time under a
-- lease. Times here are the database's clock (chatgowa_clock_ms), never a relay's.
CREATE FUNCTION chatgowa_clock_ms() RETURNS bigint LANGUAGE sql VOLATILE
    AS $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint $$;

-- Fencing tokens: a new one at every claim, so that a relay that lost its lease can write nothing.
CREATE SEQUENCE lane_epochs;

CREATE TABLE lanes (
    inbox_id        bigint NOT NULL,
    conversation_id bigint NOT NULL,
    -- When the lane needs a relay: now for new work, a retry's time, NULL while its route is switched off.
    due_at          bigint,
    -- The relay working it (random per process) until lease_until; NULL: free.
    owner           text,
    lease_until     bigint,
    epoch           bigint NOT NULL DEFAULT 0,
    -- Bumped by every change to the lane's pending deliveries: the owner reads them again, and gives the lane
    -- up only if nothing changed since it last read them.
    version         bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (inbox_id, conversation_id)
) WITH (fillfactor = 70);
CREATE INDEX lanes_due ON lanes (due_at) WHERE due_at IS NOT NULL;

-- A lane's pending deliveries in order, read by the relay that takes it.
CREATE INDEX deliveries_lane ON deliveries (inbox_id, (coalesce(conversation_id, 0)), id) WHERE status = 'pending';

-- Deliveries stored before lanes existed (one relay per database) are due at once.
INSERT INTO lanes (inbox_id, conversation_id, due_at)
SELECT DISTINCT inbox_id, coalesce(conversation_id, 0), chatgowa_clock_ms() FROM deliveries WHERE status = 'pending'
ON CONFLICT DO NOTHING;
