//! `deliveries`: one row per accepted webhook, holding the raw body once, and its delivery state.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sqlx::{FromRow, SqliteConnection, SqlitePool};

use super::attempts::Trigger;
use crate::ids::{DeliveryId, InboxId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for its turn, or for a retry.
    Pending,
    Delivered,
    /// Gave up: permanent error, no route, or older than the maximum age.
    Dead,
}

/// What the relay stores for an accepted webhook.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub inbox_id: InboxId,
    /// Ordering lane inside the inbox; `None` for events without a conversation.
    pub conversation_id: Option<i64>,
    pub event: String,
    /// `X-Chatwoot-Delivery`: a repeat is not queued again.
    pub dedupe_key: Option<String>,
    pub cw_timestamp: Option<String>,
    pub cw_signature: Option<String>,
    pub body: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct Delivery {
    pub id: DeliveryId,
    pub inbox_id: InboxId,
    pub conversation_id: Option<i64>,
    pub event: String,
    pub dedupe_key: Option<String>,
    pub cw_timestamp: Option<String>,
    pub cw_signature: Option<String>,
    pub body: Vec<u8>,
    pub status: DeliveryStatus,
    /// What the next attempt of a pending delivery is: `Manual` after an admin asked for a retry.
    pub trigger: Trigger,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub received_at: i64,
    pub updated_at: i64,
}

impl Delivery {
    /// The delivery without its body.
    pub fn summary(&self) -> DeliverySummary {
        DeliverySummary {
            id: self.id,
            inbox_id: self.inbox_id,
            conversation_id: self.conversation_id,
            event: self.event.clone(),
            status: self.status,
            attempts: self.attempts,
            next_attempt_at: self.next_attempt_at,
            last_status_code: self.last_status_code,
            last_error: self.last_error.clone(),
            received_at: self.received_at,
            updated_at: self.updated_at,
            size: i64::try_from(self.body.len()).unwrap_or(i64::MAX),
        }
    }
}

/// Just enough of a pending delivery to put it in its lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromRow)]
pub struct PendingRef {
    pub id: DeliveryId,
    pub inbox_id: InboxId,
    pub conversation_id: Option<i64>,
}

/// The state a delivery moves to after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextState {
    Delivered,
    RetryAt(i64),
    Dead,
}

const COLUMNS: &str = "id, inbox_id, conversation_id, event, dedupe_key, cw_timestamp, cw_signature, body, \
                       status, trigger, attempts, next_attempt_at, last_status_code, last_error, received_at, \
                       updated_at";

/// A delivery without its body, for the delivery log.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct DeliverySummary {
    pub id: DeliveryId,
    pub inbox_id: InboxId,
    pub conversation_id: Option<i64>,
    pub event: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub received_at: i64,
    pub updated_at: i64,
    pub size: i64,
}

const SUMMARY_COLUMNS: &str = "id, inbox_id, conversation_id, event, status, attempts, next_attempt_at, \
                               last_status_code, last_error, received_at, updated_at, length(body) AS size";

/// Which deliveries to list; `None` fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub status: Option<DeliveryStatus>,
    pub inbox_id: Option<InboxId>,
    pub conversation_id: Option<i64>,
    /// Only deliveries older than this one (the page cursor).
    pub before: Option<DeliveryId>,
}

/// Newest first, at most `limit`.
pub async fn list(
    pool: &SqlitePool,
    filter: &Filter,
    limit: i64,
) -> sqlx::Result<Vec<DeliverySummary>> {
    let mut q = sqlx::QueryBuilder::new(format!(
        "SELECT {SUMMARY_COLUMNS} FROM deliveries WHERE 1 = 1"
    ));
    if let Some(status) = filter.status {
        q.push(" AND status = ").push_bind(status);
    }
    if let Some(inbox) = filter.inbox_id {
        q.push(" AND inbox_id = ").push_bind(inbox);
    }
    if let Some(conversation) = filter.conversation_id {
        q.push(" AND conversation_id = ").push_bind(conversation);
    }
    if let Some(before) = filter.before {
        q.push(" AND id < ").push_bind(before);
    }
    q.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
    q.build_query_as().fetch_all(pool).await
}

/// Number of deliveries in each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub pending: i64,
    pub delivered: i64,
    pub dead: i64,
}

pub async fn totals(pool: &SqlitePool) -> sqlx::Result<Totals> {
    let rows: Vec<(DeliveryStatus, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM deliveries GROUP BY status")
            .fetch_all(pool)
            .await?;
    let mut totals = Totals::default();
    for (status, n) in rows {
        match status {
            DeliveryStatus::Pending => totals.pending = n,
            DeliveryStatus::Delivered => totals.delivered = n,
            DeliveryStatus::Dead => totals.dead = n,
        }
    }
    Ok(totals)
}

/// When the oldest pending delivery arrived.
pub async fn oldest_pending_received_at(pool: &SqlitePool) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "SELECT received_at FROM deliveries WHERE status = 'pending' ORDER BY id LIMIT 1",
    )
    .fetch_optional(pool)
    .await
}

/// Deliveries delivered since `since` (unix ms).
pub async fn count_delivered_since(pool: &SqlitePool, since: i64) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM deliveries WHERE status = 'delivered' AND updated_at >= ?",
    )
    .bind(since)
    .fetch_one(pool)
    .await
}

/// How many of an inbox's deliveries are in `status`.
pub async fn count_for_inbox(
    pool: &SqlitePool,
    inbox_id: InboxId,
    status: DeliveryStatus,
) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE inbox_id = ? AND status = ?")
        .bind(inbox_id)
        .bind(status)
        .fetch_one(pool)
        .await
}

/// The inbox's most recently attempted delivery: how its route is doing.
pub async fn last_attempted_for_inbox(
    pool: &SqlitePool,
    inbox_id: InboxId,
) -> sqlx::Result<Option<DeliverySummary>> {
    sqlx::query_as(&format!(
        "SELECT {SUMMARY_COLUMNS} FROM deliveries WHERE inbox_id = ? AND attempts > 0
         ORDER BY updated_at DESC, id DESC LIMIT 1"
    ))
    .bind(inbox_id)
    .fetch_optional(pool)
    .await
}

/// Turns deliveries back into pending ones, for one manual attempt due at `?1`.
const REQUEUE: &str = "UPDATE deliveries SET status = 'pending', trigger = 'manual', next_attempt_at = ?1, \
                       updated_at = ?1";

/// Puts a delivered or dead delivery back in the queue for one manual attempt, due now.
/// `None` if it does not exist or is already pending.
pub async fn requeue(
    pool: &SqlitePool,
    id: DeliveryId,
    now: i64,
) -> sqlx::Result<Option<PendingRef>> {
    sqlx::query_as(&format!(
        "{REQUEUE} WHERE id = ?2 AND status IN ('delivered', 'dead') RETURNING id, inbox_id, conversation_id"
    ))
    .bind(now)
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// [`requeue`] for every dead delivery of an inbox, in arrival order.
pub async fn requeue_dead_for_inbox(
    pool: &SqlitePool,
    inbox_id: InboxId,
    now: i64,
) -> sqlx::Result<Vec<PendingRef>> {
    let mut requeued: Vec<PendingRef> = sqlx::query_as(&format!(
        "{REQUEUE} WHERE inbox_id = ?2 AND status = 'dead' RETURNING id, inbox_id, conversation_id"
    ))
    .bind(now)
    .bind(inbox_id)
    .fetch_all(pool)
    .await?;
    requeued.sort_by_key(|p| p.id);
    Ok(requeued)
}

/// When the delivery in `status` that finished first finished (its last change), if there is one.
pub async fn oldest_finished_at(
    pool: &SqlitePool,
    status: DeliveryStatus,
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar("SELECT min(updated_at) FROM deliveries WHERE status = ?")
        .bind(status)
        .fetch_one(pool)
        .await
}

/// Deletes up to `limit` deliveries in `status` that last changed before `before`, oldest first, with their
/// attempts and dedupe keys; returns how many. Small batches keep each write transaction short.
pub async fn prune(
    pool: &SqlitePool,
    status: DeliveryStatus,
    before: i64,
    limit: i64,
) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries \
         WHERE status = ? AND updated_at < ? ORDER BY updated_at LIMIT ?)",
    )
    .bind(status)
    .bind(before)
    .bind(limit)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Removes a delivery and its attempts; `false` if there was none.
pub async fn delete(pool: &SqlitePool, id: DeliveryId) -> sqlx::Result<bool> {
    let done = sqlx::query("DELETE FROM deliveries WHERE id = ?")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// One delivery through [`insert_many`]: its id, or `None` when its dedupe key is already known.
#[cfg(test)]
pub async fn insert(
    conn: &mut SqliteConnection,
    d: &NewDelivery,
    now: i64,
) -> sqlx::Result<Option<DeliveryId>> {
    let id = next_id(conn).await?;
    let inserted = insert_many(conn, &[(id, d)], now).await?;
    Ok(inserted.contains(&id).then_some(id))
}

/// Rows per multi-row statement: well under SQLite's 32 766 bound parameters. Such statements differ with
/// their row count, so they are not kept prepared (`persistent(false)`): a cache of them would hold memory.
const ROWS_PER_STATEMENT: usize = 500;

/// The id the next inserted delivery would get (ids are never reused, as with `AUTOINCREMENT`).
pub async fn next_id(conn: &mut SqliteConnection) -> sqlx::Result<DeliveryId> {
    sqlx::query_scalar(
        "SELECT 1 + max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'deliveries'), 0),
                        coalesce((SELECT max(id) FROM deliveries), 0))",
    )
    .fetch_one(conn)
    .await
}

/// Inserts many deliveries with the ids given, in few statements; a delivery whose dedupe key is already known
/// is skipped. Returns the ids actually inserted.
pub async fn insert_many(
    conn: &mut SqliteConnection,
    rows: &[(DeliveryId, &NewDelivery)],
    now: i64,
) -> sqlx::Result<std::collections::HashSet<DeliveryId>> {
    let mut inserted = std::collections::HashSet::with_capacity(rows.len());
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut q = sqlx::QueryBuilder::new(
            "INSERT INTO deliveries (id, inbox_id, conversation_id, event, dedupe_key, cw_timestamp, cw_signature,
                                     body, next_attempt_at, received_at, updated_at) ",
        );
        q.push_values(chunk, |mut row, (id, d)| {
            row.push_bind(*id)
                .push_bind(d.inbox_id)
                .push_bind(d.conversation_id)
                .push_bind(&d.event)
                .push_bind(&d.dedupe_key)
                .push_bind(&d.cw_timestamp)
                .push_bind(&d.cw_signature)
                .push_bind(d.body.as_ref())
                .push_bind(now)
                .push_bind(now)
                .push_bind(now);
        });
        q.push(" ON CONFLICT (dedupe_key) DO NOTHING RETURNING id");
        let ids: Vec<DeliveryId> = q
            .build_query_scalar()
            .persistent(false)
            .fetch_all(&mut *conn)
            .await?;
        inserted.extend(ids);
    }
    Ok(inserted)
}

/// The deliveries that hold these dedupe keys.
pub async fn ids_by_dedupe_key(
    conn: &mut SqliteConnection,
    keys: &[&str],
) -> sqlx::Result<std::collections::HashMap<String, DeliveryId>> {
    let mut found = std::collections::HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let mut q =
            sqlx::QueryBuilder::new("SELECT dedupe_key, id FROM deliveries WHERE dedupe_key IN (");
        let mut list = q.separated(", ");
        for key in chunk {
            list.push_bind(*key);
        }
        q.push(")");
        let rows: Vec<(String, DeliveryId)> = q
            .build_query_as()
            .persistent(false)
            .fetch_all(&mut *conn)
            .await?;
        found.extend(rows);
    }
    Ok(found)
}

/// The result of one attempt, for [`update_after_attempts`].
#[derive(Debug, Clone, Copy)]
pub struct AttemptOutcome<'a> {
    pub id: DeliveryId,
    pub next: NextState,
    pub status_code: Option<u16>,
    pub error: Option<&'a str>,
}

/// Moves each delivery to its next state after an attempt (only while still pending: one discarded or retried
/// by hand meanwhile is left as it is), in few statements.
pub async fn update_after_attempts(
    conn: &mut SqliteConnection,
    outcomes: &[AttemptOutcome<'_>],
    now: i64,
) -> sqlx::Result<()> {
    for chunk in outcomes.chunks(ROWS_PER_STATEMENT) {
        let mut q = sqlx::QueryBuilder::new(
            "UPDATE deliveries SET status = v.column2, trigger = 'scheduled', attempts = attempts + 1,
                    next_attempt_at = coalesce(v.column3, next_attempt_at), last_status_code = v.column4,
                    last_error = v.column5, updated_at = ",
        );
        q.push_bind(now).push(" FROM (");
        q.push_values(chunk, |mut row, o| {
            let (status, next_attempt_at) = match o.next {
                NextState::Delivered => (DeliveryStatus::Delivered, None),
                NextState::RetryAt(at) => (DeliveryStatus::Pending, Some(at)),
                NextState::Dead => (DeliveryStatus::Dead, None),
            };
            row.push_bind(o.id)
                .push_bind(status)
                .push_bind(next_attempt_at)
                .push_bind(o.status_code)
                .push_bind(o.error);
        });
        q.push(") AS v WHERE deliveries.id = v.column1 AND deliveries.status = 'pending'");
        q.build().persistent(false).execute(&mut *conn).await?;
    }
    Ok(())
}

#[cfg(test)]
pub async fn find_id_by_dedupe_key(
    conn: &mut SqliteConnection,
    key: &str,
) -> sqlx::Result<Option<DeliveryId>> {
    Ok(ids_by_dedupe_key(conn, &[key]).await?.get(key).copied())
}

pub async fn find(pool: &SqlitePool, id: DeliveryId) -> sqlx::Result<Option<Delivery>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM deliveries WHERE id = ?"))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Every pending delivery in arrival order.
pub async fn list_pending(pool: &SqlitePool) -> sqlx::Result<Vec<PendingRef>> {
    sqlx::query_as(
        "SELECT id, inbox_id, conversation_id FROM deliveries WHERE status = 'pending' ORDER BY id",
    )
    .fetch_all(pool)
    .await
}

pub async fn count_pending(pool: &SqlitePool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'pending'")
        .fetch_one(pool)
        .await
}

/// One delivery through [`update_after_attempts`].
#[cfg(test)]
pub async fn update_after_attempt(
    conn: &mut SqliteConnection,
    id: DeliveryId,
    next: NextState,
    status_code: Option<u16>,
    error: Option<&str>,
    now: i64,
) -> sqlx::Result<()> {
    let outcome = AttemptOutcome {
        id,
        next,
        status_code,
        error,
    };
    update_after_attempts(conn, &[outcome], now).await
}

/// Marks a delivery dead without an attempt (e.g. its inbox no longer has a route).
pub async fn mark_dead(
    conn: &mut SqliteConnection,
    id: DeliveryId,
    reason: &str,
    now: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE deliveries SET status = 'dead', last_error = ?, updated_at = ? WHERE id = ?",
    )
    .bind(reason)
    .bind(now)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::test_support::temp_db;

    pub fn new_delivery(conversation: Option<i64>, key: Option<&str>) -> NewDelivery {
        NewDelivery {
            inbox_id: InboxId(7),
            conversation_id: conversation,
            event: "message_created".into(),
            dedupe_key: key.map(Into::into),
            cw_timestamp: Some("1781964310".into()),
            cw_signature: None,
            body: Bytes::from_static(b"{\"event\":\"message_created\"}"),
        }
    }

    #[tokio::test]
    async fn insert_dedupes_on_the_chatwoot_delivery_id() {
        let (pool, _dir) = temp_db().await;
        let mut conn = pool.acquire().await.unwrap();
        let a = insert(&mut conn, &new_delivery(Some(1), Some("uuid-1")), 10)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            insert(&mut conn, &new_delivery(Some(1), Some("uuid-1")), 11)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            find_id_by_dedupe_key(&mut conn, "uuid-1").await.unwrap(),
            Some(a)
        );
        // Without a key nothing is deduplicated.
        let b = insert(&mut conn, &new_delivery(Some(1), None), 12)
            .await
            .unwrap()
            .unwrap();
        let c = insert(&mut conn, &new_delivery(None, None), 13)
            .await
            .unwrap()
            .unwrap();
        assert!(a < b && b < c);
        drop(conn);

        let d = find(&pool, a).await.unwrap().unwrap();
        assert_eq!(
            (d.status, d.attempts, d.next_attempt_at, d.received_at),
            (DeliveryStatus::Pending, 0, 10, 10)
        );
        assert_eq!(d.body, b"{\"event\":\"message_created\"}");
        assert_eq!(count_pending(&pool).await.unwrap(), 3);
    }

    #[tokio::test]
    async fn attempts_move_the_state_and_pending_lists_only_what_is_left() {
        let (pool, _dir) = temp_db().await;
        let mut conn = pool.acquire().await.unwrap();
        let a = insert(&mut conn, &new_delivery(Some(1), None), 10)
            .await
            .unwrap()
            .unwrap();
        let b = insert(&mut conn, &new_delivery(Some(2), None), 10)
            .await
            .unwrap()
            .unwrap();
        let c = insert(&mut conn, &new_delivery(None, None), 10)
            .await
            .unwrap()
            .unwrap();
        update_after_attempt(
            &mut conn,
            a,
            NextState::RetryAt(500),
            Some(503),
            Some("HTTP 503"),
            20,
        )
        .await
        .unwrap();
        update_after_attempt(&mut conn, b, NextState::Delivered, Some(200), None, 20)
            .await
            .unwrap();
        mark_dead(&mut conn, c, "no route", 30).await.unwrap();
        drop(conn);

        let a_row = find(&pool, a).await.unwrap().unwrap();
        assert_eq!(
            (
                a_row.status,
                a_row.attempts,
                a_row.next_attempt_at,
                a_row.last_status_code
            ),
            (DeliveryStatus::Pending, 1, 500, Some(503))
        );
        assert_eq!(
            find(&pool, b).await.unwrap().unwrap().status,
            DeliveryStatus::Delivered
        );
        let c_row = find(&pool, c).await.unwrap().unwrap();
        assert_eq!(
            (c_row.status, c_row.last_error.as_deref()),
            (DeliveryStatus::Dead, Some("no route"))
        );
        assert_eq!(
            list_pending(&pool).await.unwrap(),
            vec![PendingRef {
                id: a,
                inbox_id: InboxId(7),
                conversation_id: Some(1)
            }]
        );
    }

    #[tokio::test]
    async fn log_queries_requeue_and_delete() {
        let (pool, _dir) = temp_db().await;
        let mut conn = pool.acquire().await.unwrap();
        let mut ids = Vec::new();
        for (at, conversation) in [(10, Some(1)), (20, Some(1)), (30, Some(2)), (40, None)] {
            ids.push(
                insert(&mut conn, &new_delivery(conversation, None), at)
                    .await
                    .unwrap()
                    .unwrap(),
            );
        }
        let other = NewDelivery {
            inbox_id: InboxId(8),
            ..new_delivery(Some(1), None)
        };
        let other = insert(&mut conn, &other, 50).await.unwrap().unwrap();
        update_after_attempt(&mut conn, ids[0], NextState::Delivered, Some(200), None, 60)
            .await
            .unwrap();
        update_after_attempt(
            &mut conn,
            ids[1],
            NextState::Dead,
            Some(404),
            Some("HTTP 404"),
            70,
        )
        .await
        .unwrap();
        // A finished delivery is not moved by a late attempt result.
        update_after_attempt(
            &mut conn,
            ids[1],
            NextState::RetryAt(999),
            Some(503),
            None,
            80,
        )
        .await
        .unwrap();
        drop(conn);

        let all = list(&pool, &Filter::default(), 10).await.unwrap();
        assert_eq!(
            all.iter().map(|d| d.id).collect::<Vec<_>>(),
            [other, ids[3], ids[2], ids[1], ids[0]]
        );
        assert_eq!(all[0].size, 27);
        let page = list(
            &pool,
            &Filter {
                before: Some(ids[2]),
                ..Filter::default()
            },
            1,
        )
        .await
        .unwrap();
        assert_eq!(page[0].id, ids[1]);
        let by = |f: Filter| {
            let pool = pool.clone();
            async move {
                list(&pool, &f, 10)
                    .await
                    .unwrap()
                    .iter()
                    .map(|d| d.id)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(
            by(Filter {
                status: Some(DeliveryStatus::Dead),
                ..Filter::default()
            })
            .await,
            [ids[1]]
        );
        assert_eq!(
            by(Filter {
                inbox_id: Some(InboxId(8)),
                ..Filter::default()
            })
            .await,
            [other]
        );
        assert_eq!(
            by(Filter {
                inbox_id: Some(InboxId(7)),
                conversation_id: Some(1),
                ..Filter::default()
            })
            .await,
            [ids[1], ids[0]]
        );

        assert_eq!(
            totals(&pool).await.unwrap(),
            Totals {
                pending: 3,
                delivered: 1,
                dead: 1
            }
        );
        assert_eq!(oldest_pending_received_at(&pool).await.unwrap(), Some(30));
        assert_eq!(count_delivered_since(&pool, 60).await.unwrap(), 1);
        assert_eq!(count_delivered_since(&pool, 61).await.unwrap(), 0);
        assert_eq!(
            count_for_inbox(&pool, InboxId(7), DeliveryStatus::Pending)
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            count_for_inbox(&pool, InboxId(7), DeliveryStatus::Dead)
                .await
                .unwrap(),
            1
        );
        let last = last_attempted_for_inbox(&pool, InboxId(7))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (last.id, last.status, last.last_status_code),
            (ids[1], DeliveryStatus::Dead, Some(404))
        );
        assert_eq!(
            last_attempted_for_inbox(&pool, InboxId(8)).await.unwrap(),
            None
        );

        // Requeue: only finished deliveries, as one manual attempt due now.
        assert_eq!(
            requeue(&pool, ids[2], 100).await.unwrap(),
            None,
            "already pending"
        );
        let back = requeue(&pool, ids[0], 100).await.unwrap().unwrap();
        assert_eq!((back.id, back.conversation_id), (ids[0], Some(1)));
        let row = find(&pool, ids[0]).await.unwrap().unwrap();
        assert_eq!(
            (row.status, row.trigger, row.next_attempt_at),
            (DeliveryStatus::Pending, Trigger::Manual, 100)
        );
        let dead: Vec<_> = requeue_dead_for_inbox(&pool, InboxId(7), 110)
            .await
            .unwrap()
            .iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(dead, [ids[1]]);
        assert_eq!(
            totals(&pool).await.unwrap(),
            Totals {
                pending: 5,
                delivered: 0,
                dead: 0
            }
        );

        assert!(delete(&pool, ids[3]).await.unwrap());
        assert!(!delete(&pool, ids[3]).await.unwrap());
        assert_eq!(find(&pool, ids[3]).await.unwrap(), None);
    }
}
