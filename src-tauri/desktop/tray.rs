//! The tray icon: state at a glance (relaying / a route failing / stopped), today's counts in the tooltip, and
//! the menu. What a menu item does is decided by the caller (`native::on_menu`), so this module knows nothing
//! of the app's state.

use tauri::image::Image;
use tauri::menu::{CheckMenuItem, Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{MouseButton, MouseButtonState, TrayIconBuilder, TrayIconEvent};
use tauri::{App, AppHandle, Wry};
use tauri_plugin_autostart::ManagerExt as _;

use super::status::{TrayState, Words};
use super::window;

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

fn icon(state: TrayState) -> &'static [u8] {
    match state {
        TrayState::Relaying => include_bytes!("../../icons/tray/ok.png"),
        TrayState::Failing => include_bytes!("../../icons/tray/failing.png"),
        TrayState::Stopped => include_bytes!("../../icons/tray/stopped.png"),
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
    words: std::sync::Mutex<Words>,
}

impl TrayMenu {
    pub fn show_autostart(&self, on: bool) {
        let _ = self.autostart.set_checked(on);
    }

    pub fn show_paused(&self, paused: bool) {
        let words = *self
            .words
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = self
            .pause
            .set_text(if paused { words.resume } else { words.pause });
    }

    /// Relabels the menu in `words`' language.
    pub fn relabel(&self, words: Words, paused: bool) {
        *self
            .words
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = words;
        let _ = self.open.set_text(words.open);
        let _ = self.open_browser.set_text(words.open_browser);
        let _ = self.copy_url.set_text(words.copy_url);
        let _ = self.autostart.set_text(words.autostart);
        let _ = self.quit.set_text(words.quit);
        self.show_paused(paused);
    }
}

/// Creates the tray icon with its menu; `on_menu` handles a click on an item (by its id in [`ids`]).
pub fn create(app: &App, words: Words, on_menu: fn(&AppHandle, &str)) -> tauri::Result<TrayMenu> {
    let autostart_on = app.autolaunch().is_enabled().unwrap_or(false);
    let item = |id: &str, text: &str| MenuItem::with_id(app, id, text, true, None::<&str>);
    let items = TrayMenu {
        open: item(ids::OPEN, words.open)?,
        open_browser: item(ids::OPEN_BROWSER, words.open_browser)?,
        copy_url: item(ids::COPY_URL, words.copy_url)?,
        pause: item(ids::PAUSE, words.pause)?,
        autostart: CheckMenuItem::with_id(
            app,
            ids::AUTOSTART,
            words.autostart,
            true,
            autostart_on,
            None::<&str>,
        )?,
        quit: item(ids::QUIT, words.quit)?,
        words: std::sync::Mutex::new(words),
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
        .icon(Image::from_bytes(icon(TrayState::Relaying))?)
        .tooltip("Chatgowa")
        .menu(&menu)
        .show_menu_on_left_click(false)
        .on_menu_event(move |app, event| on_menu(app, event.id().as_ref()))
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

/// Sets the icon and the tooltip.
pub fn show(app: &AppHandle, state: TrayState, tooltip: &str) {
    if let Some(tray) = app.tray_by_id(TRAY_ID) {
        if let Ok(icon) = Image::from_bytes(icon(state)) {
            let _ = tray.set_icon(Some(icon));
        }
        let _ = tray.set_tooltip(Some(tooltip));
    }
}
