-- The messages of a lane by message id, whatever their status: a relay that takes a lane over learns from here
-- which later messages of the conversation went out already (through another relay), so that a reply Chatwoot
-- posted late is known to be late wherever it is sent from.
CREATE INDEX deliveries_lane_messages ON deliveries (inbox_id, (coalesce(conversation_id, 0)), message_id)
    WHERE message_id IS NOT NULL;
