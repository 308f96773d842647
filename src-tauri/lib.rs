//! Chatgowa: a durable relay from Chatwoot webhooks to GoWA (go-whatsapp-web-multidevice) instances.
//!
//! A webhook is stored in SQLite before it is acknowledged, then delivered by per-conversation lanes with
//! retries, byte for byte, to the GoWA URL that serves its inbox.
//!
//! # Layout
//! Each module uses only modules listed below it (`tests/it/layers.rs` checks this).
//! - [`cli`]: the modes and subcommands (`healthcheck`, `hash-password`); `main.rs` picks one.
//! - [`desktop`]: the tray app (Tauri, behind the `desktop` feature), its movable listeners and tray status.
//! - [`app`]: the composition root: start, serve and stop the relay; the headless runner.
//! - [`server`]: the HTTP surfaces (webhook, health, admin) and a listener that can be stopped on its own.
//! - [`admin`]: the use-cases (`service`, `settings`) shared by HTTP, Tauri commands and the tray; Basic Auth.
//! - [`state`]: [`state::AppState`], what handlers, commands and tasks share.
//! - [`relay`]: `POST /webhook` — parse the routing fields, check the signature, store, answer.
//! - [`retention`]: prunes finished deliveries.
//! - [`feedback`]: tells a linked Chatwoot about replies that failed, were delayed or went out after all.
//! - [`delivery`]: lanes, the GoWA client and the retry rules.
//! - [`chatwoot`]: Chatwoot's REST API (accounts, inboxes, webhooks, the typing indicator).
//! - [`store`]: all SQL; the group-commit [`store::Writer`].
//! - [`container`]: refuses an ephemeral database inside a container.
//! - [`logging`]: log filter and format, and the desktop's log file.
//! - [`login`]: admin credentials, password hashing, the throttle of failed logins.
//! - [`config`]: settings from flags, environment and `.env`, validated once at startup.
//! - [`metrics`]: Prometheus counters and gauges, a sink.
//! - [`events`]: change notifications for open screens.
//! - [`shutdown`]: signals, and the stop of one listener's requests.
//! - [`error`]: the crate's error and the `{code, message}` answer of both transports.
//! - [`ids`]: typed ids.

pub mod admin;
pub mod app;
pub mod chatwoot;
pub mod cli;
pub mod config;
pub mod container;
pub mod delivery;
pub mod desktop;
pub mod error;
pub mod events;
pub mod feedback;
pub mod ids;
pub mod logging;
pub mod login;
pub mod metrics;
pub mod relay;
pub mod retention;
pub mod server;
pub mod shutdown;
pub mod state;
pub mod store;
