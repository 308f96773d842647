//! Shared state of the relay: one allocation behind an `Arc`, cloned per request; nothing is global.
//! Built from the layers below it (store, delivery, relay) and used by the layers above (admin, server).

use std::sync::{Arc, RwLock};

use crate::store::Db;
use axum::extract::FromRef;

use crate::config::{AdminCredentials, Config};
use crate::delivery::Dispatcher;
use crate::events::Events;
use crate::login::Throttle;
use crate::metrics::Metrics;
use crate::relay::Intake;
use crate::store::Writer;

/// What every handler, Tauri command and task of the relay shares; a clone is one reference count.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// `POST /webhook` takes only what the relay needs.
impl FromRef<AppState> for Intake {
    fn from_ref(state: &AppState) -> Self {
        state.intake.clone()
    }
}

pub struct Shared {
    pub config: Config,
    /// The admin login in force: `config.admin` at start; the desktop can replace its generated password.
    pub admin: RwLock<Option<AdminCredentials>>,
    /// For reads and admin writes; webhooks and attempt results go through `writer`.
    pub db: Db,
    pub writer: Writer,
    pub dispatcher: Dispatcher,
    pub events: Events,
    pub metrics: Metrics,
    /// What `POST /webhook` works with (the writer, the routes' secrets, the memory budget).
    pub intake: Intake,
    /// Failed admin logins per address.
    pub logins: Throttle,
    /// The webhook listener's port while the admin API and panel listen apart from it (0: they share one
    /// listener). The panel then shows this port, not its own, in the address for Chatwoot.
    pub webhook_port: std::sync::atomic::AtomicU16,
    /// Where the webhook listens (once it does): the public URL the relay suggests is built from it.
    pub webhook_addr: RwLock<Option<std::net::SocketAddr>>,
    /// For calls to Chatwoot's API: follows no redirect, so a token never goes to another address.
    pub chatwoot_http: reqwest::Client,
    /// Catching up with linked Chatwoot accounts: the last outcome of each, and a way to ask for one now.
    pub catch_up: crate::feedback::catchup::CatchUp,
    /// Names of the linked Chatwoot accounts' inboxes, as last read (see `admin::chatwoot`).
    pub inbox_names: RwLock<std::collections::HashMap<crate::ids::InboxId, String>>,
    /// While no admin password exists (headless, first run): the one-time token of the setup link.
    pub setup_token: RwLock<Option<(crate::config::Secret<String>, std::time::Instant)>>,
    /// Cancelled when the relay stops; long-lived responses (the event stream) end with it.
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl Shared {
    /// The name of an inbox of a linked Chatwoot account, as last read from Chatwoot.
    pub fn inbox_name(&self, inbox: crate::ids::InboxId) -> Option<String> {
        let names = self
            .inbox_names
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        names.get(&inbox).cloned()
    }
}
