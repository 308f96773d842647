//! `chatwoot_recovered`: replies found by catching up with Chatwoot, queued or held for a decision.

use sqlx::FromRow;

use super::{Db, now_ms};
use crate::ids::{DeliveryId, InboxId};

/// A reply found by catching up.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct Recovered {
    pub id: i64,
    #[sqlx(flatten)]
    pub found: NewRecovered,
    pub delivery_id: Option<DeliveryId>,
    pub state: String,
    pub created_at: i64,
}

/// A reply found by catching up, as it is stored.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct NewRecovered {
    pub link_id: i64,
    pub account_id: i64,
    pub inbox_id: InboxId,
    pub conversation_id: i64,
    pub message_id: i64,
    pub written_at: i64,
    pub body: Vec<u8>,
}

const COLUMNS: &str = "id, link_id, account_id, inbox_id, conversation_id, message_id, written_at, body, \
                       delivery_id, state, created_at";

/// Whether this message was recovered before (whatever became of it).
pub async fn known(db: &Db, account: i64, message: i64) -> sqlx::Result<bool> {
    on!(db, |pool| {
        sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM chatwoot_recovered WHERE account_id = $1 AND message_id = $2)",
    )
    .bind(account)
    .bind(message)
    .fetch_one(pool)
    .await
    })
}

/// Stores a recovered reply as `queued` (with its delivery) or `held`; false when it was known already.
pub async fn insert(db: &Db, r: &NewRecovered, delivery: Option<DeliveryId>) -> sqlx::Result<bool> {
    on!(db, |pool| {
        let inserted = sqlx::query(
        "INSERT INTO chatwoot_recovered (link_id, account_id, inbox_id, conversation_id, message_id, \
         written_at, body, delivery_id, state, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) ON CONFLICT DO NOTHING",
    )
    .bind(r.link_id)
    .bind(r.account_id)
    .bind(r.inbox_id)
    .bind(r.conversation_id)
    .bind(r.message_id)
    .bind(r.written_at)
    .bind(&r.body)
    .bind(delivery)
    .bind(if delivery.is_some() { "queued" } else { "held" })
    .bind(now_ms())
    .execute(pool)
    .await?
    .rows_affected();
        Ok(inserted > 0)
    })
}

/// Replies waiting for "send now" or "discard", oldest first.
pub async fn list_held(db: &Db) -> sqlx::Result<Vec<Recovered>> {
    on!(db, |pool| {
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM chatwoot_recovered WHERE state = 'held' ORDER BY message_id"
        ))
        .fetch_all(pool)
        .await
    })
}

pub async fn find(db: &Db, id: i64) -> sqlx::Result<Option<Recovered>> {
    on!(db, |pool| {
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM chatwoot_recovered WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(pool)
        .await
    })
}

/// A held reply decided: `queued` with its delivery, or `discarded`. False when it was no longer held.
pub async fn decide(db: &Db, id: i64, delivery: Option<DeliveryId>) -> sqlx::Result<bool> {
    on!(db, |pool| {
        let changed = sqlx::query(
        "UPDATE chatwoot_recovered SET state = $1, delivery_id = $2, updated_at = $3 WHERE id = $4 AND state = 'held'",
    )
    .bind(if delivery.is_some() { "queued" } else { "discarded" })
    .bind(delivery)
    .bind(now_ms())
    .bind(id)
    .execute(pool)
    .await?
    .rows_affected();
        Ok(changed > 0)
    })
}

/// Which of `ids` are recovered replies.
pub async fn recovered_among(db: &Db, ids: &[DeliveryId]) -> sqlx::Result<Vec<DeliveryId>> {
    on!(db, |pool| {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut query = sqlx::QueryBuilder::new(
            "SELECT delivery_id FROM chatwoot_recovered WHERE delivery_id IN (",
        );
        let mut list = query.separated(", ");
        for id in ids {
            list.push_bind(*id);
        }
        query.push(")");
        query.build_query_scalar().fetch_all(pool).await
    })
}

/// How far catching up has read a conversation of a link: the highest message id up to which it has looked at
/// every message (`None`: never).
pub async fn read_to(db: &Db, link: i64, conversation: i64) -> sqlx::Result<Option<i64>> {
    on!(db, |pool| {
        sqlx::query_scalar(
            "SELECT read_to FROM chatwoot_catchup WHERE link_id = $1 AND conversation_id = $2",
        )
        .bind(link)
        .bind(conversation)
        .fetch_optional(pool)
        .await
    })
}

/// Records that catching up has looked at every message of a conversation up to `message`; never moves back.
pub async fn set_read_to(db: &Db, link: i64, conversation: i64, message: i64) -> sqlx::Result<()> {
    on!(db, |pool| {
        sqlx::query(
            "INSERT INTO chatwoot_catchup (link_id, conversation_id, read_to, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (link_id, conversation_id) DO UPDATE
               SET read_to = excluded.read_to, updated_at = excluded.updated_at
               WHERE chatwoot_catchup.read_to < excluded.read_to",
        )
        .bind(link)
        .bind(conversation)
        .bind(message)
        .bind(now_ms())
        .execute(pool)
        .await?;
        Ok(())
    })
}

/// Whether a `message_created` of that message is stored (its identity is taken).
pub async fn delivered_before(db: &Db, inbox: InboxId, message: i64) -> sqlx::Result<bool> {
    on!(db, |pool| {
        sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM deliveries WHERE inbox_id = $1 AND message_id = $2 AND event = 'message_created')",
    )
    .bind(inbox)
    .bind(message)
    .fetch_one(pool)
    .await
    })
}

/// Deletes recovered replies decided (queued or discarded) before `before`; held ones stay until decided.
pub async fn prune(db: &Db, before: i64) -> sqlx::Result<u64> {
    on!(db, |pool| {
        Ok(
            sqlx::query("DELETE FROM chatwoot_recovered WHERE state != 'held' AND updated_at < $1")
                .bind(before)
                .execute(pool)
                .await?
                .rows_affected(),
        )
    })
}
