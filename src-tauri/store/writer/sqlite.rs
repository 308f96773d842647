//! The writer on SQLite: a thread with a connection of its own and its statements prepared once, so that a batch
//! is written without leaving the thread. (Through the pool each statement is a hand-off to the connection's
//! thread and back; those hand-offs, not SQLite, were what limited the writer.) One relay owns the file, so the
//! dedupe keys are kept in memory ([`DedupeKeys`]) instead of in a unique index.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::{
    Committed, DELETED, Decision, MAX_BATCH, Op, WriteError, Written, creation_of, deletion_of,
    finish, lock, refuse_after_stop,
};
use crate::ids::{DeliveryId, InboxId};
use crate::store::attempts;
use crate::store::dedupe::{self, DedupeKeys};
use crate::store::deliveries::{self, NewDelivery};
use crate::store::{now_ms, routes, unrouted_inboxes};

/// Opens the writer's connection to `file`, loads the stored dedupe keys and starts the thread.
pub(super) fn spawn(
    file: &Path,
    rx: mpsc::Receiver<Op>,
    keys: Arc<Mutex<DedupeKeys>>,
    on_commit: impl FnMut(&Committed) + Send + 'static,
    finished: oneshot::Sender<()>,
) -> std::io::Result<()> {
    let conn = crate::store::open_writer_connection(file).map_err(std::io::Error::other)?;
    *lock(&keys) = DedupeKeys::load(&conn).map_err(std::io::Error::other)?;
    let runtime = tokio::runtime::Handle::current();
    std::thread::Builder::new()
        .name("chatgowa-writer".into())
        .spawn(move || {
            let _runtime = runtime.enter();
            run(conn, rx, &keys, on_commit);
            let _ = finished.send(());
        })?;
    Ok(())
}

/// The writer's thread: waits for writes, then commits everything waiting in one transaction.
fn run(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Op>,
    keys: &Mutex<DedupeKeys>,
    mut on_commit: impl FnMut(&Committed),
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.blocking_recv_many(&mut batch, MAX_BATCH) > 0 {
        refuse_after_stop(&mut rx, &mut batch);
        if !batch.is_empty() {
            commit(&mut conn, &mut batch, keys, &mut on_commit);
        }
    }
}

/// Writes one batch in one transaction and answers every caller in it.
fn commit(
    conn: &mut Connection,
    batch: &mut Vec<Op>,
    keys: &Mutex<DedupeKeys>,
    on_commit: &mut impl FnMut(&Committed),
) {
    let now = now_ms();
    let mut undo = dedupe::Undo::default();
    let result = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .and_then(|tx| {
            // The keys are locked while the batch is written, not while it waits for the lock on the database
            // or for the disk: whoever forgets keys (on a tokio thread) is never held up by either.
            let mut cancelled = Vec::new();
            let decisions = apply(&tx, batch, now, &mut lock(keys), &mut undo, &mut cancelled)?;
            tx.commit()?;
            Ok(Written {
                done: decisions.into_iter().map(Ok).collect(),
                cancelled,
            })
        });

    let outcome = result.map_err(|err| {
        lock(keys).undo(undo);
        WriteError::Database(Arc::new(err))
    });
    finish(batch, outcome, now, on_commit);
}

/// Writes a batch, one prepared statement per write. Returns each op's decision (`None` for attempt results
/// and dead marks); the waiting replies its deletions stopped go to `cancelled`.
fn apply(
    conn: &Connection,
    batch: &[Op],
    now: i64,
    keys: &mut DedupeKeys,
    undo: &mut dedupe::Undo,
    cancelled: &mut Vec<DeliveryId>,
) -> rusqlite::Result<Vec<Option<Decision>>> {
    let mut routes: Option<HashSet<InboxId>> = None;
    let mut decisions = Vec::with_capacity(batch.len());
    for op in batch {
        decisions.push(match op {
            Op::Ingest(d, _) => {
                let routes = match &mut routes {
                    Some(routes) => routes,
                    None => routes.insert(routes::inboxes(conn)?),
                };
                let decision = ingest(conn, routes, d, now, keys, undo)?;
                if let Decision::Queued(_) = decision
                    && let Some(reply) = cancel_deleted(conn, d, now, keys)?
                {
                    cancelled.push(reply);
                }
                Some(decision)
            }
            // One relay owns the file: its lanes need no fence.
            Op::Attempt(a, next, _, _) => {
                attempts::insert(conn, a)?;
                deliveries::update_after_attempt(
                    conn,
                    a.delivery_id,
                    *next,
                    a.status_code,
                    a.error.as_deref(),
                    now,
                )?;
                None
            }
            Op::Dead(id, reason, _, _) => {
                deliveries::mark_dead(conn, *id, reason, now)?;
                None
            }
            Op::Stop => None,
        });
    }
    Ok(decisions)
}

fn ingest(
    conn: &Connection,
    routes: &HashSet<InboxId>,
    d: &NewDelivery,
    now: i64,
    keys: &mut DedupeKeys,
    undo: &mut dedupe::Undo,
) -> rusqlite::Result<Decision> {
    // A paused route queues what arrives too: its lanes wait until it is resumed.
    if !routes.contains(&d.inbox_id) {
        unrouted_inboxes::record(conn, d.inbox_id, &d.event, now)?;
        return Ok(Decision::NoRoute);
    }
    let key = d.dedupe_key.as_deref();
    // Known from earlier, or from earlier in this batch.
    if let Some(earlier) = key.map(|k| keys.find(conn, k)).transpose()?.flatten() {
        if !deliveries::superseded(conn, earlier, d)? {
            deliveries::count_duplicate(conn, earlier)?;
            return Ok(Decision::Duplicate(earlier));
        }
        deliveries::release_key(conn, earlier)?;
    }
    let id = deliveries::insert(conn, d, now)?;
    if let Some(key) = key {
        keys.insert(key, id, undo);
    }
    if let Some(deletion) = deletion_of(key)
        && keys.find(conn, &deletion)?.is_some()
    {
        deliveries::mark_dead(conn, id, DELETED, now)?;
        return Ok(Decision::Deleted(id));
    }
    Ok(Decision::Queued(id))
}

/// A reply still waiting to go out whose deletion `d` is: stored dead ([`DELETED`]) in the deletion's own
/// commit, so that no attempt after it sends the reply (the mirror of a deletion stored first, see `ingest`).
fn cancel_deleted(
    conn: &Connection,
    d: &NewDelivery,
    now: i64,
    keys: &mut DedupeKeys,
) -> rusqlite::Result<Option<DeliveryId>> {
    let Some(creation) = creation_of(d.dedupe_key.as_deref()) else {
        return Ok(None);
    };
    let Some(reply) = keys.find(conn, &creation)? else {
        return Ok(None);
    };
    Ok(deliveries::mark_dead(conn, reply, DELETED, now)?.then_some(reply))
}
