//! Retention: delivered deliveries (payload, attempts, dedupe key) are deleted `CHATGOWA_RETENTION` after
//! they finished, dead ones after `CHATGOWA_DEAD_RETENTION`, so the database stays the size of a few days of
//! traffic. SQLite reuses the freed pages, so the file stops growing under a steady load.
//!
//! No polling: the task sleeps until the oldest finished delivery is due (at most once per [`MAX_GAP`]), and
//! wakes early only when a delivery that finished meanwhile would be due sooner (a delivered one while only
//! dead ones were waiting, or the first one at all). Deletes go in small batches, each its own
//! short transaction, so webhooks keep being committed in between.

use std::sync::Arc;
use std::time::Duration;

use crate::store::Db;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::events::{Events, UiEvent};
use crate::store::deliveries::{self, DeliveryStatus};
use crate::store::{self, Writer, chatwoot_feedback, chatwoot_recovered, now_ms, unrouted_inboxes};

/// Deliveries deleted per transaction.
const BATCH: u16 = 500;
/// Longest time between two pruning rounds while something is due, so that deletes are batched.
const MAX_GAP: Duration = Duration::from_secs(60);
/// Pause after a database error.
const ERROR_PAUSE: Duration = Duration::from_secs(60);

/// Handle to wake the pruner when deliveries change; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Waker(Arc<Notify>);

impl Waker {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

pub struct Retention {
    pub db: Db,
    /// Told of the deleted deliveries' dedupe keys.
    pub writer: Writer,
    pub delivered: Duration,
    pub dead: Duration,
    pub events: Events,
    pub waker: Waker,
}

impl Retention {
    /// Prunes until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        // A delivery finishing now is due no sooner than this from now.
        let shortest = self.delivered.min(self.dead);
        loop {
            let next = match self.prune_due().await {
                Ok(next) => next,
                Err(err) => {
                    tracing::warn!(error = %err, "pruning old deliveries failed; trying again later");
                    Some(Instant::now() + ERROR_PAUSE)
                }
            };
            loop {
                let sleep = async {
                    match next {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = sleep => break,
                    () = self.waker.0.notified() => {
                        // Only a delivery due before the planned round changes the plan.
                        if next.is_none_or(|at| Instant::now() + shortest < at) {
                            break;
                        }
                    }
                    () = shutdown.cancelled() => return,
                }
            }
        }
    }

    /// Deletes what is due; returns when the next deletion will be due, `None` if nothing is finished.
    ///
    /// # Errors
    /// The database failed.
    pub async fn prune_due(&self) -> sqlx::Result<Option<Instant>> {
        let gap = MAX_GAP.min(self.delivered.min(self.dead) / 4);
        // Relays sharing a PostgreSQL database prune one at a time; the others look again later.
        match store::in_turn(&self.db, store::Job::Retention, self.prune(gap)).await? {
            Some(next) => next,
            None => Ok(Some(Instant::now() + gap)),
        }
    }

    async fn prune(&self, gap: Duration) -> sqlx::Result<Option<Instant>> {
        let mut next: Option<i64> = None;
        let mut deleted = 0;
        for (status, keep) in [
            (DeliveryStatus::Delivered, self.delivered),
            (DeliveryStatus::Dead, self.dead),
        ] {
            let keep = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
            let before = now_ms().saturating_sub(keep);
            loop {
                let gone = deliveries::prune(&self.db, status, before, i64::from(BATCH)).await?;
                self.writer.forget_keys(&gone);
                deleted += gone.len();
                if gone.len() < usize::from(BATCH) {
                    break;
                }
                tokio::task::yield_now().await;
            }
            if let Some(oldest) = deliveries::oldest_finished_at(&self.db, status).await? {
                let due = oldest.saturating_add(keep);
                next = Some(next.map_or(due, |n| n.min(due)));
            }
        }
        if deleted > 0 {
            // What was told of them and how they were found go with the longest-kept deliveries.
            let keep = i64::try_from(self.delivered.max(self.dead).as_millis()).unwrap_or(i64::MAX);
            let before = now_ms().saturating_sub(keep);
            chatwoot_feedback::prune(&self.db, before).await?;
            chatwoot_recovered::prune(&self.db, before).await?;
            unrouted_inboxes::prune(&self.db, before).await?;
            tracing::info!(deleted, "old deliveries pruned");
            self.events.send(UiEvent::Deliveries);
        }
        Ok(next.map(|due| {
            let wait = Duration::from_millis(due.saturating_sub(now_ms()).max(0).unsigned_abs());
            Instant::now() + wait.max(gap)
        }))
    }
}
