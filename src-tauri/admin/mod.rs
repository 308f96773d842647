//! The admin API: route management behind HTTP Basic Auth.
//!
//! `service` holds the use-cases (shared by HTTP handlers and, later, Tauri commands); `handlers` adapts them
//! to axum; `dto` is the wire format; `panel` serves the browser UI; `auth` guards it all.

pub mod auth;
pub mod dto;
pub mod handlers;
pub mod panel;
pub mod service;
