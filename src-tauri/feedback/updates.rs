//! How far the feedback has read the stored webhooks for `message_updated` (Chatwoot's Retry, a deleted reply).
//!
//! Delivery ids are given out before their rows commit: on PostgreSQL, where several relays store webhooks, a
//! lower id can become visible after a higher one. So the reading does not jump to the highest id seen: it moves
//! on only over ids it has read, and over a gap (an id not visible) once the gap is older than [`GAP_WAIT`] by
//! this relay's own monotonic clock (a rolled-back write, or a row pruned since). Ids above that point that were
//! read already are remembered, so none is handled twice by this relay. On SQLite the one writer commits in id
//! order, so a gap is final at once.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::ids::DeliveryId;

/// How long a gap in the ids is waited for: far longer than a write takes to commit.
pub const GAP_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Updates {
    /// Every id up to this one is read (or was a gap long enough).
    done_to: DeliveryId,
    /// Ids above `done_to` that were read.
    read: BTreeSet<DeliveryId>,
    /// The highest id seen when a gap was first seen below it, and when.
    gap_seen: Option<(DeliveryId, Instant)>,
    /// How long a gap is waited for ([`GAP_WAIT`], or nothing where ids commit in order).
    gap_wait: Duration,
}

impl Updates {
    pub fn new(done_to: DeliveryId, gap_wait: Duration) -> Self {
        Self {
            done_to,
            read: BTreeSet::new(),
            gap_seen: None,
            gap_wait,
        }
    }

    /// Where the next reading starts (every id up to it is read); what is kept between runs.
    pub fn done_to(&self) -> DeliveryId {
        self.done_to
    }

    /// Another relay read up to `done_to` (its turn came before this one's).
    pub fn read_elsewhere_to(&mut self, done_to: DeliveryId) {
        self.moved_to(self.done_to.max(done_to));
    }

    /// Whether `id` is still to be read.
    pub fn is_new(&self, id: DeliveryId) -> bool {
        id > self.done_to && !self.read.contains(&id)
    }

    /// Notes a reading of the ids after [`Updates::done_to`], ascending (all of them, up to the last), at `now`,
    /// and moves on as far as it may.
    pub fn read_ids(&mut self, ids: &[DeliveryId], now: Instant) {
        self.read
            .extend(ids.iter().copied().filter(|id| *id > self.done_to));
        let mut to = self.done_to;
        if let Some((upto, at)) = self.gap_seen
            && now.duration_since(at) >= self.gap_wait
        {
            to = to.max(upto);
            self.gap_seen = None;
        }
        while self.read.contains(&DeliveryId(to.0 + 1)) {
            to = DeliveryId(to.0 + 1);
        }
        self.moved_to(to);
        // Ids read above a gap: the gap is waited for from now on.
        if self.gap_seen.is_none()
            && let Some(&highest) = self.read.last()
        {
            self.gap_seen = Some((highest, now));
            if self.gap_wait.is_zero() {
                self.read_ids(&[], now);
            }
        }
    }

    fn moved_to(&mut self, to: DeliveryId) {
        self.done_to = to;
        self.read = self.read.split_off(&DeliveryId(to.0 + 1));
        if self.gap_seen.is_some_and(|(upto, _)| upto <= to) {
            self.gap_seen = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[i64]) -> Vec<DeliveryId> {
        list.iter().copied().map(DeliveryId).collect()
    }

    #[test]
    fn a_lower_id_that_commits_later_is_still_read() {
        let start = Instant::now();
        let mut updates = Updates::new(DeliveryId(10), GAP_WAIT);
        // 11 and 13 visible, 12 not yet (another relay's write in flight).
        updates.read_ids(&ids(&[11, 13]), start);
        assert_eq!(updates.done_to(), DeliveryId(11));
        assert!(!updates.is_new(DeliveryId(13)), "read once");
        assert!(updates.is_new(DeliveryId(12)));
        // 12 commits a moment later: read, and everything up to 13 is done.
        updates.read_ids(&ids(&[12, 13]), start + Duration::from_secs(1));
        assert_eq!(updates.done_to(), DeliveryId(13));
        assert!(!updates.is_new(DeliveryId(12)));
    }

    #[test]
    fn a_gap_that_never_fills_is_passed_after_a_while() {
        let start = Instant::now();
        let mut updates = Updates::new(DeliveryId(10), GAP_WAIT);
        // 11 rolled back (or pruned): never visible.
        updates.read_ids(&ids(&[12, 13]), start);
        assert_eq!(updates.done_to(), DeliveryId(10));
        updates.read_ids(&ids(&[12, 13, 14]), start + GAP_WAIT / 2);
        assert_eq!(updates.done_to(), DeliveryId(10));
        updates.read_ids(&ids(&[12, 13, 14]), start + GAP_WAIT);
        // Passed up to what was seen with the gap; 14 came later, and is read anyway.
        assert_eq!(updates.done_to(), DeliveryId(14));
        assert!(!updates.is_new(DeliveryId(14)));
        // Another relay moved further meanwhile.
        updates.read_elsewhere_to(DeliveryId(20));
        assert_eq!(updates.done_to(), DeliveryId(20));
        assert!(updates.is_new(DeliveryId(21)));
        // Where ids commit in order, a gap is final at once.
        let mut in_order = Updates::new(DeliveryId(10), Duration::ZERO);
        in_order.read_ids(&ids(&[12, 13]), start);
        assert_eq!(in_order.done_to(), DeliveryId(13));
    }
}
