//! Shared state of the relay: one allocation behind an `Arc`, cloned per request; nothing is global.

use std::sync::{Arc, RwLock};

use sqlx::SqlitePool;

use crate::admin::auth::Throttle;
use crate::config::{AdminCredentials, Config};
use crate::delivery::Dispatcher;
use crate::events::Events;
use crate::metrics::Metrics;
use crate::relay::Admission;
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

pub struct Shared {
    pub config: Config,
    /// The admin login in force: `config.admin` at start; the desktop can replace its generated password.
    pub admin: RwLock<Option<AdminCredentials>>,
    /// For reads and admin writes; webhooks and attempt results go through `writer`.
    pub pool: SqlitePool,
    pub writer: Writer,
    pub dispatcher: Dispatcher,
    pub events: Events,
    pub metrics: Metrics,
    /// The memory budget of webhooks in progress.
    pub admission: Admission,
    /// Failed admin logins per address.
    pub logins: Throttle,
    /// Cancelled when the relay stops; long-lived responses (the event stream) end with it.
    pub shutdown: tokio_util::sync::CancellationToken,
}
