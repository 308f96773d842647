//! The lane task: take the head, wait for its time and its route, send it, record the attempt, move on.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use tokio::sync::watch;

use super::gowa::{self, AttemptResult, Target};
use super::retry::{self, Class};
use super::{Inner, LaneKey, Outcome};
use crate::ids::{DeliveryId, InboxId};
use crate::store::attempts::{Attempt, Trigger};
use crate::store::deliveries::{self, DeliveryStatus, NextState};
use crate::store::now_ms;
use crate::store::writer::WriteError;

/// Pause before trying the database again after it failed.
const DB_RETRY_PAUSE: Duration = Duration::from_secs(1);

enum Step {
    /// The head is finished (delivered, dead or gone): move to the next one.
    Done,
    /// Look at the same head again (it was rescheduled, or its route changed).
    Again,
    /// Shutting down.
    Stop,
}

pub(super) async fn run_lane(inner: Arc<Inner>, key: LaneKey) {
    let mut route_changes = inner.routes_changed.subscribe();
    let mut next = inner.head(key);
    while let Some(id) = next {
        if inner.shutdown.is_cancelled() {
            return;
        }
        next = match step(&inner, id, &mut route_changes).await {
            Step::Done => inner.advance(key, id),
            Step::Again => Some(id),
            Step::Stop => return,
        };
    }
}

async fn step(inner: &Inner, id: DeliveryId, route_changes: &mut watch::Receiver<()>) -> Step {
    route_changes.borrow_and_update();
    // A new delivery's first look uses what the writer stored; any later one reads the database.
    let fresh = inner.fresh().take(id);
    let stored = match fresh {
        Some(d) => Ok(Some(d)),
        None => deliveries::find(&inner.pool, id).await,
    };
    let delivery = match stored {
        Ok(Some(d)) if d.status == DeliveryStatus::Pending => d,
        Ok(_) => return Step::Done,
        Err(err) => return db_trouble(inner, "reading a delivery", &err).await,
    };

    let wait = delivery.next_attempt_at - now_ms();
    if wait > 0 {
        match backoff(
            inner,
            delivery.inbox_id,
            Duration::from_millis(wait.unsigned_abs()),
        )
        .await
        {
            Backoff::Elapsed => return Step::Again,
            Backoff::Recovered => {}
            Backoff::Stop => return Step::Stop,
        }
    }

    let Some(route) = inner.route(delivery.inbox_id) else {
        let reason = format!("no route for inbox {}", delivery.inbox_id);
        return finish_dead(inner, id, reason).await;
    };
    if !route.enabled {
        // Paused until the route is enabled again (or changed in another way).
        return tokio::select! {
            changed = route_changes.changed() => if changed.is_ok() { Step::Again } else { Step::Stop },
            () = inner.shutdown.cancelled() => Step::Stop,
        };
    }
    let target = match Target::parse(&route.webhook_url) {
        Ok(t) => t,
        Err(e) => return finish_dead(inner, id, format!("invalid webhook URL: {e}")).await,
    };

    if *inner.paused.borrow() {
        let mut paused = inner.paused.subscribe();
        tokio::select! {
            _ = paused.wait_for(|p| !p) => {}
            () = inner.shutdown.cancelled() => return Step::Stop,
        }
        // Things may have changed while paused: look at the head again.
        return Step::Again;
    }

    let route_slots = inner.route_slots(delivery.inbox_id);
    let permits = tokio::select! {
        permits = async { (route_slots.acquire_owned().await, inner.slots.clone().acquire_owned().await) } => permits,
        () = inner.shutdown.cancelled() => return Step::Stop,
    };

    let attempt_no = delivery.attempts + 1;
    let started_at = now_ms();
    let request = gowa::Request::delivery(&delivery, attempt_no);
    let result = tokio::select! {
        r = gowa::send(&inner.client, &target, route.secret.as_deref(), request) => Some(r),
        () = inner.abort.cancelled() => None,
    };
    drop(permits);

    let cut_short = result.is_none();
    let (attempt, next) = match result {
        Some(result) => judge(inner, &delivery, attempt_no, started_at, result),
        None => interrupted(&delivery, attempt_no, started_at),
    };
    let retry_in_ms = match next {
        NextState::RetryAt(at) => Some(at - now_ms()),
        NextState::Delivered | NextState::Dead => None,
    };
    if next == NextState::Delivered && attempt_no > 1 {
        inner.recovered.send_replace(Some(delivery.inbox_id));
    }
    let outcome = match next {
        _ if cut_short => Outcome::Interrupted,
        NextState::Delivered => Outcome::Delivered,
        NextState::RetryAt(_) => Outcome::Retry,
        NextState::Dead => Outcome::Dead,
    };
    inner
        .metrics
        .attempt(outcome.as_str(), attempt.duration_ms as f64 / 1000.0);
    tracing::info!(
        delivery_id = %id,
        inbox_id = %delivery.inbox_id,
        conversation_id = delivery.conversation_id,
        attempt = attempt_no,
        status = attempt.status_code,
        duration_ms = attempt.duration_ms,
        outcome = %outcome.as_str(),
        retry_in_ms,
        error = attempt.error.as_deref(),
        "delivery attempt"
    );
    loop {
        match inner.writer.record_attempt(attempt.clone(), next).await {
            Ok(()) => break,
            Err(WriteError::Stopped) => return Step::Stop,
            Err(err) => {
                if let Step::Stop = db_trouble(inner, "recording an attempt", &err).await {
                    return Step::Stop;
                }
            }
        }
    }
    match next {
        NextState::RetryAt(_) => Step::Again,
        NextState::Delivered | NextState::Dead => Step::Done,
    }
}

/// Turns a response into the attempt row and the delivery's next state.
fn judge(
    inner: &Inner,
    delivery: &deliveries::Delivery,
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
    };
    (attempt, next)
}

/// An attempt cut short by shutdown: recorded, and due again as soon as the relay is back.
fn interrupted(
    delivery: &deliveries::Delivery,
    attempt_no: i64,
    started_at: i64,
) -> (Attempt, NextState) {
    let now = now_ms();
    let attempt = Attempt {
        delivery_id: delivery.id,
        attempt: attempt_no,
        trigger: delivery.trigger,
        started_at,
        duration_ms: now - started_at,
        status_code: None,
        error: Some("interrupted by shutdown; the response, if any, was not seen".into()),
        response_snippet: None,
    };
    (attempt, NextState::RetryAt(now))
}

async fn finish_dead(inner: &Inner, id: DeliveryId, reason: String) -> Step {
    tracing::warn!(delivery_id = %id, reason, "delivery is dead");
    loop {
        match inner.writer.mark_dead(id, reason.clone()).await {
            Ok(()) => return Step::Done,
            Err(WriteError::Stopped) => return Step::Stop,
            Err(err) => {
                if let Step::Stop = db_trouble(inner, "marking a delivery dead", &err).await {
                    return Step::Stop;
                }
            }
        }
    }
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
