//! The relay's writer: every webhook and every attempt result is committed here, many per transaction.
//!
//! A durable commit costs an fsync (and on SQLite only one writer may commit at a time). Requests queue on a
//! channel and the writer takes everything waiting into one transaction (group commit); each caller is answered
//! only after the commit that holds its write, and a failed commit fails every write in it. How a batch is
//! written is the backend's: [`sqlite`] (a thread with a connection of its own) or [`postgres`] (a task on the
//! pool).

mod postgres;
mod sqlite;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{mpsc, oneshot};

use super::Db;
use super::attempts::Attempt;
use super::dedupe::DedupeKeys;
use super::deliveries::{self, NewDelivery, NextState};
use super::lanes::Fence;
use crate::ids::DeliveryId;

/// Most writes committed in one transaction.
pub(super) const MAX_BATCH: usize = 1024;
/// Writes waiting for the writer; beyond this, webhooks are shed (503) and attempt results wait for room.
const QUEUE_CAPACITY: usize = 16 * 1024;

/// What happened to an incoming webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Queued(DeliveryId),
    /// A reply whose deletion in Chatwoot was stored before it: stored dead ([`DELETED`]), never sent.
    Deleted(DeliveryId),
    /// Its dedupe key (the message's identity, or `X-Chatwoot-Delivery`) was seen before: the earlier delivery,
    /// whose count of dropped repeats went up.
    Duplicate(DeliveryId),
    NoRoute,
}

/// Why a reply deleted in Chatwoot before it went out is dead (nothing is told of it in Chatwoot).
pub const DELETED: &str = "deleted in Chatwoot before it was sent: not sent";

/// The identity a deletion of the message with identity `key` has (see `relay::payload`).
fn deletion_of(key: Option<&str>) -> Option<String> {
    key?.strip_prefix("message_created/")
        .map(|rest| format!("message_deleted/{rest}"))
}

/// The identity of the reply whose deletion has identity `key`.
fn creation_of(key: Option<&str>) -> Option<String> {
    key?.strip_prefix("message_deleted/")
        .map(|rest| format!("message_created/{rest}"))
}

/// What a commit changed, for whoever follows the store (the delivery lanes, the admin UI).
#[derive(Debug, Clone, Copy)]
pub struct Committed<'a> {
    /// New pending deliveries, in commit order, each with what was stored for it.
    pub queued: &'a [(DeliveryId, &'a NewDelivery)],
    /// Replies still waiting to go out that the commit stored dead ([`DELETED`]): their deletion came.
    pub cancelled: &'a [DeliveryId],
    /// When the commit's writes were made: the new deliveries' `received_at`.
    pub at: i64,
    /// Any delivery was added or changed state.
    pub deliveries_changed: bool,
    /// An unrouted inbox was counted.
    pub unrouted_changed: bool,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("database write failed: {0}")]
    Database(Arc<dyn std::error::Error + Send + Sync>),
    #[error("the writer has stopped")]
    Stopped,
    /// Only for webhooks: the queue is full, the webhook was not taken.
    #[error("the writer's queue is full")]
    Full,
    /// Only for fenced writes: this relay no longer holds the lane (another one took it over); nothing was
    /// written.
    #[error("this relay no longer holds the lane")]
    LaneLost,
}

/// One write's outcome in a committed batch: a webhook's decision, `None` for the other writes, or why that
/// write alone was refused.
type Done = Result<Option<Decision>, WriteError>;

/// What a committed batch did: each write's outcome, in batch order, and the waiting replies its deletions
/// stopped.
#[derive(Debug, Default)]
struct Written {
    done: Vec<Done>,
    cancelled: Vec<DeliveryId>,
}

enum Op {
    Ingest(
        Box<NewDelivery>,
        oneshot::Sender<Result<Decision, WriteError>>,
    ),
    Attempt(
        Attempt,
        NextState,
        Option<Fence>,
        oneshot::Sender<Result<(), WriteError>>,
    ),
    Dead(
        DeliveryId,
        String,
        Option<Fence>,
        oneshot::Sender<Result<(), WriteError>>,
    ),
    /// Refuse new writes, write what is already queued, and end.
    Stop,
}

/// The receiving end of a [`Writer`], not yet running.
pub struct WriterInbox {
    rx: mpsc::Receiver<Op>,
    tx: mpsc::Sender<Op>,
    keys: Arc<Mutex<DedupeKeys>>,
}

impl WriterInbox {
    /// Starts the writer on `db` (created and migrated by [`super::connect`] or [`super::connect_postgres`]):
    /// on SQLite a thread with a connection of its own, on PostgreSQL a task on the pool. `on_commit` hears of
    /// each commit that changed something, before any caller in it is answered; it runs inside the caller's
    /// tokio runtime (it may spawn tasks).
    ///
    /// # Errors
    /// The database cannot be opened, or the thread cannot be started.
    pub fn spawn(
        self,
        db: &Db,
        on_commit: impl FnMut(&Committed) + Send + 'static,
    ) -> std::io::Result<WriterThread> {
        let (finished, done) = oneshot::channel();
        match db {
            Db::Sqlite(pool) => {
                let file = pool.connect_options().get_filename().to_owned();
                sqlite::spawn(&file, self.rx, self.keys, on_commit, finished)?;
            }
            Db::Postgres(pool) => {
                tokio::spawn(postgres::run(pool.clone(), self.rx, on_commit, finished));
            }
        }
        Ok(WriterThread { tx: self.tx, done })
    }
}

/// The running writer.
pub struct WriterThread {
    tx: mpsc::Sender<Op>,
    done: oneshot::Receiver<()>,
}

impl WriterThread {
    /// Refuses new writes, writes what is already queued, and waits for the writer to end.
    pub async fn stop(self) {
        let _ = self.tx.send(Op::Stop).await;
        let _ = self.done.await;
    }
}

/// Handle to the writer; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Op>,
    keys: Arc<Mutex<DedupeKeys>>,
}

impl Writer {
    /// Creates the handle and the receiving end; start the writer with [`WriterInbox::spawn`].
    pub fn channel() -> (Self, WriterInbox) {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let keys = Arc::new(Mutex::new(DedupeKeys::default()));
        (
            Self {
                tx: tx.clone(),
                keys: keys.clone(),
            },
            WriterInbox { rx, tx, keys },
        )
    }

    /// Lets the dedupe keys of deleted deliveries go; call once their delete has committed.
    pub fn forget_keys(&self, deleted: &[deliveries::Deleted]) {
        lock(&self.keys).forget(
            deleted
                .iter()
                .filter_map(|(id, key)| Some((*id, key.as_deref()?))),
        );
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

    /// Records an attempt and moves its delivery to `next`, in one transaction; with a `fence`, only while this
    /// relay still holds the lane ([`WriteError::LaneLost`] otherwise).
    pub async fn record_attempt(
        &self,
        attempt: Attempt,
        next: NextState,
        fence: Option<Fence>,
    ) -> Result<(), WriteError> {
        self.call(|reply| Op::Attempt(attempt, next, fence, reply))
            .await
    }

    /// Marks a delivery dead without an attempt (fenced as [`Writer::record_attempt`]).
    pub async fn mark_dead(
        &self,
        id: DeliveryId,
        reason: String,
        fence: Option<Fence>,
    ) -> Result<(), WriteError> {
        self.call(|reply| Op::Dead(id, reason, fence, reply)).await
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

pub(super) fn lock(keys: &Mutex<DedupeKeys>) -> MutexGuard<'_, DedupeKeys> {
    // The map is consistent after every call, so a panic elsewhere while it was held leaves nothing half-done.
    keys.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Takes the ops waiting (up to [`MAX_BATCH`]) after a `Stop`: new writes are refused, what was queued still comes.
fn refuse_after_stop(rx: &mut mpsc::Receiver<Op>, batch: &mut Vec<Op>) {
    if batch.iter().any(|op| matches!(op, Op::Stop)) {
        // Refuse new writes; what is already queued still comes out of `rx`.
        rx.close();
        batch.retain(|op| !matches!(op, Op::Stop));
    }
}

/// Answers every caller of a batch: with its decision after a commit (telling `on_commit` first), or with the
/// error that failed the whole batch.
fn finish(
    batch: &mut Vec<Op>,
    outcome: Result<Written, WriteError>,
    now: i64,
    on_commit: &mut impl FnMut(&Committed),
) {
    match outcome {
        Ok(written) => {
            announce(batch, &written, now, on_commit);
            for (op, done) in batch.drain(..).zip(written.done) {
                answer(op, done);
            }
        }
        Err(err) => {
            tracing::error!(error = %err, writes = batch.len(), "database commit failed");
            for op in batch.drain(..) {
                answer(op, Err(err.clone()));
            }
        }
    }
}

/// Tells `on_commit` what a committed batch changed, if anything.
fn announce(batch: &[Op], written: &Written, now: i64, on_commit: &mut impl FnMut(&Committed)) {
    let done = &written.done;
    // A reply whose deletion came in the same batch was stored dead by it: it never waits in a lane.
    let queued: Vec<(DeliveryId, &NewDelivery)> = batch
        .iter()
        .zip(done)
        .filter_map(|(op, done)| match (op, done) {
            (Op::Ingest(d, _), Ok(Some(Decision::Queued(id)))) => Some((*id, d.as_ref())),
            _ => None,
        })
        .filter(|(id, _)| !written.cancelled.contains(id))
        .collect();
    let committed = Committed {
        queued: &queued,
        cancelled: &written.cancelled,
        at: now,
        deliveries_changed: !queued.is_empty()
            || batch
                .iter()
                .zip(done)
                .any(|(op, done)| matches!(op, Op::Attempt(..) | Op::Dead(..)) && done.is_ok()),
        unrouted_changed: done
            .iter()
            .any(|d| matches!(d, Ok(Some(Decision::NoRoute)))),
    };
    if committed.deliveries_changed || committed.unrouted_changed {
        on_commit(&committed);
    }
}

/// Answers the caller of one write: an ingest with its decision (or the error), the others with the
/// outcome alone.
fn answer(op: Op, result: Done) {
    match op {
        Op::Ingest(_, reply) => {
            // `apply` returns a decision for every ingest.
            let _ = reply.send(result.and_then(|d| d.ok_or(WriteError::Stopped)));
        }
        Op::Attempt(.., reply) | Op::Dead(.., reply) => {
            let _ = reply.send(result.map(|_| ()));
        }
        Op::Stop => {}
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::ids::InboxId;
    use crate::store::deliveries::DeliveryStatus;
    use crate::store::deliveries::tests::new_delivery;
    use crate::store::routes::RouteFields;
    use crate::store::test_support::{both, temp_db};
    use crate::store::{Db, attempts, routes, unrouted_inboxes};

    async fn add_route(db: &Db, inbox: i64, enabled: bool) {
        let f = RouteFields {
            inbox_id: InboxId(inbox),
            webhook_url: "http://127.0.0.1:9/x".into(),
            name: None,
            enabled,
            secret: None,
            chatwoot_secret: None,
        };
        routes::insert(db, &f).await.unwrap();
    }

    /// A writer on `pool` whose commits add what `heard` takes of them to the list returned.
    fn writer_hearing(
        pool: &Db,
        heard: impl Fn(&Committed) -> Vec<DeliveryId> + Send + 'static,
    ) -> (Writer, WriterThread, Arc<Mutex<Vec<DeliveryId>>>) {
        let list = Arc::new(Mutex::new(Vec::new()));
        let sink = list.clone();
        let (writer, inbox) = Writer::channel();
        let task = inbox
            .spawn(pool, move |c| sink.lock().unwrap().extend(heard(c)))
            .unwrap();
        (writer, task, list)
    }

    /// A first attempt of `id` that GoWA answered 200.
    fn answered_200(id: DeliveryId) -> Attempt {
        Attempt {
            delivery_id: id,
            attempt: 1,
            trigger: crate::store::attempts::Trigger::Scheduled,
            started_at: 1,
            duration_ms: 5,
            status_code: Some(200),
            error: None,
            response_snippet: None,
            ambiguous: false,
        }
    }

    #[tokio::test]
    async fn one_batch_holds_every_kind_of_decision_and_attempt_results() {
        let (dbs, _dir) = both().await;
        for db in dbs {
            one_batch_holds_every_kind_of_decision_and_attempt_results_on(db).await;
        }
    }

    async fn one_batch_holds_every_kind_of_decision_and_attempt_results_on(pool: Db) {
        add_route(&pool, 7, true).await;
        add_route(&pool, 8, false).await;
        let earlier = {
            let (writer, inbox) = Writer::channel();
            let task = inbox.spawn(&pool, |_| {}).unwrap();
            let decision = writer.ingest(new_delivery(Some(1), Some("old"))).await;
            task.stop().await;
            decision.unwrap()
        };
        let Decision::Queued(earlier) = earlier else {
            panic!("{earlier:?}")
        };

        // Queued while no writer runs, then taken as one batch when it starts.
        let (writer, inbox) = Writer::channel();
        let ingest = |d: NewDelivery| {
            let w = writer.clone();
            tokio::spawn(async move { w.ingest(d).await })
        };
        let mut disabled = new_delivery(None, None);
        disabled.inbox_id = InboxId(8);
        let mut unrouted = new_delivery(None, None);
        unrouted.inbox_id = InboxId(99);
        let writes = [
            ingest(new_delivery(Some(2), Some("new"))),
            ingest(new_delivery(Some(2), Some("new"))),
            ingest(new_delivery(Some(2), Some("old"))),
            ingest(disabled),
            ingest(unrouted),
            ingest(new_delivery(Some(2), None)),
        ];
        let attempt = answered_200(earlier);
        let recorded = {
            let w = writer.clone();
            tokio::spawn(async move { w.record_attempt(attempt, NextState::Delivered, None).await })
        };
        while writer.tx.capacity() > QUEUE_CAPACITY - 7 {
            tokio::task::yield_now().await;
        }
        let commits = Arc::new(Mutex::new(0));
        let counter = commits.clone();
        let task = inbox
            .spawn(&pool, move |_| *counter.lock().unwrap() += 1)
            .unwrap();
        let mut decisions = Vec::new();
        for write in writes {
            decisions.push(write.await.unwrap().unwrap());
        }
        recorded.await.unwrap().unwrap();
        assert_eq!(*commits.lock().unwrap(), 1, "one batch, one commit");

        let Decision::Queued(new) = decisions[0] else {
            panic!("first of a key is queued")
        };
        assert_eq!(
            decisions[1],
            Decision::Duplicate(new),
            "a repeat in the same batch"
        );
        assert_eq!(
            decisions[2],
            Decision::Duplicate(earlier),
            "a repeat of an earlier batch"
        );
        let Decision::Queued(paused) = decisions[3] else {
            panic!("a paused route queues too")
        };
        assert_eq!(decisions[4], Decision::NoRoute);
        let Decision::Queued(last) = decisions[5] else {
            panic!("no key: queued")
        };
        assert!(
            earlier < new && new < paused && paused < last,
            "ids follow arrival"
        );
        let counted = deliveries::find(&pool, new).await.unwrap().unwrap();
        assert_eq!(counted.duplicates, 1, "the repeat in the batch is counted");
        assert_eq!(deliveries::count_duplicates(&pool).await.unwrap(), 2);
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
        assert!(deliveries::delete(&pool, last).await.unwrap().is_some());
        let after = writer.ingest(new_delivery(None, None)).await.unwrap();
        assert!(
            matches!(after, Decision::Queued(id) if id > last),
            "{after:?}"
        );
        task.stop().await;
    }

    #[tokio::test]
    async fn the_same_change_made_again_after_another_is_not_a_twin() {
        let (dbs, _dir) = both().await;
        for db in dbs {
            the_same_change_made_again_after_another_is_not_a_twin_on(db).await;
        }
    }

    async fn the_same_change_made_again_after_another_is_not_a_twin_on(pool: Db) {
        add_route(&pool, 7, true).await;
        let (writer, inbox) = Writer::channel();
        let task = inbox.spawn(&pool, |_| {}).unwrap();
        // What a `message_updated` of message 5 changed to.
        let update = |to: &str| NewDelivery {
            event: "message_updated".into(),
            message_id: Some(5),
            dedupe_key: Some(format!("message_updated/1/5/{to}")),
            ..new_delivery(Some(41), None)
        };
        let mut decided = Vec::new();
        // An edit A → B → A → B (or failed → sent → failed → sent: Chatwoot's Retry pressed twice), each with a
        // twin Chatwoot fired along.
        for to in ["a", "b", "a", "b"] {
            let real = writer.ingest(update(to)).await.unwrap();
            let twin = writer.ingest(update(to)).await.unwrap();
            let Decision::Queued(id) = real else {
                panic!("{to}: {real:?}")
            };
            assert_eq!(twin, Decision::Duplicate(id), "{to}: the twin");
            decided.push(id);
        }
        assert!(decided.windows(2).all(|w| w[0] < w[1]), "{decided:?}");
        task.stop().await;
    }

    #[tokio::test]
    async fn a_deletion_stops_its_waiting_reply_in_its_own_commit() {
        let (dbs, _dir) = both().await;
        for db in dbs {
            a_deletion_stops_its_waiting_reply_in_its_own_commit_on(db).await;
        }
    }

    async fn a_deletion_stops_its_waiting_reply_in_its_own_commit_on(pool: Db) {
        add_route(&pool, 7, true).await;
        let (writer, task, told) = writer_hearing(&pool, |c| c.cancelled.to_vec());
        let message = |event: &str, key: &str, message: i64| NewDelivery {
            event: event.into(),
            message_id: Some(message),
            dedupe_key: Some(key.into()),
            ..new_delivery(Some(41), None)
        };
        let queued = |d: Decision| match d {
            Decision::Queued(id) => id,
            other => panic!("{other:?}"),
        };
        let reply = queued(
            writer
                .ingest(message("message_created", "message_created/7/1/5", 5))
                .await
                .unwrap(),
        );
        let sent = queued(
            writer
                .ingest(message("message_created", "message_created/7/1/6", 6))
                .await
                .unwrap(),
        );
        let attempt = answered_200(sent);
        writer
            .record_attempt(attempt, NextState::Delivered, None)
            .await
            .unwrap();
        // An edit stops nothing; the deletion stops the reply still waiting, the one delivered stays delivered.
        let edit = message("message_updated", "message_updated/7/1/5/abc", 5);
        queued(writer.ingest(edit).await.unwrap());
        assert_eq!(
            deliveries::find(&pool, reply)
                .await
                .unwrap()
                .unwrap()
                .status,
            DeliveryStatus::Pending
        );
        let deletion = message("message_updated", "message_deleted/7/1/5", 5);
        queued(writer.ingest(deletion).await.unwrap());
        let stopped = deliveries::find(&pool, reply).await.unwrap().unwrap();
        assert_eq!(
            (stopped.status, stopped.last_error.as_deref()),
            (DeliveryStatus::Dead, Some(DELETED)),
            "dead once the deletion's write is answered"
        );
        assert_eq!(*told.lock().unwrap(), [reply], "the lanes are told");
        let deletion = message("message_updated", "message_deleted/7/1/6", 6);
        queued(writer.ingest(deletion).await.unwrap());
        let kept = deliveries::find(&pool, sent).await.unwrap().unwrap();
        assert_eq!(kept.status, DeliveryStatus::Delivered);
        assert_eq!(told.lock().unwrap().len(), 1);
        task.stop().await;
    }

    #[tokio::test]
    async fn a_reply_and_its_deletion_in_one_commit_leave_nothing_to_send() {
        let (dbs, _dir) = both().await;
        for db in dbs {
            a_reply_and_its_deletion_in_one_commit_leave_nothing_to_send_on(db).await;
        }
    }

    /// Chatwoot's webhooks of a reply and of its deletion arriving together (a burst after the relay was stopped
    /// a while) are written in one batch: the deletion stores the reply dead, and the lanes must not be handed it
    /// as new, or it is sent all the same.
    async fn a_reply_and_its_deletion_in_one_commit_leave_nothing_to_send_on(pool: Db) {
        add_route(&pool, 7, true).await;
        let heard = Arc::new(Mutex::new(Vec::new()));
        let sink = heard.clone();
        let (writer, inbox) = Writer::channel();
        let message = |event: &str, key: &str| NewDelivery {
            event: event.into(),
            message_id: Some(5),
            dedupe_key: Some(key.into()),
            ..new_delivery(Some(41), None)
        };
        // Both wait in the channel before the writer starts, so they are one batch.
        let (reply, deletion, task) = tokio::join!(
            writer.ingest(message("message_created", "message_created/7/1/5")),
            writer.ingest(message("message_updated", "message_deleted/7/1/5")),
            async {
                inbox
                    .spawn(&pool, move |c| {
                        let mut heard = sink.lock().unwrap();
                        heard.extend(c.queued.iter().map(|(id, _)| *id));
                    })
                    .unwrap()
            }
        );
        // Each stored (the reply stored dead at once where the writer took the deletion first).
        let stored = |d: Result<Decision, WriteError>| match d {
            Ok(Decision::Queued(id) | Decision::Deleted(id)) => id,
            other => panic!("{other:?}"),
        };
        let (reply, deletion) = (stored(reply), stored(deletion));
        let stopped = deliveries::find(&pool, reply).await.unwrap().unwrap();
        assert_eq!(stopped.status, DeliveryStatus::Dead);
        let queued = heard.lock().unwrap().clone();
        assert_eq!(
            queued,
            [deletion],
            "the reply stored dead is not handed to the lanes"
        );
        task.stop().await;
    }

    /// Two relays on PostgreSQL: one takes a reply's webhook while the other takes its deletion's, at once, in a
    /// conversation with no lane row yet (none to lock). Whichever commits second must see the first: the reply
    /// ends dead, never waiting to be sent.
    #[tokio::test]
    async fn a_reply_and_its_deletion_taken_by_two_relays_at_once_leave_the_reply_dead() {
        let pool = crate::store::test_support::postgres_db().await;
        add_route(&pool, 7, true).await;
        let (one, inbox) = Writer::channel();
        let one_task = inbox.spawn(&pool, |_| {}).unwrap();
        let (other, inbox) = Writer::channel();
        let other_task = inbox.spawn(&pool, |_| {}).unwrap();
        let webhook = |event: &str, key: String, conversation: i64| NewDelivery {
            event: event.into(),
            message_id: Some(conversation),
            dedupe_key: Some(key),
            ..new_delivery(Some(conversation), None)
        };
        let mut waiting = Vec::new();
        for conversation in 1..=40 {
            let (reply, _) = tokio::join!(
                one.ingest(webhook(
                    "message_created",
                    format!("message_created/7/1/{conversation}"),
                    conversation
                )),
                other.ingest(webhook(
                    "message_updated",
                    format!("message_deleted/7/1/{conversation}"),
                    conversation
                )),
            );
            let (Decision::Queued(id) | Decision::Deleted(id)) = reply.unwrap() else {
                panic!("stored")
            };
            let stored = deliveries::find(&pool, id).await.unwrap().unwrap();
            if stored.status == DeliveryStatus::Pending {
                waiting.push(conversation);
            }
        }
        assert!(
            waiting.is_empty(),
            "replies left waiting after their deletion: {waiting:?}"
        );
        one_task.stop().await;
        other_task.stop().await;
    }

    #[tokio::test]
    async fn decisions_and_commit_order_reach_the_callback() {
        let (dbs, _dir) = both().await;
        for db in dbs {
            decisions_and_commit_order_reach_the_callback_on(db).await;
        }
    }

    async fn decisions_and_commit_order_reach_the_callback_on(pool: Db) {
        add_route(&pool, 7, true).await;
        add_route(&pool, 8, false).await;
        let (writer, task, seen) =
            writer_hearing(&pool, |c| c.queued.iter().map(|(id, _)| *id).collect());

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
        let seen_ids = seen.lock().unwrap().clone();
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
        assert!(matches!(
            writer.ingest(other_inbox.clone()).await.unwrap(),
            Decision::Queued(_)
        ));
        other_inbox.inbox_id = InboxId(99);
        assert_eq!(writer.ingest(other_inbox).await.unwrap(), Decision::NoRoute);
        assert_eq!(
            unrouted_inboxes::list(&pool).await.unwrap()[0].inbox_id,
            InboxId(99)
        );

        task.stop().await;
        assert!(matches!(
            writer.ingest(new_delivery(None, None)).await,
            Err(WriteError::Stopped)
        ));
        assert_eq!(
            deliveries::count_pending(&pool).await.unwrap(),
            202,
            "the paused route's one too"
        );
    }

    #[tokio::test]
    async fn a_failing_database_fails_every_write_in_the_batch_and_keeps_none_of_it() {
        let (pool, _dir) = temp_db().await;
        add_route(&pool, 7, true).await;
        let (writer, inbox) = Writer::channel();
        let task = inbox.spawn(&pool, |_| {}).unwrap();
        // The delivery row goes in, its body cannot: the whole batch is rolled back.
        let bodies = "CREATE TABLE delivery_bodies (
                          delivery_id INTEGER PRIMARY KEY REFERENCES deliveries (id) ON DELETE CASCADE,
                          body        BLOB    NOT NULL)";
        sqlx::query("DROP TABLE delivery_bodies")
            .execute(pool.sqlite())
            .await
            .unwrap();
        let err = writer
            .ingest(new_delivery(None, Some("k1")))
            .await
            .unwrap_err();
        assert!(matches!(err, WriteError::Database(_)));
        assert_eq!(deliveries::count_pending(&pool).await.unwrap(), 0);

        // Once the fault clears, the same webhook (Chatwoot's agent bot retries with its key) is new.
        sqlx::query(bodies).execute(pool.sqlite()).await.unwrap();
        let again = writer.ingest(new_delivery(None, Some("k1"))).await;
        task.stop().await;
        assert!(matches!(again, Ok(Decision::Queued(_))), "{again:?}");
    }
}
