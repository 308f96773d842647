//! The desktop app: the same relay as `--server`, plus a tray icon and a native window whose screens talk to
//! the admin service over Tauri commands. The only module that names `tauri`.
//!
//! Closing the window destroys its webview and leaves the app in the tray; Quit stops the relay (attempts in
//! flight finish and are recorded) and then exits.

mod commands;
mod tray;
mod window;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tauri::{App, AppHandle, Emitter, Manager, RunEvent};
use tauri_plugin_autostart::{MacosLauncher, ManagerExt as _};
use tauri_plugin_clipboard_manager::ClipboardExt as _;
use tauri_plugin_notification::NotificationExt as _;
use tauri_plugin_opener::OpenerExt as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::dto::HealthState;
use crate::admin::service;
use crate::cli::Settings;
use crate::config::Config;
use crate::state::AppState;
use crate::{Relay, store};

/// The database file in the app-data directory; development builds keep theirs apart.
const DB_FILE: &str = if cfg!(debug_assertions) {
    "chatgowa-dev.db"
} else {
    "chatgowa.db"
};
/// The Tauri event that carries [`crate::events::UiEvent`]s to the window.
const CHANGE_EVENT: &str = "chatgowa://change";
/// How long changes are gathered before the tray is updated.
const STATUS_DEBOUNCE: Duration = Duration::from_millis(500);
/// At most one notification per route in this time.
const NOTIFY_EVERY: Duration = Duration::from_secs(300);

/// Desktop-only state, managed by Tauri.
pub struct Desktop {
    webhook_url: String,
    admin_url: String,
    listen_error: Option<String>,
    admin_user: Option<String>,
    generated_password: Option<String>,
    notifications: std::sync::atomic::AtomicBool,
    shutdown: CancellationToken,
    relay_task: Mutex<Option<tauri::async_runtime::JoinHandle<()>>>,
    last_health: Mutex<tray::HealthMemory>,
    last_notified: Mutex<std::collections::HashMap<String, Instant>>,
    last_dead: Mutex<Option<i64>>,
}

impl Desktop {
    fn info(&self, app: &AppHandle) -> commands::DesktopInfo {
        commands::DesktopInfo {
            webhook_url: self.webhook_url.clone(),
            admin_url: self.admin_url.clone(),
            listen_error: self.listen_error.clone(),
            admin_user: self.admin_user.clone(),
            generated_password: self.generated_password.clone(),
            start_at_login: app.autolaunch().is_enabled().unwrap_or(false),
            notifications: self
                .notifications
                .load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Speaks `language` in the tray from now on, and remembers it.
    async fn set_language(
        &self,
        app: &AppHandle,
        state: &AppState,
        language: &str,
    ) -> crate::error::Result<()> {
        store::settings::upsert(&state.pool, store::settings::LANGUAGE, language).await?;
        if let Some(menu) = app.try_state::<tray::TrayMenu>() {
            menu.relabel(tray::labels(language), state.dispatcher.is_paused());
        }
        Ok(())
    }

    /// Turns notifications on or off, and remembers the choice.
    async fn set_notifications(&self, state: &AppState, on: bool) -> crate::error::Result<()> {
        store::settings::upsert(
            &state.pool,
            store::settings::NOTIFICATIONS,
            if on { "on" } else { "off" },
        )
        .await?;
        self.notifications
            .store(on, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    fn open_admin_in_browser(&self, app: &AppHandle) {
        if let Err(err) = app.opener().open_url(&self.admin_url, None::<&str>) {
            tracing::warn!(error = %err, "cannot open the browser");
        }
    }

    fn copy_webhook_url(&self, app: &AppHandle) {
        if let Err(err) = app.clipboard().write_text(&self.webhook_url) {
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

    /// Whether `key` may notify now (and remembers that it did).
    fn may_notify(&self, key: String) -> bool {
        let mut last = self
            .last_notified
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if last
            .get(&key)
            .is_some_and(|at| now.duration_since(*at) < NOTIFY_EVERY)
        {
            return false;
        }
        last.insert(key, now);
        true
    }
}

/// Runs the desktop app until Quit.
///
/// # Errors
/// Invalid configuration, or Tauri cannot start.
pub fn run(settings: &Settings, minimized: bool) -> anyhow::Result<()> {
    let config = Config::from_settings(settings, IpAddr::V4(Ipv4Addr::UNSPECIFIED))?;
    let database_from_env = settings.database_url.is_some();
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
        ])
        .setup(move |app| setup(app, config, database_from_env, minimized))
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

fn setup(
    app: &mut App,
    mut config: Config,
    database_from_env: bool,
    minimized: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    crate::init_logging(Some(&app.path().app_log_dir()?));
    if !database_from_env {
        config.database_path = app.path().app_data_dir()?.join(DB_FILE);
    }
    // No password configured: the browser panel gets a generated one, kept as an Argon2 hash and shown once.
    let mut generated_password = None;
    if config.admin.is_none() {
        let (hash, shown) = tauri::async_runtime::block_on(async {
            let pool = store::connect(&config.database_path).await?;
            let generated = service::generated_admin_password(&pool).await;
            pool.close().await;
            generated
        })?;
        config.admin = Some(crate::config::AdminCredentials::new(
            crate::config::DEFAULT_ADMIN_USER,
            hash,
        ));
        generated_password = shown;
    }
    let admin_user = config.admin.as_ref().map(|a| a.user.clone());
    for warning in config.warnings(std::env::vars().map(|(k, _)| k)) {
        tracing::warn!("{warning}");
    }

    // On the desktop the admin API and panel stay on this machine unless told otherwise: a tunnel or a port
    // forward to the webhook then exposes nothing else.
    if config.admin_bind.is_none() {
        config.admin_bind = Some(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            config.port.saturating_add(1),
        ));
    }
    let shutdown = CancellationToken::new();
    let addr = SocketAddr::new(config.bind, config.port);
    let admin_addr = config.admin_bind.filter(|_| config.admin.is_some());
    let shown = |addr: SocketAddr| {
        let host = if addr.ip().is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            addr.ip()
        };
        format!("http://{}", SocketAddr::new(host, addr.port()))
    };
    let webhook_url = format!("{}/webhook", shown(addr));
    let admin_url = format!("{}/admin/", shown(admin_addr.unwrap_or(addr)));
    let (relay, listeners) = tauri::async_runtime::block_on(async {
        let relay = Relay::start(config, shutdown.clone()).await;
        let listeners = bind(addr, admin_addr).await;
        (relay, listeners)
    });
    let relay = relay?;
    let state = relay.state().clone();
    app.manage(state.clone());
    let notifications = tauri::async_runtime::block_on(store::settings::find(
        &state.pool,
        store::settings::NOTIFICATIONS,
    ))?
    .is_none_or(|v| v != "off");

    let (listen_error, task) = match listeners {
        Ok((listener, admin)) => (
            None,
            tauri::async_runtime::spawn(async move {
                if let Err(err) = relay.serve(listener, admin).await {
                    tracing::error!(error = %err, "relay stopped");
                }
            }),
        ),
        Err(message) => {
            tracing::error!("{message}");
            let stop = shutdown.clone();
            (
                Some(message),
                tauri::async_runtime::spawn(async move {
                    stop.cancelled().await;
                    relay.stop().await;
                }),
            )
        }
    };
    app.manage(Desktop {
        webhook_url,
        admin_url,
        admin_user,
        generated_password,
        notifications: notifications.into(),
        listen_error,
        shutdown,
        relay_task: Mutex::new(Some(task)),
        last_health: Mutex::default(),
        last_notified: Mutex::default(),
        last_dead: Mutex::default(),
    });
    let language = tauri::async_runtime::block_on(store::settings::find(
        &state.pool,
        store::settings::LANGUAGE,
    ))?
    .unwrap_or_else(|| {
        let lang = std::env::var("LANG").unwrap_or_default();
        if lang.starts_with("id") {
            "id".into()
        } else {
            "en".into()
        }
    });
    let menu = tray::create(app, tray::labels(&language))?;
    app.manage(menu);
    forward_changes(app.handle().clone(), state);
    if !minimized {
        window::open(app.handle());
    }
    Ok(())
}

/// Binds the webhook listener and, when it has its own address, the admin one; the error says which port.
async fn bind(
    addr: SocketAddr,
    admin: Option<SocketAddr>,
) -> Result<(TcpListener, Option<TcpListener>), String> {
    let busy = |addr: SocketAddr, err: std::io::Error| {
        format!(
            "cannot listen on {addr}: {err} (is another program using port {}?)",
            addr.port()
        )
    };
    let main = TcpListener::bind(addr).await.map_err(|e| busy(addr, e))?;
    let admin = match admin {
        Some(a) => Some(TcpListener::bind(a).await.map_err(|e| busy(a, e))?),
        None => None,
    };
    Ok((main, admin))
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
    let (Ok(routes), Ok(stats)) = (
        service::list_routes(&state).await,
        service::stats(&state).await,
    ) else {
        return;
    };
    let since = chrono::Local::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .and_then(|midnight| midnight.and_local_timezone(chrono::Local).earliest())
        .map_or(0, |midnight| midnight.timestamp_millis());
    let delivered_today = store::deliveries::count_delivered_since(&state.pool, since)
        .await
        .unwrap_or(0);

    let failing: Vec<_> = routes
        .iter()
        .filter(|r| {
            r.health
                .as_ref()
                .is_some_and(|h| h.state != HealthState::Ok)
        })
        .collect();
    let (tray_state, headline) = if let Some(error) = &desktop.listen_error {
        (tray::TrayState::Stopped, error.clone())
    } else if state.dispatcher.is_paused() {
        (tray::TrayState::Stopped, "deliveries paused".to_owned())
    } else if !failing.is_empty() {
        (
            tray::TrayState::Failing,
            format!("{} route(s) failing", failing.len()),
        )
    } else {
        (tray::TrayState::Relaying, "relaying".to_owned())
    };
    let tooltip = format!(
        "Chatgowa — {headline}\nToday: {delivered_today} delivered, {} pending",
        stats.totals.pending
    );
    tray::show(app, tray_state, &tooltip);

    let mut last = desktop
        .last_health
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let mut notes = Vec::new();
    for route in &routes {
        let Some(now) = route.health.as_ref().map(|h| h.state) else {
            continue;
        };
        let name = route
            .name
            .clone()
            .unwrap_or_else(|| format!("inbox {}", route.inbox_id));
        let before = last.insert(route.id, now);
        match (before, now) {
            (Some(HealthState::Ok) | None, HealthState::Failing | HealthState::Dead) => {
                let error = route
                    .health
                    .as_ref()
                    .and_then(|h| h.error.clone())
                    .unwrap_or_default();
                notes.push((
                    format!("route-{}", route.id),
                    format!("{name} is failing"),
                    error,
                ));
            }
            (Some(HealthState::Failing | HealthState::Dead), HealthState::Ok) => {
                notes.push((
                    format!("route-{}", route.id),
                    format!("{name} recovered"),
                    String::new(),
                ));
            }
            _ => {}
        }
    }
    drop(last);
    let mut last_dead = desktop
        .last_dead
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if last_dead.is_some_and(|before| stats.totals.dead > before) {
        notes.push((
            "dead".to_owned(),
            "Deliveries gave up".to_owned(),
            format!(
                "{} deliveries are dead; open Chatgowa to retry them.",
                stats.totals.dead
            ),
        ));
    }
    *last_dead = Some(stats.totals.dead);
    drop(last_dead);
    if !desktop
        .notifications
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        return;
    }
    for (key, title, body) in notes {
        if desktop.may_notify(key) {
            let _ = app.notification().builder().title(title).body(body).show();
        }
    }
}

/// Stops the relay (attempts in flight finish and are recorded), then exits.
pub fn quit(app: &AppHandle) {
    let desktop = app.state::<Desktop>();
    desktop.shutdown.cancel();
    let task = desktop
        .relay_task
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        if let Some(task) = task {
            let _ = task.await;
        }
        app.exit(0);
    });
}
