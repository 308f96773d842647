//! The main window: created on demand, destroyed on close (WebKit gives its memory back; the relay and the
//! tray stay). It loads the bundled `ui/`, never a remote URL.

use tauri::{AppHandle, Manager, WebviewUrl, WebviewWindowBuilder};

pub const MAIN: &str = "main";

/// Shows the main window, creating it if it was closed.
pub fn open(app: &AppHandle) {
    if let Some(window) = app.get_webview_window(MAIN) {
        let _ = window.unminimize();
        let _ = window.show();
        let _ = window.set_focus();
        return;
    }
    let built = WebviewWindowBuilder::new(app, MAIN, WebviewUrl::App("index.html".into()))
        .title("Chatgowa")
        .inner_size(1120.0, 760.0)
        .min_inner_size(360.0, 480.0)
        .build();
    if let Err(err) = built {
        tracing::error!(error = %err, "cannot open the window");
    }
}
