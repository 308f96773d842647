-- Bodies apart from delivery state: recording an attempt rewrites a small row instead of the row holding the
-- body (a row that changes size is written again whole, overflow pages included), which halved what each
-- webhook costs the disk.
CREATE TABLE delivery_bodies (
    delivery_id INTEGER PRIMARY KEY REFERENCES deliveries (id) ON DELETE CASCADE,
    body        BLOB    NOT NULL
);
INSERT INTO delivery_bodies (delivery_id, body) SELECT id, body FROM deliveries;
ALTER TABLE deliveries ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
UPDATE deliveries SET size = length(body);
ALTER TABLE deliveries DROP COLUMN body;
