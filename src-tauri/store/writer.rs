//! The single writer: every webhook and every attempt result is committed here, many per transaction.
//!
//! SQLite allows one writer at a time, and a durable commit costs an fsync. Requests queue on a channel and the
//! writer takes everything waiting into one `BEGIN IMMEDIATE … COMMIT` (group commit); each caller is answered
//! only after the commit that holds its write, and a failed commit fails every write in it.

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::{SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::attempts::{self, Attempt};
use super::deliveries::{self, AttemptOutcome, NewDelivery, NextState, PendingRef};
use super::{now_ms, routes, unrouted_inboxes};
use crate::ids::DeliveryId;

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 1024;
/// Writes waiting for the writer; beyond this, webhooks are shed (503) and attempt results wait for room.
const QUEUE_CAPACITY: usize = 16 * 1024;

/// What happened to an incoming webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Queued(DeliveryId),
    /// Its `X-Chatwoot-Delivery` was seen before: the earlier delivery.
    Duplicate(DeliveryId),
    NoRoute,
    RouteDisabled,
}

/// What a commit changed, for whoever follows the store (the delivery lanes, the admin UI).
#[derive(Debug, Clone, Copy)]
pub struct Committed<'a> {
    /// New pending deliveries, in commit order.
    pub queued: &'a [PendingRef],
    /// Any delivery was added or changed state.
    pub deliveries_changed: bool,
    /// An unrouted inbox was counted.
    pub unrouted_changed: bool,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("database write failed: {0}")]
    Database(Arc<sqlx::Error>),
    #[error("the writer has stopped")]
    Stopped,
    /// Only for webhooks: the queue is full, the webhook was not taken.
    #[error("the writer's queue is full")]
    Full,
}

enum Op {
    Ingest(
        Box<NewDelivery>,
        oneshot::Sender<Result<Decision, WriteError>>,
    ),
    Attempt(Attempt, NextState, oneshot::Sender<Result<(), WriteError>>),
    Dead(DeliveryId, String, oneshot::Sender<Result<(), WriteError>>),
}

/// The receiving end of a [`Writer`], not yet running.
pub struct WriterInbox(mpsc::Receiver<Op>);

impl WriterInbox {
    /// Starts the writer. `on_commit` hears of each commit that changed something, before any caller in it is
    /// answered. The task ends once `stop` is cancelled and what was already queued is written.
    pub fn spawn(
        self,
        pool: SqlitePool,
        stop: CancellationToken,
        on_commit: impl FnMut(&Committed) + Send + 'static,
    ) -> JoinHandle<()> {
        tokio::spawn(run(pool, self.0, stop, on_commit))
    }
}

/// Handle to the writer task; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Op>,
}

impl Writer {
    /// Creates the handle and the receiving end; start the task with [`WriterInbox::spawn`].
    pub fn channel() -> (Self, WriterInbox) {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        (Self { tx }, WriterInbox(rx))
    }

    /// Stores a webhook durably (or records why not) and says what was decided. Does not wait for room in
    /// the queue: a full queue is [`WriteError::Full`], so that a burst is shed instead of piling up.
    pub async fn ingest(&self, delivery: NewDelivery) -> Result<Decision, WriteError> {
        let permit = self.tx.try_reserve().map_err(|e| match e {
            mpsc::error::TrySendError::Full(()) => WriteError::Full,
            mpsc::error::TrySendError::Closed(()) => WriteError::Stopped,
        })?;
        let (reply, answer) = oneshot::channel();
        permit.send(Op::Ingest(Box::new(delivery), reply));
        answer.await.map_err(|_| WriteError::Stopped)?
    }

    /// Records an attempt and moves its delivery to `next`, in one transaction.
    pub async fn record_attempt(
        &self,
        attempt: Attempt,
        next: NextState,
    ) -> Result<(), WriteError> {
        self.call(|reply| Op::Attempt(attempt, next, reply)).await
    }

    /// Marks a delivery dead without an attempt.
    pub async fn mark_dead(&self, id: DeliveryId, reason: String) -> Result<(), WriteError> {
        self.call(|reply| Op::Dead(id, reason, reply)).await
    }

    async fn call<T>(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<T, WriteError>>) -> Op,
    ) -> Result<T, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(op(reply))
            .await
            .map_err(|_| WriteError::Stopped)?;
        answer.await.map_err(|_| WriteError::Stopped)?
    }
}

async fn run(
    pool: SqlitePool,
    mut rx: mpsc::Receiver<Op>,
    stop: CancellationToken,
    mut on_commit: impl FnMut(&Committed),
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        tokio::select! {
            biased;
            n = rx.recv_many(&mut batch, MAX_BATCH) => if n == 0 { break },
            () = stop.cancelled() => {
                // Refuse new writes, then write what is already queued.
                rx.close();
                while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                    commit(&pool, &mut batch, &mut on_commit).await;
                }
                break;
            }
        }
        commit(&pool, &mut batch, &mut on_commit).await;
    }
}

/// Writes one batch in one transaction and answers every caller in it.
async fn commit(pool: &SqlitePool, batch: &mut Vec<Op>, on_commit: &mut impl FnMut(&Committed)) {
    let mut decisions = Vec::new();
    let result: sqlx::Result<()> = async {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        decisions = apply(&mut tx, batch, now_ms()).await?;
        tx.commit().await
    }
    .await;

    match result {
        Ok(()) => {
            let queued: Vec<PendingRef> = batch
                .iter()
                .zip(&decisions)
                .filter_map(|(op, decision)| match (op, decision) {
                    (Op::Ingest(d, _), Some(Decision::Queued(id))) => Some(PendingRef {
                        id: *id,
                        inbox_id: d.inbox_id,
                        conversation_id: d.conversation_id,
                    }),
                    _ => None,
                })
                .collect();
            let committed = Committed {
                queued: &queued,
                deliveries_changed: batch.iter().zip(&decisions).any(|(op, decision)| match op {
                    Op::Ingest(..) => matches!(decision, Some(Decision::Queued(_))),
                    Op::Attempt(..) | Op::Dead(..) => true,
                }),
                unrouted_changed: decisions
                    .iter()
                    .any(|d| matches!(d, Some(Decision::NoRoute))),
            };
            if committed.deliveries_changed || committed.unrouted_changed {
                on_commit(&committed);
            }
            for (op, decision) in batch.drain(..).zip(decisions) {
                match op {
                    Op::Ingest(_, reply) => {
                        // `apply` returns a decision for every ingest.
                        let _ = reply.send(decision.ok_or(WriteError::Stopped));
                    }
                    Op::Attempt(.., reply) | Op::Dead(.., reply) => {
                        let _ = reply.send(Ok(()));
                    }
                }
            }
        }
        Err(err) => {
            tracing::error!(error = %err, writes = batch.len(), "database commit failed");
            let err = WriteError::Database(Arc::new(err));
            for op in batch.drain(..) {
                match op {
                    Op::Ingest(_, reply) => {
                        let _ = reply.send(Err(err.clone()));
                    }
                    Op::Attempt(.., reply) | Op::Dead(.., reply) => {
                        let _ = reply.send(Err(err.clone()));
                    }
                }
            }
        }
    }
}

/// Writes a batch in a few statements whatever its size (each statement is a round trip to the connection's
/// thread, which is what limits a single writer): the webhooks in one multi-row insert, the attempt results in
/// one insert and one update. Returns each op's decision (`None` for attempt results and dead marks).
async fn apply(
    conn: &mut SqliteConnection,
    batch: &[Op],
    now: i64,
) -> sqlx::Result<Vec<Option<Decision>>> {
    let mut decisions: Vec<Option<Decision>> = vec![None; batch.len()];
    let ingests: Vec<(usize, &NewDelivery)> = batch
        .iter()
        .enumerate()
        .filter_map(|(i, op)| match op {
            Op::Ingest(d, _) => Some((i, d.as_ref())),
            _ => None,
        })
        .collect();
    if !ingests.is_empty() {
        let routes = routes::enabled_by_inbox(conn).await?;
        let mut next = deliveries::next_id(conn).await?.0;
        let mut rows = Vec::with_capacity(ingests.len());
        for (i, d) in ingests {
            match routes.get(&d.inbox_id) {
                None => {
                    unrouted_inboxes::record(conn, d.inbox_id, &d.event, now).await?;
                    decisions[i] = Some(Decision::NoRoute);
                }
                Some(false) => decisions[i] = Some(Decision::RouteDisabled),
                Some(true) => {
                    rows.push((i, DeliveryId(next), d));
                    next += 1;
                }
            }
        }
        let new: Vec<(DeliveryId, &NewDelivery)> =
            rows.iter().map(|(_, id, d)| (*id, *d)).collect();
        let inserted = deliveries::insert_many(conn, &new, now).await?;
        let repeated: Vec<&str> = rows
            .iter()
            .filter(|(_, id, _)| !inserted.contains(id))
            .filter_map(|(_, _, d)| d.dedupe_key.as_deref())
            .collect();
        let earlier = if repeated.is_empty() {
            HashMap::new()
        } else {
            deliveries::ids_by_dedupe_key(conn, &repeated).await?
        };
        for (i, id, d) in rows {
            decisions[i] = Some(if inserted.contains(&id) {
                Decision::Queued(id)
            } else {
                // Not inserted: its dedupe key was known (earlier, or earlier in this batch).
                let key = d.dedupe_key.as_deref().unwrap_or_default();
                Decision::Duplicate(*earlier.get(key).ok_or(sqlx::Error::RowNotFound)?)
            });
        }
    }

    let attempts: Vec<&Attempt> = batch
        .iter()
        .filter_map(|op| match op {
            Op::Attempt(a, ..) => Some(a),
            _ => None,
        })
        .collect();
    if !attempts.is_empty() {
        attempts::insert_many(conn, &attempts).await?;
        let outcomes: Vec<AttemptOutcome> = batch
            .iter()
            .filter_map(|op| match op {
                Op::Attempt(a, next, _) => Some(AttemptOutcome {
                    id: a.delivery_id,
                    next: *next,
                    status_code: a.status_code.and_then(|c| u16::try_from(c).ok()),
                    error: a.error.as_deref(),
                }),
                _ => None,
            })
            .collect();
        deliveries::update_after_attempts(conn, &outcomes, now).await?;
    }
    for op in batch {
        if let Op::Dead(id, reason, _) = op {
            deliveries::mark_dead(conn, *id, reason, now).await?;
        }
    }
    Ok(decisions)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::ids::InboxId;
    use crate::store::deliveries::DeliveryStatus;
    use crate::store::deliveries::tests::new_delivery;
    use crate::store::routes::RouteFields;
    use crate::store::test_support::temp_db;

    async fn add_route(pool: &SqlitePool, inbox: i64, enabled: bool) {
        let f = RouteFields {
            inbox_id: InboxId(inbox),
            webhook_url: "http://127.0.0.1:9/x".into(),
            name: None,
            enabled,
            secret: None,
            chatwoot_secret: None,
        };
        routes::insert(pool, &f).await.unwrap();
    }

    #[tokio::test]
    async fn one_batch_holds_every_kind_of_decision_and_attempt_results() {
        let (pool, _dir) = temp_db().await;
        add_route(&pool, 7, true).await;
        add_route(&pool, 8, false).await;
        let stop = CancellationToken::new();
        let (writer, inbox) = Writer::channel();
        let task = inbox.spawn(pool.clone(), stop.clone(), |_| {});
        let earlier = writer
            .ingest(new_delivery(Some(1), Some("old")))
            .await
            .unwrap();
        let Decision::Queued(earlier) = earlier else {
            panic!("{earlier:?}")
        };

        // Queued together before the writer runs (one thread): one batch, one multi-row insert.
        let mut disabled = new_delivery(None, None);
        disabled.inbox_id = InboxId(8);
        let mut unrouted = new_delivery(None, None);
        unrouted.inbox_id = InboxId(99);
        let attempt = Attempt {
            delivery_id: earlier,
            attempt: 1,
            trigger: crate::store::attempts::Trigger::Scheduled,
            started_at: 1,
            duration_ms: 5,
            status_code: Some(200),
            error: None,
            response_snippet: None,
        };
        let (a, b, c, d, e, f, g) = tokio::join!(
            writer.ingest(new_delivery(Some(2), Some("new"))),
            writer.ingest(new_delivery(Some(2), Some("new"))),
            writer.ingest(new_delivery(Some(2), Some("old"))),
            writer.ingest(disabled),
            writer.ingest(unrouted),
            writer.ingest(new_delivery(Some(2), None)),
            writer.record_attempt(attempt, NextState::Delivered),
        );
        let Decision::Queued(new) = a.unwrap() else {
            panic!("first of a key is queued")
        };
        assert_eq!(
            b.unwrap(),
            Decision::Duplicate(new),
            "a repeat in the same batch"
        );
        assert_eq!(
            c.unwrap(),
            Decision::Duplicate(earlier),
            "a repeat of an earlier batch"
        );
        assert_eq!(d.unwrap(), Decision::RouteDisabled);
        assert_eq!(e.unwrap(), Decision::NoRoute);
        let Decision::Queued(last) = f.unwrap() else {
            panic!("no key: queued")
        };
        assert!(earlier < new && new < last, "ids follow arrival");
        g.unwrap();
        let delivered = deliveries::find(&pool, earlier).await.unwrap().unwrap();
        assert_eq!(
            (delivered.status, delivered.attempts),
            (DeliveryStatus::Delivered, 1)
        );
        assert_eq!(
            attempts::list_for_delivery(&pool, earlier)
                .await
                .unwrap()
                .len(),
            1
        );
        // Ids are never reused, even after the newest delivery is deleted.
        assert!(deliveries::delete(&pool, last).await.unwrap());
        let after = writer.ingest(new_delivery(None, None)).await.unwrap();
        assert!(
            matches!(after, Decision::Queued(id) if id > last),
            "{after:?}"
        );
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn decisions_and_commit_order_reach_the_callback() {
        let (pool, _dir) = temp_db().await;
        add_route(&pool, 7, true).await;
        add_route(&pool, 8, false).await;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let stop = CancellationToken::new();
        let (writer, inbox) = Writer::channel();
        let task = inbox.spawn(pool.clone(), stop.clone(), move |c| {
            sink.lock().unwrap().extend_from_slice(c.queued)
        });

        // Many concurrent ingests share commits, and each gets its own answer.
        let handles: Vec<_> = (0..200)
            .map(|i| {
                let w = writer.clone();
                tokio::spawn(async move { w.ingest(new_delivery(Some(i % 3), None)).await })
            })
            .collect();
        let mut ids = Vec::new();
        for h in handles {
            match h.await.unwrap().unwrap() {
                Decision::Queued(id) => ids.push(id),
                other => panic!("{other:?}"),
            }
        }
        let seen_ids: Vec<_> = seen.lock().unwrap().iter().map(|q| q.id).collect();
        assert!(
            seen_ids.windows(2).all(|w| w[0] < w[1]),
            "callback sees commit order"
        );
        ids.sort();
        assert_eq!(seen_ids, ids);

        let first = writer.ingest(new_delivery(None, Some("k1"))).await.unwrap();
        let Decision::Queued(first_id) = first else {
            panic!("{first:?}")
        };
        assert_eq!(
            writer.ingest(new_delivery(None, Some("k1"))).await.unwrap(),
            Decision::Duplicate(first_id)
        );

        let mut other_inbox = new_delivery(None, None);
        other_inbox.inbox_id = InboxId(8);
        assert_eq!(
            writer.ingest(other_inbox.clone()).await.unwrap(),
            Decision::RouteDisabled
        );
        other_inbox.inbox_id = InboxId(99);
        assert_eq!(writer.ingest(other_inbox).await.unwrap(), Decision::NoRoute);
        assert_eq!(
            unrouted_inboxes::list(&pool).await.unwrap()[0].inbox_id,
            InboxId(99)
        );

        stop.cancel();
        task.await.unwrap();
        assert!(matches!(
            writer.ingest(new_delivery(None, None)).await,
            Err(WriteError::Stopped)
        ));
        assert_eq!(deliveries::count_pending(&pool).await.unwrap(), 201);
    }

    #[tokio::test]
    async fn a_failing_database_fails_every_write_in_the_batch() {
        let (pool, _dir) = temp_db().await;
        add_route(&pool, 7, true).await;
        sqlx::query("DROP TABLE delivery_attempts")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("DROP TABLE deliveries")
            .execute(&pool)
            .await
            .unwrap();
        let (writer, inbox) = Writer::channel();
        let _task = inbox.spawn(pool, CancellationToken::new(), |_| {
            panic!("nothing is queued")
        });
        let err = writer.ingest(new_delivery(None, None)).await.unwrap_err();
        assert!(matches!(err, WriteError::Database(_)));
    }
}
