//! One lane's queue, in the order its deliveries go to GoWA.
//!
//! Events without a message keep arrival order. Message events of a conversation go in Chatwoot's message-id
//! order, a `message_updated` after its message's `message_created`: Chatwoot's Sidekiq can send the webhooks
//! of two replies in the wrong order, and the message id says which one the agent wrote first. A message event
//! that arrives late goes ahead of the later messages still waiting, but never ahead of the head once the lane
//! has started to send it. Pure data: the lane task decides when the head goes (see `worker`).

use std::collections::VecDeque;

use crate::ids::DeliveryId;
use crate::store::deliveries::PendingRef;

/// Where a message event goes among the others: by message id, a message's update after its creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Order {
    pub message_id: i64,
    pub update: bool,
}

/// A delivery waiting in a lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub id: DeliveryId,
    /// `None` for events that carry no message id: they keep arrival order.
    pub order: Option<Order>,
    pub received_at: i64,
}

impl From<PendingRef> for Entry {
    fn from(p: PendingRef) -> Self {
        Self {
            id: p.id,
            order: p.message_id.map(|message_id| Order {
                message_id,
                update: p.is_update,
            }),
            received_at: p.received_at,
        }
    }
}

#[derive(Debug, Default)]
pub struct Lane {
    entries: VecDeque<Entry>,
    /// The head is being sent (or was, and waits for its retry): nothing goes ahead of it any more.
    started: bool,
}

impl Lane {
    /// A lane for `first`; one that was attempted already (before a restart, or a retry by hand) counts as
    /// started, so that what was sent once is not overtaken.
    pub fn new(first: PendingRef) -> Self {
        Self {
            entries: VecDeque::from([Entry::from(first)]),
            started: first.attempted,
        }
    }

    /// Puts `pending` in its place; returns how many waiting deliveries it went ahead of.
    pub fn insert(&mut self, pending: PendingRef) -> usize {
        let entry = Entry::from(pending);
        let Some(order) = entry.order else {
            self.entries.push_back(entry);
            return 0;
        };
        // The message entries behind a started head are in order, so the place is found from the back: at once
        // for the usual reply that is newer than everything waiting.
        let first_movable = usize::from(self.started);
        let mut at = self.entries.len();
        for i in (first_movable..self.entries.len()).rev() {
            match self.entries[i].order {
                Some(waiting) if waiting > order => at = i,
                Some(_) => break,
                None => {}
            }
        }
        self.entries.insert(at, entry);
        self.entries.len() - 1 - at
    }

    pub fn head(&self) -> Option<&Entry> {
        self.entries.front()
    }

    /// Whether `id` waits in this lane.
    pub fn has(&self, id: DeliveryId) -> bool {
        self.entries.iter().any(|e| e.id == id)
    }

    /// Whether the head has started to be sent.
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// Marks the head started if it is still `id`; `false` when something went ahead of it meanwhile.
    pub fn start(&mut self, id: DeliveryId) -> bool {
        let is_head = self.head().is_some_and(|e| e.id == id);
        self.started |= is_head;
        is_head
    }

    /// Takes `id` out unless it is the head and has started (its attempt is in flight, or its retry reads it
    /// again).
    pub fn cancel(&mut self, id: DeliveryId) {
        let started_head = self.started && self.head().is_some_and(|e| e.id == id);
        if !started_head {
            self.remove(id);
        }
    }

    /// The deliveries waiting, in order.
    pub fn ids(&self) -> impl Iterator<Item = DeliveryId> + '_ {
        self.entries.iter().map(|e| e.id)
    }

    /// Removes the finished `id` (the head, unless it finished before it started and something went ahead).
    pub fn remove(&mut self, id: DeliveryId) {
        if let Some(at) = self.entries.iter().position(|e| e.id == id) {
            self.entries.remove(at);
            if at == 0 {
                self.started = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::InboxId;

    fn pending(id: i64, message: Option<i64>, update: bool) -> PendingRef {
        PendingRef {
            id: DeliveryId(id),
            inbox_id: InboxId(7),
            conversation_id: Some(1),
            message_id: message,
            is_update: update,
            received_at: id,
            attempted: false,
            by_hand: false,
        }
    }

    fn created(id: i64, message: i64) -> PendingRef {
        pending(id, Some(message), false)
    }

    #[test]
    fn messages_go_in_message_id_order_and_other_events_in_arrival_order() {
        let mut lane = Lane::new(created(1, 101));
        assert_eq!(lane.insert(pending(2, None, false)), 0);
        assert_eq!(
            lane.insert(created(3, 100)),
            2,
            "ahead of 101 and the status event"
        );
        assert_eq!(lane.ids().map(|id| id.0).collect::<Vec<_>>(), [3, 1, 2]);
        assert_eq!(lane.insert(created(4, 102)), 0);
        assert_eq!(lane.ids().map(|id| id.0).collect::<Vec<_>>(), [3, 1, 2, 4]);
    }

    #[test]
    fn a_late_reply_goes_ahead_of_every_later_one_but_not_of_older_ones() {
        let mut lane = Lane::new(created(1, 100));
        for (id, message) in [(2, 103), (3, 104), (4, 101)] {
            lane.insert(created(id, message));
        }
        lane.insert(pending(5, None, false));
        assert_eq!(
            lane.insert(created(6, 102)),
            3,
            "ahead of 103, 104 and the status event"
        );
        assert_eq!(
            lane.ids().map(|id| id.0).collect::<Vec<_>>(),
            [1, 4, 6, 2, 3, 5]
        );
    }

    #[test]
    fn an_update_goes_after_its_message_and_equal_keys_keep_arrival_order() {
        let mut lane = Lane::new(pending(1, Some(100), true));
        lane.insert(created(2, 100));
        assert_eq!(
            lane.ids().map(|id| id.0).collect::<Vec<_>>(),
            [2, 1],
            "the creation first"
        );
        lane.insert(pending(3, Some(100), true));
        assert_eq!(
            lane.ids().map(|id| id.0).collect::<Vec<_>>(),
            [2, 1, 3],
            "two updates in arrival order"
        );
    }

    #[test]
    fn what_has_started_is_never_overtaken() {
        let mut lane = Lane::new(created(1, 101));
        assert!(lane.start(DeliveryId(1)));
        lane.insert(created(2, 100));
        assert_eq!(
            lane.ids().map(|id| id.0).collect::<Vec<_>>(),
            [1, 2],
            "the started head stays first"
        );
        lane.insert(created(3, 99));
        assert_eq!(
            lane.ids().map(|id| id.0).collect::<Vec<_>>(),
            [1, 3, 2],
            "behind it, order still holds"
        );
        lane.remove(DeliveryId(1));
        assert!(!lane.is_started());
        lane.insert(created(4, 98));
        assert_eq!(lane.ids().map(|id| id.0).collect::<Vec<_>>(), [4, 3, 2]);
        assert!(!lane.start(DeliveryId(3)), "3 is not the head any more");
    }

    #[test]
    fn an_attempted_delivery_starts_its_lane_started() {
        let mut first = created(1, 101);
        first.attempted = true;
        let mut lane = Lane::new(first);
        lane.insert(created(2, 100));
        assert_eq!(lane.ids().map(|id| id.0).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn a_cancelled_delivery_leaves_unless_its_attempt_has_started() {
        let mut lane = Lane::new(created(1, 100));
        lane.insert(created(2, 101));
        lane.cancel(DeliveryId(1));
        assert_eq!(lane.head().map(|e| e.id), Some(DeliveryId(2)));
        assert!(lane.start(DeliveryId(2)));
        lane.insert(created(3, 102));
        lane.cancel(DeliveryId(2));
        lane.cancel(DeliveryId(3));
        let ids: Vec<i64> = lane.ids().map(|id| id.0).collect();
        assert_eq!(ids, [2], "the started head stays for its attempt to end");
        assert!(lane.is_started());
    }

    #[test]
    fn a_delivery_finished_before_it_started_leaves_from_anywhere() {
        let mut lane = Lane::new(created(1, 101));
        lane.insert(created(2, 100));
        lane.remove(DeliveryId(1));
        assert_eq!(lane.ids().map(|id| id.0).collect::<Vec<_>>(), [2]);
        lane.remove(DeliveryId(2));
        assert_eq!(lane.head(), None);
    }
}
