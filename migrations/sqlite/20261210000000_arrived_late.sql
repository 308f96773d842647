-- A reply that came after a later reply of its conversation had started to go, stored so before it is sent: the
-- note that tells its agent follows from here, also when the relay that sent it is gone before it could say so.
-- Cleared once the reply is marked for that note.
ALTER TABLE deliveries ADD COLUMN arrived_late INTEGER NOT NULL DEFAULT 0;
CREATE INDEX deliveries_arrived_late ON deliveries (id) WHERE arrived_late;
