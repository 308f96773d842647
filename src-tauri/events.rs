//! Change notifications for the admin UI: what kind of data changed, so open screens refresh themselves.
//!
//! Events carry no data (a screen re-reads what it shows), so a slow or lagging listener can never see stale
//! state: at worst it refreshes once more. One commit of many webhooks is one event.

use serde::Serialize;
use tokio::sync::broadcast;

/// Events kept for a listener that falls behind; beyond that it gets [`UiEvent::Resync`].
const CAPACITY: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum UiEvent {
    /// Deliveries were added, attempted, retried or discarded (also changes stats and route health).
    Deliveries,
    /// Routes were created, changed or deleted.
    Routes,
    /// An inbox without a route sent a webhook.
    Unrouted,
    /// Something changed with a linked Chatwoot: an account linked, unlinked or its webhook registered, the public
    /// URL, a catch-up's outcome, replies held for a decision.
    Chatwoot,
    /// The listener missed events: refresh everything.
    Resync,
}

/// Sender side, cheap to clone; sending with nobody listening is fine.
#[derive(Debug, Clone)]
pub struct Events(broadcast::Sender<UiEvent>);

impl Default for Events {
    fn default() -> Self {
        Self(broadcast::Sender::new(CAPACITY))
    }
}

impl Events {
    pub fn send(&self, event: UiEvent) {
        // An error only means that no screen is listening.
        let _ = self.0.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<UiEvent> {
        self.0.subscribe()
    }
}
