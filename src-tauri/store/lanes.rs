//! `lanes` (PostgreSQL): which relay works which lane, under a lease with a fencing token.
//!
//! A lane is a conversation's deliveries (or an inbox's that belong to no conversation). A relay claims a due
//! lane that nobody holds (or whose lease ran out), which draws a new epoch; every later step of its work is
//! guarded by owner and epoch, so a relay that lost the lane (paused past its lease, cut off from the database)
//! can neither renew it nor record anything on it. Every change to a lane's pending deliveries bumps its
//! version: the owner reads them again, and gives an empty lane up only if its version is still the one it read
//! (compare-and-set; a `NOT EXISTS` guard would miss a row inserted meanwhile under READ COMMITTED). Times are
//! the database's clock, so relays' clocks never matter.

use sqlx::{FromRow, PgConnection, PgPool};

use crate::ids::InboxId;

/// A lane's key: `conversation` 0 is the inbox's own lane (Chatwoot's conversation ids start at 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, FromRow)]
pub struct Key {
    pub inbox_id: InboxId,
    pub conversation_id: i64,
}

impl Key {
    pub fn of(inbox_id: InboxId, conversation_id: Option<i64>) -> Self {
        Self {
            inbox_id,
            conversation_id: conversation_id.unwrap_or(0),
        }
    }
}

/// What a write of a lane's holder is checked against: the lane, its holder and the epoch of its claim.
#[derive(Debug, Clone)]
pub struct Fence {
    pub key: Key,
    pub owner: std::sync::Arc<str>,
    pub epoch: i64,
}

/// A lane this relay was given: its fencing token and the version of what it will read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromRow)]
pub struct Claimed {
    #[sqlx(flatten)]
    pub key: Key,
    pub epoch: i64,
    pub version: i64,
}

/// A lease renewed: the lane's version now, and how long the lease lasts (by the database's clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromRow)]
pub struct Renewed {
    pub version: i64,
    pub left_ms: i64,
}

/// Marks lanes as having new work, in key order (two relays touching the same lanes then wait for each other
/// instead of deadlocking): a new lane is due now, a known one keeps its due time (a retry's backoff is not cut
/// short; a free one with nothing due becomes due) and its version goes up. In the caller's transaction.
///
/// # Errors
/// The database failed.
pub async fn touch(tx: &mut PgConnection, keys: &[Key]) -> sqlx::Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let mut keys = keys.to_vec();
    keys.sort_by_key(|k| (k.inbox_id, k.conversation_id));
    keys.dedup();
    let (inboxes, conversations): (Vec<i64>, Vec<i64>) = keys
        .iter()
        .map(|k| (k.inbox_id.0, k.conversation_id))
        .unzip();
    sqlx::query(
        "INSERT INTO lanes (inbox_id, conversation_id, due_at)
         SELECT i, c, chatgowa_clock_ms() FROM unnest($1::bigint[], $2::bigint[]) AS t (i, c) ORDER BY i, c
         ON CONFLICT (inbox_id, conversation_id) DO UPDATE
           SET version = lanes.version + 1, due_at = coalesce(lanes.due_at, excluded.due_at)",
    )
    .bind(inboxes)
    .bind(conversations)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Locks the rows of the lanes among `keys` that exist, in key order. A transaction that takes every lane row it
/// writes this way first never waits for another in a cycle: two relays' batches touching and checking the
/// same lanes in different orders would deadlock, which the server breaks only after `deadlock_timeout`.
///
/// # Errors
/// The database failed.
pub async fn lock(tx: &mut PgConnection, keys: &[Key]) -> sqlx::Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let (inboxes, conversations): (Vec<i64>, Vec<i64>) = keys
        .iter()
        .map(|k| (k.inbox_id.0, k.conversation_id))
        .unzip();
    sqlx::query(
        "SELECT 1 FROM lanes l JOIN unnest($1::bigint[], $2::bigint[]) AS t (i, c)
           ON l.inbox_id = t.i AND l.conversation_id = t.c
         ORDER BY l.inbox_id, l.conversation_id FOR UPDATE OF l",
    )
    .bind(inboxes)
    .bind(conversations)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Takes up to `limit` due lanes that nobody holds, or whose lease ran out, for `lease_ms`.
///
/// # Errors
/// The database failed.
pub async fn claim(
    pool: &PgPool,
    owner: &str,
    lease_ms: i64,
    limit: i64,
) -> sqlx::Result<Vec<Claimed>> {
    sqlx::query_as(
        "WITH free AS (
             SELECT inbox_id, conversation_id FROM lanes
             WHERE due_at <= chatgowa_clock_ms() AND (owner IS NULL OR lease_until < chatgowa_clock_ms())
             ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED)
         UPDATE lanes l SET owner = $1, epoch = nextval('lane_epochs'), lease_until = chatgowa_clock_ms() + $2
         FROM free WHERE l.inbox_id = free.inbox_id AND l.conversation_id = free.conversation_id
         RETURNING l.inbox_id, l.conversation_id, l.epoch, l.version",
    )
    .bind(owner)
    .bind(lease_ms)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Extends the lease of a lane still held under `epoch`; `None` when it was lost.
///
/// # Errors
/// The database failed.
pub async fn renew(
    pool: &PgPool,
    key: Key,
    owner: &str,
    epoch: i64,
    lease_ms: i64,
) -> sqlx::Result<Option<Renewed>> {
    sqlx::query_as(
        "UPDATE lanes SET lease_until = chatgowa_clock_ms() + $5
         WHERE inbox_id = $1 AND conversation_id = $2 AND owner = $3 AND epoch = $4
         RETURNING version, lease_until - chatgowa_clock_ms() AS left_ms",
    )
    .bind(key.inbox_id)
    .bind(key.conversation_id)
    .bind(owner)
    .bind(epoch)
    .bind(lease_ms)
    .fetch_optional(pool)
    .await
}

/// Gives up an empty lane if nothing changed since `version` was read; `false` when something did (read it
/// again) or the lane was lost.
///
/// # Errors
/// The database failed.
pub async fn give_up_empty(
    pool: &PgPool,
    key: Key,
    owner: &str,
    epoch: i64,
    version: i64,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "DELETE FROM lanes
         WHERE inbox_id = $1 AND conversation_id = $2 AND owner = $3 AND epoch = $4 AND version = $5",
    )
    .bind(key.inbox_id)
    .bind(key.conversation_id)
    .bind(owner)
    .bind(epoch)
    .bind(version)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Lets a lane go with work left: due in `due_in_ms` (a retry's backoff), or not due at all (`None`: its route
/// is switched off, until routes change; should the route be on again by now, it is due at once, so that a
/// route switched on while this ran is not missed). `false` when it was lost already.
///
/// # Errors
/// The database failed.
pub async fn release(
    pool: &PgPool,
    key: Key,
    owner: &str,
    epoch: i64,
    due_in_ms: Option<i64>,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE lanes SET owner = NULL, lease_until = NULL,
                due_at = CASE
                  WHEN $5::bigint IS NOT NULL THEN chatgowa_clock_ms() + $5
                  WHEN EXISTS (SELECT 1 FROM routes WHERE inbox_id = $1 AND enabled) THEN chatgowa_clock_ms()
                END
         WHERE inbox_id = $1 AND conversation_id = $2 AND owner = $3 AND epoch = $4",
    )
    .bind(key.inbox_id)
    .bind(key.conversation_id)
    .bind(owner)
    .bind(epoch)
    .bind(due_in_ms)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Lets every lane of `owner` go, due now (a relay shutting down hands its lanes over).
///
/// # Errors
/// The database failed.
pub async fn release_all(pool: &PgPool, owner: &str) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "UPDATE lanes l SET owner = NULL, lease_until = NULL, due_at = chatgowa_clock_ms()
         FROM (SELECT inbox_id, conversation_id FROM lanes WHERE owner = $1
               ORDER BY inbox_id, conversation_id FOR UPDATE) AS o
         WHERE l.inbox_id = o.inbox_id AND l.conversation_id = o.conversation_id",
    )
    .bind(owner)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Makes an inbox's free lanes due now: its route changed, or its GoWA answers again (a retry's backoff is cut
/// short, as on SQLite). Returns how many.
///
/// # Errors
/// The database failed.
pub async fn wake_inbox(pool: &PgPool, inbox_id: InboxId) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "UPDATE lanes l SET due_at = chatgowa_clock_ms()
         FROM (SELECT inbox_id, conversation_id FROM lanes
               WHERE inbox_id = $1 AND owner IS NULL AND (due_at IS NULL OR due_at > chatgowa_clock_ms())
               ORDER BY inbox_id, conversation_id FOR UPDATE) AS w
         WHERE l.inbox_id = w.inbox_id AND l.conversation_id = w.conversation_id",
    )
    .bind(inbox_id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Makes every free lane that waits for a route change (nothing due) due now: routes changed.
///
/// # Errors
/// The database failed.
pub async fn wake_paused(pool: &PgPool) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "UPDATE lanes l SET due_at = chatgowa_clock_ms()
         FROM (SELECT inbox_id, conversation_id FROM lanes WHERE owner IS NULL AND due_at IS NULL
               ORDER BY inbox_id, conversation_id FOR UPDATE) AS w
         WHERE l.inbox_id = w.inbox_id AND l.conversation_id = w.conversation_id",
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// How long until a lane becomes claimable (a free lane's due time, a lease running out), by the database's
/// clock; `None` when no lane is waiting for anyone. A lease of the asking relay's own counts too: a lane it
/// holds but no longer works (its task ended on a database error as it let the lane go) is taken again then,
/// while one it works is renewed before.
///
/// # Errors
/// The database failed.
pub async fn next_claimable_in(pool: &PgPool) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "SELECT min(CASE WHEN owner IS NULL THEN due_at ELSE lease_until END) - chatgowa_clock_ms() FROM lanes
         WHERE owner IS NOT NULL OR due_at IS NOT NULL",
    )
    .fetch_one(pool)
    .await
}

/// Whether `owner` still holds the lane under `epoch`, locking its row until the caller's transaction ends: a
/// write made after this check cannot be overtaken by another relay's claim.
///
/// # Errors
/// The database failed.
pub async fn holds(tx: &mut PgConnection, key: Key, owner: &str, epoch: i64) -> sqlx::Result<bool> {
    let held: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM lanes
         WHERE inbox_id = $1 AND conversation_id = $2 AND owner = $3 AND epoch = $4 FOR UPDATE",
    )
    .bind(key.inbox_id)
    .bind(key.conversation_id)
    .bind(owner)
    .bind(epoch)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(held.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Db;
    use crate::store::attempts::{Attempt, Trigger};
    use crate::store::deliveries::{self, DeliveryStatus, NextState};
    use crate::store::test_support::postgres_db;
    use crate::store::writer::{Decision, WriteError, Writer};

    fn pool(db: &Db) -> &PgPool {
        match db {
            Db::Postgres(pool) => pool,
            Db::Sqlite(_) => unreachable!(),
        }
    }

    fn attempt(id: crate::ids::DeliveryId) -> Attempt {
        Attempt {
            delivery_id: id,
            attempt: 1,
            trigger: Trigger::Scheduled,
            started_at: 1,
            duration_ms: 1,
            status_code: Some(200),
            error: None,
            response_snippet: None,
            ambiguous: false,
        }
    }

    /// A relay paused past its lease (a zombie) cannot renew the lane, decide its head's fate (a retry time, dead)
    /// or give it up: the relay that took it over holds it alone. What GoWA answered the zombie is a fact all the
    /// same: kept as a late attempt, flagged ambiguous, and a delivery GoWA took is delivered (so the new holder
    /// does not send it again).
    #[tokio::test]
    async fn a_relay_that_lost_its_lease_can_write_nothing_on_the_lane() {
        let db = postgres_db().await;
        crate::store::routes::insert(&db, &crate::store::routes::tests::fields(7))
            .await
            .unwrap();
        let (writer, inbox) = Writer::channel();
        let task = inbox.spawn(&db, |_| {}).unwrap();
        let Decision::Queued(id) = writer
            .ingest(deliveries::tests::new_delivery(Some(1), None))
            .await
            .unwrap()
        else {
            panic!("queued")
        };
        let key = Key::of(crate::ids::InboxId(7), Some(1));
        let zombie = claim(pool(&db), "zombie", 60_000, 10).await.unwrap();
        assert_eq!(zombie.iter().map(|c| c.key).collect::<Vec<_>>(), [key]);
        assert!(
            claim(pool(&db), "other", 60_000, 10)
                .await
                .unwrap()
                .is_empty(),
            "held"
        );
        // The zombie's lease runs out (as if a minute went by while it was paused); another relay claims the
        // lane under a new epoch.
        sqlx::query("UPDATE lanes SET lease_until = chatgowa_clock_ms() - 1")
            .execute(pool(&db))
            .await
            .unwrap();
        let taken = claim(pool(&db), "other", 60_000, 10).await.unwrap()[0];
        assert!(taken.epoch > zombie[0].epoch);
        let fence = Fence {
            key,
            owner: "zombie".into(),
            epoch: zombie[0].epoch,
        };
        let failed = Attempt {
            status_code: Some(503),
            ..attempt(id)
        };
        let late = writer
            .record_attempt(failed, NextState::RetryAt(0), Some(fence.clone()))
            .await;
        assert!(matches!(late, Err(WriteError::LaneLost)), "{late:?}");
        let dead = writer.mark_dead(id, "x".into(), Some(fence.clone())).await;
        assert!(matches!(dead, Err(WriteError::LaneLost)), "{dead:?}");
        let d = deliveries::find(&db, id).await.unwrap().unwrap();
        assert_eq!((d.status, d.attempts), (DeliveryStatus::Pending, 0));
        let kept = crate::store::attempts::list_for_delivery(&db, id)
            .await
            .unwrap();
        assert_eq!(kept.len(), 1, "the failed attempt is kept");
        assert!(!kept[0].ambiguous);
        // GoWA took the zombie's next try: kept, ambiguous, and the delivery is not sent again.
        let late = writer
            .record_attempt(attempt(id), NextState::Delivered, Some(fence))
            .await;
        assert!(matches!(late, Err(WriteError::LaneLost)), "{late:?}");
        let d = deliveries::find(&db, id).await.unwrap().unwrap();
        assert_eq!((d.status, d.attempts), (DeliveryStatus::Delivered, 1));
        let kept = crate::store::attempts::list_for_delivery(&db, id)
            .await
            .unwrap();
        assert!(
            kept[1].ambiguous
                && kept[1]
                    .error
                    .as_deref()
                    .is_some_and(|e| e.contains("lost the lane"))
        );
        assert!(
            renew(pool(&db), key, "zombie", zombie[0].epoch, 60_000)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            !give_up_empty(pool(&db), key, "zombie", zombie[0].epoch, taken.version)
                .await
                .unwrap()
        );
        assert!(
            !release(pool(&db), key, "zombie", zombie[0].epoch, None)
                .await
                .unwrap()
        );

        // The holder's own writes go through.
        let fence = Fence {
            key,
            owner: "other".into(),
            epoch: taken.epoch,
        };
        writer
            .record_attempt(attempt(id), NextState::Delivered, Some(fence))
            .await
            .unwrap();
        task.stop().await;
        let d = deliveries::find(&db, id).await.unwrap().unwrap();
        assert_eq!((d.status, d.attempts), (DeliveryStatus::Delivered, 1));
    }

    /// An empty lane is given up only if nothing arrived since its deliveries were read.
    #[tokio::test]
    async fn an_empty_lane_is_given_up_only_if_nothing_arrived_meanwhile() {
        let db = postgres_db().await;
        let key = Key::of(crate::ids::InboxId(7), None);
        let mut tx = pool(&db).begin().await.unwrap();
        touch(&mut tx, &[key]).await.unwrap();
        tx.commit().await.unwrap();
        let held = claim(pool(&db), "a", 60_000, 10).await.unwrap()[0];
        let mut tx = pool(&db).begin().await.unwrap();
        touch(&mut tx, &[key]).await.unwrap();
        tx.commit().await.unwrap();
        assert!(
            !give_up_empty(pool(&db), key, "a", held.epoch, held.version)
                .await
                .unwrap()
        );
        let renewed = renew(pool(&db), key, "a", held.epoch, 60_000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(renewed.version, held.version + 1);
        assert!(
            give_up_empty(pool(&db), key, "a", held.epoch, renewed.version)
                .await
                .unwrap()
        );
        assert_eq!(
            next_claimable_in(pool(&db)).await.unwrap(),
            None,
            "nothing left"
        );
    }

    /// A lane a relay holds but no longer works is claimable again when its lease ends, and its claimer wakes for
    /// it: the lease of its own lane is waited for like another relay's.
    #[tokio::test]
    async fn a_relay_waits_for_the_lease_of_its_own_lane_too() {
        let db = postgres_db().await;
        let key = Key::of(crate::ids::InboxId(7), Some(1));
        let mut tx = pool(&db).begin().await.unwrap();
        touch(&mut tx, &[key]).await.unwrap();
        tx.commit().await.unwrap();
        let held = claim(pool(&db), "a", 60_000, 10).await.unwrap();
        assert_eq!(held.len(), 1);
        let wait = next_claimable_in(pool(&db)).await.unwrap();
        assert!(
            wait.is_some_and(|ms| (50_000..=60_000).contains(&ms)),
            "{wait:?}"
        );
        sqlx::query("UPDATE lanes SET lease_until = chatgowa_clock_ms() - 1")
            .execute(pool(&db))
            .await
            .unwrap();
        let again = claim(pool(&db), "a", 60_000, 10).await.unwrap();
        assert!(again.len() == 1 && again[0].epoch > held[0].epoch);
    }
}
