//! `chatwoot_feedback` and `chatwoot_outages`: what the relay tells a linked Chatwoot about replies (queued and
//! retried), and the conversations whose agents were told that replies are delayed.

use sqlx::FromRow;

use super::deliveries::StoredReply;
use super::{Db, now_ms};
use crate::ids::{DeliveryId, InboxId};

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
    pub inbox_id: InboxId,
    pub conversation_id: Option<i64>,
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

/// Settles reply `id`, stored as having come late: marks it with `marker` (unless such a marker exists) and clears
/// the flag, in one transaction, so that of two relays settling it at once only one marks it. `None`: nothing to
/// tell of it (not a reply to the customer, or its account not linked).
pub async fn settle_late_arrival(
    db: &Db,
    id: DeliveryId,
    marker: Option<&NewFeedback>,
) -> sqlx::Result<()> {
    on!(db, |pool| {
        let mut tx = pool.begin().await?;
        let cleared = sqlx::query(
            "UPDATE deliveries SET arrived_late = FALSE WHERE id = $1 AND arrived_late",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let told: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM chatwoot_feedback WHERE delivery_id = $1 AND kind = 'late_arrival')",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        if let Some(marker) = marker.filter(|_| cleared == 1 && !told) {
            insert_one!(marker).execute(&mut *tx).await?;
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

/// Takes feedback `f` for one call to Chatwoot: the attempt is counted before the call is made and `f` is not due
/// again before `until`, unless another relay took it since `f` was read (then `false`). A relay that dies during
/// the call leaves the attempt counted, so the next one looks in Chatwoot before writing a note again; two relays
/// that read it due at once (each holding the job's turn for a moment, across a database restart) do not both
/// call.
pub async fn take(db: &Db, f: &Feedback, until: i64) -> sqlx::Result<bool> {
    on!(db, |pool| {
        let taken = sqlx::query(
            "UPDATE chatwoot_feedback SET attempts = attempts + 1, next_at = $1, updated_at = $2 \
             WHERE id = $3 AND status = 'pending' AND attempts = $4",
        )
        .bind(until)
        .bind(now_ms())
        .bind(f.id)
        .bind(f.attempts)
        .execute(pool)
        .await?;
        Ok(taken.rows_affected() == 1)
    })
}

/// Records how an attempt [`take`]n went: `done`, or due again at `retry_at`, or given up (`retry_at` `None`
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
            "UPDATE chatwoot_feedback SET status = $1, last_error = $2, \
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
        "SELECT d.id AS delivery_id, d.inbox_id, d.conversation_id, d.attempts, d.last_status_code, \
         d.last_error, d.received_at, b.body \
         FROM deliveries d JOIN delivery_bodies b ON b.delivery_id = d.id \
         WHERE d.status = 'dead' AND (d.event = 'message_created' OR d.dedupe_key LIKE 'message_deleted/%') \
         AND d.updated_at >= $1 AND NOT EXISTS ( \
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

/// A reply that reached GoWA after a later reply of its conversation had been tried.
#[derive(Debug, Clone, FromRow)]
pub struct Overtaken {
    pub delivery_id: DeliveryId,
    pub attempts: i64,
    pub link_id: i64,
    pub account_id: i64,
    pub conversation_id: i64,
    pub message_id: i64,
    /// Found by catching up (its webhook never came), not posted late.
    pub recovered: bool,
    /// Went after a later reply of its conversation (else: found by catching up only after the delay).
    pub overtaken: bool,
}

/// Replies that may have gone after later ones: found by catching up, or marked `late_arrival` (Chatwoot posted
/// them after a later reply had started to go).
const MAYBE_OVERTAKEN: &str = "(SELECT delivery_id, link_id, account_id, conversation_id, message_id, \
     TRUE AS recovered FROM chatwoot_recovered WHERE state = 'queued' \
   UNION ALL SELECT delivery_id, link_id, account_id, conversation_id, message_id, FALSE \
     FROM chatwoot_feedback WHERE kind = 'late_arrival' \
       AND delivery_id NOT IN (SELECT delivery_id FROM chatwoot_recovered WHERE delivery_id IS NOT NULL)) c";

/// Those replies delivered since `since`, whose delivering attempt came after an attempt of a later reply to the
/// customer in their conversation that may have reached GoWA (answered 2xx or 408, or not at all), or that catching
/// up found only after `CHATGOWA_DELAYED_AFTER` (marked `caught_up_late`), and not noted yet. "After" is the
/// store's order first: a lane's attempts are recorded one after another, by whichever relay holds it, whose
/// clock may be minutes off; an attempt recorded late by a relay that lost the lane as it sent counts by the time
/// it started.
pub async fn overtaken(db: &Db, since: i64, limit: i64) -> sqlx::Result<Vec<Overtaken>> {
    // The later message a reply to the customer (not a private note, nor the customer's own message).
    let reply = sql!(db,
        sqlite: "(SELECT json_extract(CAST(b.body AS TEXT), '$.message_type') = 'outgoing' \
                 AND coalesce(json_extract(CAST(b.body AS TEXT), '$.private'), 0) = 0 \
                 FROM delivery_bodies b WHERE b.delivery_id = l.id)",
        postgres: "(SELECT (j ->> 'message_type') = 'outgoing' AND coalesce(j ->> 'private', 'false') = 'false' \
                   FROM (SELECT convert_from(b.body, 'UTF8')::jsonb AS j FROM delivery_bodies b \
                         WHERE b.delivery_id = l.id) x)",
    );
    let later = format!(
        "EXISTS (SELECT 1 FROM deliveries l JOIN delivery_attempts a ON a.delivery_id = l.id \
           WHERE l.inbox_id = d.inbox_id AND l.conversation_id = d.conversation_id \
           AND l.event = 'message_created' AND l.message_id > d.message_id \
           AND (a.status_code IS NULL OR a.status_code = 408 OR a.status_code BETWEEN 200 AND 299) \
           AND (a.id < (SELECT max(x.id) FROM delivery_attempts x WHERE x.delivery_id = d.id) \
                OR a.started_at < (SELECT max(x.started_at) FROM delivery_attempts x WHERE x.delivery_id = d.id)) \
           AND {reply})"
    );
    on!(db, |pool| {
        sqlx::query_as(&format!(
            "SELECT d.id AS delivery_id, d.attempts, c.link_id, c.account_id, c.conversation_id, c.message_id, \
             c.recovered, {later} AS overtaken FROM {MAYBE_OVERTAKEN} JOIN deliveries d ON d.id = c.delivery_id \
             WHERE d.status = 'delivered' AND d.updated_at >= $1 AND c.link_id IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM chatwoot_feedback f WHERE f.delivery_id = d.id AND f.kind = 'note_late') \
             AND ({later} OR EXISTS (SELECT 1 FROM chatwoot_feedback m WHERE m.delivery_id = d.id \
                                     AND m.kind = 'caught_up_late')) \
             ORDER BY d.id LIMIT $2",
        ))
        .bind(since)
        .bind(limit)
        .fetch_all(pool)
        .await
    })
}

/// The conversations of those replies still waiting to go out (their outcome decides whether a note follows).
pub async fn overtaken_waiting(db: &Db) -> sqlx::Result<Vec<i64>> {
    on!(db, |pool| {
        sqlx::query_scalar(&format!(
            "SELECT DISTINCT c.conversation_id FROM {MAYBE_OVERTAKEN} JOIN deliveries d ON d.id = c.delivery_id \
             WHERE d.status = 'pending'"
        ))
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

/// Up to `limit` replies of link `link` marked failed in Chatwoot since `since` (the mark made), with no
/// `mark_sent` or `resent` after it, with their stored bodies; a different pick each time when there are more.
pub async fn marked_failed(
    db: &Db,
    link: i64,
    since: i64,
    limit: i64,
) -> sqlx::Result<Vec<StoredReply>> {
    on!(db, |pool| {
        sqlx::query_as(
            "SELECT f.delivery_id, f.conversation_id, f.message_id, b.body, f.id AS mark_id \
             FROM chatwoot_feedback f JOIN delivery_bodies b ON b.delivery_id = f.delivery_id \
             WHERE f.kind = 'mark_failed' AND f.status = 'done' AND f.link_id = $1 AND f.created_at >= $2 \
             AND f.message_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM chatwoot_feedback g \
               WHERE g.delivery_id = f.delivery_id AND g.kind IN ('mark_sent', 'resent') AND g.id > f.id) \
             ORDER BY random() LIMIT $3",
        )
        .bind(link)
        .bind(since)
        .bind(limit)
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

/// Conversations whose agents were not told yet of an outage: one in which a reply waits, whatever holds it up
/// (its own failed attempts, a head that is no reply and fails, a switched-off route, a pause).
const UNTOLD_LANE: &str = "d.status = 'pending' AND d.event = 'message_created' AND NOT EXISTS ( \
    SELECT 1 FROM chatwoot_outages o WHERE o.conversation_id = d.conversation_id \
    AND (o.inbox_id IS NULL OR o.inbox_id = d.inbox_id))";

/// Pending `message_created` deliveries received before `before` in conversations whose agents were not told
/// yet, at most `limit`, oldest first.
pub async fn delayed_untold(db: &Db, before: i64, limit: i64) -> sqlx::Result<Vec<Untold>> {
    on!(db, |pool| {
        sqlx::query_as(&format!(
            "SELECT d.id AS delivery_id, d.inbox_id, d.conversation_id, d.attempts, d.last_status_code, \
             d.last_error, d.received_at, b.body \
             FROM deliveries d JOIN delivery_bodies b ON b.delivery_id = d.id \
             WHERE {UNTOLD_LANE} AND d.received_at <= $1 ORDER BY d.id LIMIT $2"
        ))
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await
    })
}

/// When the oldest waiting message of a conversation not told yet was received.
pub async fn oldest_delayed_untold(db: &Db) -> sqlx::Result<Option<i64>> {
    on!(db, |pool| {
        sqlx::query_scalar(&format!(
            "SELECT min(d.received_at) FROM deliveries d WHERE {UNTOLD_LANE}"
        ))
        .fetch_one(pool)
        .await
    })
}

/// Why the replies of a lane wait when the reply itself was not tried yet: the last failure of the lane's
/// earliest failing delivery (a private note or an incoming message may be its head), if any.
pub async fn lane_failure(
    db: &Db,
    inbox: InboxId,
    conversation: i64,
) -> sqlx::Result<Option<(Option<i64>, Option<String>)>> {
    on!(db, |pool| {
        sqlx::query_as(
            "SELECT last_status_code, last_error FROM deliveries WHERE inbox_id = $1 \
             AND conversation_id = $2 AND status = 'pending' AND attempts > 0 \
             ORDER BY id LIMIT 1",
        )
        .bind(inbox)
        .bind(conversation)
        .fetch_optional(pool)
        .await
    })
}

/// A conversation whose agents were told that its replies are delayed.
#[derive(Debug, Clone, FromRow)]
pub struct Outage {
    pub account_id: i64,
    /// `None` only for an outage noted before inboxes were kept with them.
    pub inbox_id: Option<InboxId>,
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
            "INSERT INTO chatwoot_outages (account_id, inbox_id, conversation_id, delivery_id, message_id, \
             link_id, noted_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(outage.account_id)
        .bind(outage.inbox_id)
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

/// The conversations with an outage open.
pub async fn outage_conversations(db: &Db) -> sqlx::Result<Vec<i64>> {
    on!(db, |pool| {
        sqlx::query_scalar("SELECT DISTINCT conversation_id FROM chatwoot_outages")
            .fetch_all(pool)
            .await
    })
}

/// The deliveries of an outage's conversation: its inbox's (conversation numbers are per account).
const OUTAGE_LANE: &str =
    "d.conversation_id = o.conversation_id AND (o.inbox_id IS NULL OR d.inbox_id = o.inbox_id)";

/// Outages whose conversation has no message left waiting.
pub async fn ended_outages(db: &Db) -> sqlx::Result<Vec<Outage>> {
    on!(db, |pool| {
        sqlx::query_as(&format!(
            "SELECT o.account_id, o.inbox_id, o.conversation_id, o.delivery_id, o.message_id, o.link_id \
             FROM chatwoot_outages o WHERE NOT EXISTS (SELECT 1 FROM deliveries d \
             WHERE {OUTAGE_LANE} AND d.status = 'pending' AND d.event = 'message_created')"
        ))
        .fetch_all(pool)
        .await
    })
}

/// The newest `message_created` deliveries of an outage's conversation delivered since its note (at most
/// `limit`), to tell whether a reply among them went out.
pub async fn delivered_since(db: &Db, outage: &Outage, limit: i64) -> sqlx::Result<Vec<Vec<u8>>> {
    on!(db, |pool| {
        sqlx::query_scalar(&format!(
            "SELECT b.body FROM chatwoot_outages o JOIN deliveries d ON {OUTAGE_LANE} \
             JOIN delivery_bodies b ON b.delivery_id = d.id \
             WHERE o.account_id = $1 AND o.conversation_id = $2 AND d.status = 'delivered' \
             AND d.event = 'message_created' AND d.id >= o.delivery_id ORDER BY d.id DESC LIMIT $3"
        ))
        .bind(outage.account_id)
        .bind(outage.conversation_id)
        .bind(limit)
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

    #[tokio::test]
    async fn feedback_two_relays_read_due_at_once_is_taken_by_one() {
        let (dbs, _dir) = crate::store::test_support::both().await;
        for db in &dbs {
            insert(db, &[note(false)]).await.unwrap();
            let seen = due(db, now_ms() + 1, 10).await.unwrap().remove(0);
            assert!(take(db, &seen, now_ms() + 30_000).await.unwrap());
            assert!(
                !take(db, &seen, now_ms() + 30_000).await.unwrap(),
                "the other relay's already"
            );
            assert!(
                due(db, now_ms() + 1, 10).await.unwrap().is_empty(),
                "not due while its call may last"
            );
            record(db, seen.id, Some("HTTP 502"), Some(now_ms()))
                .await
                .unwrap();
            let again = due(db, now_ms() + 1, 10).await.unwrap();
            assert_eq!(again[0].attempts, 1, "the attempt counted once");
        }
    }
}
