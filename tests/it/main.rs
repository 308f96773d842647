//! One integration-test binary: router tests without sockets, delivery tests against a GoWA stand-in on
//! loopback, and end-to-end tests of the real `chatgowa` binary.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

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
mod layers;
mod link;
mod listeners;
mod ops;
mod packages;
mod panel;
mod replies;
mod router;
mod security;
mod setup;
mod support;
mod ui;
mod webdriver;
