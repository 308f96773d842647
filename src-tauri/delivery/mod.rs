//! Outbound delivery: per-conversation lanes that send stored webhooks to GoWA one after another, replies in
//! the order the agent wrote them.
//!
//! Each conversation (or, without one, each inbox) is a lane: an in-memory queue of pending delivery ids (in
//! arrival order, message events in message-id order, see [`lane`]) with one task working its head. A new
//! message event is held for the reorder window first, so that a reply Sidekiq sent late can still go ahead. The database stays the truth: lanes are rebuilt from it at startup, so a crash
//! loses nothing that was acknowledged. Lanes of one inbox share a concurrency budget, so a slow GoWA holds up
//! only its own route. Nothing here polls: a lane task wakes on new work, on its retry time, on a route change,
//! or when its route's GoWA answers again after failing.
//! Must not: call GoWA from anywhere but a lane task, or write SQL (see [`crate::store`]).

pub mod gowa;
mod lane;
pub mod leases;
pub mod retry;
mod worker;

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use crate::store::Db;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::lane::Lane;
use crate::ids::{DeliveryId, InboxId};
use crate::metrics::Metrics;
use crate::store::deliveries::{Delivery, NewDelivery, PendingRef};
use crate::store::routes::Route;
use crate::store::{self, Writer};

/// Attempts in flight across all routes.
const MAX_IN_FLIGHT: usize = 256;
/// Attempts in flight towards one inbox's GoWA.
const MAX_IN_FLIGHT_PER_ROUTE: usize = 32;
/// Lease left over an attempt's timeout before it may start (several relays on PostgreSQL, see [`leases`]).
pub use crate::config::LEASE_MARGIN;
/// Bodies of new deliveries kept in memory for their first attempt (beyond this, that attempt reads the
/// database): bounded, so that a GoWA outage cannot fill memory with the queue behind it.
const FRESH_BYTES: usize = 16 * 1024 * 1024;

/// Deliveries that must go out one after another: one Chatwoot conversation, or an inbox's events that
/// belong to no conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LaneKey {
    pub inbox_id: InboxId,
    pub conversation_id: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    pub retry_schedule: Vec<Duration>,
    pub max_age: Duration,
    /// How long a new message event waits before it is sent, for a lower message id of its conversation that
    /// Chatwoot sent late; zero sends at once.
    pub reorder_window: Duration,
    /// On PostgreSQL: how long a relay holds a lane without renewing it (a dead relay's lanes are taken over
    /// after it), and the timeout of an attempt, which the lease must outlast.
    pub lease: Duration,
    pub fetch_timeout: Duration,
}

/// How a delivery attempt ended: its name goes into logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Retry,
    Dead,
    /// Cut short by shutdown; retried after the restart.
    Interrupted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retry => "retry",
            Self::Dead => "dead",
            Self::Interrupted => "interrupted",
        }
    }
}

/// Handle to the lanes; cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    /// On PostgreSQL: the lanes this relay holds among the relays on the database. `None` on SQLite, where
    /// the one relay holds them all.
    leases: Option<Arc<leases::Leases>>,
    writer: Writer,
    client: reqwest::Client,
    config: DeliveryConfig,
    lanes: Mutex<Lanes>,
    /// New deliveries as the writer stored them, so that a first attempt need not read them back.
    fresh: Mutex<Fresh>,
    route_slots: Mutex<HashMap<InboxId, Arc<Semaphore>>>,
    slots: Arc<Semaphore>,
    /// Every route by inbox, replaced as a whole by [`Dispatcher::reload_routes`].
    routes: RwLock<Arc<HashMap<InboxId, Arc<Route>>>>,
    /// Bumped whenever routes change, so lanes paused on a disabled route look again.
    routes_changed: watch::Sender<()>,
    /// The inbox whose GoWA answered again after failing: its lanes waiting to retry go at once instead of
    /// sitting out their backoff (after a long outage, the schedule could otherwise hold them for hours).
    recovered: watch::Sender<Option<InboxId>>,
    /// Bumped when a delivery fails an attempt, dies, or is delivered after failing (what Chatwoot is told of),
    /// or is delivered in a conversation of [`Inner::watched`].
    outcomes: watch::Sender<u64>,
    /// Conversations with an outage Chatwoot was told of: any delivery in one may end it (the conversation's
    /// last waiting reply, or Chatwoot's echo of the note, can go out at their first attempt).
    watched: RwLock<HashSet<i64>>,
    /// While true, no attempt starts (webhooks are still accepted and queued).
    paused: watch::Sender<bool>,
    tracker: TaskTracker,
    /// Stop starting attempts.
    shutdown: CancellationToken,
    /// Abandon attempts still in flight (they are recorded and retried after a restart).
    abort: CancellationToken,
    metrics: Metrics,
}

/// Builds the one HTTP client used for every attempt.
///
/// # Errors
/// The TLS backend cannot be initialised.
pub fn http_client(fetch_timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("chatgowa/", env!("CARGO_PKG_VERSION")))
        .timeout(fetch_timeout)
        .connect_timeout(fetch_timeout.min(Duration::from_secs(5)))
        // A redirected POST would turn into a GET and lose the body: treat redirects as errors instead.
        .redirect(reqwest::redirect::Policy::none())
        // GoWA is normally on the LAN; an HTTP_PROXY meant for browsing must not reroute it.
        .no_proxy()
        .pool_max_idle_per_host(MAX_IN_FLIGHT_PER_ROUTE)
        .build()
}

/// How lane tasks are tracked and stopped.
#[derive(Clone)]
pub struct Lifecycle {
    /// Every lane task, so that shutdown can wait for attempts in flight.
    pub tracker: TaskTracker,
    /// Stop starting attempts.
    pub shutdown: CancellationToken,
    /// Abandon attempts still in flight.
    pub abort: CancellationToken,
}

impl Dispatcher {
    pub fn new(
        db: Db,
        writer: Writer,
        client: reqwest::Client,
        config: DeliveryConfig,
        lifecycle: Lifecycle,
        metrics: Metrics,
    ) -> Self {
        let Lifecycle {
            tracker,
            shutdown,
            abort,
        } = lifecycle;
        let leases = match &db {
            Db::Postgres(pool) => Some(Arc::new(leases::Leases::new(
                pool.clone(),
                config.lease,
                config.fetch_timeout,
            ))),
            Db::Sqlite(_) => None,
        };
        Self {
            inner: Arc::new(Inner {
                leases,
                db,
                writer,
                client,
                config,
                lanes: Mutex::default(),
                fresh: Mutex::default(),
                route_slots: Mutex::default(),
                slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
                routes: RwLock::default(),
                routes_changed: watch::Sender::new(()),
                recovered: watch::Sender::new(None),
                outcomes: watch::Sender::new(0),
                watched: RwLock::default(),
                paused: watch::Sender::new(false),
                tracker,
                shutdown,
                abort,
                metrics,
            }),
        }
    }

    /// Puts every pending delivery in the database back in its lane (at startup). On PostgreSQL the lanes are
    /// shared: the claimer starts and takes the due ones, and relays hear of each other.
    ///
    /// # Errors
    /// The database cannot be read.
    pub async fn load_pending(&self) -> sqlx::Result<usize> {
        if let Some(leases) = &self.inner.leases {
            let inner = &self.inner;
            inner
                .tracker
                .spawn(leases::claimer(inner.clone(), leases.clone()));
            inner
                .tracker
                .spawn(leases::hinter(leases.clone(), inner.shutdown.clone()));
            inner
                .tracker
                .spawn(leases::listener(leases.clone(), inner.shutdown.clone()));
            let count = store::deliveries::count_pending(&inner.db).await?;
            return Ok(usize::try_from(count).unwrap_or(0));
        }
        // What went out before a restart, so that a reply Chatwoot posts late after it is known to be late.
        let since = store::now_ms().saturating_sub(SENT_LOOKBACK_MS);
        let limit = i64::try_from(SENT_TRACKED).unwrap_or(i64::MAX);
        let sent = store::deliveries::sent_in_lanes_since(&self.inner.db, since, limit).await?;
        {
            let mut lanes = self.inner.lanes();
            for (inbox_id, conversation_id, message_id) in sent {
                let key = LaneKey {
                    inbox_id,
                    conversation_id,
                };
                lanes.sent(key, message_id);
            }
        }
        let pending = store::deliveries::list_pending(&self.inner.db).await?;
        let count = pending.len();
        self.enqueue(pending);
        Ok(count)
    }

    /// On PostgreSQL: this relay's part among the relays on the database.
    pub fn leases(&self) -> Option<&Arc<leases::Leases>> {
        self.inner.leases.as_ref()
    }

    /// Appends the deliveries of a commit made at `at` to their lanes, keeping what was stored for their
    /// first attempt while there is room.
    pub fn enqueue_committed(&self, queued: &[(DeliveryId, &NewDelivery)], at: i64) {
        if self.inner.shutdown.is_cancelled() {
            return;
        }
        {
            let mut fresh = self.inner.fresh();
            for (id, d) in queued {
                fresh.keep(*id, d, at);
            }
        }
        if let Some(leases) = &self.inner.leases {
            // The commit marked their lanes: a free one is claimed now (here, or by another relay should this
            // one die first), a held one is read again by its holder.
            leases.wake();
            leases.hint(leases::Hint::Lanes);
            return;
        }
        self.enqueue(queued.iter().map(|(id, d)| d.pending(*id, at)));
    }

    /// Puts deliveries in their lanes, in the order given (each in its place, see [`lane`]), starting lane
    /// tasks as needed.
    pub fn enqueue(&self, queued: impl IntoIterator<Item = PendingRef>) {
        if self.inner.shutdown.is_cancelled() {
            return;
        }
        if let Some(leases) = &self.inner.leases {
            // The store marked their lanes when it made them pending again.
            leases.hint(leases::Hint::Lanes);
            leases.wake();
            return;
        }
        let mut lanes = self.inner.lanes();
        for q in queued {
            let key = LaneKey {
                inbox_id: q.inbox_id,
                conversation_id: q.conversation_id,
            };
            lanes.note_late(key, &q);
            // A lane exists exactly while its one task runs: a new lane gets a task, an existing one is worked
            // by the task it has.
            match lanes.by_key.entry(key) {
                Entry::Occupied(mut lane) => {
                    let ahead = lane.get_mut().insert(q);
                    if ahead > 0 {
                        tracing::info!(delivery_id = %q.id, message_id = q.message_id, ahead, "message sent late by Chatwoot goes ahead of later ones");
                    }
                }
                Entry::Vacant(vacant) => {
                    vacant.insert(Lane::new(q));
                    spawn_lane(&self.inner, key);
                }
            }
        }
    }

    /// Replies their deletion stopped (stored dead in the commit that stored it): no attempt sends them. A head
    /// whose attempt has started is left to its lane, which reads it again before any retry.
    pub fn cancel(&self, ids: &[DeliveryId]) {
        if ids.is_empty() {
            return;
        }
        {
            let mut fresh = self.inner.fresh();
            for id in ids {
                fresh.take(*id);
            }
        }
        for lane in self.inner.lanes().by_key.values_mut() {
            for id in ids {
                lane.cancel(*id);
            }
        }
    }

    /// Drops what is kept in memory of a delivery removed from the database, so that no attempt sends it.
    pub fn forget(&self, id: DeliveryId) {
        self.inner.fresh().take(id);
    }

    /// Changes when a delivery fails an attempt, dies, or is delivered after failing, or is delivered in a
    /// conversation of [`Dispatcher::watch_conversations`].
    pub fn outcomes(&self) -> watch::Receiver<u64> {
        self.inner.outcomes.subscribe()
    }

    /// The conversations whose deliveries are to change [`Dispatcher::outcomes`] even when they go out at
    /// their first attempt (replacing the ones given before).
    pub fn watch_conversations(&self, conversations: HashSet<i64>) {
        *self
            .inner
            .watched
            .write()
            .unwrap_or_else(PoisonError::into_inner) = conversations;
    }

    /// The HTTP client every attempt uses.
    pub fn client(&self) -> reqwest::Client {
        self.inner.client.clone()
    }

    /// Reads every route into memory (at start, and after each change), then tells paused lanes to look
    /// again. Webhooks and attempts read routes from here, not from the database.
    ///
    /// # Errors
    /// The routes cannot be read; the previous ones stay in force.
    pub async fn reload_routes(&self) -> sqlx::Result<()> {
        self.inner.reload_routes().await
    }

    /// Routes were changed here: read them again, and on PostgreSQL tell the other relays and make the lanes that
    /// wait for a route change due.
    ///
    /// # Errors
    /// The routes cannot be read, or the lanes marked.
    pub async fn routes_changed(&self) -> sqlx::Result<()> {
        self.reload_routes().await?;
        if let Some(leases) = &self.inner.leases {
            leases.routes_changed().await?;
        }
        Ok(())
    }

    /// On PostgreSQL: lets every lane this relay holds go, due now, for the other relays (at shutdown, once the
    /// attempts in flight are recorded).
    pub async fn hand_over(&self) {
        if let Some(leases) = &self.inner.leases {
            leases.hand_over().await;
        }
    }

    /// The route of `inbox_id`, as last loaded.
    pub fn route(&self, inbox_id: InboxId) -> Option<Arc<Route>> {
        self.inner.route(inbox_id)
    }

    /// Every route by inbox, as last loaded.
    pub fn routes(&self) -> Arc<HashMap<InboxId, Arc<Route>>> {
        self.inner
            .routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Pauses or resumes all deliveries; attempts in flight finish either way.
    pub fn set_paused(&self, paused: bool) {
        self.inner.paused.send_replace(paused);
    }

    pub fn is_paused(&self) -> bool {
        *self.inner.paused.borrow()
    }
}

/// Starts the task that works `key`'s lane.
fn spawn_lane(inner: &Arc<Inner>, key: LaneKey) {
    inner.tracker.spawn(worker::run_lane(inner.clone(), key));
}

impl Inner {
    /// Whether a delivery in `conversation` is to change the outcomes whatever its attempt.
    fn watched(&self, conversation: Option<i64>) -> bool {
        conversation.is_some_and(|c| {
            self.watched
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(&c)
        })
    }

    async fn reload_routes(&self) -> sqlx::Result<()> {
        let table: HashMap<InboxId, Arc<Route>> = store::routes::list(&self.db)
            .await?
            .into_iter()
            .map(|r| (r.inbox_id, Arc::new(r)))
            .collect();
        *self.routes.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(table);
        self.routes_changed.send_replace(());
        Ok(())
    }

    fn fresh(&self) -> std::sync::MutexGuard<'_, Fresh> {
        self.fresh.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn route(&self, inbox_id: InboxId) -> Option<Arc<Route>> {
        self.routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&inbox_id)
            .cloned()
    }

    fn lanes(&self) -> std::sync::MutexGuard<'_, Lanes> {
        self.lanes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The lane's deliveries as read from the database (PostgreSQL: a lane claimed, or changed by another relay),
    /// in the order of [`lane`]. A head that had started to be sent and is still the head stays started.
    fn replace_lane(&self, key: LaneKey, pending: Vec<PendingRef>) {
        let mut lanes = self.lanes();
        let before = lanes.by_key.get(&key);
        let started = before
            .filter(|lane| lane.is_started())
            .and_then(|lane| lane.head())
            .map(|e| e.id);
        let new: Vec<&PendingRef> = pending
            .iter()
            .filter(|p| !before.is_some_and(|lane| lane.has(p.id)))
            .collect();
        if let Some(before) = before {
            // What left the lane (stopped or sent by another relay) is not sent from a copy kept here.
            let mut fresh = self.fresh();
            for gone in before
                .ids()
                .filter(|id| !pending.iter().any(|p| p.id == *id))
            {
                fresh.take(gone);
            }
        }
        for p in new {
            lanes.note_late(key, p);
        }
        let mut pending = pending.into_iter();
        let Some(first) = pending.next() else {
            lanes.by_key.remove(&key);
            return;
        };
        let mut lane = Lane::new(first);
        for p in pending {
            lane.insert(p);
        }
        if let Some(id) = started {
            lane.start(id);
        }
        lanes.by_key.insert(key, lane);
    }

    /// A lane's message `message_id` was sent by another relay (PostgreSQL), as far as lateness goes.
    fn sent_elsewhere(&self, key: LaneKey, message_id: i64) {
        self.lanes().sent(key, message_id);
    }

    /// The lane's head, the lane kept (PostgreSQL: the lease says when a lane ends).
    fn head_of(&self, key: LaneKey) -> Option<DeliveryId> {
        self.lanes()
            .by_key
            .get(&key)
            .and_then(|lane| lane.head())
            .map(|e| e.id)
    }

    /// Takes a finished delivery out of its lane, the lane kept (PostgreSQL).
    fn remove_entry(&self, key: LaneKey, id: DeliveryId) {
        if let Some(lane) = self.lanes().by_key.get_mut(&key) {
            lane.remove(id);
        }
    }

    /// Forgets a lane no longer held here (PostgreSQL).
    fn drop_lane(&self, key: LaneKey) {
        self.lanes().by_key.remove(&key);
    }

    /// The lane's head; `None` (after removing the lane) when it is empty.
    fn head(&self, key: LaneKey) -> Option<DeliveryId> {
        let mut lanes = self.lanes();
        let head = lanes
            .by_key
            .get(&key)
            .and_then(|lane| lane.head())
            .map(|e| e.id);
        if head.is_none() {
            lanes.by_key.remove(&key);
        }
        head
    }

    /// Removes the finished `id` and returns the next head; when there is none, removes the lane in the same
    /// step, so that the next enqueue starts a new task and never a second one beside this one.
    fn advance(&self, key: LaneKey, id: DeliveryId) -> Option<DeliveryId> {
        let mut lanes = self.lanes();
        let lane = lanes.by_key.get_mut(&key)?;
        lane.remove(id);
        let next = lane.head().map(|e| e.id);
        if next.is_none() {
            lanes.by_key.remove(&key);
        }
        next
    }

    /// Until when the head `id` waits for a message sent late: its arrival plus the reorder window, if that is
    /// still ahead and the head is a message event that has not started.
    fn held_until(&self, key: LaneKey, id: DeliveryId) -> Option<i64> {
        let window = i64::try_from(self.config.reorder_window.as_millis()).unwrap_or(i64::MAX);
        let lanes = self.lanes();
        let lane = lanes.by_key.get(&key)?;
        let head = lane.head().filter(|e| e.id == id && e.order.is_some())?;
        let until = head.received_at.saturating_add(window);
        (window > 0 && !lane.is_started() && until > store::now_ms()).then_some(until)
    }

    /// Whether `id` came after a later reply of its conversation had started to go, and is not stored so yet.
    fn came_late(&self, id: DeliveryId) -> bool {
        self.lanes().late.contains(&id)
    }

    /// Reply `id` is stored as having come late: the feedback is told to mark it.
    fn late_stored(&self, id: DeliveryId) {
        self.lanes().late.remove(&id);
        self.outcomes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Marks the head `id` as being sent, so that nothing goes ahead of it any more; `false` when something
    /// went ahead of it meanwhile.
    fn start(&self, key: LaneKey, id: DeliveryId) -> bool {
        let mut lanes = self.lanes();
        let Some(lane) = lanes.by_key.get_mut(&key) else {
            return false;
        };
        let message_id = lane.head().and_then(|e| e.order).map(|o| o.message_id);
        let started = lane.start(id);
        if let (true, Some(message_id)) = (started, message_id) {
            lanes.sent(key, message_id);
        }
        started
    }

    fn route_slots(&self, inbox_id: InboxId) -> Arc<Semaphore> {
        let mut slots = self
            .route_slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        slots
            .entry(inbox_id)
            .or_insert_with(|| Arc::new(Semaphore::new(MAX_IN_FLIGHT_PER_ROUTE)))
            .clone()
    }
}

/// Conversations tracked for a reply that arrives after a later one was sent, before they are forgotten.
const SENT_TRACKED: usize = 10_000;
/// How far back a relay that starts looks for what its lanes sent: past this, a reply Chatwoot posts late is
/// not told apart from a new one (Chatwoot's queue does not lag that far behind).
const SENT_LOOKBACK_MS: i64 = 24 * 3600 * 1000;

/// The lanes, and the highest message id each conversation has started to send (for the replies that came too
/// late to go in their place: logged, and stored so before they go, see `worker`).
#[derive(Default)]
struct Lanes {
    by_key: HashMap<LaneKey, Lane>,
    sent: HashMap<LaneKey, i64>,
    /// Replies that came late, not stored so yet.
    late: HashSet<DeliveryId>,
}

impl Lanes {
    fn sent(&mut self, key: LaneKey, message_id: i64) {
        if self.sent.len() >= SENT_TRACKED && !self.sent.contains_key(&key) {
            self.sent.clear();
        }
        let highest = self.sent.entry(key).or_insert(message_id);
        *highest = (*highest).max(message_id);
    }

    /// Says so when a new message is older than one its conversation has already started to send: it goes in
    /// arrival order, after the window.
    fn note_late(&mut self, key: LaneKey, pending: &PendingRef) {
        let Some(message_id) = pending.message_id.filter(|_| !pending.is_update) else {
            return;
        };
        if let Some(&later) = self.sent.get(&key).filter(|later| **later > message_id) {
            tracing::warn!(
                delivery_id = %pending.id,
                message_id,
                later_message_id = later,
                conversation_id = key.conversation_id,
                "reply arrived after a later reply of its conversation was sent: sent in arrival order"
            );
            // Sent again by hand or by Retry, it goes after later ones as the agent asked; one that only failed
            // before (read again after a restart, or by the lane's new holder) came late all the same.
            if !pending.by_hand {
                if self.late.len() >= SENT_TRACKED {
                    // Of those, the ones no lane holds any more (stopped, or sent by another relay) are forgotten.
                    let waiting: HashSet<DeliveryId> =
                        self.by_key.values().flat_map(Lane::ids).collect();
                    self.late.retain(|id| waiting.contains(id));
                }
                self.late.insert(pending.id);
            }
        }
    }
}

/// New deliveries waiting for their first attempt, as stored, within [`FRESH_BYTES`] of bodies.
#[derive(Default)]
struct Fresh {
    by_id: HashMap<DeliveryId, Delivery>,
    bytes: usize,
}

impl Fresh {
    fn keep(&mut self, id: DeliveryId, new: &NewDelivery, at: i64) {
        if self.bytes + new.body.len() <= FRESH_BYTES {
            self.bytes += new.body.len();
            self.by_id.insert(id, Delivery::inserted(id, new, at));
        }
    }

    fn take(&mut self, id: DeliveryId) -> Option<Delivery> {
        let delivery = self.by_id.remove(&id)?;
        self.bytes -= delivery.body.len();
        if self.by_id.is_empty() {
            // Give back what a burst grew.
            self.by_id.shrink_to(64);
        }
        Some(delivery)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::deliveries::tests::new_delivery;

    /// A reply older than one its conversation sent already came late, also when it failed once before it was
    /// read again (after a restart, or by a lane's new holder); one put back by hand goes after later ones as the
    /// agent asked.
    #[test]
    fn a_reply_read_again_after_a_failed_attempt_is_still_known_late() {
        let key = LaneKey {
            inbox_id: InboxId(7),
            conversation_id: Some(1),
        };
        let reply = |id: i64, message: i64, attempted: bool, by_hand: bool| PendingRef {
            id: DeliveryId(id),
            inbox_id: InboxId(7),
            conversation_id: Some(1),
            message_id: Some(message),
            is_update: false,
            received_at: 1,
            attempted,
            by_hand,
        };
        let mut lanes = Lanes::default();
        lanes.sent(key, 20);
        lanes.note_late(key, &reply(1, 10, false, false));
        lanes.note_late(key, &reply(2, 11, true, false));
        lanes.note_late(key, &reply(3, 12, true, true));
        lanes.note_late(key, &reply(4, 21, true, false));
        assert_eq!(lanes.late, HashSet::from([DeliveryId(1), DeliveryId(2)]));
    }

    #[test]
    fn fresh_deliveries_stay_within_their_byte_budget() {
        let mut fresh = Fresh::default();
        let mut big = new_delivery(Some(1), None);
        big.body = bytes::Bytes::from(vec![b' '; FRESH_BYTES / 4]);
        for id in 1..=5 {
            fresh.keep(DeliveryId(id), &big, 10);
        }
        assert_eq!(fresh.by_id.len(), 4, "the fifth does not fit");
        assert_eq!(fresh.bytes, FRESH_BYTES);
        assert!(
            fresh.take(DeliveryId(5)).is_none(),
            "read from the database"
        );
        let first = fresh.take(DeliveryId(1)).unwrap();
        assert_eq!(first, Delivery::inserted(DeliveryId(1), &big, 10));
        assert!(fresh.take(DeliveryId(1)).is_none(), "taken once");
        fresh.keep(DeliveryId(6), &big, 11);
        assert!(fresh.by_id.contains_key(&DeliveryId(6)), "room again");
        for id in [2, 3, 4, 6] {
            fresh.take(DeliveryId(id)).unwrap();
        }
        assert_eq!((fresh.by_id.len(), fresh.bytes), (0, 0));
    }
}
