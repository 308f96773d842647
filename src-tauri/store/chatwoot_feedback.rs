//! `chatwoot_feedback` and `chatwoot_outages`: what the relay tells a linked Chatwoot about replies (queued and
//! retried), and the conversations whose agents were told that replies are delayed.

use sqlx::FromRow;

use super::{Db, now_ms};
use crate::ids::DeliveryId;

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct Feedback {
    pub id: i64,
    pub delivery_id: DeliveryId,
    pub at_attempt: i64,
    pub link_id: Option<i64>,
    pub account_id: i64,
    pub conversation_id: i64,
    pub message_id: Option<i64>,
    pub kind: String,
    pub text: String,
    pub status: String,
    pub attempts: i64,
    pub next_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One thing to tell Chatwoot, decided by the caller. `done`: nothing to send (kind `none`, `resent`).
#[derive(Debug, Clone)]
pub struct NewFeedback {
    pub delivery_id: DeliveryId,
    pub at_attempt: i64,
    pub link_id: Option<i64>,
    pub account_id: i64,
    pub conversation_id: i64,
    pub message_id: Option<i64>,
    pub kind: &'static str,
    pub text: String,
    pub done: bool,
}

/// A finished delivery the relay has not told Chatwoot about yet, with its body to read.
#[derive(Debug, Clone, FromRow)]
pub struct Untold {
    pub delivery_id: DeliveryId,
    pub attempts: i64,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub received_at: i64,
    pub body: Vec<u8>,
}

const COLUMNS: &str = "id, delivery_id, at_attempt, link_id, account_id, conversation_id, message_id, kind, \
                       text, status, attempts, next_at, last_error, created_at, updated_at";

/// The statement that stores one feedback item, for either backend's connection.
macro_rules! insert_one {
    ($item:expr) => {
        sqlx::query(
            "INSERT INTO chatwoot_feedback (delivery_id, at_attempt, link_id, account_id, conversation_id, \
             message_id, kind, text, status, next_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $10)",
        )
        .bind($item.delivery_id)
        .bind($item.at_attempt)
        .bind($item.link_id)
        .bind($item.account_id)
        .bind($item.conversation_id)
        .bind($item.message_id)
        .bind($item.kind)
        .bind(&$item.text)
        .bind(if $item.done { "done" } else { "pending" })
        .bind(now_ms())
    };
}

/// Stores feedback, all or nothing.
pub async fn insert(db: &Db, items: &[NewFeedback]) -> sqlx::Result<()> {
    on!(db, |pool| {
        let mut tx = pool.begin().await?;
        for item in items {
            insert_one!(item).execute(&mut *tx).await?;
        }
        tx.commit().await
    })
}

/// Pending feedback due at `now`, oldest first.
pub async fn due(db: &Db, now: i64, limit: i64) -> sqlx::Result<Vec<Feedback>> {
    on!(db, |pool| {
        sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM chatwoot_feedback WHERE status = 'pending' AND next_at <= $1 ORDER BY next_at, id \
         LIMIT $2"
    ))
    .bind(now)
    .bind(limit)
    .fetch_all(pool)
    .await
    })
}

/// When the next pending feedback is due.
pub async fn next_due(db: &Db) -> sqlx::Result<Option<i64>> {
    on!(db, |pool| {
        sqlx::query_scalar("SELECT min(next_at) FROM chatwoot_feedback WHERE status = 'pending'")
            .fetch_one(pool)
            .await
    })
}

/// Records an attempt at sending feedback: `done`, or due again at `retry_at`, or given up (`retry_at` `None`
/// with an error).
pub async fn record(
    db: &Db,
    id: i64,
    error: Option<&str>,
    retry_at: Option<i64>,
) -> sqlx::Result<()> {
    on!(db, |pool| {
        let status = match (error, retry_at) {
            (None, _) => "done",
            (Some(_), Some(_)) => "pending",
            (Some(_), None) => "gave_up",
        };
        sqlx::query(
            "UPDATE chatwoot_feedback SET status = $1, attempts = attempts + 1, last_error = $2, \
         next_at = coalesce($3, next_at), updated_at = $4 WHERE id = $5",
        )
        .bind(status)
        .bind(error)
        .bind(retry_at)
        .bind(now_ms())
        .bind(id)
        .execute(pool)
        .await?;
        Ok(())
    })
}

pub async fn list_for_delivery(db: &Db, id: DeliveryId) -> sqlx::Result<Vec<Feedback>> {
    on!(db, |pool| {
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM chatwoot_feedback WHERE delivery_id = $1 ORDER BY id"
        ))
        .bind(id)
        .fetch_all(pool)
        .await
    })
}

/// Dead `message_created` deliveries that died after `since` and were not yet told about at their current attempt
/// count.
pub async fn dead_untold(db: &Db, since: i64, limit: i64) -> sqlx::Result<Vec<Untold>> {
    on!(db, |pool| {
        sqlx::query_as(
        "SELECT d.id AS delivery_id, d.attempts, d.last_status_code, d.last_error, d.received_at, b.body \
         FROM deliveries d JOIN delivery_bodies b ON b.delivery_id = d.id \
         WHERE d.status = 'dead' AND d.event = 'message_created' AND d.updated_at >= $1 AND NOT EXISTS ( \
           SELECT 1 FROM chatwoot_feedback f WHERE f.delivery_id = d.id AND f.at_attempt = d.attempts \
           AND f.kind IN ('mark_failed', 'note_dead', 'none')) \
         ORDER BY d.id LIMIT $2",
    )
    .bind(since)
    .bind(limit)
    .fetch_all(pool)
    .await
    })
}

/// Replies marked failed in Chatwoot that were delivered since, with no `mark_sent` after the mark.
pub async fn delivered_after_failed(db: &Db) -> sqlx::Result<Vec<Feedback>> {
    on!(db, |pool| {
        sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM chatwoot_feedback f WHERE f.kind = 'mark_failed' \
         AND EXISTS (SELECT 1 FROM deliveries d WHERE d.id = f.delivery_id AND d.status = 'delivered') \
         AND NOT EXISTS (SELECT 1 FROM chatwoot_feedback g WHERE g.delivery_id = f.delivery_id \
           AND g.kind = 'mark_sent' AND g.id > f.id)"
    ))
    .fetch_all(pool)
    .await
    })
}

/// The latest `mark_failed` of a message, if it is still in force (no `mark_sent` or `resent` after it).
pub async fn failed_mark(db: &Db, account: i64, message: i64) -> sqlx::Result<Option<Feedback>> {
    on!(db, |pool| {
        sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM chatwoot_feedback f WHERE f.kind = 'mark_failed' AND f.account_id = $1 \
         AND f.message_id = $2 AND NOT EXISTS (SELECT 1 FROM chatwoot_feedback g \
           WHERE g.delivery_id = f.delivery_id AND g.kind IN ('mark_sent', 'resent') AND g.id > f.id) \
         ORDER BY f.id DESC LIMIT 1"
    ))
    .bind(account)
    .bind(message)
    .fetch_optional(pool)
    .await
    })
}

/// Pending `message_created` deliveries that have failed at least once and were received before `before`, in
/// conversations whose agents were not told yet.
pub async fn delayed_untold(db: &Db, before: i64) -> sqlx::Result<Vec<Untold>> {
    on!(db, |pool| {
        sqlx::query_as(
        "SELECT d.id AS delivery_id, d.attempts, d.last_status_code, d.last_error, d.received_at, b.body \
         FROM deliveries d JOIN delivery_bodies b ON b.delivery_id = d.id \
         WHERE d.status = 'pending' AND d.event = 'message_created' AND d.attempts > 0 AND d.received_at <= $1 \
         AND NOT EXISTS (SELECT 1 FROM chatwoot_outages o WHERE o.conversation_id = d.conversation_id) \
         ORDER BY d.id",
    )
    .bind(before)
    .fetch_all(pool)
    .await
    })
}

/// When the oldest failing reply of a conversation not told yet was received.
pub async fn oldest_delayed_untold(db: &Db) -> sqlx::Result<Option<i64>> {
    on!(db, |pool| {
        sqlx::query_scalar(
        "SELECT min(d.received_at) FROM deliveries d WHERE d.status = 'pending' \
         AND d.event = 'message_created' AND d.attempts > 0 \
         AND NOT EXISTS (SELECT 1 FROM chatwoot_outages o WHERE o.conversation_id = d.conversation_id)",
    )
    .fetch_one(pool)
    .await
    })
}

/// A conversation whose agents were told that its replies are delayed.
#[derive(Debug, Clone, FromRow)]
pub struct Outage {
    pub account_id: i64,
    pub conversation_id: i64,
    pub delivery_id: DeliveryId,
    pub message_id: Option<i64>,
    pub link_id: Option<i64>,
}

/// Notes the outage with the note that tells it, all or nothing.
pub async fn open_outage(db: &Db, outage: &Outage, note: &NewFeedback) -> sqlx::Result<()> {
    on!(db, |pool| {
        let mut tx = pool.begin().await?;
        let opened = sqlx::query(
        "INSERT INTO chatwoot_outages (account_id, conversation_id, delivery_id, message_id, link_id, \
         noted_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(outage.account_id)
    .bind(outage.conversation_id)
    .bind(outage.delivery_id)
    .bind(outage.message_id)
    .bind(outage.link_id)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?
    .rows_affected();
        if opened > 0 {
            insert_one!(note).execute(&mut *tx).await?;
        }
        tx.commit().await
    })
}

/// An outage whose conversation has no failing reply left.
#[derive(Debug, Clone, FromRow)]
pub struct EndedOutage {
    #[sqlx(flatten)]
    pub outage: Outage,
    /// Whether a reply of the conversation was delivered since the note (else they were given up on).
    pub delivered: bool,
}

/// The conversations with an outage open.
pub async fn outage_conversations(db: &Db) -> sqlx::Result<Vec<i64>> {
    on!(db, |pool| {
        sqlx::query_scalar("SELECT DISTINCT conversation_id FROM chatwoot_outages")
            .fetch_all(pool)
            .await
    })
}

/// Outages whose conversation has no failing reply left.
pub async fn ended_outages(db: &Db) -> sqlx::Result<Vec<EndedOutage>> {
    on!(db, |pool| {
        sqlx::query_as(
        "SELECT o.account_id, o.conversation_id, o.delivery_id, o.message_id, o.link_id, \
           EXISTS (SELECT 1 FROM deliveries d WHERE d.conversation_id = o.conversation_id \
             AND d.status = 'delivered' AND d.id >= o.delivery_id) AS delivered \
         FROM chatwoot_outages o WHERE NOT EXISTS (SELECT 1 FROM deliveries d \
           WHERE d.conversation_id = o.conversation_id AND d.status = 'pending' AND d.event = 'message_created')",
    )
    .fetch_all(pool)
    .await
    })
}

/// Ends an outage, with the note that tells it (if any), all or nothing.
pub async fn close_outage(
    db: &Db,
    outage: &Outage,
    note: Option<&NewFeedback>,
) -> sqlx::Result<()> {
    on!(db, |pool| {
        let mut tx = pool.begin().await?;
        sqlx::query("DELETE FROM chatwoot_outages WHERE account_id = $1 AND conversation_id = $2")
            .bind(outage.account_id)
            .bind(outage.conversation_id)
            .execute(&mut *tx)
            .await?;
        if let Some(note) = note {
            insert_one!(note).execute(&mut *tx).await?;
        }
        tx.commit().await
    })
}

/// Deletes what was told (or given up) before `before`: the deliveries it was about are pruned by then.
pub async fn prune(db: &Db, before: i64) -> sqlx::Result<u64> {
    on!(db, |pool| {
        Ok(sqlx::query(
            "DELETE FROM chatwoot_feedback WHERE status != 'pending' AND updated_at < $1",
        )
        .bind(before)
        .execute(pool)
        .await?
        .rows_affected())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::temp_db;

    fn note(done: bool) -> NewFeedback {
        NewFeedback {
            delivery_id: DeliveryId(1),
            at_attempt: 1,
            link_id: Some(1),
            account_id: 1,
            conversation_id: 5,
            message_id: Some(9),
            kind: "note_dead",
            text: "x".into(),
            done,
        }
    }

    #[tokio::test]
    async fn what_was_told_is_pruned_and_what_waits_is_kept() {
        let (pool, _dir) = temp_db().await;
        insert(&pool, &[note(true), note(false)]).await.unwrap();
        assert_eq!(prune(&pool, now_ms() + 1).await.unwrap(), 1);
        let left = list_for_delivery(&pool, DeliveryId(1)).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].status, "pending");
    }
}
