//! `chatwoot_recovered`: replies found by catching up with Chatwoot, queued or held for a decision.

use sqlx::{FromRow, SqlitePool};

use super::now_ms;
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
pub async fn known(pool: &SqlitePool, account: i64, message: i64) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM chatwoot_recovered WHERE account_id = ? AND message_id = ?)",
    )
    .bind(account)
    .bind(message)
    .fetch_one(pool)
    .await
}

/// Stores a recovered reply as `queued` (with its delivery) or `held`; false when it was known already.
pub async fn insert(
    pool: &SqlitePool,
    r: &NewRecovered,
    delivery: Option<DeliveryId>,
) -> sqlx::Result<bool> {
    let now = now_ms();
    let inserted = sqlx::query(
        "INSERT OR IGNORE INTO chatwoot_recovered (link_id, account_id, inbox_id, conversation_id, message_id, \
         written_at, body, delivery_id, state, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
    .bind(now)
    .bind(now)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(inserted > 0)
}

/// Replies waiting for "send now" or "discard", oldest first.
pub async fn list_held(pool: &SqlitePool) -> sqlx::Result<Vec<Recovered>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM chatwoot_recovered WHERE state = 'held' ORDER BY message_id"
    ))
    .fetch_all(pool)
    .await
}

pub async fn find(pool: &SqlitePool, id: i64) -> sqlx::Result<Option<Recovered>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM chatwoot_recovered WHERE id = ?"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// A held reply decided: `queued` with its delivery, or `discarded`. False when it was no longer held.
pub async fn decide(
    pool: &SqlitePool,
    id: i64,
    delivery: Option<DeliveryId>,
) -> sqlx::Result<bool> {
    let changed = sqlx::query(
        "UPDATE chatwoot_recovered SET state = ?1, delivery_id = ?2, updated_at = ?3 WHERE id = ?4 AND state = 'held'",
    )
    .bind(if delivery.is_some() { "queued" } else { "discarded" })
    .bind(delivery)
    .bind(now_ms())
    .bind(id)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(changed > 0)
}

/// Which of `ids` are recovered replies.
pub async fn recovered_among(
    pool: &SqlitePool,
    ids: &[DeliveryId],
) -> sqlx::Result<Vec<DeliveryId>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let marks = vec!["?"; ids.len()].join(", ");
    let sql = format!("SELECT delivery_id FROM chatwoot_recovered WHERE delivery_id IN ({marks})");
    let mut query = sqlx::query_scalar(&sql);
    for id in ids {
        query = query.bind(*id);
    }
    query.fetch_all(pool).await
}

/// The largest message id of a conversation the relay has stored a delivery for.
pub async fn last_known_message(
    pool: &SqlitePool,
    inbox: InboxId,
    conversation: i64,
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "SELECT max(message_id) FROM deliveries WHERE inbox_id = ? AND conversation_id = ? AND message_id IS NOT NULL",
    )
    .bind(inbox)
    .bind(conversation)
    .fetch_one(pool)
    .await
}

/// Whether a `message_created` of that message is stored (its identity is taken).
pub async fn delivered_before(
    pool: &SqlitePool,
    inbox: InboxId,
    message: i64,
) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM deliveries WHERE inbox_id = ? AND message_id = ? AND event = 'message_created')",
    )
    .bind(inbox)
    .bind(message)
    .fetch_one(pool)
    .await
}

/// Deletes recovered replies decided (queued or discarded) before `before`; held ones stay until decided.
pub async fn prune(pool: &SqlitePool, before: i64) -> sqlx::Result<u64> {
    Ok(
        sqlx::query("DELETE FROM chatwoot_recovered WHERE state != 'held' AND updated_at < ?")
            .bind(before)
            .execute(pool)
            .await?
            .rows_affected(),
    )
}
