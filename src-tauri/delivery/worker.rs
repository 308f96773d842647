//! The lane task: take the head, wait for its time and its route, send it, record the attempt, move on.
//!
//! One look at the head is a [`step`] of four phases, each its own function and its own debug span (named
//! after it, with the delivery id), so that a slow or stuck attempt shows where it is:
//! [`claim`] (read the head, wait for its time, its route and a free slot) → [`send`] (the HTTP attempt to
//! GoWA) → [`classify`] (delivered, retry, dead or interrupted, by the rules of [`retry`]) → [`record`] (the
//! recovery event, metrics, the log line, then the attempt and the next state through the writer).

use std::ops::ControlFlow::{self, Break, Continue};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use tokio::sync::{AcquireError, OwnedSemaphorePermit, watch};

use super::gowa::{self, AttemptResult, Target};
use super::retry::{self, Class};
use super::{Inner, LaneKey, Outcome, leases};
use crate::ids::{DeliveryId, InboxId};
use crate::store::attempts::{Attempt, Trigger};
use crate::store::deliveries::{self, Delivery, DeliveryStatus, NextState};
use crate::store::lanes::Fence;
use crate::store::now_ms;
use crate::store::routes::Route;
use crate::store::writer::WriteError;

/// Pause before trying the database again after it failed.
const DB_RETRY_PAUSE: Duration = Duration::from_secs(1);
/// On PostgreSQL, a head read longer ago than this before its attempt starts is read again: another relay may
/// have stored its deletion meanwhile (on SQLite the writer tells the lanes at once, see `Dispatcher::cancel`).
const READ_AGAIN_AFTER: Duration = Duration::from_millis(250);

enum Step {
    /// The head is finished (delivered, dead or gone): move to the next one.
    Done,
    /// Look at the same head again (it was rescheduled, or its route changed).
    Again,
    /// Shutting down, or (PostgreSQL) the lane is no longer this task's: let go or taken over.
    Stop,
}

/// A lane task's lane, and on PostgreSQL the claim it works under.
#[derive(Debug, Clone, Copy)]
struct Task {
    key: LaneKey,
    /// The epoch of the lease (PostgreSQL); `None` on SQLite.
    epoch: Option<i64>,
}

pub(super) async fn run_lane(inner: Arc<Inner>, key: LaneKey) {
    let mut route_changes = inner.routes_changed.subscribe();
    let task = Task {
        key,
        epoch: inner
            .leases
            .as_deref()
            .and_then(|leases| leases::epoch_of(leases, key)),
    };
    let mut next = next_head(&inner, task, None).await;
    while let Some(id) = next {
        if inner.shutdown.is_cancelled() {
            return;
        }
        next = match step(&inner, task, id, &mut route_changes).await {
            Step::Done => next_head(&inner, task, Some(id)).await,
            // The head again: the same one, unless a reply sent late went ahead of it.
            Step::Again => next_head(&inner, task, None).await,
            Step::Stop => return,
        };
    }
}

/// The lane's head after `finished` (if any) left it. On PostgreSQL the lease is renewed first and the lane read
/// again if another relay changed it; `None` when the lane is done here.
async fn next_head(inner: &Inner, task: Task, finished: Option<DeliveryId>) -> Option<DeliveryId> {
    let (Some(leases), Some(epoch)) = (inner.leases.as_deref(), task.epoch) else {
        return match finished {
            Some(id) => inner.advance(task.key, id),
            None => inner.head(task.key),
        };
    };
    if let Some(id) = finished {
        inner.remove_entry(task.key, id);
    }
    leases::next_head(inner, leases, task.key, epoch).await
}

/// The fence of the task's writes (PostgreSQL).
fn fence(inner: &Inner, task: Task) -> Option<Fence> {
    Some(inner.leases.as_deref()?.fence(task.key, task.epoch?))
}

/// Lets the lane go with work left (PostgreSQL), due in `due_in`; the task ends.
async fn let_go(inner: &Inner, task: Task, due_in: Option<Duration>) -> Step {
    if let (Some(leases), Some(epoch)) = (inner.leases.as_deref(), task.epoch) {
        leases::let_go(inner, leases, task.key, epoch, due_in).await;
    }
    Step::Stop
}

/// One look at the head `id`: claim → send → classify → record. A claim that cannot go on (the head is
/// finished, not due, paused, or the lane stops) ends the step early, before anything is sent.
async fn step(
    inner: &Inner,
    task: Task,
    id: DeliveryId,
    route_changes: &mut watch::Receiver<()>,
) -> Step {
    let claimed = match claim(inner, task, id, route_changes).await {
        Continue(claimed) => claimed,
        Break(step) => return step,
    };
    let sent = send(inner, claimed).await;
    let verdict = classify(inner, sent);
    record(inner, task, verdict).await
}

/// The route's slot and the global one, held only while the attempt is in flight.
type Slots = (
    Result<OwnedSemaphorePermit, AcquireError>,
    Result<OwnedSemaphorePermit, AcquireError>,
);

/// A head that is pending, due, routed to an enabled GoWA, and holds its slots: ready to send.
struct Claimed {
    delivery: Delivery,
    route: Arc<Route>,
    target: Target,
    slots: Slots,
}

/// Claim: holds a new message for the reorder window, takes the head as stored, waits until it is due,
/// resolves its route, waits out a pause, takes a slot and marks the head started. Breaks with the step to take
/// instead when the head is finished or dead, must be looked at again (a reply sent late went ahead of it), or
/// the lane stops. The slot comes last so that a head waiting for its time, its route or a resume holds none,
/// and cannot starve the lanes that are ready to send.
#[tracing::instrument(name = "claim", level = "debug", skip_all, fields(delivery_id = %id))]
async fn claim(
    inner: &Inner,
    task: Task,
    id: DeliveryId,
    route_changes: &mut watch::Receiver<()>,
) -> ControlFlow<Step, Claimed> {
    hold_for_late_replies(inner, task.key, id).await?;
    // Marked seen before the route is read, so that a change from here on wakes a lane paused on it.
    route_changes.borrow_and_update();
    let delivery = read_head(inner, id).await?;
    let read_at = tokio::time::Instant::now();
    wait_until_due(inner, task, &delivery).await?;
    let (route, target) = resolve_route(inner, task, &delivery, route_changes).await?;
    wait_unpaused(inner).await?;
    give_up_when_too_old(inner, task, &delivery).await?;
    let slots = take_slots(inner, delivery.inbox_id).await?;
    if let (Some(leases), Some(epoch)) = (inner.leases.as_deref(), task.epoch)
        && !leases::lease_for_attempt(inner, leases, task.key, epoch).await
    {
        // Lost (the next look ends the task), or the database cannot say: nothing is sent.
        return Break(Step::Again);
    }
    still_pending_after_waiting(inner, id, read_at).await?;
    store_late_arrival(inner, id).await?;
    if !inner.start(task.key, id) {
        return Break(Step::Again);
    }
    Continue(Claimed {
        delivery,
        route,
        target,
        slots,
    })
}

/// Holds a new message event until the reorder window after its arrival has passed, then has the lane look
/// at its head again: a lower message id of the conversation that arrived meanwhile is the head now.
async fn hold_for_late_replies(inner: &Inner, key: LaneKey, id: DeliveryId) -> ControlFlow<Step> {
    let Some(until) = inner.held_until(key, id) else {
        return Continue(());
    };
    let mut wait = Duration::from_millis(u64::try_from(until - now_ms()).unwrap_or(0));
    if let Some(leases) = inner.leases.as_deref() {
        // A long window is waited out in parts, the lease renewed at each (the head is looked at again).
        wait = wait.min(leases::renew_every(leases));
    }
    tokio::select! {
        () = tokio::time::sleep(wait) => Break(Step::Again),
        () = inner.shutdown.cancelled() => Break(Step::Stop),
    }
}

/// The head as stored, if it is still pending; a finished or removed one is done.
async fn read_head(inner: &Inner, id: DeliveryId) -> ControlFlow<Step, Delivery> {
    // A new delivery's first look uses what the writer stored; any later one reads the database.
    let fresh = inner.fresh().take(id);
    let stored = match fresh {
        Some(d) => Ok(Some(d)),
        None => deliveries::find(&inner.db, id).await,
    };
    match stored {
        Ok(Some(d)) if d.status == DeliveryStatus::Pending => Continue(d),
        Ok(_) => Break(Step::Done),
        Err(err) => Break(db_trouble(inner, "reading a delivery", &err).await),
    }
}

/// On PostgreSQL, a head that waited since it was read (for its slot, for GoWA to come back) is read again before
/// it goes: one stopped meanwhile (its deletion stored by any relay) is done.
async fn still_pending_after_waiting(
    inner: &Inner,
    id: DeliveryId,
    read_at: tokio::time::Instant,
) -> ControlFlow<Step> {
    let Some(leases) = inner.leases.as_deref() else {
        return Continue(());
    };
    if read_at.elapsed() < READ_AGAIN_AFTER {
        return Continue(());
    }
    match deliveries::is_pending(leases.pool(), id).await {
        Ok(true) => Continue(()),
        Ok(false) => Break(Step::Done),
        Err(err) => Break(db_trouble(inner, "reading a delivery", &err).await),
    }
}

/// A reply that came after a later reply of its conversation had started to go is stored so before it goes: its
/// agent is told, by any relay, also when this one is gone before its feedback could mark it.
async fn store_late_arrival(inner: &Inner, id: DeliveryId) -> ControlFlow<Step> {
    if !inner.came_late(id) {
        return Continue(());
    }
    match deliveries::mark_arrived_late(&inner.db, id).await {
        Ok(()) => {
            inner.late_stored(id);
            Continue(())
        }
        Err(err) => Break(db_trouble(inner, "storing a reply that came late", &err).await),
    }
}

/// Waits for the head's retry time. When the time is up the head is looked at again (it may have changed
/// meanwhile); when its GoWA is seen to work again, the attempt goes at once. On PostgreSQL a long wait lets
/// the lane go, due then, rather than holding it.
async fn wait_until_due(inner: &Inner, task: Task, delivery: &Delivery) -> ControlFlow<Step> {
    let wait = delivery.next_attempt_at - now_ms();
    if wait > 0 {
        let wait = Duration::from_millis(wait.unsigned_abs());
        if let Some(leases) = inner.leases.as_deref()
            && !leases::keeps_for(leases, wait)
        {
            return Break(let_go(inner, task, Some(wait)).await);
        }
        match backoff(inner, delivery.inbox_id, wait).await {
            Backoff::Elapsed => return Break(Step::Again),
            Backoff::Recovered => {}
            Backoff::Stop => return Break(Step::Stop),
        }
    }
    Continue(())
}

/// The head's route and where to send it. Without a usable route the delivery is dead; a disabled route holds
/// the lane until routes change.
async fn resolve_route(
    inner: &Inner,
    task: Task,
    delivery: &Delivery,
    route_changes: &mut watch::Receiver<()>,
) -> ControlFlow<Step, (Arc<Route>, Target)> {
    let mut route = inner.route(delivery.inbox_id);
    if inner.leases.is_some() && !route.as_ref().is_some_and(|r| r.enabled) {
        // Another relay may have changed it a moment ago: the database decides, not this relay's copy.
        if let Err(err) = inner.reload_routes().await {
            return Break(db_trouble(inner, "reading routes", &err).await);
        }
        route = inner.route(delivery.inbox_id);
    }
    let Some(route) = route else {
        let reason = format!("no route for inbox {}", delivery.inbox_id);
        return Break(finish_dead(inner, task, delivery.id, reason).await);
    };
    if !route.enabled && inner.leases.is_some() {
        // Due again when routes change (at any relay).
        return Break(let_go(inner, task, None).await);
    }
    if !route.enabled {
        // Paused until the route is enabled again (or changed in another way).
        return Break(tokio::select! {
            changed = route_changes.changed() => if changed.is_ok() { Step::Again } else { Step::Stop },
            () = inner.shutdown.cancelled() => Step::Stop,
        });
    }
    match Target::parse(&route.webhook_url) {
        Ok(target) => Continue((route, target)),
        Err(e) => Break(
            finish_dead(
                inner,
                task,
                delivery.id,
                format!("invalid webhook URL: {e}"),
            )
            .await,
        ),
    }
}

/// While deliveries are paused, waits for the resume, then has the head looked at again.
async fn wait_unpaused(inner: &Inner) -> ControlFlow<Step> {
    if !*inner.paused.borrow() {
        return Continue(());
    }
    let mut paused = inner.paused.subscribe();
    tokio::select! {
        _ = paused.wait_for(|p| !p) => {}
        () = inner.shutdown.cancelled() => return Break(Step::Stop),
    }
    // Things may have changed while paused: look at the head again.
    Break(Step::Again)
}

/// A head that waited past the maximum age without being sent (its route switched off, deliveries paused, its
/// lane held up that long) is not sent days late: it is dead, and a linked Chatwoot marks it failed and says why.
/// A retry someone asked for (the panel, Chatwoot's Retry) is their decision and goes.
async fn give_up_when_too_old(inner: &Inner, task: Task, delivery: &Delivery) -> ControlFlow<Step> {
    if delivery.trigger == Trigger::Manual
        || !retry::too_old(now_ms(), delivery.received_at, inner.config.max_age)
    {
        return Continue(());
    }
    Break(finish_dead(inner, task, delivery.id, retry::TOO_OLD.to_owned()).await)
}

/// Takes a slot of the inbox's route and one of the global budget, unless shutdown comes first.
async fn take_slots(inner: &Inner, inbox_id: InboxId) -> ControlFlow<Step, Slots> {
    let route_slots = inner.route_slots(inbox_id);
    tokio::select! {
        slots = async { (route_slots.acquire_owned().await, inner.slots.clone().acquire_owned().await) } => Continue(slots),
        () = inner.shutdown.cancelled() => Break(Step::Stop),
    }
}

/// A claimed head after its HTTP attempt.
struct Sent {
    delivery: Delivery,
    attempt_no: i64,
    started_at: i64,
    /// `None` when abort abandoned the attempt in flight: its response, if any, was not seen.
    result: Option<AttemptResult>,
}

/// Send: the HTTP attempt to GoWA. The slots are given back as soon as it ends, before anything is recorded,
/// so that a slow database does not hold up the other lanes of the route.
#[tracing::instrument(name = "send", level = "debug", skip_all, fields(delivery_id = %claimed.delivery.id))]
async fn send(inner: &Inner, claimed: Claimed) -> Sent {
    let Claimed {
        delivery,
        route,
        target,
        slots,
    } = claimed;
    let attempt_no = delivery.attempts + 1;
    let started_at = now_ms();
    let request = gowa::Request::delivery(&delivery, attempt_no);
    let result = tokio::select! {
        r = gowa::send(&inner.client, &target, route.secret.as_deref(), request) => Some(r),
        () = inner.abort.cancelled() => None,
    };
    drop(slots);
    Sent {
        delivery,
        attempt_no,
        started_at,
        result,
    }
}

/// What an attempt means: the row to record, the delivery's next state, and the outcome counted.
struct Verdict {
    delivery: Delivery,
    attempt: Attempt,
    next: NextState,
    outcome: Outcome,
}

/// Classify: turns the attempt into its verdict (delivered, retry, dead, or interrupted by shutdown) by the
/// rules of [`retry`]; nothing is written or announced yet.
#[tracing::instrument(name = "classify", level = "debug", skip_all, fields(delivery_id = %sent.delivery.id))]
fn classify(inner: &Inner, sent: Sent) -> Verdict {
    let Sent {
        delivery,
        attempt_no,
        started_at,
        result,
    } = sent;
    let cut_short = result.is_none();
    let (attempt, next) = match result {
        Some(result) => judge(inner, &delivery, attempt_no, started_at, result),
        None => interrupted(&delivery, attempt_no, started_at),
    };
    // An interrupted attempt is also a retry, but is counted apart: it says nothing about GoWA.
    let outcome = match next {
        _ if cut_short => Outcome::Interrupted,
        NextState::Delivered => Outcome::Delivered,
        NextState::RetryAt(_) => Outcome::Retry,
        NextState::Dead => Outcome::Dead,
    };
    Verdict {
        delivery,
        attempt,
        next,
        outcome,
    }
}

/// A delivery after failing: the inbox's GoWA answers again, so its lanes waiting to retry go now (here, or at
/// whichever relay takes them on PostgreSQL).
fn announce_recovery(inner: &Inner, inbox: InboxId) {
    inner.recovered.send_replace(Some(inbox));
    if let Some(leases) = &inner.leases {
        let leases = leases.clone();
        tokio::spawn(async move { leases.inbox_recovered(inbox).await });
    }
}

/// Record: announces a recovery, counts and logs the attempt, then writes it and the delivery's next state
/// through the writer, retrying the write until it lands or the writer stops. Only after the write does the
/// lane move on, so a crash before it repeats the attempt rather than losing it.
#[tracing::instrument(name = "record", level = "debug", skip_all, fields(delivery_id = %verdict.delivery.id))]
async fn record(inner: &Inner, task: Task, verdict: Verdict) -> Step {
    let Verdict {
        delivery,
        attempt,
        next,
        outcome,
    } = verdict;
    let retry_in_ms = match next {
        NextState::RetryAt(at) => Some(at - now_ms()),
        NextState::Delivered | NextState::Dead => None,
    };
    if next == NextState::Delivered && attempt.attempt > 1 {
        announce_recovery(inner, delivery.inbox_id);
    }
    inner.metrics.attempt(
        outcome.as_str(),
        attempt.ambiguous,
        attempt.duration_ms as f64 / 1000.0,
    );
    tracing::info!(
        delivery_id = %delivery.id,
        inbox_id = %delivery.inbox_id,
        conversation_id = delivery.conversation_id,
        attempt = attempt.attempt,
        status = attempt.status_code,
        duration_ms = attempt.duration_ms,
        outcome = %outcome.as_str(),
        ambiguous = attempt.ambiguous,
        retry_in_ms,
        error = attempt.error.as_deref(),
        "delivery attempt"
    );
    loop {
        match inner
            .writer
            .record_attempt(attempt.clone(), next, fence(inner, task))
            .await
        {
            Ok(()) => break,
            Err(WriteError::Stopped) => return Step::Stop,
            Err(WriteError::LaneLost) => return lost(inner, task),
            Err(err) => {
                if let Step::Stop = db_trouble(inner, "recording an attempt", &err).await {
                    return Step::Stop;
                }
            }
        }
    }
    if next != NextState::Delivered
        || attempt.attempt > 1
        || inner.watched(delivery.conversation_id)
    {
        inner.outcomes.send_modify(|n| *n = n.wrapping_add(1));
    }
    match next {
        NextState::RetryAt(_) => Step::Again,
        NextState::Delivered | NextState::Dead => Step::Done,
    }
}

/// Turns a response into the attempt row and the delivery's next state.
fn judge(
    inner: &Inner,
    delivery: &Delivery,
    attempt_no: i64,
    started_at: i64,
    result: AttemptResult,
) -> (Attempt, NextState) {
    let next = match retry::classify(result.status, result.timed_out) {
        Class::Success => NextState::Delivered,
        // A retry asked for by hand is one attempt: if it fails, the delivery is dead again.
        Class::Permanent | Class::Retryable { .. } if delivery.trigger == Trigger::Manual => {
            NextState::Dead
        }
        Class::Permanent => NextState::Dead,
        Class::Retryable { slow_down } => {
            let attempts_made = u32::try_from(attempt_no).unwrap_or(u32::MAX);
            let jitter = rand::rng().random_range(-1.0..=1.0);
            let delay = retry::delay(
                &inner.config.retry_schedule,
                attempts_made,
                slow_down,
                result.retry_after,
                jitter,
            );
            retry::next_state(now_ms(), delivery.received_at, inner.config.max_age, delay)
        }
    };
    let attempt = Attempt {
        delivery_id: delivery.id,
        attempt: attempt_no,
        trigger: delivery.trigger,
        started_at,
        duration_ms: i64::try_from(result.duration.as_millis()).unwrap_or(i64::MAX),
        status_code: result.status.map(i64::from),
        error: result.error,
        response_snippet: result.snippet,
        ambiguous: result.ambiguous,
    };
    (attempt, next)
}

/// An attempt cut short by shutdown: recorded, and due again as soon as the relay is back.
fn interrupted(delivery: &Delivery, attempt_no: i64, started_at: i64) -> (Attempt, NextState) {
    let now = now_ms();
    let attempt = Attempt {
        delivery_id: delivery.id,
        attempt: attempt_no,
        trigger: delivery.trigger,
        started_at,
        duration_ms: now - started_at,
        status_code: None,
        error: Some(
            "interrupted by shutdown; the response, if any, was not seen (GoWA may have sent the message)"
                .into(),
        ),
        response_snippet: None,
        // The request was in flight.
        ambiguous: true,
    };
    (attempt, NextState::RetryAt(now))
}

async fn finish_dead(inner: &Inner, task: Task, id: DeliveryId, reason: String) -> Step {
    tracing::warn!(delivery_id = %id, reason, "delivery is dead");
    loop {
        match inner
            .writer
            .mark_dead(id, reason.clone(), fence(inner, task))
            .await
        {
            Ok(()) => {
                inner.outcomes.send_modify(|n| *n = n.wrapping_add(1));
                return Step::Done;
            }
            Err(WriteError::Stopped) => return Step::Stop,
            Err(WriteError::LaneLost) => return lost(inner, task),
            Err(err) => {
                if let Step::Stop = db_trouble(inner, "marking a delivery dead", &err).await {
                    return Step::Stop;
                }
            }
        }
    }
}

/// The lane was taken over by another relay while this one worked it (PostgreSQL): nothing was recorded, and
/// the task ends.
fn lost(inner: &Inner, task: Task) -> Step {
    tracing::warn!(
        inbox_id = %task.key.inbox_id,
        conversation_id = task.key.conversation_id,
        "lane taken over by another relay; of this relay's attempt only what GoWA answered is kept (a late \
         attempt, ambiguous if GoWA took it)"
    );
    if let (Some(leases), Some(epoch)) = (inner.leases.as_deref(), task.epoch) {
        leases::forget(inner, leases, task.key, epoch);
    }
    Step::Stop
}

/// Logs a database failure and pauses before the lane tries again.
async fn db_trouble(inner: &Inner, doing: &str, err: &(dyn std::fmt::Display + Sync)) -> Step {
    tracing::error!(error = %err, "database error while {doing}; retrying");
    if sleep(inner, DB_RETRY_PAUSE).await {
        Step::Again
    } else {
        Step::Stop
    }
}

/// How a wait for a retry ended.
enum Backoff {
    Elapsed,
    /// The inbox's GoWA answered another lane after failing: try now.
    Recovered,
    Stop,
}

/// Waits out a retry delay, cut short when the inbox's GoWA is seen to work again.
async fn backoff(inner: &Inner, inbox_id: InboxId, duration: Duration) -> Backoff {
    let deadline = tokio::time::Instant::now() + duration;
    let mut recovered = inner.recovered.subscribe();
    recovered.borrow_and_update();
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => return Backoff::Elapsed,
            () = inner.shutdown.cancelled() => return Backoff::Stop,
            changed = recovered.changed() => match changed {
                Ok(()) if *recovered.borrow_and_update() == Some(inbox_id) => return Backoff::Recovered,
                Ok(()) => {}
                Err(_) => return Backoff::Stop,
            },
        }
    }
}

/// Sleeps unless shutdown comes first; `false` on shutdown.
async fn sleep(inner: &Inner, duration: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(duration) => true,
        () = inner.shutdown.cancelled() => false,
    }
}
