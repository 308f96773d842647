//! The desktop app: the same relay as `--server`, plus a tray icon and a native window whose screens talk to
//! the admin service over Tauri commands. The only module that names `tauri`.
//!
//! Closing the window destroys its webview and leaves the app in the tray; Quit stops the relay (attempts in
//! flight finish and are recorded) and then exits.

mod commands;
mod tray;
mod window;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tauri::{App, AppHandle, Emitter, Manager, RunEvent};
use tauri_plugin_autostart::{MacosLauncher, ManagerExt as _};
use tauri_plugin_clipboard_manager::ClipboardExt as _;
use tauri_plugin_notification::NotificationExt as _;
use tauri_plugin_opener::OpenerExt as _;
use tokio_util::sync::CancellationToken;

use crate::admin::service;
use crate::cli::Settings;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::listeners::{AddressesInput, ListenStatus, Listeners, Locks};
use crate::state::AppState;
use crate::status::{self, Words};
use crate::{Relay, listeners, store};

/// The database file in the app-data directory; development builds keep theirs apart.
const DB_FILE: &str = if cfg!(debug_assertions) {
    "chatgowa-dev.db"
} else {
    "chatgowa.db"
};
/// The Tauri event that carries [`crate::events::UiEvent`]s to the window.
const CHANGE_EVENT: &str = "chatgowa://change";
/// How long changes are gathered before the tray is updated.
const STATUS_DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(500);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Desktop-only state, managed by Tauri.
pub struct Desktop {
    /// Until Quit; then its servers and attempts wind down.
    relay: Mutex<Option<Relay>>,
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
    fn info(&self, app: &AppHandle, state: &AppState) -> commands::DesktopInfo {
        let listening = lock(&self.listening).clone();
        let admin = state.admin.read().unwrap_or_else(PoisonError::into_inner);
        commands::DesktopInfo {
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

    fn words(&self) -> Words {
        Words::of(&lock(&self.language))
    }

    /// Moves the listeners (what is already where it should be stays), keeps the new addresses for the next
    /// start, and updates the tray.
    async fn set_addresses(&self, app: &AppHandle, input: &AddressesInput) -> Result<()> {
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
    async fn new_password(&self, state: &AppState) -> Result<()> {
        if self.password_from_env {
            return Err(Error::Conflict(
                "the password is set by BASIC_AUTH_PASS in the environment or .env; change it there"
                    .into(),
            ));
        }
        let password = service::new_admin_password(state).await?;
        *lock(&self.generated_password) = Some(password);
        Ok(())
    }

    /// Speaks `language` in the tray from now on, and remembers it.
    async fn set_language(&self, app: &AppHandle, state: &AppState, language: &str) -> Result<()> {
        store::settings::upsert(&state.pool, store::settings::LANGUAGE, language).await?;
        *lock(&self.language) = language.to_owned();
        if let Some(menu) = app.try_state::<tray::TrayMenu>() {
            menu.relabel(self.words(), state.dispatcher.is_paused());
        }
        refresh_status(app).await;
        Ok(())
    }

    /// Turns notifications on or off, and remembers the choice.
    async fn set_notifications(&self, state: &AppState, on: bool) -> Result<()> {
        store::settings::upsert(
            &state.pool,
            store::settings::NOTIFICATIONS,
            if on { "on" } else { "off" },
        )
        .await?;
        self.notifications.store(on, Ordering::Relaxed);
        Ok(())
    }

    fn open_admin_in_browser(&self, app: &AppHandle) {
        let url = lock(&self.listening).admin_url();
        if let Err(err) = app.opener().open_url(url, None::<&str>) {
            tracing::warn!(error = %err, "cannot open the browser");
        }
    }

    fn copy_webhook_url(&self, app: &AppHandle) {
        let url = lock(&self.listening).webhook_url();
        if let Err(err) = app.clipboard().write_text(url) {
            tracing::warn!(error = %err, "cannot copy to the clipboard");
        }
    }

    /// Pauses or resumes deliveries; returns whether they are paused now.
    fn toggle_pause(&self, app: &AppHandle) -> bool {
        let dispatcher = &app.state::<AppState>().dispatcher;
        let paused = !dispatcher.is_paused();
        dispatcher.set_paused(paused);
        tracing::info!(paused, "deliveries paused from the tray");
        paused
    }

    /// Turns start-at-login on or off (tray checkbox included); returns whether it is on now.
    fn set_autostart(&self, app: &AppHandle, on: bool) -> bool {
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

/// Runs the desktop app until Quit.
///
/// # Errors
/// Invalid configuration, or Tauri cannot start.
pub fn run(settings: &Settings, minimized: bool) -> anyhow::Result<()> {
    #[cfg(target_os = "linux")]
    lean_graphics();
    let config = Config::from_settings(settings, IpAddr::V4(Ipv4Addr::UNSPECIFIED))?;
    let settings = settings.clone();
    tauri::Builder::default()
        .plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| {
            window::open(app)
        }))
        .plugin(tauri_plugin_autostart::init(
            MacosLauncher::LaunchAgent,
            Some(vec!["--minimized"]),
        ))
        .plugin(tauri_plugin_notification::init())
        .plugin(tauri_plugin_clipboard_manager::init())
        .plugin(tauri_plugin_opener::init())
        .invoke_handler(tauri::generate_handler![
            commands::stats,
            commands::list_routes,
            commands::create_route,
            commands::update_route,
            commands::delete_route,
            commands::test_route,
            commands::retry_dead,
            commands::list_deliveries,
            commands::delivery,
            commands::retry_delivery,
            commands::discard_delivery,
            commands::list_unrouted,
            commands::desktop_info,
            commands::set_start_at_login,
            commands::set_notifications,
            commands::set_language,
            commands::set_addresses,
            commands::new_password,
        ])
        .setup(move |app| setup(app, config, &settings, minimized))
        .build(tauri::generate_context!())?
        .run(|_app, event| {
            // Closing the last window keeps the app in the tray; only Quit (an explicit exit code) ends it.
            if let RunEvent::ExitRequested {
                api, code: None, ..
            } = event
            {
                api.prevent_exit();
            }
        });
    Ok(())
}

/// Graphics settings that keep the app light on Linux, unless the user has set them: GTK needs no OpenGL for a
/// tray and a form-based window (its GL set-up alone costs ~30 MiB, even with the window closed), and WebKit's
/// DMA-BUF renderer doubles its web process's memory for no visible gain here. Measured in
/// `bench/desktop-idle.sh`; see the README.
#[cfg(target_os = "linux")]
const LEAN_GRAPHICS: &[(&str, &str)] = &[
    ("GDK_GL", "disable"),
    ("WEBKIT_DISABLE_DMABUF_RENDERER", "1"),
];

/// Starts the app again in place with [`LEAN_GRAPHICS`] in its environment: GTK and WebKit read them at start,
/// and this crate does not change its own environment (that is `unsafe`). Same process id, arguments and
/// environment otherwise; if the restart fails, the app goes on as it is.
#[cfg(target_os = "linux")]
fn lean_graphics() {
    use std::os::unix::process::CommandExt as _;
    let missing: Vec<_> = LEAN_GRAPHICS
        .iter()
        .filter(|(key, _)| std::env::var_os(key).is_none())
        .collect();
    if missing.is_empty() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .envs(missing.iter().map(|(key, value)| (*key, *value)))
        .exec();
    eprintln!("chatgowa: starting with lighter graphics settings failed ({err}); going on");
}

fn setup(
    app: &mut App,
    mut config: Config,
    settings: &Settings,
    minimized: bool,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    crate::init_logging(config.log_format, Some(&app.path().app_log_dir()?));
    if settings.database_url.is_none() {
        config.database_path = app.path().app_data_dir()?.join(DB_FILE);
    }
    let given = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.trim().is_empty());
    let locks = Locks::new(
        given(&settings.port) || given(&settings.bind),
        given(&settings.admin_bind),
    );
    let password_from_env = config.admin.is_some();

    let shutdown = CancellationToken::new();
    let (relay, generated_password) = tauri::async_runtime::block_on(async {
        // No password configured: the browser panel gets a generated one, kept as an Argon2 hash and shown
        // once (and in Settings until Quit).
        let mut generated_password = None;
        if config.admin.is_none() {
            let pool = store::connect(&config.database_path).await?;
            let generated = service::generated_admin_password(&pool).await;
            pool.close().await;
            let (hash, shown) = generated?;
            config.admin = Some(crate::config::AdminCredentials::new(
                crate::config::DEFAULT_ADMIN_USER,
                hash,
            ));
            generated_password = shown;
        }
        for warning in config.warnings(std::env::vars().map(|(k, _)| k)) {
            tracing::warn!("{warning}");
        }
        let relay = Relay::start(config, shutdown.clone()).await?;
        anyhow::Ok((relay, generated_password))
    })?;
    let state = relay.state().clone();
    let (listeners, stored) = tauri::async_runtime::block_on(async {
        let wanted = listeners::initial(&state.pool, &state.config, &locks).await?;
        let listeners = Listeners::start(state.clone(), wanted).await;
        let stored = (
            store::settings::find(&state.pool, store::settings::NOTIFICATIONS).await?,
            store::settings::find(&state.pool, store::settings::LANGUAGE).await?,
        );
        Ok::<_, Error>((listeners, stored))
    })?;
    let (notifications, language) = stored;
    let language = language.unwrap_or_else(|| {
        let lang = std::env::var("LANG").unwrap_or_default();
        if lang.starts_with("id") { "id" } else { "en" }.to_owned()
    });
    app.manage(state.clone());
    app.manage(Desktop {
        relay: Mutex::new(Some(relay)),
        listening: Mutex::new(listeners.status()),
        listeners: tokio::sync::Mutex::new(Some(listeners)),
        locks,
        password_from_env,
        generated_password: Mutex::new(generated_password),
        notifications: notifications.is_none_or(|v| v != "off").into(),
        language: Mutex::new(language),
        watch: Mutex::default(),
        shutdown,
    });
    let menu = tray::create(app, app.state::<Desktop>().words())?;
    app.manage(menu);
    forward_changes(app.handle().clone(), state);
    if !minimized {
        window::open(app.handle());
    }
    Ok(())
}

/// Relays change events to the window and keeps the tray up to date.
fn forward_changes(app: AppHandle, state: AppState) {
    let mut changes = state.events.subscribe();
    tauri::async_runtime::spawn(async move {
        refresh_status(&app).await;
        loop {
            match changes.recv().await {
                Ok(event) => {
                    let _ = app.emit(CHANGE_EVENT, event);
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    let _ = app.emit(CHANGE_EVENT, crate::events::UiEvent::Resync);
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
        store::deliveries::count_delivered_since(&state.pool, status::start_of_today_ms()).await,
    ) else {
        return;
    };
    let words = desktop.words();
    let problem = lock(&desktop.listening).problem.clone();
    let (tray_state, tooltip) = status::glance(
        &status::Facts {
            listen_problem: problem.as_deref(),
            paused: state.dispatcher.is_paused(),
            routes: &routes,
            delivered_today,
            pending: stats.totals.pending,
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
