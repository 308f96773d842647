//! Builds and runs the Tauri app: plugins, the command list, and the start-up that opens the relay, the tray
//! and (unless started minimized) the window.

use std::net::{IpAddr, Ipv4Addr};

use tauri::{Manager, RunEvent};
use tauri_plugin_autostart::MacosLauncher;
use tokio_util::sync::CancellationToken;

use super::listeners::Locks;
use super::native::{self, Desktop};
use super::{commands, tray, window};
use crate::config::{Config, Settings};
use crate::logging;

/// The database file in the app-data directory; development builds keep theirs apart.
const DB_FILE: &str = if cfg!(debug_assertions) {
    "chatgowa-dev.db"
} else {
    "chatgowa.db"
};

/// Runs the Tauri app until Quit.
///
/// # Errors
/// Invalid configuration, or Tauri cannot start.
// Long on purpose: one line per command the window may call, where Tauri needs them all at once.
pub fn run(settings: &Settings, minimized: bool) -> anyhow::Result<()> {
    #[cfg(target_os = "linux")]
    lean_graphics();
    let mut config = Config::from_settings(settings, IpAddr::V4(Ipv4Addr::UNSPECIFIED))?;
    if settings.trusted_proxies.is_none() {
        // A tunnel on this PC (cloudflared, ngrok) connects from loopback and says who is behind it.
        config.trusted_proxies = crate::config::loopback_networks();
    }
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
            commands::retry_deliveries,
            commands::discard_deliveries,
            commands::list_unrouted,
            commands::desktop_info,
            commands::set_start_at_login,
            commands::set_notifications,
            commands::set_language,
            commands::set_addresses,
            commands::new_password,
            commands::chatwoot_status,
            commands::set_public_url,
            commands::link_chatwoot,
            commands::unlink_chatwoot,
            commands::register_webhook,
            commands::check_reach,
            commands::chatwoot_inboxes,
            commands::clear_inbox_webhook,
            commands::held_replies,
            commands::decide_held,
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
    app: &mut tauri::App,
    mut config: Config,
    settings: &Settings,
    minimized: bool,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    logging::init(config.log_format, Some(&app.path().app_log_dir()?));
    if settings.database_url.is_none() {
        config.database = crate::config::Database::Sqlite(app.path().app_data_dir()?.join(DB_FILE));
    }
    let given = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.trim().is_empty());
    let locks = Locks::new(
        given(&settings.port) || given(&settings.bind),
        given(&settings.admin_bind),
    );
    let password_from_env = config.admin.is_some();
    let shutdown = CancellationToken::new();
    let started = tauri::async_runtime::block_on(native::start(config, &locks, shutdown.clone()))?;
    let state = started.relay.state().clone();
    app.manage(state.clone());
    app.manage(Desktop::new(started, locks, password_from_env, shutdown));
    let menu = tray::create(app, app.state::<Desktop>().words(), native::on_menu)?;
    app.manage(menu);
    native::forward_changes(app.handle().clone(), state);
    // SIGTERM (a package removal, the session ending) and Ctrl-C quit as the tray's Quit does.
    let handle = app.handle().clone();
    tauri::async_runtime::spawn(async move {
        crate::shutdown::signal().await;
        native::quit(&handle);
    });
    if !minimized {
        window::open(app.handle());
    }
    Ok(())
}
