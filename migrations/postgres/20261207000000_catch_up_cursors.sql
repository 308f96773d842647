-- How far catching up has read each conversation of a linked account: the highest message id it has seen settled
-- (every message up to it looked at). Catching up reads on from here, never from what happens to be stored: a
-- reply whose webhook was lost stays found even once a newer reply of its conversation arrived.
CREATE TABLE chatwoot_catchup (
    link_id         bigint NOT NULL,
    conversation_id bigint NOT NULL,
    read_to         bigint NOT NULL,
    updated_at      bigint NOT NULL,
    PRIMARY KEY (link_id, conversation_id)
);
