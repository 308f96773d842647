//! One integration-test binary: router tests without sockets, delivery tests against a GoWA stand-in on
//! loopback, and end-to-end tests of the real `chatgowa` binary.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

/// Runs `$body` with `$pool` bound to the pool of either backend (the relay's `Db`): one query for both.
macro_rules! on_db {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            chatgowa_lib::store::Db::Sqlite($pool) => $body,
            chatgowa_lib::store::Db::Postgres($pool) => $body,
        }
    };
}

mod admin_api;
mod bad_input;
mod browser;
mod catchup;
mod chatwoot_api;
mod delivery;
mod desktop;
mod door;
mod drift;
mod e2e;
mod faults;
mod feedback;
mod forged;
mod layers;
mod link;
mod listeners;
mod ops;
mod packages;
mod panel;
mod postgres;
mod promise;
mod replicas;
mod replies;
mod router;
mod security;
mod setup;
mod support;
mod ui;
mod webdriver;
