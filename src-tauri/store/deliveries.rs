//! `deliveries`: one row per accepted webhook and its delivery state; `delivery_bodies`: its raw body, once.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sqlx::FromRow;

use super::attempts::Trigger;
use super::{Db, lanes};
use crate::ids::{DeliveryId, InboxId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for its turn, or for a retry.
    Pending,
    Delivered,
    /// Gave up: permanent error, no route, or older than the maximum age.
    Dead,
}

impl rusqlite::ToSql for DeliveryStatus {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
        .into())
    }
}

/// What the relay stores for an accepted webhook.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub inbox_id: InboxId,
    /// Ordering lane inside the inbox; `None` for events without a conversation.
    pub conversation_id: Option<i64>,
    pub event: String,
    /// Chatwoot's message id, for `message_created` / `message_updated`: orders the conversation's replies.
    pub message_id: Option<i64>,
    /// What makes a repeat recognisable: the message's identity, else `X-Chatwoot-Delivery`. A repeat is not
    /// queued again.
    pub dedupe_key: Option<String>,
    /// `X-Chatwoot-Delivery` as received, forwarded to GoWA.
    pub cw_delivery: Option<String>,
    pub cw_timestamp: Option<String>,
    pub cw_signature: Option<String>,
    pub body: Bytes,
}

impl NewDelivery {
    /// Where it goes in its lane, as it arrives at `at`.
    pub fn pending(&self, id: DeliveryId, at: i64) -> PendingRef {
        PendingRef {
            id,
            inbox_id: self.inbox_id,
            conversation_id: self.conversation_id,
            message_id: self.message_id,
            is_update: self.event == "message_updated",
            received_at: at,
            attempted: false,
            by_hand: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct Delivery {
    pub id: DeliveryId,
    pub inbox_id: InboxId,
    pub conversation_id: Option<i64>,
    pub event: String,
    pub message_id: Option<i64>,
    pub duplicates: i64,
    pub dedupe_key: Option<String>,
    pub cw_delivery: Option<String>,
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
    /// The row [`insert`] wrote for `new` at `now`.
    pub fn inserted(id: DeliveryId, new: &NewDelivery, now: i64) -> Self {
        Self {
            id,
            inbox_id: new.inbox_id,
            conversation_id: new.conversation_id,
            event: new.event.clone(),
            message_id: new.message_id,
            duplicates: 0,
            dedupe_key: new.dedupe_key.clone(),
            cw_delivery: new.cw_delivery.clone(),
            cw_timestamp: new.cw_timestamp.clone(),
            cw_signature: new.cw_signature.clone(),
            body: new.body.to_vec(),
            status: DeliveryStatus::Pending,
            trigger: Trigger::Scheduled,
            attempts: 0,
            next_attempt_at: now,
            last_status_code: None,
            last_error: None,
            received_at: now,
            updated_at: now,
        }
    }

    /// The delivery without its body.
    pub fn summary(&self) -> DeliverySummary {
        DeliverySummary {
            id: self.id,
            inbox_id: self.inbox_id,
            conversation_id: self.conversation_id,
            event: self.event.clone(),
            message_id: self.message_id,
            duplicates: self.duplicates,
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

/// Just enough of a pending delivery to put it in its lane, in its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromRow)]
pub struct PendingRef {
    pub id: DeliveryId,
    pub inbox_id: InboxId,
    pub conversation_id: Option<i64>,
    /// Chatwoot's message id of a message event.
    pub message_id: Option<i64>,
    /// A `message_updated`, which goes after its message's `message_created`.
    pub is_update: bool,
    pub received_at: i64,
    /// An attempt was made (before a restart, or it is a retry by hand).
    pub attempted: bool,
    /// Put back in the queue by hand (Chatwoot's Retry, the panel): it goes after later replies as asked, so it
    /// is not a reply that came late. One that only failed before is (a restart must not forget that).
    pub by_hand: bool,
}

/// The columns of a [`PendingRef`], with how `by_hand` is read.
macro_rules! pending_columns {
    ($by_hand:literal) => {
        concat!(
            "id, inbox_id, conversation_id, message_id, event = 'message_updated' AS is_update, received_at, ",
            "attempts > 0 AS attempted, ",
            $by_hand,
            " AS by_hand"
        )
    };
}

/// Of a pending delivery as stored: queued by hand now, or an attempt of it was.
const PENDING_COLUMNS: &str = pending_columns!(
    "(trigger = 'manual' OR EXISTS (SELECT 1 FROM delivery_attempts a \
      WHERE a.delivery_id = deliveries.id AND a.trigger = 'manual'))"
);
/// Of a delivery just put back by hand.
const REQUEUED_COLUMNS: &str = pending_columns!("trigger = 'manual'");

/// The state a delivery moves to after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextState {
    Delivered,
    RetryAt(i64),
    Dead,
}

const COLUMNS: &str = "id, inbox_id, conversation_id, event, message_id, duplicates, dedupe_key, cw_delivery, \
                       cw_timestamp, cw_signature, b.body, status, trigger, attempts, next_attempt_at, \
                       last_status_code, last_error, received_at, updated_at";

/// A delivery without its body, for the delivery log.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct DeliverySummary {
    pub id: DeliveryId,
    pub inbox_id: InboxId,
    pub conversation_id: Option<i64>,
    pub event: String,
    pub message_id: Option<i64>,
    /// Repeats dropped as duplicates of this one.
    pub duplicates: i64,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub received_at: i64,
    pub updated_at: i64,
    pub size: i64,
}

const SUMMARY_COLUMNS: &str = "id, inbox_id, conversation_id, event, message_id, duplicates, status, attempts, \
                               next_attempt_at, last_status_code, last_error, received_at, updated_at, size";

/// Which deliveries to list; `None` fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub status: Option<DeliveryStatus>,
    pub inbox_id: Option<InboxId>,
    pub conversation_id: Option<i64>,
    /// Only this event.
    pub event: Option<String>,
    /// Only these events.
    pub events: Option<&'static [&'static str]>,
    /// Only deliveries whose body has this text (ASCII letters in any case).
    pub body_has: Option<String>,
    /// Only deliveries older than this one (the page cursor).
    pub before: Option<DeliveryId>,
}

/// A delivery of the log with its body.
#[derive(Debug, Clone, FromRow)]
pub struct Listed {
    #[sqlx(flatten)]
    pub summary: DeliverySummary,
    pub body: Vec<u8>,
}

/// Newest first, at most `limit`.
pub async fn list(db: &Db, filter: &Filter, limit: i64) -> sqlx::Result<Vec<Listed>> {
    on!(db, |pool| {
        let mut q = sqlx::QueryBuilder::new(format!(
            "SELECT {SUMMARY_COLUMNS}, b.body FROM deliveries JOIN delivery_bodies b ON b.delivery_id = id \
         WHERE 1 = 1"
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
        if let Some(event) = &filter.event {
            q.push(" AND event = ").push_bind(event.clone());
        }
        if let Some(events) = filter.events {
            q.push(" AND event IN (");
            let mut list = q.separated(", ");
            for event in events {
                list.push_bind(*event);
            }
            q.push(")");
        }
        if let Some(text) = &filter.body_has {
            let escaped = text
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            // Both fold ASCII letters' case; PostgreSQL's `escape` text keeps ASCII as it is.
            q.push(sql!(db,
                sqlite: " AND CAST(b.body AS TEXT) LIKE ",
                postgres: " AND encode(b.body, 'escape') ILIKE ",
            ))
            .push_bind(format!("%{escaped}%"))
            .push(" ESCAPE '\\'");
        }
        if let Some(before) = filter.before {
            q.push(" AND id < ").push_bind(before);
        }
        q.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
        q.build_query_as().fetch_all(pool).await
    })
}

/// When the inbox's latest delivery went through (a reply sent again by hand counts when it went again).
pub async fn last_delivered_at_for_inbox(db: &Db, inbox_id: InboxId) -> sqlx::Result<Option<i64>> {
    on!(db, |pool| {
        sqlx::query_scalar(
            "SELECT max(updated_at) FROM deliveries WHERE inbox_id = $1 AND status = 'delivered'",
        )
        .bind(inbox_id)
        .fetch_one(pool)
        .await
    })
}

/// Number of deliveries in each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub pending: i64,
    pub delivered: i64,
    pub dead: i64,
}

pub async fn totals(db: &Db) -> sqlx::Result<Totals> {
    on!(db, |pool| {
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
    })
}

/// When the oldest pending delivery arrived.
pub async fn oldest_pending_received_at(db: &Db) -> sqlx::Result<Option<i64>> {
    on!(db, |pool| {
        sqlx::query_scalar(
            "SELECT received_at FROM deliveries WHERE status = 'pending' ORDER BY id LIMIT 1",
        )
        .fetch_optional(pool)
        .await
    })
}

/// Deliveries delivered since `since` (unix ms).
pub async fn count_delivered_since(db: &Db, since: i64) -> sqlx::Result<i64> {
    on!(db, |pool| {
        sqlx::query_scalar(
            "SELECT count(*) FROM deliveries WHERE status = 'delivered' AND updated_at >= $1",
        )
        .bind(since)
        .fetch_one(pool)
        .await
    })
}

/// How many of an inbox's deliveries are in `status`.
pub async fn count_for_inbox(
    db: &Db,
    inbox_id: InboxId,
    status: DeliveryStatus,
) -> sqlx::Result<i64> {
    on!(db, |pool| {
        sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE inbox_id = $1 AND status = $2")
            .bind(inbox_id)
            .bind(status)
            .fetch_one(pool)
            .await
    })
}

/// The inbox's most recently attempted delivery: how its route is doing.
pub async fn last_attempted_for_inbox(
    db: &Db,
    inbox_id: InboxId,
) -> sqlx::Result<Option<DeliverySummary>> {
    on!(db, |pool| {
        sqlx::query_as(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM deliveries WHERE inbox_id = $1 AND attempts > 0
         ORDER BY updated_at DESC, id DESC LIMIT 1"
        ))
        .bind(inbox_id)
        .fetch_optional(pool)
        .await
    })
}

/// Turns deliveries back into pending ones, for one manual attempt due at `?1`.
const REQUEUE: &str = "UPDATE deliveries SET status = 'pending', trigger = 'manual', next_attempt_at = $1, \
                       updated_at = $1";

/// Puts a delivered or dead delivery back in the queue for one manual attempt, due now.
/// `None` if it does not exist or is already pending.
pub async fn requeue(db: &Db, id: DeliveryId, now: i64) -> sqlx::Result<Option<PendingRef>> {
    let sql = format!(
        "{REQUEUE} WHERE id = $2 AND status IN ('delivered', 'dead') RETURNING {REQUEUED_COLUMNS}"
    );
    on!(db, |pool| {
        let mut tx = pool.begin().await?;
        let requeued: Option<PendingRef> = sqlx::query_as(&sql)
            .bind(now)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.touch_lanes(lanes_of(requeued.as_slice())).await?;
        tx.commit().await?;
        Ok(requeued)
    })
}

/// [`requeue`] for every dead delivery of an inbox, in arrival order.
pub async fn requeue_dead_for_inbox(
    db: &Db,
    inbox_id: InboxId,
    now: i64,
) -> sqlx::Result<Vec<PendingRef>> {
    let sql =
        format!("{REQUEUE} WHERE inbox_id = $2 AND status = 'dead' RETURNING {REQUEUED_COLUMNS}");
    on!(db, |pool| {
        let mut tx = pool.begin().await?;
        let mut requeued: Vec<PendingRef> = sqlx::query_as(&sql)
            .bind(now)
            .bind(inbox_id)
            .fetch_all(&mut *tx)
            .await?;
        tx.touch_lanes(lanes_of(&requeued)).await?;
        tx.commit().await?;
        requeued.sort_by_key(|p| p.id);
        Ok(requeued)
    })
}

/// [`requeue`] for those of `ids` that are dead, in arrival order.
pub async fn requeue_dead(db: &Db, ids: &[DeliveryId], now: i64) -> sqlx::Result<Vec<PendingRef>> {
    on!(db, |pool| {
        let mut query = sqlx::QueryBuilder::new(
            "UPDATE deliveries SET status = 'pending', trigger = 'manual', ",
        );
        query
            .push("next_attempt_at = ")
            .push_bind(now)
            .push(", updated_at = ")
            .push_bind(now);
        query.push(" WHERE status = 'dead' AND id IN (");
        let mut list = query.separated(", ");
        for id in ids {
            list.push_bind(*id);
        }
        query.push(format!(") RETURNING {REQUEUED_COLUMNS}"));
        let mut tx = pool.begin().await?;
        let mut requeued: Vec<PendingRef> = query.build_query_as().fetch_all(&mut *tx).await?;
        tx.touch_lanes(lanes_of(&requeued)).await?;
        tx.commit().await?;
        requeued.sort_by_key(|p| p.id);
        Ok(requeued)
    })
}

/// When the delivery in `status` that finished first finished (its last change), if there is one.
pub async fn oldest_finished_at(db: &Db, status: DeliveryStatus) -> sqlx::Result<Option<i64>> {
    on!(db, |pool| {
        sqlx::query_scalar("SELECT min(updated_at) FROM deliveries WHERE status = $1")
            .bind(status)
            .fetch_one(pool)
            .await
    })
}

/// A deleted delivery and its dedupe key, for [`super::Writer::forget_keys`].
pub type Deleted = (DeliveryId, Option<String>);

/// Deletes up to `limit` deliveries in `status` that last changed before `before`, oldest first, with their
/// attempts and bodies. Small batches keep each write transaction short.
pub async fn prune(
    db: &Db,
    status: DeliveryStatus,
    before: i64,
    limit: i64,
) -> sqlx::Result<Vec<Deleted>> {
    on!(db, |pool| {
        sqlx::query_as(
        "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries \
         WHERE status = $1 AND updated_at < $2 ORDER BY updated_at LIMIT $3) RETURNING id, dedupe_key",
    )
    .bind(status)
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await
    })
}

/// Removes a delivery with its attempts and body; `None` if there was none.
pub async fn delete(db: &Db, id: DeliveryId) -> sqlx::Result<Option<Deleted>> {
    // On SQLite the write lock is taken first: a transaction that reads, then writes after the writer committed
    // in between, is refused outright (a snapshot too old to write), which no waiting helps.
    let begin = sql!(db, sqlite: "BEGIN IMMEDIATE", postgres: "BEGIN");
    on!(db, |pool| {
        let mut tx = pool.begin_with(begin).await?;
        // A lane's holder reads its deliveries again: the discarded one is not sent. The lane is marked before
        // the delivery is deleted, in the order the writer locks them (lane, then delivery): the other order
        // deadlocked with an attempt being recorded on PostgreSQL.
        let lane: Option<(InboxId, Option<i64>)> = sqlx::query_as(
            "SELECT inbox_id, conversation_id FROM deliveries WHERE id = $1 AND status = 'pending'",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((inbox_id, conversation_id)) = lane {
            tx.touch_lanes(vec![lanes::Key::of(inbox_id, conversation_id)])
                .await?;
        }
        let deleted: Option<DeletedRow> = sqlx::query_as(
            "DELETE FROM deliveries WHERE id = $1 RETURNING id, dedupe_key, inbox_id, conversation_id, \
             status = 'pending'",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(deleted.map(|(id, key, ..)| (id, key)))
    })
}

/// A deleted delivery: id, dedupe key, its lane, and whether it was still pending.
type DeletedRow = (DeliveryId, Option<String>, InboxId, Option<i64>, bool);

/// What a backend does when a lane's pending deliveries change, in the transaction that changes them: nothing on
/// SQLite (one relay, whose lanes live in its memory); on PostgreSQL the lanes are marked (see [`lanes::touch`]).
pub(super) trait MarkLanes {
    fn touch_lanes(
        &mut self,
        keys: Vec<lanes::Key>,
    ) -> impl Future<Output = sqlx::Result<()>> + Send;
}

impl MarkLanes for sqlx::SqliteConnection {
    async fn touch_lanes(&mut self, _keys: Vec<lanes::Key>) -> sqlx::Result<()> {
        Ok(())
    }
}

impl MarkLanes for sqlx::PgConnection {
    async fn touch_lanes(&mut self, keys: Vec<lanes::Key>) -> sqlx::Result<()> {
        lanes::touch(self, &keys).await
    }
}

/// The lanes of deliveries that became pending.
fn lanes_of(pending: &[PendingRef]) -> Vec<lanes::Key> {
    pending
        .iter()
        .map(|p| lanes::Key::of(p.inbox_id, p.conversation_id))
        .collect()
}

pub async fn find(db: &Db, id: DeliveryId) -> sqlx::Result<Option<Delivery>> {
    on!(db, |pool| {
        sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM deliveries JOIN delivery_bodies b ON b.delivery_id = id WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
    })
}

/// The highest message id above `above` that a lane has started to send (an attempt made; PostgreSQL: by any
/// relay), if any.
///
/// # Errors
/// The database failed.
pub async fn sent_in_lane_above(
    pool: &sqlx::PgPool,
    key: lanes::Key,
    above: i64,
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "SELECT max(message_id) FROM deliveries
         WHERE inbox_id = $1 AND coalesce(conversation_id, 0) = $2 AND message_id > $3 AND attempts > 0",
    )
    .bind(key.inbox_id)
    .bind(key.conversation_id)
    .bind(above)
    .fetch_one(pool)
    .await
}

/// For the lanes that changed since `since`, newest first (at most `limit`): the highest message id each has
/// started to send. What a relay that starts again knows of what went out before.
pub async fn sent_in_lanes_since(
    db: &Db,
    since: i64,
    limit: i64,
) -> sqlx::Result<Vec<(InboxId, Option<i64>, i64)>> {
    on!(db, |pool| {
        sqlx::query_as(
            "SELECT inbox_id, conversation_id, max(message_id) FROM deliveries
             WHERE status IN ('pending', 'delivered', 'dead') AND updated_at >= $1
               AND attempts > 0 AND message_id IS NOT NULL
             GROUP BY inbox_id, conversation_id ORDER BY max(updated_at) DESC LIMIT $2",
        )
        .bind(since)
        .bind(limit)
        .fetch_all(pool)
        .await
    })
}

/// Whether delivery `id` still waits to go out (PostgreSQL: another relay may have stopped it).
///
/// # Errors
/// The database failed.
pub async fn is_pending(pool: &sqlx::PgPool, id: DeliveryId) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM deliveries WHERE id = $1 AND status = 'pending')",
    )
    .bind(id)
    .fetch_one(pool)
    .await
}

/// Stores that reply `id` came after a later reply of its conversation had started to go, before it is sent: the
/// note that tells its agent no longer depends on this relay living until it is written.
pub async fn mark_arrived_late(db: &Db, id: DeliveryId) -> sqlx::Result<()> {
    on!(db, |pool| {
        sqlx::query("UPDATE deliveries SET arrived_late = TRUE WHERE id = $1")
            .bind(id)
            .execute(pool)
            .await
            .map(drop)
    })
}

/// Up to `limit` replies stored as having come late and not marked for their note yet (see
/// [`chatwoot_feedback::settle_late_arrival`](super::chatwoot_feedback::settle_late_arrival)).
pub async fn arrived_late(db: &Db, limit: i64) -> sqlx::Result<Vec<DeliveryId>> {
    on!(db, |pool| {
        sqlx::query_scalar("SELECT id FROM deliveries WHERE arrived_late ORDER BY id LIMIT $1")
            .bind(limit)
            .fetch_all(pool)
            .await
    })
}

/// Every pending delivery in arrival order.
pub async fn list_pending(db: &Db) -> sqlx::Result<Vec<PendingRef>> {
    on!(db, |pool| {
        sqlx::query_as(&format!(
            "SELECT {PENDING_COLUMNS} FROM deliveries WHERE status = 'pending' ORDER BY id"
        ))
        .fetch_all(pool)
        .await
    })
}

/// A lane's pending deliveries in arrival order (PostgreSQL: a relay takes the lane, or reads it again).
///
/// # Errors
/// The database failed.
pub async fn pending_in_lane(
    pool: &sqlx::PgPool,
    key: lanes::Key,
) -> sqlx::Result<Vec<PendingRef>> {
    sqlx::query_as(&format!(
        "SELECT {PENDING_COLUMNS} FROM deliveries
         WHERE status = 'pending' AND inbox_id = $1 AND coalesce(conversation_id, 0) = $2 ORDER BY id"
    ))
    .bind(key.inbox_id)
    .bind(key.conversation_id)
    .fetch_all(pool)
    .await
}

/// Repeats dropped as duplicates, over the deliveries still kept.
pub async fn count_duplicates(db: &Db) -> sqlx::Result<i64> {
    on!(db, |pool| {
        sqlx::query_scalar(
            "SELECT CAST(coalesce(sum(duplicates), 0) AS BIGINT) FROM deliveries WHERE duplicates > 0",
        )
        .fetch_one(pool)
        .await
    })
}

/// The newest delivery's id (0 when there is none).
pub async fn max_id(db: &Db) -> sqlx::Result<DeliveryId> {
    on!(db, |pool| {
        sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM deliveries")
            .fetch_one(pool)
            .await
    })
}

/// The deliveries stored after `after` (at most `limit`, by id), with the body of each `message_updated`.
pub async fn stored_after(
    db: &Db,
    after: DeliveryId,
    limit: i64,
) -> sqlx::Result<Vec<(DeliveryId, Option<Vec<u8>>)>> {
    on!(db, |pool| {
        sqlx::query_as(
            "SELECT d.id, b.body FROM deliveries d LEFT JOIN delivery_bodies b \
             ON b.delivery_id = d.id AND d.event = 'message_updated' \
             WHERE d.id > $1 ORDER BY d.id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(pool)
        .await
    })
}

pub async fn count_pending(db: &Db) -> sqlx::Result<i64> {
    on!(db, |pool| {
        sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'pending'")
            .fetch_one(pool)
            .await
    })
}

/// Inserts a new pending delivery (on the writer's connection; its dedupe key was checked with
/// [`super::dedupe::DedupeKeys`]).
pub fn insert(
    conn: &rusqlite::Connection,
    d: &NewDelivery,
    now: i64,
) -> rusqlite::Result<DeliveryId> {
    conn.prepare_cached(
        "INSERT INTO deliveries (inbox_id, conversation_id, event, message_id, dedupe_key, cw_delivery,
                                 cw_timestamp, cw_signature, size, next_attempt_at, received_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?10)",
    )?
    .execute(rusqlite::params![
        d.inbox_id,
        d.conversation_id,
        d.event,
        d.message_id,
        d.dedupe_key,
        d.cw_delivery,
        d.cw_timestamp,
        d.cw_signature,
        d.body.len(),
        now,
    ])?;
    let id = DeliveryId(conn.last_insert_rowid());
    conn.prepare_cached("INSERT INTO delivery_bodies (delivery_id, body) VALUES (?1, ?2)")?
        .execute(rusqlite::params![id, d.body.as_ref()])?;
    Ok(id)
}

/// Counts a repeat of `id` that was dropped (on the writer's connection).
pub fn count_duplicate(conn: &rusqlite::Connection, id: DeliveryId) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE deliveries SET duplicates = duplicates + 1 WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

/// A stored reply and its body, for reading again what became of it in Chatwoot.
#[derive(Debug, Clone, FromRow)]
pub struct StoredReply {
    pub delivery_id: DeliveryId,
    pub conversation_id: i64,
    pub message_id: i64,
    pub body: Vec<u8>,
    /// The failed mark it was read with (`chatwoot_feedback::marked_failed`).
    #[sqlx(default)]
    pub mark_id: Option<i64>,
}

/// Up to `limit` replies of `inbox` still waiting to go out that arrived before `before`, a different pick each
/// time when there are more.
pub async fn waiting_replies(
    db: &Db,
    inbox: InboxId,
    before: i64,
    limit: i64,
) -> sqlx::Result<Vec<StoredReply>> {
    let waiting = "d.status = 'pending' AND d.received_at < $2";
    replies_where(db, inbox, waiting, before, limit).await
}

/// Up to `limit` replies of `inbox` delivered since `since`, a different pick each time when there are more.
pub async fn delivered_replies(
    db: &Db,
    inbox: InboxId,
    since: i64,
    limit: i64,
) -> sqlx::Result<Vec<StoredReply>> {
    let delivered = "d.status = 'delivered' AND d.updated_at >= $2";
    replies_where(db, inbox, delivered, since, limit).await
}

async fn replies_where(
    db: &Db,
    inbox: InboxId,
    condition: &str,
    at: i64,
    limit: i64,
) -> sqlx::Result<Vec<StoredReply>> {
    on!(db, |pool| {
        sqlx::query_as(&format!(
            "SELECT d.id AS delivery_id, d.conversation_id, d.message_id, b.body
             FROM deliveries d JOIN delivery_bodies b ON b.delivery_id = d.id
             WHERE d.inbox_id = $1 AND d.event = 'message_created' AND {condition}
               AND d.conversation_id IS NOT NULL AND d.message_id IS NOT NULL
             ORDER BY random() LIMIT $3"
        ))
        .bind(inbox)
        .bind(at)
        .bind(limit)
        .fetch_all(pool)
        .await
    })
}

/// Whether the deletion of message `message` in `inbox` was stored after delivery `after`.
pub async fn deletion_stored_after(
    db: &Db,
    inbox: InboxId,
    after: DeliveryId,
    message: i64,
) -> sqlx::Result<bool> {
    on!(db, |pool| {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM deliveries WHERE inbox_id = $1 AND id > $2 AND message_id = $3
                              AND event = 'message_updated' AND dedupe_key LIKE 'message_deleted/%')",
        )
        .bind(inbox)
        .bind(after)
        .bind(message)
        .fetch_one(pool)
        .await
    })
}

/// Whether the `message_created` of message `message` in `inbox` may be on WhatsApp: delivered, or an attempt of
/// it answered 2xx (also one whose reply a deletion stopped while the attempt was on its way), too late for the
/// relay to know, or 408 (GoWA may have sent it before it or a proxy in front gave up waiting), whatever became of
/// it after.
pub async fn reply_may_have_gone(db: &Db, inbox: InboxId, message: i64) -> sqlx::Result<bool> {
    on!(db, |pool| {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM deliveries d WHERE d.inbox_id = $1 AND d.message_id = $2
                              AND d.event = 'message_created' AND (d.status = 'delivered' OR EXISTS (
                                SELECT 1 FROM delivery_attempts a WHERE a.delivery_id = d.id
                                  AND (a.ambiguous OR a.status_code = 408
                                       OR a.status_code BETWEEN 200 AND 299))))",
        )
        .bind(inbox)
        .bind(message)
        .fetch_one(pool)
        .await
    })
}

/// Takes its identity (dedupe key) from delivery `id`, so that a webhook alike is stored anew.
pub async fn release_identity(db: &Db, id: DeliveryId) -> sqlx::Result<()> {
    on!(db, |pool| {
        sqlx::query("UPDATE deliveries SET dedupe_key = NULL WHERE id = $1")
            .bind(id)
            .execute(pool)
            .await?;
        Ok(())
    })
}

/// Whether delivery `earlier`, which holds the identity of the `message_updated` `d`, was followed by another
/// update of the same message: `d` is then the same change made again (an edit back, Chatwoot's Retry pressed a
/// second time), not a twin of the latest one (on the writer's connection).
pub fn superseded(
    conn: &rusqlite::Connection,
    earlier: DeliveryId,
    d: &NewDelivery,
) -> rusqlite::Result<bool> {
    if d.event != "message_updated" {
        return Ok(false);
    }
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM deliveries WHERE inbox_id = ?1 AND id > ?2 AND message_id = ?3
                          AND event = 'message_updated')",
    )?
    .query_row(rusqlite::params![d.inbox_id, earlier, d.message_id], |row| {
        row.get(0)
    })
}

/// Takes the identity from a delivery whose change was made again (see [`superseded`]), so that the new one
/// holds it (on the writer's connection).
pub fn release_key(conn: &rusqlite::Connection, id: DeliveryId) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE deliveries SET dedupe_key = NULL WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

/// Moves a delivery to its next state after an attempt (on the writer's connection), only while it is still
/// pending: one discarded or retried by hand meanwhile is left as it is.
pub fn update_after_attempt(
    conn: &rusqlite::Connection,
    id: DeliveryId,
    next: NextState,
    status_code: Option<i64>,
    error: Option<&str>,
    now: i64,
) -> rusqlite::Result<()> {
    let (status, next_attempt_at) = match next {
        NextState::Delivered => (DeliveryStatus::Delivered, None),
        NextState::RetryAt(at) => (DeliveryStatus::Pending, Some(at)),
        NextState::Dead => (DeliveryStatus::Dead, None),
    };
    conn.prepare_cached(
        "UPDATE deliveries SET status = ?2, trigger = 'scheduled', attempts = attempts + 1,
                next_attempt_at = coalesce(?3, next_attempt_at), last_status_code = ?4, last_error = ?5,
                updated_at = ?6
         WHERE id = ?1 AND status = 'pending'",
    )?
    .execute(rusqlite::params![
        id,
        status,
        next_attempt_at,
        status_code,
        error,
        now
    ])?;
    Ok(())
}

/// Marks a delivery dead without an attempt (e.g. its inbox no longer has a route), on the writer's connection.
pub fn mark_dead(
    conn: &rusqlite::Connection,
    id: DeliveryId,
    reason: &str,
    now: i64,
) -> rusqlite::Result<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE deliveries SET status = 'dead', last_error = ?2, updated_at = ?3 WHERE id = ?1 AND status = 'pending'",
        )?
        .execute(rusqlite::params![id, reason, now])?;
    Ok(changed > 0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::test_support::{temp_db, writer_connection};

    pub fn new_delivery(conversation: Option<i64>, key: Option<&str>) -> NewDelivery {
        NewDelivery {
            inbox_id: InboxId(7),
            conversation_id: conversation,
            event: "message_created".into(),
            message_id: None,
            dedupe_key: key.map(Into::into),
            cw_delivery: key.map(Into::into),
            cw_timestamp: Some("1781964310".into()),
            cw_signature: None,
            body: Bytes::from_static(b"{\"event\":\"message_created\"}"),
        }
    }

    #[tokio::test]
    async fn insert_stores_a_pending_delivery_and_its_body() {
        let (pool, dir) = temp_db().await;
        let conn = writer_connection(&dir);
        let a = insert(&conn, &new_delivery(Some(1), Some("uuid-1")), 10).unwrap();
        let b = insert(&conn, &new_delivery(Some(1), None), 12).unwrap();
        let c = insert(&conn, &new_delivery(None, None), 13).unwrap();
        assert!(a < b && b < c);

        let d = find(&pool, a).await.unwrap().unwrap();
        assert_eq!(
            (d.status, d.attempts, d.next_attempt_at, d.received_at),
            (DeliveryStatus::Pending, 0, 10, 10)
        );
        assert_eq!(d.body, b"{\"event\":\"message_created\"}");
        assert_eq!(d.dedupe_key.as_deref(), Some("uuid-1"));
        assert_eq!(count_pending(&pool).await.unwrap(), 3);
    }

    #[tokio::test]
    async fn attempts_move_the_state_and_pending_lists_only_what_is_left() {
        let (pool, dir) = temp_db().await;
        let conn = writer_connection(&dir);
        let a = insert(&conn, &new_delivery(Some(1), None), 10).unwrap();
        let b = insert(&conn, &new_delivery(Some(2), None), 10).unwrap();
        let c = insert(&conn, &new_delivery(None, None), 10).unwrap();
        update_after_attempt(
            &conn,
            a,
            NextState::RetryAt(500),
            Some(503),
            Some("HTTP 503"),
            20,
        )
        .unwrap();
        update_after_attempt(&conn, b, NextState::Delivered, Some(200), None, 20).unwrap();
        mark_dead(&conn, c, "no route", 30).unwrap();

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
                conversation_id: Some(1),
                message_id: None,
                is_update: false,
                received_at: 10,
                attempted: true,
                by_hand: false,
            }]
        );
    }

    /// An agent's discard while the writer commits webhooks: SQLite refuses a transaction's write outright when
    /// another connection committed after the transaction first read (no waiting helps), so the delete takes
    /// the write lock first.
    #[tokio::test]
    async fn a_delivery_is_deleted_while_the_writer_commits() {
        let (pool, dir) = temp_db().await;
        let conn = writer_connection(&dir);
        let ids: Vec<DeliveryId> = (0..200)
            .map(|i| insert(&conn, &new_delivery(Some(i), None), 10).unwrap())
            .collect();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writing = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                // A commit every millisecond or so, as the writer's batches come under load (not one
                // after another with no gap, which would starve any other connection).
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    insert(&conn, &new_delivery(Some(1), None), 11).unwrap();
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            })
        };
        let mut refused = 0;
        for id in ids {
            if delete(&pool, id).await.is_err() {
                refused += 1;
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writing.join().unwrap();
        assert_eq!(refused, 0, "discards refused while the writer commits");
    }

    /// Whether a pending delivery was put back by hand: told by the requeue itself, and read again after its
    /// attempt (a restart) from that attempt; a delivery that only failed on its own is not.
    #[tokio::test]
    async fn a_delivery_put_back_by_hand_is_known_so_after_its_attempt() {
        let (pool, dir) = temp_db().await;
        let conn = writer_connection(&dir);
        let failed = insert(&conn, &new_delivery(Some(1), Some("k-1")), 10).unwrap();
        let retried = insert(&conn, &new_delivery(Some(1), Some("k-2")), 11).unwrap();
        update_after_attempt(&conn, failed, NextState::RetryAt(500), Some(503), None, 20).unwrap();
        update_after_attempt(&conn, retried, NextState::Dead, Some(503), None, 20).unwrap();
        let requeued = requeue(&pool, retried, 30).await.unwrap().unwrap();
        assert!(requeued.by_hand);
        let manual = crate::store::attempts::Attempt {
            delivery_id: retried,
            attempt: 2,
            trigger: Trigger::Manual,
            started_at: 31,
            duration_ms: 1,
            status_code: Some(503),
            error: None,
            response_snippet: None,
            ambiguous: false,
        };
        crate::store::attempts::insert(&conn, &manual).unwrap();
        update_after_attempt(&conn, retried, NextState::RetryAt(600), Some(503), None, 32).unwrap();
        let by_hand: Vec<(DeliveryId, bool)> = list_pending(&pool)
            .await
            .unwrap()
            .into_iter()
            .map(|p| (p.id, p.by_hand))
            .collect();
        assert_eq!(by_hand, [(failed, false), (retried, true)]);
    }

    #[tokio::test]
    async fn log_queries_requeue_and_delete() {
        let (pool, dir) = temp_db().await;
        let conn = writer_connection(&dir);
        let mut ids = Vec::new();
        for (at, conversation) in [(10, Some(1)), (20, Some(1)), (30, Some(2)), (40, None)] {
            ids.push(insert(&conn, &new_delivery(conversation, None), at).unwrap());
        }
        let other = NewDelivery {
            inbox_id: InboxId(8),
            ..new_delivery(Some(1), None)
        };
        let other = insert(&conn, &other, 50).unwrap();
        update_after_attempt(&conn, ids[0], NextState::Delivered, Some(200), None, 60).unwrap();
        update_after_attempt(
            &conn,
            ids[1],
            NextState::Dead,
            Some(404),
            Some("HTTP 404"),
            70,
        )
        .unwrap();
        // A finished delivery is not moved by a late attempt result.
        update_after_attempt(&conn, ids[1], NextState::RetryAt(999), Some(503), None, 80).unwrap();

        let all = list(&pool, &Filter::default(), 10).await.unwrap();
        assert_eq!(
            all.iter().map(|d| d.summary.id).collect::<Vec<_>>(),
            [other, ids[3], ids[2], ids[1], ids[0]]
        );
        assert_eq!(all[0].summary.size, 27);
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
        assert_eq!(page[0].summary.id, ids[1]);
        let by = |f: Filter| {
            let pool = pool.clone();
            async move {
                list(&pool, &f, 10)
                    .await
                    .unwrap()
                    .iter()
                    .map(|d| d.summary.id)
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

        assert!(delete(&pool, ids[3]).await.unwrap().is_some());
        assert!(delete(&pool, ids[3]).await.unwrap().is_none());
        assert_eq!(find(&pool, ids[3]).await.unwrap(), None);
    }
}
