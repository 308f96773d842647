//! The running desktop app ([`Desktop`]): the relay, its listeners, what the tray shows and notifies, and how
//! the app quits. Every use-case goes through [`crate::admin`]; this module holds only what the app shows.
//!
//! Closing the window destroys its webview and leaves the app in the tray; Quit stops the relay (attempts in
//! flight finish and are recorded) and then exits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use serde::Serialize;
use tauri::{AppHandle, Emitter, Manager};
use tauri_plugin_autostart::ManagerExt as _;
use tauri_plugin_clipboard_manager::ClipboardExt as _;
use tauri_plugin_notification::NotificationExt as _;
use tauri_plugin_opener::OpenerExt as _;
use tokio_util::sync::CancellationToken;

use super::listeners::{self, AddressesInput, ListenStatus, Listeners, Locks};
use super::status::{self, Words};
use super::{tray, window};
use crate::admin::{service, settings};
use crate::app::App;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::events::UiEvent;
use crate::state::AppState;

/// The Tauri event that carries [`UiEvent`]s to the window.
const CHANGE_EVENT: &str = "chatgowa://change";
/// How long changes are gathered before the tray is updated.
const STATUS_DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(500);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where the relay listens and how to log in to the browser panel, for the window.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DesktopInfo {
    pub webhook_url: String,
    pub admin_url: String,
    /// Why the relay is not listening, e.g. a busy port.
    pub listen_error: Option<String>,
    pub webhook_host: String,
    pub webhook_port: u16,
    pub admin_host: String,
    pub admin_port: u16,
    /// Addresses the environment sets, which the window shows but does not change.
    pub locked: Locks,
    /// `None` when the browser panel is off.
    pub admin_user: Option<String>,
    /// A browser-panel password generated in this run (first start, or "new password"); never shown again
    /// after the app quits.
    pub generated_password: Option<String>,
    /// `BASIC_AUTH_PASS` sets the password.
    pub password_locked: bool,
    pub start_at_login: bool,
    pub notifications: bool,
    pub language: String,
}

/// Desktop-only state, managed by Tauri.
pub struct Desktop {
    /// Until Quit; then its servers and attempts wind down.
    relay: Mutex<Option<App>>,
    listeners: tokio::sync::Mutex<Option<Listeners>>,
    /// What `listeners` last said, for the tray and menu handlers (which cannot wait).
    listening: Mutex<ListenStatus>,
    /// Addresses set by the environment, which the app does not change.
    locks: Locks,
    /// `BASIC_AUTH_PASS` is set: the app neither generates nor replaces the password.
    password_from_env: bool,
    /// A password generated in this run, shown in Settings until the app quits.
    generated_password: Mutex<Option<String>>,
    notifications: AtomicBool,
    language: Mutex<String>,
    watch: Mutex<status::Watch>,
    shutdown: CancellationToken,
}

impl Desktop {
    pub(super) fn info(&self, app: &AppHandle, state: &AppState) -> DesktopInfo {
        let listening = lock(&self.listening).clone();
        let admin = state.admin.read().unwrap_or_else(PoisonError::into_inner);
        DesktopInfo {
            webhook_url: listening.webhook_url(),
            admin_url: listening.admin_url(),
            listen_error: listening.problem.clone(),
            webhook_host: listening.wanted.webhook.ip().to_string(),
            webhook_port: listening.wanted.webhook.port(),
            admin_host: listening.wanted.admin.ip().to_string(),
            admin_port: listening.wanted.admin.port(),
            locked: self.locks.clone(),
            admin_user: admin.as_ref().map(|a| a.user.clone()),
            generated_password: lock(&self.generated_password).clone(),
            password_locked: self.password_from_env,
            start_at_login: app.autolaunch().is_enabled().unwrap_or(false),
            notifications: self.notifications.load(Ordering::Relaxed),
            language: lock(&self.language).clone(),
        }
    }

    pub(super) fn words(&self) -> Words {
        Words::of(&lock(&self.language))
    }

    /// Moves the listeners (what is already where it should be stays), keeps the new addresses for the next
    /// start, and updates the tray.
    pub(super) async fn set_addresses(
        &self,
        app: &AppHandle,
        input: &AddressesInput,
    ) -> Result<()> {
        let wanted = input.parse()?;
        let mut guard = self.listeners.lock().await;
        let listeners = guard
            .as_mut()
            .ok_or_else(|| Error::Unavailable("Chatgowa is quitting".into()))?;
        let current = listeners.status().wanted;
        for (lock, field, same) in [
            (
                self.locks.webhook,
                "webhookPort",
                wanted.webhook == current.webhook,
            ),
            (self.locks.admin, "adminPort", wanted.admin == current.admin),
        ] {
            if let (Some(var), false) = (lock, same) {
                return Err(Error::invalid(
                    field,
                    format!("set by {var} in the environment or .env; change it there"),
                ));
            }
        }
        let moved = listeners.move_to(wanted).await;
        let saved = listeners.save(&self.locks).await;
        *lock(&self.listening) = listeners.status();
        drop(guard);
        refresh_status(app).await;
        moved.and(saved)
    }

    /// A new browser-panel password, shown in Settings until the app quits.
    pub(super) async fn new_password(&self, state: &AppState) -> Result<()> {
        if self.password_from_env {
            return Err(Error::Conflict(
                "the password is set by BASIC_AUTH_PASS in the environment or .env; change it there"
                    .into(),
            ));
        }
        let password = settings::new_admin_password(state).await?;
        *lock(&self.generated_password) = Some(password);
        Ok(())
    }

    /// Speaks `language` in the tray from now on, and remembers it.
    pub(super) async fn set_language(
        &self,
        app: &AppHandle,
        state: &AppState,
        language: &str,
    ) -> Result<()> {
        settings::set_language(state, language).await?;
        *lock(&self.language) = language.to_owned();
        if let Some(menu) = app.try_state::<tray::TrayMenu>() {
            menu.relabel(self.words(), settings::is_paused(state));
        }
        refresh_status(app).await;
        Ok(())
    }

    /// Turns notifications on or off, and remembers the choice.
    pub(super) async fn set_notifications(&self, state: &AppState, on: bool) -> Result<()> {
        settings::set_notifications(state, on).await?;
        self.notifications.store(on, Ordering::Relaxed);
        Ok(())
    }

    pub(super) fn open_admin_in_browser(&self, app: &AppHandle) {
        let url = lock(&self.listening).admin_url();
        if let Err(err) = app.opener().open_url(url, None::<&str>) {
            tracing::warn!(error = %err, "cannot open the browser");
        }
    }

    pub(super) fn copy_webhook_url(&self, app: &AppHandle) {
        let url = lock(&self.listening).webhook_url();
        if let Err(err) = app.clipboard().write_text(url) {
            tracing::warn!(error = %err, "cannot copy to the clipboard");
        }
    }

    /// Pauses or resumes deliveries; returns whether they are paused now.
    pub(super) fn toggle_pause(&self, app: &AppHandle) -> bool {
        let state = app.state::<AppState>();
        let paused = !settings::is_paused(&state);
        settings::set_paused(&state, paused);
        paused
    }

    /// Turns start-at-login on or off (tray checkbox included); returns whether it is on now.
    pub(super) fn set_autostart(&self, app: &AppHandle, on: bool) -> bool {
        let launcher = app.autolaunch();
        let result = if on {
            launcher.enable()
        } else {
            launcher.disable()
        };
        if let Err(err) = result {
            tracing::warn!(error = %err, "cannot change start at login");
        }
        let now = launcher.is_enabled().unwrap_or(false);
        if let Some(menu) = app.try_state::<tray::TrayMenu>() {
            menu.show_autostart(now);
        }
        now
    }
}

/// What the app has once the relay runs.
pub struct Started {
    pub relay: App,
    listeners: Listeners,
    /// Generated on this first run; shown in Settings until Quit.
    generated_password: Option<String>,
    preferences: settings::Preferences,
}

/// Starts the relay, gives the browser panel a login if none is configured, and opens the listeners.
pub async fn start(
    config: Config,
    locks: &Locks,
    shutdown: CancellationToken,
) -> anyhow::Result<Started> {
    let relay = App::start(config, shutdown).await?;
    let state = relay.state();
    // No password configured: the browser panel gets a generated one, kept as an Argon2 hash and shown once
    // (and in Settings until Quit).
    let generated_password = settings::ensure_admin_login(state).await?;
    for warning in state.config.warnings(std::env::vars().map(|(k, _)| k)) {
        tracing::warn!("{warning}");
    }
    let wanted = listeners::initial(state, locks).await?;
    let listeners = Listeners::start(state.clone(), relay.limits().clone(), wanted).await;
    let preferences = settings::preferences(state).await?;
    Ok(Started {
        relay,
        listeners,
        generated_password,
        preferences,
    })
}

impl Desktop {
    pub(super) fn new(
        started: Started,
        locks: Locks,
        password_from_env: bool,
        shutdown: CancellationToken,
    ) -> Self {
        let language = started.preferences.language.unwrap_or_else(|| {
            let lang = std::env::var("LANG").unwrap_or_default();
            if lang.starts_with("id") { "id" } else { "en" }.to_owned()
        });
        Self {
            relay: Mutex::new(Some(started.relay)),
            listening: Mutex::new(started.listeners.status()),
            listeners: tokio::sync::Mutex::new(Some(started.listeners)),
            locks,
            password_from_env,
            generated_password: Mutex::new(started.generated_password),
            notifications: started.preferences.notifications.into(),
            language: Mutex::new(language),
            watch: Mutex::default(),
            shutdown,
        }
    }
}

/// What a tray menu item does; the handlers are one-liners over [`Desktop`]'s methods.
pub fn on_menu(app: &AppHandle, id: &str) {
    let desktop = app.state::<Desktop>();
    match id {
        tray::ids::OPEN => window::open(app),
        tray::ids::OPEN_BROWSER => desktop.open_admin_in_browser(app),
        tray::ids::COPY_URL => desktop.copy_webhook_url(app),
        tray::ids::PAUSE => {
            let paused = desktop.toggle_pause(app);
            if let Some(menu) = app.try_state::<tray::TrayMenu>() {
                menu.show_paused(paused);
            }
        }
        tray::ids::AUTOSTART => {
            let on = app.autolaunch().is_enabled().unwrap_or(false);
            desktop.set_autostart(app, !on);
        }
        tray::ids::QUIT => quit(app),
        _ => {}
    }
}

/// Relays change events to the window and keeps the tray up to date.
pub fn forward_changes(app: AppHandle, state: AppState) {
    let mut changes = state.events.subscribe();
    tauri::async_runtime::spawn(async move {
        refresh_status(&app).await;
        loop {
            match changes.recv().await {
                Ok(event) => {
                    let _ = app.emit(CHANGE_EVENT, event);
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    let _ = app.emit(CHANGE_EVENT, UiEvent::Resync);
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
            // Gather a burst of changes, then update the tray once.
            let deadline = tokio::time::Instant::now() + STATUS_DEBOUNCE;
            while let Ok(Ok(event)) = tokio::time::timeout_at(deadline, changes.recv()).await {
                let _ = app.emit(CHANGE_EVENT, event);
            }
            refresh_status(&app).await;
        }
    });
}

/// Updates the tray icon and tooltip, and notifies when a route starts failing, recovers, or deliveries die.
async fn refresh_status(app: &AppHandle) {
    let state = app.state::<AppState>();
    let desktop = app.state::<Desktop>();
    let (Ok(routes), Ok(stats), Ok(delivered_today)) = (
        service::list_routes(&state).await,
        service::stats(&state).await,
        service::count_delivered_since(&state, status::start_of_today_ms()).await,
    ) else {
        return;
    };
    let words = desktop.words();
    let problem = lock(&desktop.listening).problem.clone();
    let chatwoot_problem = crate::admin::chatwoot::catch_up_problem(&state);
    let (tray_state, tooltip) = status::glance(
        &status::Facts {
            listen_problem: problem.as_deref(),
            paused: settings::is_paused(&state),
            routes: &routes,
            delivered_today,
            pending: stats.totals.pending,
            chatwoot_problem: chatwoot_problem.as_deref(),
            unsigned: !stats.webhooks_signed,
        },
        &words,
    );
    tray::show(app, tray_state, &tooltip);

    let mut watch = lock(&desktop.watch);
    let notes = watch.changes(&routes, stats.totals.dead, &words);
    if !desktop.notifications.load(Ordering::Relaxed) {
        return;
    }
    let now = Instant::now();
    for note in notes {
        if watch.may_notify(&note.key, now) {
            let _ = app
                .notification()
                .builder()
                .title(note.title)
                .body(note.body)
                .show();
        }
    }
}

/// Stops the relay (requests in progress and attempts in flight finish and are recorded), then exits.
pub fn quit(app: &AppHandle) {
    let desktop = app.state::<Desktop>();
    desktop.shutdown.cancel();
    let relay = lock(&desktop.relay).take();
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        let desktop = app.state::<Desktop>();
        let servers = desktop
            .listeners
            .lock()
            .await
            .take()
            .map(Listeners::into_servers)
            .unwrap_or_default();
        if let Some(relay) = relay
            && let Err(err) = relay.run(servers).await
        {
            tracing::error!(error = %err, "relay stopped");
        }
        app.exit(0);
    });
}
