//! Outbound delivery: per-conversation lanes that send stored webhooks to GoWA in arrival order.
//!
//! Each conversation (or, without one, each inbox) is a lane: an in-memory FIFO of pending delivery ids with
//! one task working its head. The database stays the truth: lanes are rebuilt from it at startup, so a crash
//! loses nothing that was acknowledged. Lanes of one inbox share a concurrency budget, so a slow GoWA holds up
//! only its own route. Nothing here polls: a lane task wakes on new work, on its retry time, on a route change,
//! or when its route's GoWA answers again after failing.
//! Must not: call GoWA from anywhere but a lane task, or write SQL (see [`crate::store`]).

pub mod gowa;
pub mod retry;
mod worker;

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use sqlx::SqlitePool;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ids::{DeliveryId, InboxId};
use crate::metrics::Metrics;
use crate::store::deliveries::PendingRef;
use crate::store::routes::Route;
use crate::store::{self, Writer};

/// Attempts in flight across all routes.
const MAX_IN_FLIGHT: usize = 256;
/// Attempts in flight towards one inbox's GoWA.
const MAX_IN_FLIGHT_PER_ROUTE: usize = 32;

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
}

/// Handle to the lanes; cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    pool: SqlitePool,
    writer: Writer,
    client: reqwest::Client,
    config: DeliveryConfig,
    lanes: Mutex<HashMap<LaneKey, VecDeque<DeliveryId>>>,
    route_slots: Mutex<HashMap<InboxId, Arc<Semaphore>>>,
    slots: Arc<Semaphore>,
    /// Every route by inbox, replaced as a whole by [`Dispatcher::reload_routes`].
    routes: RwLock<Arc<HashMap<InboxId, Arc<Route>>>>,
    /// Bumped whenever routes change, so lanes paused on a disabled route look again.
    routes_changed: watch::Sender<()>,
    /// The inbox whose GoWA answered again after failing: its lanes waiting to retry go at once instead of
    /// sitting out their backoff (after a long outage, the schedule could otherwise hold them for hours).
    recovered: watch::Sender<Option<InboxId>>,
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
        pool: SqlitePool,
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
        Self {
            inner: Arc::new(Inner {
                pool,
                writer,
                client,
                config,
                lanes: Mutex::default(),
                route_slots: Mutex::default(),
                slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
                routes: RwLock::default(),
                routes_changed: watch::Sender::new(()),
                recovered: watch::Sender::new(None),
                paused: watch::Sender::new(false),
                tracker,
                shutdown,
                abort,
                metrics,
            }),
        }
    }

    /// Puts every pending delivery in the database back in its lane (at startup).
    ///
    /// # Errors
    /// The database cannot be read.
    pub async fn load_pending(&self) -> sqlx::Result<usize> {
        let pending = store::deliveries::list_pending(&self.inner.pool).await?;
        self.enqueue(&pending);
        Ok(pending.len())
    }

    /// Appends committed deliveries to their lanes, in the order given, starting lane tasks as needed.
    pub fn enqueue(&self, queued: &[PendingRef]) {
        if self.inner.shutdown.is_cancelled() {
            return;
        }
        let mut lanes = self
            .inner
            .lanes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for q in queued {
            let key = LaneKey {
                inbox_id: q.inbox_id,
                conversation_id: q.conversation_id,
            };
            // A lane exists exactly while its one task runs: a new lane gets a task, an existing one is worked
            // by the task it has.
            match lanes.entry(key) {
                Entry::Occupied(mut lane) => lane.get_mut().push_back(q.id),
                Entry::Vacant(vacant) => {
                    vacant.insert(VecDeque::from([q.id]));
                    self.inner
                        .tracker
                        .spawn(worker::run_lane(self.inner.clone(), key));
                }
            }
        }
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
        let table: HashMap<InboxId, Arc<Route>> = store::routes::list(&self.inner.pool)
            .await?
            .into_iter()
            .map(|r| (r.inbox_id, Arc::new(r)))
            .collect();
        *self
            .inner
            .routes
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(table);
        self.inner.routes_changed.send_replace(());
        Ok(())
    }

    /// The route of `inbox_id`, as last loaded.
    pub fn route(&self, inbox_id: InboxId) -> Option<Arc<Route>> {
        self.inner.route(inbox_id)
    }

    /// Pauses or resumes all deliveries; attempts in flight finish either way.
    pub fn set_paused(&self, paused: bool) {
        self.inner.paused.send_replace(paused);
    }

    pub fn is_paused(&self) -> bool {
        *self.inner.paused.borrow()
    }
}

impl Inner {
    fn route(&self, inbox_id: InboxId) -> Option<Arc<Route>> {
        self.routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&inbox_id)
            .cloned()
    }

    /// The lane's head; `None` (after removing the lane) when it is empty.
    fn head(&self, key: LaneKey) -> Option<DeliveryId> {
        let mut lanes = self.lanes.lock().unwrap_or_else(PoisonError::into_inner);
        let head = lanes.get(&key).and_then(|lane| lane.front().copied());
        if head.is_none() {
            lanes.remove(&key);
        }
        head
    }

    /// Removes the finished head `id` and returns the next one; when there is none, removes the lane in the
    /// same step, so that the next enqueue starts a new task and never a second one beside this one.
    fn advance(&self, key: LaneKey, id: DeliveryId) -> Option<DeliveryId> {
        let mut lanes = self.lanes.lock().unwrap_or_else(PoisonError::into_inner);
        let lane = lanes.get_mut(&key)?;
        if lane.front() == Some(&id) {
            lane.pop_front();
        }
        let next = lane.front().copied();
        if next.is_none() {
            lanes.remove(&key);
        }
        next
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
