//! The tray icon: state at a glance (relaying / a route failing / stopped), today's counts in the tooltip, and
//! the menu. Menu handlers are one-liners over functions of [`super`], which tests can call directly (there is
//! no tray host to click on in a headless session).

use std::collections::HashMap;

use tauri::image::Image;
use tauri::menu::{CheckMenuItem, Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{MouseButton, MouseButtonState, TrayIconBuilder, TrayIconEvent};
use tauri::{App, AppHandle, Manager, Wry};
use tauri_plugin_autostart::ManagerExt as _;

use super::{Desktop, window};

/// Menu item ids.
pub mod ids {
    pub const OPEN: &str = "open";
    pub const OPEN_BROWSER: &str = "open-browser";
    pub const COPY_URL: &str = "copy-webhook-url";
    pub const PAUSE: &str = "pause";
    pub const AUTOSTART: &str = "autostart";
    pub const QUIT: &str = "quit";
}

const TRAY_ID: &str = "chatgowa";

/// What the icon shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrayState {
    Relaying,
    Failing,
    Stopped,
}

impl TrayState {
    fn icon(self) -> &'static [u8] {
        match self {
            Self::Relaying => include_bytes!("../../icons/tray/ok.png"),
            Self::Failing => include_bytes!("../../icons/tray/failing.png"),
            Self::Stopped => include_bytes!("../../icons/tray/stopped.png"),
        }
    }
}

/// The tray's words in one language (the window's language, chosen there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Labels {
    pub open: &'static str,
    pub open_browser: &'static str,
    pub copy_url: &'static str,
    pub pause: &'static str,
    pub resume: &'static str,
    pub autostart: &'static str,
    pub quit: &'static str,
}

/// `id` (Bahasa Indonesia) or anything else (English).
pub fn labels(language: &str) -> Labels {
    if language == "id" {
        Labels {
            open: "Buka Chatgowa",
            open_browser: "Buka admin di browser",
            copy_url: "Salin URL webhook",
            pause: "Jeda pengiriman",
            resume: "Lanjutkan pengiriman",
            autostart: "Jalankan saat login",
            quit: "Keluar",
        }
    } else {
        Labels {
            open: "Open Chatgowa",
            open_browser: "Open admin in browser",
            copy_url: "Copy webhook URL",
            pause: "Pause deliveries",
            resume: "Resume deliveries",
            autostart: "Start at login",
            quit: "Quit",
        }
    }
}

/// The menu's items, kept to change their text or check mark.
pub struct TrayMenu {
    open: MenuItem<Wry>,
    open_browser: MenuItem<Wry>,
    copy_url: MenuItem<Wry>,
    pause: MenuItem<Wry>,
    autostart: CheckMenuItem<Wry>,
    quit: MenuItem<Wry>,
    labels: std::sync::Mutex<Labels>,
}

impl TrayMenu {
    pub fn show_autostart(&self, on: bool) {
        let _ = self.autostart.set_checked(on);
    }

    fn show_paused(&self, paused: bool) {
        let labels = *self
            .labels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = self
            .pause
            .set_text(if paused { labels.resume } else { labels.pause });
    }

    /// Relabels the menu in `labels`' language.
    pub fn relabel(&self, labels: Labels, paused: bool) {
        *self
            .labels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = labels;
        let _ = self.open.set_text(labels.open);
        let _ = self.open_browser.set_text(labels.open_browser);
        let _ = self.copy_url.set_text(labels.copy_url);
        let _ = self.autostart.set_text(labels.autostart);
        let _ = self.quit.set_text(labels.quit);
        self.show_paused(paused);
    }
}

pub fn create(app: &App, labels: Labels) -> tauri::Result<TrayMenu> {
    let autostart_on = app.autolaunch().is_enabled().unwrap_or(false);
    let item = |id: &str, text: &str| MenuItem::with_id(app, id, text, true, None::<&str>);
    let items = TrayMenu {
        open: item(ids::OPEN, labels.open)?,
        open_browser: item(ids::OPEN_BROWSER, labels.open_browser)?,
        copy_url: item(ids::COPY_URL, labels.copy_url)?,
        pause: item(ids::PAUSE, labels.pause)?,
        autostart: CheckMenuItem::with_id(
            app,
            ids::AUTOSTART,
            labels.autostart,
            true,
            autostart_on,
            None::<&str>,
        )?,
        quit: item(ids::QUIT, labels.quit)?,
        labels: std::sync::Mutex::new(labels),
    };
    let menu = Menu::with_items(
        app,
        &[
            &items.open,
            &items.open_browser,
            &items.copy_url,
            &PredefinedMenuItem::separator(app)?,
            &items.pause,
            &items.autostart,
            &PredefinedMenuItem::separator(app)?,
            &items.quit,
        ],
    )?;
    TrayIconBuilder::with_id(TRAY_ID)
        .icon(Image::from_bytes(TrayState::Relaying.icon())?)
        .tooltip("Chatgowa")
        .menu(&menu)
        .show_menu_on_left_click(false)
        .on_menu_event(|app, event| on_menu(app, event.id().as_ref()))
        .on_tray_icon_event(|tray, event| {
            if let TrayIconEvent::Click {
                button: MouseButton::Left,
                button_state: MouseButtonState::Up,
                ..
            } = event
            {
                window::open(tray.app_handle());
            }
        })
        .build(app)?;
    Ok(items)
}

fn on_menu(app: &AppHandle, id: &str) {
    let desktop = app.state::<Desktop>();
    match id {
        ids::OPEN => window::open(app),
        ids::OPEN_BROWSER => desktop.open_admin_in_browser(app),
        ids::COPY_URL => desktop.copy_webhook_url(app),
        ids::PAUSE => {
            let paused = desktop.toggle_pause(app);
            if let Some(menu) = app.try_state::<TrayMenu>() {
                menu.show_paused(paused);
            }
        }
        ids::AUTOSTART => {
            let on = app.autolaunch().is_enabled().unwrap_or(false);
            desktop.set_autostart(app, !on);
        }
        ids::QUIT => super::quit(app),
        _ => {}
    }
}

/// Sets the icon and the tooltip.
pub fn show(app: &AppHandle, state: TrayState, tooltip: &str) {
    if let Some(tray) = app.tray_by_id(TRAY_ID) {
        if let Ok(icon) = Image::from_bytes(state.icon()) {
            let _ = tray.set_icon(Some(icon));
        }
        let _ = tray.set_tooltip(Some(tooltip));
    }
}

/// Route health as last seen, to notice changes worth a notification.
pub type HealthMemory = HashMap<crate::ids::RouteId, crate::admin::dto::HealthState>;

#[cfg(test)]
mod tests {
    use super::labels;

    #[test]
    fn the_tray_speaks_both_languages() {
        assert_eq!(labels("en").quit, "Quit");
        assert_eq!(labels("id").quit, "Keluar");
        assert_eq!(labels("fr"), labels("en"));
        let id = labels("id");
        assert_ne!(id.pause, id.resume);
    }
}
