//! Several relays on one PostgreSQL database: the lanes this relay works are the ones it holds a lease on.
//!
//! Any relay accepts any webhook and any relay works any lane, one relay per lane at a time (see
//! [`crate::store::lanes`]). The claimer takes due lanes that nobody holds (or whose holder's lease ran out) and
//! starts a lane task for each, with the lane's pending deliveries read from the database in the order of
//! [`super::lane`]. Before each look at its head, the task renews its lease (a lost lease ends it before anything
//! is sent) and reads the deliveries again if another relay changed them; an attempt starts only with enough
//! lease left to outlast it, and its outcome is recorded only while the lease is still held (the writer checks the
//! fence). A lane with nothing left is given up only if nothing arrived meanwhile; one that waits long (a retry's
//! backoff, a switched-off route) is let go with its due time, and whichever relay is free then takes it.
//!
//! Nothing polls. The claimer wakes on work committed here, on a hint from another relay (`LISTEN/NOTIFY`, a
//! hint only: after the listener reconnects a claim round runs anyway), and on the next due time or lease end
//! the database knows of. A relay shutting down lets every lane go at once and says so.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::{Inner, LaneKey};
use crate::ids::DeliveryId;
use crate::store::deliveries::{self, PendingRef};
use crate::store::lanes::{self, Claimed, Fence, Key};

/// The channel relays tell each other on; the payload says what changed.
const CHANNEL: &str = "chatgowa";
/// Lanes taken per claim statement.
const CLAIM_BATCH: i64 = 64;
/// Pause after the database failed before the claimer or a lane tries again.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// Hints to the other relays are sent at most this often (several changes, one hint).
const HINT_EVERY: Duration = Duration::from_millis(50);
/// Lease left beyond an attempt's timeout for it to start (the configured lease keeps more: `LEASE_MARGIN`).
const ATTEMPT_MARGIN: Duration = Duration::from_secs(1);
/// A retry due sooner than this part of the lease waits in its lane; a later one lets the lane go.
const KEEP_FOR_RETRY: u32 = 3;

/// What another relay said changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    /// Lanes were let go or became due: claim.
    Lanes,
    /// Routes changed: read them again.
    Routes,
    /// Chatwoot links changed (their webhook secrets): read them again.
    Links,
    /// Chatwoot was told of an outage: any relay's delivery in its conversation may end it.
    Outages,
}

impl Hint {
    fn payload(self) -> &'static str {
        match self {
            Self::Lanes => "lanes",
            Self::Routes => "routes",
            Self::Links => "links",
            Self::Outages => "outages",
        }
    }
}

/// This relay's part in sharing lanes with the others on one database.
pub struct Leases {
    pool: PgPool,
    /// This relay in `lanes.owner`: random per process, so a restarted relay holds nothing of its earlier life.
    owner: Arc<str>,
    lease: Duration,
    /// An attempt starts only with this much lease left (the attempt's timeout and a margin): no other relay
    /// takes the lane over while its request may still be in flight.
    min_left: Duration,
    /// Wakes the claimer.
    wake: Notify,
    /// What to tell the other relays, collected until the hint task sends it.
    pending_hints: watch::Sender<Vec<Hint>>,
    /// Bumped when another relay says routes or links changed (or it may have: the listener reconnected);
    /// `app` reads both again.
    pub heard: watch::Sender<u64>,
    /// Bumped when another relay told Chatwoot of an outage (or may have); the feedback task looks again.
    pub outages: watch::Sender<u64>,
    held: std::sync::Mutex<HashMap<LaneKey, Held>>,
}

/// A lane held: its fencing token, the version of its deliveries as last read, and until when the lease lasts
/// (by this process's clock, from the database's answer).
#[derive(Debug, Clone, Copy)]
struct Held {
    epoch: i64,
    version: i64,
    until: Instant,
}

impl Leases {
    pub fn new(pool: PgPool, lease: Duration, fetch_timeout: Duration) -> Self {
        let owner: String = format!("{:016x}", rand::random::<u64>());
        Self {
            pool,
            owner: owner.into(),
            lease,
            min_left: fetch_timeout + ATTEMPT_MARGIN,
            wake: Notify::new(),
            pending_hints: watch::Sender::new(Vec::new()),
            heard: watch::Sender::new(0),
            outages: watch::Sender::new(0),
            held: std::sync::Mutex::default(),
        }
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)
    }

    /// The claim `epoch` of `key`, while this relay holds it (a task of an earlier claim finds none).
    fn held_claim(&self, key: LaneKey, epoch: i64) -> Option<Held> {
        self.held().get(&key).copied().filter(|h| h.epoch == epoch)
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<LaneKey, Held>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Wakes the claimer (new work committed here).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Tells the other relays, soon.
    pub fn hint(&self, hint: Hint) {
        self.pending_hints.send_modify(|h| {
            if !h.contains(&hint) {
                h.push(hint);
            }
        });
    }

    /// The fence for writes made under the claim `epoch` of a lane.
    pub fn fence(&self, key: LaneKey, epoch: i64) -> Fence {
        Fence {
            key: lane_key(key),
            owner: self.owner.clone(),
            epoch,
        }
    }

    /// Makes every lane waiting for a route change due, and tells the other relays to read routes again.
    pub async fn routes_changed(&self) -> sqlx::Result<()> {
        lanes::wake_paused(&self.pool).await?;
        self.hint(Hint::Routes);
        self.hint(Hint::Lanes);
        self.wake();
        Ok(())
    }

    /// The inbox's GoWA answers again: its lanes waiting for a retry go now, here or at another relay.
    pub async fn inbox_recovered(&self, inbox_id: crate::ids::InboxId) {
        match lanes::wake_inbox(&self.pool, inbox_id).await {
            Ok(0) => {}
            Ok(_) => {
                self.hint(Hint::Lanes);
                self.wake();
            }
            Err(e) => tracing::warn!(error = %e, "cannot make the recovered inbox's lanes due"),
        }
    }

    /// This relay's name among the relays on the database (in `lanes.owner`).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The pool, for the tasks `app` starts.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Lets every lane of this relay go, due now, and tells the others (shutdown).
    pub async fn hand_over(&self) {
        match lanes::release_all(&self.pool, &self.owner).await {
            Ok(released) => {
                tracing::info!(lanes = released, "lanes handed over to the other relays");
                let _ = notify(&self.pool, &[Hint::Lanes]).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot hand lanes over; they are taken over when the lease ends")
            }
        }
    }
}

pub(super) fn lane_key(key: LaneKey) -> Key {
    Key::of(key.inbox_id, key.conversation_id)
}

fn local_key(key: Key) -> LaneKey {
    LaneKey {
        inbox_id: key.inbox_id,
        conversation_id: (key.conversation_id != 0).then_some(key.conversation_id),
    }
}

/// The claimer: claim rounds whenever something may have become claimable, sleeping in between.
pub(super) async fn claimer(inner: Arc<Inner>, leases: Arc<Leases>) {
    loop {
        let wait = match claim_round(&inner, &leases).await {
            Ok(next) => next.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
            Err(e) => {
                tracing::error!(error = %e, "database error while claiming lanes; trying again");
                Some(RETRY_PAUSE)
            }
        };
        let sleep = async {
            match wait {
                Some(wait) => tokio::time::sleep(wait).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = sleep => {}
            () = leases.wake.notified() => {}
            () = inner.shutdown.cancelled() => return,
        }
    }
}

/// Claims what is due, starts a task per lane, and says how long until something else becomes claimable.
async fn claim_round(inner: &Arc<Inner>, leases: &Leases) -> sqlx::Result<Option<i64>> {
    loop {
        if inner.shutdown.is_cancelled() {
            return Ok(None);
        }
        let claimed =
            lanes::claim(&leases.pool, &leases.owner, leases.lease_ms(), CLAIM_BATCH).await?;
        for lane in &claimed {
            take(inner, leases, *lane).await?;
        }
        if !claimed.is_empty() {
            // Others learn of these leases, so that they take the lanes over should this relay die.
            leases.hint(Hint::Lanes);
        }
        if claimed.len() < usize::try_from(CLAIM_BATCH).unwrap_or(usize::MAX) {
            break;
        }
    }
    lanes::next_claimable_in(&leases.pool).await
}

/// Starts working a claimed lane: its pending deliveries into memory, a task for it.
async fn take(inner: &Arc<Inner>, leases: &Leases, claimed: Claimed) -> sqlx::Result<()> {
    let key = local_key(claimed.key);
    let until = Instant::now() + leases.lease;
    let pending = deliveries::pending_in_lane(&leases.pool, claimed.key).await?;
    tracing::debug!(inbox_id = %key.inbox_id, conversation_id = key.conversation_id, epoch = claimed.epoch, pending = pending.len(), "lane claimed");
    leases.held().insert(
        key,
        Held {
            epoch: claimed.epoch,
            version: claimed.version,
            until,
        },
    );
    learn_what_went_out(inner, leases, key, &pending).await?;
    inner.replace_lane(key, pending);
    super::spawn_lane(inner, key);
    Ok(())
}

/// Before a lane's new replies take their places: the later messages of the conversation that went out already,
/// through any relay (this one's memory knows only its own), so that a reply Chatwoot posted late is known late.
async fn learn_what_went_out(
    inner: &Inner,
    leases: &Leases,
    key: LaneKey,
    pending: &[PendingRef],
) -> sqlx::Result<()> {
    let oldest_new = pending
        .iter()
        .filter(|p| !p.by_hand && !p.is_update)
        .filter_map(|p| p.message_id)
        .min();
    let Some(oldest_new) = oldest_new else {
        return Ok(());
    };
    if let Some(sent) =
        deliveries::sent_in_lane_above(&leases.pool, lane_key(key), oldest_new).await?
    {
        inner.sent_elsewhere(key, sent);
    }
    Ok(())
}

/// Before each look at a lane's head: the lease (of the claim `epoch`) renewed and the deliveries read again if
/// they changed. `None` when the lane is done here: lost to another relay, or given up empty.
pub(super) async fn next_head(
    inner: &Inner,
    leases: &Leases,
    key: LaneKey,
    epoch: i64,
) -> Option<DeliveryId> {
    loop {
        match sync(inner, leases, key, epoch).await {
            Ok(next) => return next,
            Err(e) => {
                tracing::error!(error = %e, "database error while renewing a lane; retrying");
                tokio::select! {
                    () = tokio::time::sleep(RETRY_PAUSE) => {}
                    () = inner.shutdown.cancelled() => return None,
                }
            }
        }
    }
}

async fn sync(
    inner: &Inner,
    leases: &Leases,
    key: LaneKey,
    epoch: i64,
) -> sqlx::Result<Option<DeliveryId>> {
    loop {
        // A task of an earlier claim (lost, then the lane claimed again here) leaves the lane to the new one.
        let Some(held) = leases.held_claim(key, epoch) else {
            return Ok(None);
        };
        let Some(version) = renew_and_read(inner, leases, key, held).await? else {
            return Ok(None);
        };
        if let Some(head) = inner.head_of(key) {
            return Ok(Some(head));
        }
        if lanes::give_up_empty(
            &leases.pool,
            lane_key(key),
            &leases.owner,
            held.epoch,
            version,
        )
        .await?
        {
            forget(inner, leases, key, held.epoch);
            return Ok(None);
        }
        // Something arrived (or the lane was lost) since the deliveries were read: the renewal says which.
    }
}

/// Renews the lease of `held` and reads the lane's deliveries again if they changed; the version read, `None`
/// when the lane was lost.
async fn renew_and_read(
    inner: &Inner,
    leases: &Leases,
    key: LaneKey,
    held: Held,
) -> sqlx::Result<Option<i64>> {
    let renewed = lanes::renew(
        &leases.pool,
        lane_key(key),
        &leases.owner,
        held.epoch,
        leases.lease_ms(),
    )
    .await?;
    let Some(renewed) = renewed else {
        tracing::warn!(inbox_id = %key.inbox_id, conversation_id = key.conversation_id, "lane taken over by another relay");
        forget(inner, leases, key, held.epoch);
        return Ok(None);
    };
    let until = Instant::now() + Duration::from_millis(u64::try_from(renewed.left_ms).unwrap_or(0));
    if renewed.version != held.version {
        let pending = deliveries::pending_in_lane(&leases.pool, lane_key(key)).await?;
        learn_what_went_out(inner, leases, key, &pending).await?;
        inner.replace_lane(key, pending);
    }
    let version = renewed.version;
    leases.held().insert(
        key,
        Held {
            until,
            version,
            ..held
        },
    );
    Ok(Some(version))
}

/// Whether the lease of the claim `epoch` has enough left for an attempt, renewing it if need be; `false` when
/// the lane was lost (or the database cannot say).
pub(super) async fn lease_for_attempt(
    inner: &Inner,
    leases: &Leases,
    key: LaneKey,
    epoch: i64,
) -> bool {
    let Some(held) = leases.held_claim(key, epoch) else {
        return false;
    };
    if held.until.saturating_duration_since(Instant::now()) >= leases.min_left {
        return true;
    }
    tracing::debug!(inbox_id = %key.inbox_id, conversation_id = key.conversation_id, "renewing the lease before an attempt");
    match lanes::renew(
        &leases.pool,
        lane_key(key),
        &leases.owner,
        held.epoch,
        leases.lease_ms(),
    )
    .await
    {
        Ok(Some(renewed)) => {
            let left = Duration::from_millis(u64::try_from(renewed.left_ms).unwrap_or(0));
            leases.held().insert(
                key,
                Held {
                    until: Instant::now() + left,
                    ..held
                },
            );
            left >= leases.min_left
        }
        Ok(None) => {
            forget(inner, leases, key, held.epoch);
            false
        }
        Err(e) => {
            tracing::error!(error = %e, "database error while renewing a lane before an attempt");
            false
        }
    }
}

/// Whether a retry due in `wait` is waited for in the lane; a longer wait lets the lane go.
pub(super) fn keeps_for(leases: &Leases, wait: Duration) -> bool {
    wait < renew_every(leases)
}

/// The longest a lane task waits without renewing its lease.
pub(super) fn renew_every(leases: &Leases) -> Duration {
    leases.lease / KEEP_FOR_RETRY
}

/// Lets a lane go with work left, due in `due_in` (`None`: when routes change), and tells the other relays.
pub(super) async fn let_go(
    inner: &Inner,
    leases: &Leases,
    key: LaneKey,
    epoch: i64,
    due_in: Option<Duration>,
) {
    let Some(held) = leases.held_claim(key, epoch) else {
        return;
    };
    let due_ms = due_in.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    match lanes::release(
        &leases.pool,
        lane_key(key),
        &leases.owner,
        held.epoch,
        due_ms,
    )
    .await
    {
        Ok(_) => {
            forget(inner, leases, key, held.epoch);
            leases.hint(Hint::Lanes);
            leases.wake();
        }
        // Kept: the lane is worked again after the pause, or taken over when the lease ends.
        Err(e) => tracing::error!(error = %e, "database error while letting a lane go"),
    }
}

/// Forgets a lane this relay no longer holds (unless a newer claim of it is held meanwhile).
pub(super) fn forget(inner: &Inner, leases: &Leases, key: LaneKey, epoch: i64) {
    let mut held = leases.held();
    if held.get(&key).is_some_and(|h| h.epoch == epoch) {
        held.remove(&key);
        inner.drop_lane(key);
    }
}

/// The epoch under which this relay holds `key`, if it does.
pub(super) fn epoch_of(leases: &Leases, key: LaneKey) -> Option<i64> {
    leases.held().get(&key).map(|h| h.epoch)
}

/// Sends what is to be told to the other relays, at most every [`HINT_EVERY`].
pub(super) async fn hinter(leases: Arc<Leases>, stop: tokio_util::sync::CancellationToken) {
    let mut pending = leases.pending_hints.subscribe();
    loop {
        tokio::select! {
            changed = pending.wait_for(|h| !h.is_empty()) => if changed.is_err() { return },
            () = stop.cancelled() => return,
        }
        let hints = leases.pending_hints.send_replace(Vec::new());
        if let Err(e) = notify(&leases.pool, &hints).await {
            tracing::warn!(error = %e, "cannot tell the other relays; they find out at their next look");
        }
        tokio::time::sleep(HINT_EVERY).await;
    }
}

async fn notify(pool: &PgPool, hints: &[Hint]) -> sqlx::Result<()> {
    for hint in hints {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(hint.payload())
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// Listens to the other relays. A notification is a hint: what was sent while the listener reconnected is lost,
/// so after a reconnect everything is looked at again.
pub(super) async fn listener(leases: Arc<Leases>, stop: tokio_util::sync::CancellationToken) {
    let mut listener = loop {
        match PgListener::connect_with(&leases.pool).await {
            Ok(mut l) => match l.listen(CHANNEL).await {
                Ok(()) => break l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen to the other relays; trying again")
                }
            },
            Err(e) => tracing::warn!(error = %e, "cannot listen to the other relays; trying again"),
        }
        tokio::select! {
            () = tokio::time::sleep(RETRY_PAUSE) => {}
            () = stop.cancelled() => return,
        }
    };
    loop {
        let received = tokio::select! {
            r = listener.try_recv() => r,
            () = stop.cancelled() => return,
        };
        let heard = match received {
            Ok(Some(n)) => match n.payload() {
                "routes" => vec![Hint::Routes],
                "links" => vec![Hint::Links],
                "outages" => vec![Hint::Outages],
                _ => vec![Hint::Lanes],
            },
            // The connection was lost (it reconnects on the next call): anything may have been missed.
            Ok(None) => vec![Hint::Routes, Hint::Links, Hint::Outages, Hint::Lanes],
            Err(e) => {
                tracing::warn!(error = %e, "listening to the other relays failed; trying again");
                tokio::select! {
                    () = tokio::time::sleep(RETRY_PAUSE) => {}
                    () = stop.cancelled() => return,
                }
                vec![Hint::Routes, Hint::Links, Hint::Outages, Hint::Lanes]
            }
        };
        if heard
            .iter()
            .any(|h| matches!(h, Hint::Routes | Hint::Links))
        {
            leases.heard.send_modify(|n| *n = n.wrapping_add(1));
        }
        if heard.contains(&Hint::Outages) {
            leases.outages.send_modify(|n| *n = n.wrapping_add(1));
        }
        leases.wake();
    }
}
