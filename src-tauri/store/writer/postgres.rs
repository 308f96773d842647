//! The writer on PostgreSQL: a task that commits each batch in one transaction on the pool. Several relays may
//! write at once, so the database decides what a single relay's memory decides on SQLite: the unique index on
//! `dedupe_key` makes a repeat a duplicate whichever relay took the first. Ids are drawn before the insert and
//! handed out in arrival order (a webhook acknowledged before another arrived has the smaller id), and rows are
//! inserted in key order, so that two relays inserting the same twins wait for each other instead of
//! deadlocking; for the same reason a batch first locks every lane row it will write, in key order.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sqlx::{PgConnection, PgPool};
use tokio::sync::{mpsc, oneshot};

use super::{
    Committed, DELETED, Decision, Done, MAX_BATCH, Op, WriteError, Written, creation_of,
    deletion_of, finish, refuse_after_stop,
};
use crate::ids::{DeliveryId, InboxId};
use crate::store::attempts::Attempt;
use crate::store::deliveries::{DeliveryStatus, NewDelivery, NextState};
use crate::store::{lanes, now_ms, unrouted_inboxes};

/// Tries at inserting a webhook whose key another relay's delivery held and lost meanwhile (pruned).
const KEY_RACES: usize = 3;

/// The writer's task: waits for writes, then commits everything waiting in one transaction.
pub(super) async fn run(
    pool: PgPool,
    mut rx: mpsc::Receiver<Op>,
    mut on_commit: impl FnMut(&Committed),
    finished: oneshot::Sender<()>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        refuse_after_stop(&mut rx, &mut batch);
        if !batch.is_empty() {
            let now = now_ms();
            let outcome = commit_retrying(&pool, &batch, now)
                .await
                .map_err(|e| WriteError::Database(Arc::new(e)));
            finish(&mut batch, outcome, now, &mut on_commit);
        }
    }
    let _ = finished.send(());
}

/// Tries a batch that lost a deadlock (two relays' transactions waiting for each other's lanes, which the server
/// breaks by failing one) again: its transaction was rolled back whole.
const DEADLOCK_TRIES: usize = 3;

async fn commit_retrying(pool: &PgPool, batch: &[Op], now: i64) -> sqlx::Result<Written> {
    let mut tries = 1;
    loop {
        match commit(pool, batch, now).await {
            Err(e) if tries < DEADLOCK_TRIES && lost_a_deadlock(&e) => {
                tracing::debug!(error = %e, "database batch lost a deadlock; trying again");
                tries += 1;
            }
            outcome => return outcome,
        }
    }
}

fn lost_a_deadlock(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| code == "40P01" || code == "40001")
}

/// Writes one batch in one transaction; acknowledged only once `COMMIT` returned. A lane holder's write is
/// refused alone when its lane was taken over (the lane's row stays locked until the commit, so no claim comes
/// between the check and the write).
async fn commit(pool: &PgPool, batch: &[Op], now: i64) -> sqlx::Result<Written> {
    let mut tx = pool.begin().await?;
    lanes::lock(&mut tx, &lanes_of(batch)).await?;
    let mut cancelled = Vec::new();
    let mut done: Vec<Done> = ingest(&mut tx, batch, now, &mut cancelled)
        .await?
        .into_iter()
        .map(Ok)
        .collect();
    for (op, done) in batch.iter().zip(&mut done) {
        let fence = match op {
            Op::Attempt(_, _, fence, _) | Op::Dead(_, _, fence, _) => fence.as_ref(),
            Op::Ingest(..) | Op::Stop => continue,
        };
        if let Some(f) = fence
            && !lanes::holds(&mut tx, f.key, &f.owner, f.epoch).await?
        {
            if let Op::Attempt(attempt, next, ..) = op {
                record_late(&mut tx, attempt, *next, now).await?;
            }
            *done = Err(WriteError::LaneLost);
            continue;
        }
        match op {
            Op::Attempt(attempt, next, ..) => record_attempt(&mut tx, attempt, *next, now).await?,
            Op::Dead(id, reason, ..) => mark_dead(&mut tx, *id, reason, now).await?,
            Op::Ingest(..) | Op::Stop => {}
        }
    }
    tx.commit().await?;
    Ok(Written { done, cancelled })
}

/// Every lane the batch may write, in key order: the lanes of its webhooks and those its fenced writes check.
fn lanes_of(batch: &[Op]) -> Vec<lanes::Key> {
    let mut keys: Vec<lanes::Key> = batch
        .iter()
        .filter_map(|op| match op {
            Op::Ingest(d, _) => Some(lanes::Key::of(d.inbox_id, d.conversation_id)),
            Op::Attempt(_, _, fence, _) | Op::Dead(_, _, fence, _) => fence.as_ref().map(|f| f.key),
            Op::Stop => None,
        })
        .collect();
    keys.sort_by_key(|k| (k.inbox_id, k.conversation_id));
    keys.dedup();
    keys
}

/// Stores the batch's webhooks: unrouted ones are counted, a key seen before (here or by any relay) is a
/// duplicate of its first delivery, the rest are inserted. `None` for the batch's other writes. The waiting
/// replies the batch's deletions stopped go to `cancelled`.
async fn ingest(
    tx: &mut PgConnection,
    batch: &[Op],
    now: i64,
    cancelled: &mut Vec<DeliveryId>,
) -> sqlx::Result<Vec<Option<Decision>>> {
    let mut decisions = vec![None; batch.len()];
    let webhooks: Vec<(usize, &NewDelivery)> = batch
        .iter()
        .enumerate()
        .filter_map(|(i, op)| match op {
            Op::Ingest(d, _) => Some((i, d.as_ref())),
            _ => None,
        })
        .collect();
    if webhooks.is_empty() {
        return Ok(decisions);
    }
    let routed: HashSet<InboxId> = sqlx::query_scalar("SELECT inbox_id FROM routes")
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
    let mut firsts: HashMap<&str, usize> = HashMap::new();
    let mut repeats = Vec::new();
    let mut new = Vec::new();
    for (i, d) in webhooks {
        // A paused route queues what arrives too: its lanes wait until it is resumed.
        if !routed.contains(&d.inbox_id) {
            count_unrouted(tx, d, now).await?;
            decisions[i] = Some(Decision::NoRoute);
        } else if let Some(&first) = d.dedupe_key.as_deref().and_then(|k| firsts.get(k)) {
            repeats.push((i, first));
        } else {
            if let Some(key) = d.dedupe_key.as_deref() {
                firsts.insert(key, i);
            }
            new.push((i, d));
        }
    }
    release_superseded(tx, &new).await?;
    for (i, decision) in insert(tx, &new, now, cancelled).await? {
        decisions[i] = Some(decision);
    }
    for (i, first) in repeats {
        let Some(Decision::Queued(id) | Decision::Duplicate(id) | Decision::Deleted(id)) =
            decisions[first]
        else {
            unreachable!("the first of a key was decided before its repeats");
        };
        count_duplicate(tx, id).await?;
        decisions[i] = Some(Decision::Duplicate(id));
    }
    Ok(decisions)
}

/// Takes the identity of each new `message_updated` from the delivery that holds it when that one was followed by
/// another update of the same message: the new one is the same change made again (an edit back, Chatwoot's Retry
/// pressed a second time), not a twin of the latest (see `deliveries::superseded`).
async fn release_superseded(
    tx: &mut PgConnection,
    new: &[(usize, &NewDelivery)],
) -> sqlx::Result<()> {
    for (_, d) in new.iter().filter(|(_, d)| d.event == "message_updated") {
        let Some(key) = d.dedupe_key.as_deref() else {
            continue;
        };
        sqlx::query(
            "UPDATE deliveries d SET dedupe_key = NULL WHERE d.dedupe_key = $1 AND EXISTS
               (SELECT 1 FROM deliveries l WHERE l.inbox_id = d.inbox_id AND l.id > d.id
                  AND l.message_id = d.message_id AND l.event = 'message_updated')",
        )
        .bind(key)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// Inserts new webhooks with ids in arrival order; one whose key is taken is counted as a duplicate of the
/// delivery that has it.
async fn insert(
    tx: &mut PgConnection,
    new: &[(usize, &NewDelivery)],
    now: i64,
    cancelled: &mut Vec<DeliveryId>,
) -> sqlx::Result<Vec<(usize, Decision)>> {
    if new.is_empty() {
        return Ok(Vec::new());
    }
    let count = i64::try_from(new.len()).unwrap_or(i64::MAX);
    let mut ids: Vec<i64> = sqlx::query_scalar(
        "SELECT nextval(pg_get_serial_sequence('deliveries', 'id')) FROM generate_series(1, $1)",
    )
    .bind(count)
    .fetch_all(&mut *tx)
    .await?;
    ids.sort_unstable();
    let rows: Vec<(i64, &NewDelivery)> = ids
        .iter()
        .copied()
        .zip(new.iter().map(|(_, d)| *d))
        .collect();
    let inserted = insert_rows(tx, &rows, now).await?;
    // The lanes are marked before a reply and its deletion look for each other: a lane row another relay's
    // batch is inserting makes this one wait for its commit, so that of a reply and its deletion taken at once
    // by two relays, the one written second sees the first (locking the lane rows at the start missed a lane
    // that had none yet).
    let touched: Vec<lanes::Key> = rows
        .iter()
        .filter(|(id, _)| inserted.contains(id))
        .map(|(_, d)| lanes::Key::of(d.inbox_id, d.conversation_id))
        .collect();
    lanes::touch(tx, &touched).await?;
    let deleted = dead_if_deleted(tx, &rows, &inserted, now).await?;
    cancelled.extend(cancel_deleted(tx, &rows, &inserted, now).await?);
    let mut decisions = Vec::with_capacity(new.len());
    for ((i, d), id) in new.iter().zip(ids) {
        let decision = if deleted.contains(&id) {
            Decision::Deleted(DeliveryId(id))
        } else if inserted.contains(&id) {
            Decision::Queued(DeliveryId(id))
        } else {
            taken_key(tx, id, d, now).await?
        };
        decisions.push((*i, decision));
    }
    Ok(decisions)
}

/// The replies just inserted whose deletion in Chatwoot was stored before them (by any relay): dead, not sent.
async fn dead_if_deleted(
    tx: &mut PgConnection,
    rows: &[(i64, &NewDelivery)],
    inserted: &HashSet<i64>,
    now: i64,
) -> sqlx::Result<HashSet<i64>> {
    let (ids, deletions): (Vec<i64>, Vec<String>) = rows
        .iter()
        .filter(|(id, _)| inserted.contains(id))
        .filter_map(|(id, d)| Some((*id, deletion_of(d.dedupe_key.as_deref())?)))
        .unzip();
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    let dead = sqlx::query_scalar(
        "UPDATE deliveries d SET status = 'dead', last_error = $3, updated_at = $4
         FROM unnest($1::bigint[], $2::text[]) AS t (id, deletion)
         WHERE d.id = t.id AND EXISTS (SELECT 1 FROM deliveries x WHERE x.dedupe_key = t.deletion)
         RETURNING d.id",
    )
    .bind(ids)
    .bind(deletions)
    .bind(DELETED)
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    Ok(dead.into_iter().collect())
}

/// The replies still waiting to go out whose deletions were just inserted: dead in the deletion's own commit,
/// so that no attempt after it sends them, whichever relay holds their lane (the mirror of [`dead_if_deleted`]).
async fn cancel_deleted(
    tx: &mut PgConnection,
    rows: &[(i64, &NewDelivery)],
    inserted: &HashSet<i64>,
    now: i64,
) -> sqlx::Result<Vec<DeliveryId>> {
    let replies: Vec<String> = rows
        .iter()
        .filter(|(id, _)| inserted.contains(id))
        .filter_map(|(_, d)| creation_of(d.dedupe_key.as_deref()))
        .collect();
    if replies.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_scalar(
        "UPDATE deliveries SET status = 'dead', last_error = $2, updated_at = $3
         WHERE dedupe_key = ANY($1) AND status = 'pending'
         RETURNING id",
    )
    .bind(replies)
    .bind(DELETED)
    .bind(now)
    .fetch_all(&mut *tx)
    .await
}

/// One statement for the rows (in key order, see the module's doc) and one for their bodies; the ids that went
/// in (the others' keys were taken).
async fn insert_rows(
    tx: &mut PgConnection,
    rows: &[(i64, &NewDelivery)],
    now: i64,
) -> sqlx::Result<HashSet<i64>> {
    let column =
        |f: fn(&NewDelivery) -> Option<i64>| rows.iter().map(|(_, d)| f(d)).collect::<Vec<_>>();
    let text =
        |f: fn(&NewDelivery) -> Option<&str>| rows.iter().map(|(_, d)| f(d)).collect::<Vec<_>>();
    let inserted: HashSet<i64> = sqlx::query_scalar(
        "INSERT INTO deliveries (id, inbox_id, conversation_id, event, message_id, dedupe_key, cw_delivery,
                                 cw_timestamp, cw_signature, size, next_attempt_at, received_at, updated_at)
         SELECT id, inbox_id, conversation_id, event, message_id, dedupe_key, cw_delivery, cw_timestamp,
                cw_signature, size, $11, $11, $11
         FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[], $6::text[], $7::text[],
                     $8::text[], $9::text[], $10::bigint[])
           AS t (id, inbox_id, conversation_id, event, message_id, dedupe_key, cw_delivery, cw_timestamp,
                 cw_signature, size)
         ORDER BY dedupe_key, id
         ON CONFLICT (dedupe_key) DO NOTHING
         RETURNING id",
    )
    .bind(rows.iter().map(|(id, _)| *id).collect::<Vec<_>>())
    .bind(column(|d| Some(d.inbox_id.0)))
    .bind(column(|d| d.conversation_id))
    .bind(text(|d| Some(d.event.as_str())))
    .bind(column(|d| d.message_id))
    .bind(text(|d| d.dedupe_key.as_deref()))
    .bind(text(|d| d.cw_delivery.as_deref()))
    .bind(text(|d| d.cw_timestamp.as_deref()))
    .bind(text(|d| d.cw_signature.as_deref()))
    .bind(column(|d| i64::try_from(d.body.len()).ok()))
    .bind(now)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let (ids, bodies): (Vec<i64>, Vec<&[u8]>) = rows
        .iter()
        .filter(|(id, _)| inserted.contains(id))
        .map(|(id, d)| (*id, d.body.as_ref()))
        .unzip();
    sqlx::query("INSERT INTO delivery_bodies (delivery_id, body) SELECT * FROM unnest($1::bigint[], $2::bytea[])")
        .bind(ids)
        .bind(bodies)
        .execute(&mut *tx)
        .await?;
    Ok(inserted)
}

/// A webhook whose key a stored delivery has: counted as its duplicate. Should that delivery be gone by now
/// (pruned by another relay), the webhook goes in after all, with the id drawn for it.
async fn taken_key(
    tx: &mut PgConnection,
    id: i64,
    d: &NewDelivery,
    now: i64,
) -> sqlx::Result<Decision> {
    for _ in 0..KEY_RACES {
        let earlier: Option<DeliveryId> = sqlx::query_scalar(
            "UPDATE deliveries SET duplicates = duplicates + 1 WHERE dedupe_key = $1 RETURNING id",
        )
        .bind(d.dedupe_key.as_deref())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(earlier) = earlier {
            return Ok(Decision::Duplicate(earlier));
        }
        if insert_rows(tx, &[(id, d)], now).await?.contains(&id) {
            lanes::touch(tx, &[lanes::Key::of(d.inbox_id, d.conversation_id)]).await?;
            return Ok(Decision::Queued(DeliveryId(id)));
        }
    }
    Err(sqlx::Error::Protocol(
        "a dedupe key kept changing hands while a webhook was stored".into(),
    ))
}

async fn count_duplicate(tx: &mut PgConnection, id: DeliveryId) -> sqlx::Result<()> {
    sqlx::query("UPDATE deliveries SET duplicates = duplicates + 1 WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// As [`unrouted_inboxes::record`] on SQLite.
async fn count_unrouted(tx: &mut PgConnection, d: &NewDelivery, now: i64) -> sqlx::Result<()> {
    let count: i64 = sqlx::query_scalar(
        "INSERT INTO unrouted_inboxes (inbox_id, count, first_seen, last_seen, last_event)
         VALUES ($1, 1, $2, $2, $3)
         ON CONFLICT (inbox_id) DO UPDATE
           SET count = unrouted_inboxes.count + 1, last_seen = $2, last_event = $3
         RETURNING count",
    )
    .bind(d.inbox_id)
    .bind(now)
    .bind(&d.event)
    .fetch_one(&mut *tx)
    .await?;
    if count == 1 {
        sqlx::query(
            "DELETE FROM unrouted_inboxes WHERE inbox_id IN
               (SELECT inbox_id FROM unrouted_inboxes ORDER BY last_seen DESC, inbox_id DESC OFFSET $1)",
        )
        .bind(unrouted_inboxes::MAX_ROWS)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// Records an attempt (dropped when its delivery was removed meanwhile) and moves a still pending delivery to
/// its next state.
async fn record_attempt(
    tx: &mut PgConnection,
    a: &Attempt,
    next: NextState,
    now: i64,
) -> sqlx::Result<()> {
    insert_attempt(tx, a).await?;
    let (status, next_attempt_at) = match next {
        NextState::Delivered => (DeliveryStatus::Delivered, None),
        NextState::RetryAt(at) => (DeliveryStatus::Pending, Some(at)),
        NextState::Dead => (DeliveryStatus::Dead, None),
    };
    sqlx::query(
        "UPDATE deliveries SET status = $2, trigger = 'scheduled', attempts = attempts + 1,
                next_attempt_at = coalesce($3, next_attempt_at), last_status_code = $4, last_error = $5,
                updated_at = $6
         WHERE id = $1 AND status = 'pending'",
    )
    .bind(a.delivery_id)
    .bind(status)
    .bind(next_attempt_at)
    .bind(a.status_code)
    .bind(a.error.as_deref())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The attempt's row (none once its delivery was deleted).
async fn insert_attempt(tx: &mut PgConnection, a: &Attempt) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO delivery_attempts
             (delivery_id, attempt, trigger, started_at, duration_ms, status_code, error, response_snippet,
              ambiguous)
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9 WHERE EXISTS (SELECT 1 FROM deliveries WHERE id = $1)",
    )
    .bind(a.delivery_id)
    .bind(a.attempt)
    .bind(a.trigger)
    .bind(a.started_at)
    .bind(a.duration_ms)
    .bind(a.status_code)
    .bind(a.error.as_deref())
    .bind(a.response_snippet.as_deref())
    .bind(a.ambiguous)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// An attempt whose answer came after its relay lost the lane: what happened at GoWA is a fact all the same. The
/// attempt is kept, flagged ambiguous (the lane's new holder may send the delivery too); one GoWA took makes the
/// delivery delivered if it still waits, so that the new holder does not send it again. A failure changes
/// nothing else: the new holder decides what comes next.
async fn record_late(
    tx: &mut PgConnection,
    a: &Attempt,
    next: NextState,
    now: i64,
) -> sqlx::Result<()> {
    let took = next == NextState::Delivered;
    let late = Attempt {
        ambiguous: a.ambiguous || took,
        error: Some(match &a.error {
            Some(e) => format!("{e}; answered after this relay lost the lane to another"),
            None => {
                "answered after this relay lost the lane to another, which may send it again".into()
            }
        }),
        ..a.clone()
    };
    if took {
        record_attempt(tx, &late, next, now).await
    } else {
        insert_attempt(tx, &late).await
    }
}

async fn mark_dead(
    tx: &mut PgConnection,
    id: DeliveryId,
    reason: &str,
    now: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE deliveries SET status = 'dead', last_error = $2, updated_at = $3 WHERE id = $1 AND status = 'pending'",
    )
    .bind(id)
    .bind(reason)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
