//! The desktop app: the same relay as `--server`, plus a tray icon and a native window whose screens call the
//! admin use-cases over Tauri commands. Only the Tauri parts are behind the `desktop` feature and name `tauri`
//! (`launch` builds the app, `native` is the running app, `commands`, `tray`, `window`); the movable listeners
//! and what the tray shows are plain code, built and tested in both feature sets.

pub mod listeners;
pub mod status;

#[cfg(feature = "desktop")]
mod commands;
#[cfg(feature = "desktop")]
mod launch;
#[cfg(feature = "desktop")]
mod native;
#[cfg(feature = "desktop")]
mod tray;
#[cfg(feature = "desktop")]
mod window;

use crate::config::Settings;

/// What `chatgowa` without `--server` runs: the desktop app (tray and window) when this build has it, else the
/// headless relay. `minimized` starts in the tray without a window (autostart uses it).
///
/// # Errors
/// Invalid configuration, the database or the port, or the desktop app cannot start.
pub fn run(settings: &Settings, minimized: bool) -> anyhow::Result<()> {
    #[cfg(feature = "desktop")]
    return launch::run(settings, minimized);
    #[cfg(not(feature = "desktop"))]
    {
        let _ = minimized;
        crate::app::run_headless(settings)
    }
}
