//! The admin side: the use-cases behind the panel, the tray and `/metrics`, and the HTTP adapters for them.
//!
//! `service` (routes, deliveries, stats, metrics), `settings` (the app's own settings) and `chatwoot` (the link to
//! Chatwoot's API: accounts, the webhook, inboxes, the reachability check) hold the use-cases,
//! called alike by the HTTP `handlers` and the desktop's Tauri commands; `dto` is the wire format; `panel`
//! serves the browser UI; `auth` guards the HTTP side.

pub mod auth;
pub mod chatwoot;
pub mod dto;
pub mod glimpse;
pub mod handlers;
pub mod panel;
pub mod service;
pub mod settings;
