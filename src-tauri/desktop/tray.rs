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

/// Items whose text or check mark changes.
pub struct TrayMenu {
    pause: MenuItem<Wry>,
    autostart: CheckMenuItem<Wry>,
}

impl TrayMenu {
    pub fn show_autostart(&self, on: bool) {
        let _ = self.autostart.set_checked(on);
    }
}

pub fn create(app: &App) -> tauri::Result<TrayMenu> {
    let autostart_on = app.autolaunch().is_enabled().unwrap_or(false);
    let pause = MenuItem::with_id(app, ids::PAUSE, "Pause deliveries", true, None::<&str>)?;
    let autostart = CheckMenuItem::with_id(
        app,
        ids::AUTOSTART,
        "Start at login",
        true,
        autostart_on,
        None::<&str>,
    )?;
    let menu = Menu::with_items(
        app,
        &[
            &MenuItem::with_id(app, ids::OPEN, "Open Chatgowa", true, None::<&str>)?,
            &MenuItem::with_id(
                app,
                ids::OPEN_BROWSER,
                "Open admin in browser",
                true,
                None::<&str>,
            )?,
            &MenuItem::with_id(app, ids::COPY_URL, "Copy webhook URL", true, None::<&str>)?,
            &PredefinedMenuItem::separator(app)?,
            &pause,
            &autostart,
            &PredefinedMenuItem::separator(app)?,
            &MenuItem::with_id(app, ids::QUIT, "Quit", true, None::<&str>)?,
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
    Ok(TrayMenu { pause, autostart })
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
                let _ = menu.pause.set_text(if paused {
                    "Resume deliveries"
                } else {
                    "Pause deliveries"
                });
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
