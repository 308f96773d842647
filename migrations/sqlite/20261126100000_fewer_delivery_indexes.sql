-- Every index is written on each webhook (and the second on each attempt), at a page per row when its keys are
-- scattered. With bodies in their own table a delivery row is small, so the two rarest questions are answered
-- by reading one inbox's rows instead: the delivery log filtered by conversation, and a route's last attempt.
DROP INDEX deliveries_conversation;
DROP INDEX deliveries_inbox_updated;
