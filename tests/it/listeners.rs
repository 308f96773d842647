//! The desktop's listeners moving while the relay runs, with real sockets on loopback: a new port answers and
//! the old one refuses, a busy port changes nothing and says why, a listener that could not start can be moved
//! to a free port, an open event stream does not hold up a move, and the addresses are kept for the next start.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use chatgowa_lib::app::App;
use chatgowa_lib::desktop::listeners::{self, Addresses, AddressesInput, Listeners, Locks};
use chatgowa_lib::error::Error;
use chatgowa_lib::state::AppState;
use chatgowa_lib::store::settings;
use tokio_util::sync::CancellationToken;

use crate::support::{Admin, free_port, test_config};

fn local(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

fn free_pair() -> Addresses {
    Addresses {
        webhook: local(free_port()),
        admin: local(free_port()),
    }
}

struct Running {
    relay: App,
    state: AppState,
    shutdown: CancellationToken,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn relay() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let relay = App::start(test_config(dir.path().join("relay.db")), shutdown.clone())
        .await
        .unwrap();
    Running {
        state: relay.state().clone(),
        relay,
        shutdown,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap(),
        _dir: dir,
    }
}

impl Running {
    /// The admin API on `addr`.
    fn admin(&self, addr: SocketAddr) -> Admin {
        Admin::new(format!("http://{addr}")).with_client(self.http.clone())
    }

    /// The status of `GET path` on `addr`, or `None` when nothing answers there.
    async fn get(&self, addr: SocketAddr, path: &str) -> Option<u16> {
        let response = self
            .admin(addr)
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .ok()?;
        Some(response.status().as_u16())
    }

    async fn stop(self, listeners: Listeners) {
        self.shutdown.cancel();
        tokio::time::timeout(
            Duration::from_secs(10),
            self.relay.run(listeners.into_servers()),
        )
        .await
        .expect("the relay stops with its listeners")
        .unwrap();
    }
}

fn field_of(err: &Error) -> Option<&'static str> {
    match err {
        Error::Invalid { field, .. } => *field,
        _ => None,
    }
}

#[tokio::test]
async fn the_webhook_and_the_admin_listen_apart_and_move_without_a_restart() {
    let r = relay().await;
    let first = free_pair();
    let mut listeners = Listeners::start(r.state.clone(), r.relay.limits().clone(), first).await;
    let status = listeners.status();
    assert!(status.webhook_listening && status.admin_listening && status.problem.is_none());
    assert_eq!(r.get(first.webhook, "/healthz").await, Some(200));
    assert_eq!(
        r.get(first.webhook, "/admin/routes").await,
        Some(404),
        "the webhook port serves no admin"
    );
    assert_eq!(r.get(first.admin, "/admin/routes").await, Some(200));
    let webhook_port = |r: &Running| {
        let state = r.state.clone();
        async move {
            chatgowa_lib::admin::service::stats(&state)
                .await
                .unwrap()
                .webhook_port
        }
    };
    assert_eq!(
        webhook_port(&r).await,
        Some(first.webhook.port()),
        "the panel learns where the webhook is"
    );

    let second = Addresses {
        webhook: local(free_port()),
        admin: first.admin,
    };
    listeners.move_to(second).await.unwrap();
    assert_eq!(r.get(second.webhook, "/healthz").await, Some(200));
    assert_eq!(
        r.get(first.webhook, "/healthz").await,
        None,
        "the old port is closed"
    );
    assert_eq!(r.get(first.admin, "/admin/routes").await, Some(200));
    assert_eq!(listeners.status().wanted, second);
    assert_eq!(webhook_port(&r).await, Some(second.webhook.port()));
    r.stop(listeners).await;
}

#[tokio::test]
async fn a_busy_port_changes_nothing_and_says_which_port() {
    let r = relay().await;
    let first = free_pair();
    let mut listeners = Listeners::start(r.state.clone(), r.relay.limits().clone(), first).await;
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap();

    let err = listeners
        .move_to(Addresses {
            webhook: busy_addr,
            admin: first.admin,
        })
        .await
        .unwrap_err();
    assert_eq!(field_of(&err), Some("webhookPort"));
    let message = err.to_string();
    assert!(
        message.contains(&busy_addr.to_string()) && message.contains("another program"),
        "{message}"
    );
    assert_eq!(
        r.get(first.webhook, "/healthz").await,
        Some(200),
        "the old port keeps serving"
    );
    assert_eq!(listeners.status().wanted, first);
    assert_eq!(listeners.status().problem, None, "it is still listening");
    r.stop(listeners).await;
}

#[tokio::test]
async fn a_listener_that_could_not_start_is_reported_and_can_move_to_a_free_port() {
    let r = relay().await;
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let wanted = Addresses {
        webhook: busy.local_addr().unwrap(),
        admin: local(free_port()),
    };
    let mut listeners = Listeners::start(r.state.clone(), r.relay.limits().clone(), wanted).await;
    let status = listeners.status();
    assert!(!status.webhook_listening && status.admin_listening);
    let problem = status.problem.expect("the busy port is reported");
    assert!(problem.contains(&wanted.webhook.to_string()), "{problem}");
    assert_eq!(
        r.get(wanted.admin, "/healthz").await,
        Some(200),
        "the admin listens anyway"
    );

    let fixed = Addresses {
        webhook: local(free_port()),
        admin: wanted.admin,
    };
    listeners.move_to(fixed).await.unwrap();
    let status = listeners.status();
    assert!(status.webhook_listening && status.problem.is_none());
    assert_eq!(r.get(fixed.webhook, "/healthz").await, Some(200));
    drop(busy);
    r.stop(listeners).await;
}

#[tokio::test]
async fn the_same_port_moves_to_another_ip() {
    let r = relay().await;
    let port = free_port();
    let everywhere = Addresses {
        webhook: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
        admin: local(free_port()),
    };
    let mut listeners =
        Listeners::start(r.state.clone(), r.relay.limits().clone(), everywhere).await;
    assert!(listeners.status().webhook_listening);
    let loopback = Addresses {
        webhook: local(port),
        ..everywhere
    };
    listeners.move_to(loopback).await.unwrap();
    assert_eq!(listeners.status().wanted, loopback);
    assert_eq!(r.get(loopback.webhook, "/healthz").await, Some(200));
    r.stop(listeners).await;
}

#[tokio::test]
async fn an_open_event_stream_does_not_hold_up_a_move() {
    let r = relay().await;
    let first = free_pair();
    let mut listeners = Listeners::start(r.state.clone(), r.relay.limits().clone(), first).await;
    let response = r
        .admin(first.admin)
        .request(reqwest::Method::GET, "/admin/events")
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = response;

    let moved = Addresses {
        admin: local(free_port()),
        ..first
    };
    tokio::time::timeout(Duration::from_secs(3), listeners.move_to(moved))
        .await
        .expect("the move does not wait for the event stream")
        .unwrap();
    // The stream on the old listener ends (rather than being cut after the grace time).
    let ended = tokio::time::timeout(Duration::from_secs(3), async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the old event stream ended");
    assert_eq!(r.get(moved.admin, "/admin/stats").await, Some(200));
    assert_eq!(r.get(first.admin, "/admin/stats").await, None);
    r.stop(listeners).await;
}

#[tokio::test]
async fn addresses_are_kept_for_the_next_start_unless_the_environment_sets_them() {
    let r = relay().await;
    let config = &r.state.config;
    let none = Locks::default();
    let defaults = listeners::initial(&r.state, &none).await.unwrap();
    assert_eq!(
        defaults.admin,
        local(config.port + 1),
        "the admin defaults to loopback, next port"
    );

    let chosen = free_pair();
    let listeners = Listeners::start(r.state.clone(), r.relay.limits().clone(), chosen).await;
    listeners.save(&none).await.unwrap();
    assert_eq!(listeners::initial(&r.state, &none).await.unwrap(), chosen);
    assert_eq!(
        settings::find(&r.state.db, settings::WEBHOOK_ADDRESS)
            .await
            .unwrap(),
        Some(chosen.webhook.to_string())
    );
    let locked = Locks::new(true, false);
    assert_eq!(
        listeners::initial(&r.state, &locked).await.unwrap().webhook,
        SocketAddr::new(config.bind, config.port),
        "PORT / CHATGOWA_BIND win over the app's choice"
    );
    r.stop(listeners).await;
}

#[test]
fn the_settings_form_is_checked_field_by_field() {
    let input = |wh: &str, wp: i64, ah: &str, ap: i64| AddressesInput {
        webhook_host: wh.into(),
        webhook_port: wp,
        admin_host: ah.into(),
        admin_port: ap,
    };
    let good = input(" 0.0.0.0 ", 3000, "127.0.0.1", 3001).parse().unwrap();
    assert_eq!(good.webhook.to_string(), "0.0.0.0:3000");
    assert_eq!(
        input("::", 3000, "::1", 3001)
            .parse()
            .unwrap()
            .webhook
            .to_string(),
        "[::]:3000"
    );
    for (bad, field) in [
        (input("gowa.local", 3000, "127.0.0.1", 3001), "webhookHost"),
        (input("0.0.0.0", 0, "127.0.0.1", 3001), "webhookPort"),
        (input("0.0.0.0", 65536, "127.0.0.1", 3001), "webhookPort"),
        (input("0.0.0.0", -1, "127.0.0.1", 3001), "webhookPort"),
        (input("0.0.0.0", 3000, "", 3001), "adminHost"),
        (input("0.0.0.0", 3000, "127.0.0.1", 70_000), "adminPort"),
        (input("0.0.0.0", 3000, "127.0.0.1", 3000), "adminPort"),
        (input("127.0.0.1", 3000, "127.0.0.1", 3000), "adminPort"),
    ] {
        let err = bad.parse().unwrap_err();
        assert_eq!(field_of(&err), Some(field), "{bad:?}: {err}");
    }
    // Same port on two different specific addresses is fine.
    input("127.0.0.1", 3000, "127.0.0.2", 3000).parse().unwrap();
}
