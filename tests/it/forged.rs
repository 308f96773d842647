//! No stranger sends WhatsApp messages in the business's name, and no reply falls between the features: tried from
//! the outside as an attacker and as an unlucky office would meet the relay. The real binary where the setup is
//! what the README recommends.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::chatwoot_api::{ADMIN_TOKEN, ChatwootApi};
use crate::support::{
    ADMIN_PASS, ADMIN_USER, Admin, Gowa, Server, TestRelay, eventually, fixture, free_port,
    http_client, signed_webhook,
};

const WAIT: Duration = Duration::from_secs(20);

/// Posts `body` to `base`'s webhook, signed with `secret` now (or unsigned); the status and the answer.
async fn post(base: &str, body: &[u8], secret: Option<&str>) -> (StatusCode, Value) {
    let http = http_client();
    let request = match secret {
        Some(secret) => signed_webhook(&http, base, body.to_vec(), secret),
        None => http
            .post(format!("{base}/webhook"))
            .header("content-type", "application/json")
            .body(body.to_vec()),
    };
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The agent's reply of the fixture (account 1, inbox 7) as message `id`, changed by `edit`.
fn reply(id: i64, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut body: Value =
        serde_json::from_slice(&fixture("message_created.outgoing_text.json")).unwrap();
    body["id"] = id.into();
    edit(&mut body);
    serde_json::to_vec(&body).unwrap()
}

#[tokio::test]
async fn a_linked_relay_refuses_every_unsigned_reply_whatever_its_account_field_says() {
    let _heavy = crate::support::heavy().await;
    let chatwoot = ChatwootApi::start().await;
    let gowa = Gowa::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}/webhook");
    // The setup the README recommends: the account linked by the environment, no other secret.
    let env = [
        ("CHATGOWA_PUBLIC_URL", public.as_str()),
        ("CHATGOWA_CHATWOOT_URL", chatwoot.base.as_str()),
        ("CHATGOWA_CHATWOOT_ACCOUNT_ID", "1"),
        ("CHATGOWA_CHATWOOT_TOKEN", ADMIN_TOKEN),
        ("CHATGOWA_CATCHUP_INTERVAL", "1h"),
    ];
    let server = Server::spawn_logging(dir.path(), port, &env);
    server.wait_healthy().await;
    let admin = Admin::login(server.base(), ADMIN_USER, ADMIN_PASS);
    eventually("the webhook registered", WAIT, || async {
        let status = admin.get_ok("/admin/chatwoot").await;
        (status["links"][0]["webhook"]["current"] == true).then_some(())
    })
    .await;
    server.add_route(7, &gowa.url("/chatwoot/webhook")).await;
    // An inbox of no linked account, routed by hand.
    server
        .add_route(55, &gowa.url("/chatwoot/webhook/other"))
        .await;
    let secret = chatwoot.hooks()[0].secret.clone();
    let base = server.base();

    let forged = [
        ("as Chatwoot wrote it", reply(9101, |_| {})),
        (
            "without the account",
            reply(9102, |b| {
                b.as_object_mut().unwrap().remove("account");
                b["conversation"].as_object_mut().unwrap().remove("account");
            }),
        ),
        (
            "with the account id as a string",
            reply(9103, |b| b["account"] = json!({"id": "+3"})),
        ),
        (
            "with an account that is not linked",
            reply(9104, |b| {
                b["account"] = json!({"id": 99});
                b["conversation"]["account"] = json!({"id": 99});
            }),
        ),
        (
            "for an inbox of no linked account",
            reply(9105, |b| {
                b["inbox"] = json!({"id": 55});
                b["conversation"]["inbox_id"] = json!(55);
                b["account"] = json!({"id": 99});
            }),
        ),
        ("an event without an inbox", fixture("contact_created.json")),
    ];
    for (case, body) in &forged {
        let (status, answer) = post(&base, body, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {answer}");
        let (status, answer) = post(&base, body, Some("a guess")).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{case}, signed wrongly: {answer}"
        );
    }
    // Nothing was stored, and no dedupe key was taken: the real reply with the same id is queued and sent.
    let (status, answer) = post(&base, &forged[0].1, Some(&secret)).await;
    assert_eq!(
        (status, answer["queued"].clone()),
        (StatusCode::OK, json!(true)),
        "{answer}"
    );
    gowa.wait_for("the real reply", WAIT, |r| r.len() == 1)
        .await;
    let stats = eventually("the real reply recorded", WAIT, || async {
        let stats = admin.get_ok("/admin/stats").await;
        (stats["totals"]["delivered"] == 1).then_some(stats)
    })
    .await;
    assert_eq!(stats["totals"]["pending"], 0, "{stats}");
    assert_eq!(stats["webhooksSigned"], true);
    assert_eq!(admin.get_ok("/healthz").await["webhooks"], "signed");
    let deliveries = admin.get_ok("/admin/deliveries").await;
    assert_eq!(
        deliveries["deliveries"].as_array().unwrap().len(),
        1,
        "{deliveries}"
    );
    assert_eq!(gowa.received().len(), 1, "no forged reply reached GoWA");
    let log = server.stop_and_read_log();
    assert!(!log.contains(&secret), "the secret is never logged");
}

#[tokio::test]
async fn a_relay_that_knows_no_secret_says_that_anyone_can_send_in_its_name() {
    let gowa = Gowa::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = Server::spawn_logging(dir.path(), port, &[]);
    server.wait_healthy().await;
    server.add_route(7, &gowa.url("/chatwoot/webhook")).await;
    let admin = Admin::login(server.base(), ADMIN_USER, ADMIN_PASS);
    assert_eq!(admin.get_ok("/admin/stats").await["webhooksSigned"], false);
    // `/healthz` tells the admin, and nobody else.
    let health = admin.get_ok("/healthz").await;
    assert_eq!(health["webhooks"], "unsigned", "{health}");
    assert!(
        health["warning"]
            .as_str()
            .unwrap()
            .contains("anyone who can reach")
    );
    let stranger = Admin::login(server.base(), ADMIN_USER, "a guess");
    assert_eq!(stranger.get_ok("/healthz").await, json!({"status": "ok"}));
    let anyone = crate::support::get_json(&format!("{}/healthz", server.base())).await;
    assert_eq!(anyone, json!({"status": "ok"}));
    let (status, answer) = post(&server.base(), &reply(9201, |_| {}), None).await;
    assert_eq!(
        (status, answer["queued"].clone()),
        (StatusCode::OK, json!(true))
    );
    let log = server.stop_and_read_log();
    assert!(
        log.contains("anyone who can reach the webhook port can send WhatsApp messages"),
        "{log}"
    );
}

#[tokio::test]
async fn a_secret_anywhere_means_every_webhook_must_be_signed() {
    let gowa = Gowa::start().await;
    let relay = TestRelay::start(|_| {}).await;
    relay
        .add_route(7, &gowa.url("/chatwoot/webhook"), None)
        .await;
    assert_eq!(
        relay.admin.get_ok("/admin/stats").await["webhooksSigned"],
        false
    );
    // Another inbox gets a secret of its own: inbox 7's webhooks now need one too.
    let (status, body) = relay
        .admin
        .post_json(
            "/admin/routes",
            json!({"inboxId": 8, "webhookUrl": gowa.url("/chatwoot/webhook/8"), "chatwootSecret": "inbox-8"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        relay.admin.get_ok("/admin/stats").await["webhooksSigned"],
        true
    );
    let (status, _) = post(&relay.base, &reply(9301, |_| {}), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, answer) = post(&relay.base, &reply(9301, |_| {}), Some("inbox-8")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    relay.stop().await;
}

#[tokio::test]
async fn a_relay_linked_by_the_environment_refuses_unsigned_webhooks_before_the_link_is_made() {
    let gowa = Gowa::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}/webhook");
    // Chatwoot cannot be reached yet: the relay starts, and keeps trying to link the account.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let env = [
        ("CHATGOWA_PUBLIC_URL", public.as_str()),
        ("CHATGOWA_CHATWOOT_URL", nowhere.as_str()),
        ("CHATGOWA_CHATWOOT_ACCOUNT_ID", "1"),
        ("CHATGOWA_CHATWOOT_TOKEN", ADMIN_TOKEN),
    ];
    let server = Server::spawn_logging(dir.path(), port, &env);
    server.wait_healthy().await;
    server.add_route(7, &gowa.url("/chatwoot/webhook")).await;
    let admin = Admin::login(server.base(), ADMIN_USER, ADMIN_PASS);
    let (status, answer) = post(&server.base(), &reply(9401, |_| {}), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("not linked yet"),
        "{answer}"
    );
    assert_eq!(admin.get_ok("/admin/stats").await["webhooksSigned"], true);
    assert_eq!(admin.get_ok("/healthz").await["webhooks"], "signed");
    let deliveries = admin.get_ok("/admin/deliveries").await;
    assert_eq!(deliveries["deliveries"], json!([]), "{deliveries}");
    server.stop_and_read_log();
}

#[tokio::test]
async fn a_relay_clock_off_without_a_link_says_why_signed_webhooks_are_refused() {
    let gowa = Gowa::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // Signed by hand (no linked account to read Chatwoot's time from), on a computer ten minutes ahead.
    let mut env = vec![("CHATGOWA_CHATWOOT_SECRET", "s3cret")];
    env.extend(crate::support::clock_off("+10m"));
    let server = Server::spawn_logging(dir.path(), port, &env);
    server.wait_healthy().await;
    server.add_route(7, &gowa.url("/chatwoot/webhook")).await;
    let admin = Admin::login(server.base(), ADMIN_USER, ADMIN_PASS);
    let stats = admin.get_ok("/admin/stats").await;
    assert_eq!(stats.get("clockSkewSeconds"), None, "{stats}");
    // A stranger's webhook with an old time and a wrong signature says nothing about the clocks.
    let (status, _) = post(&server.base(), &reply(9501, |_| {}), Some("a guess")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        admin.get_ok("/admin/stats").await.get("clockSkewSeconds"),
        None
    );
    // Chatwoot's webhook, signed now by Chatwoot's clock: ten minutes old by this computer's.
    let (status, answer) = post(&server.base(), &reply(9502, |_| {}), Some("s3cret")).await;
    if crate::support::on_postgres() {
        // Relays on PostgreSQL keep the database's time, whatever their machine's clock says.
        assert_eq!(status, StatusCode::OK, "{answer}");
        let stats = admin.get_ok("/admin/stats").await;
        assert_eq!(stats.get("clockSkewSeconds"), None, "{stats}");
        gowa.wait_for("the reply", WAIT, |r| r.len() == 1).await;
        server.stop_and_read_log();
        return;
    }
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    let stats = admin.get_ok("/admin/stats").await;
    let skew = stats["clockSkewSeconds"].as_i64().unwrap_or_default();
    assert!((-601..=-599).contains(&skew), "{stats}");
    assert_eq!(stats["clockReckoned"], false, "{stats}");
    let health = admin.get_ok("/healthz").await;
    let clock = health["clock"].as_str().unwrap_or_default();
    assert!(
        clock.contains("ahead of Chatwoot's") && clock.contains("refused"),
        "{health}"
    );
    assert!(gowa.received().is_empty());
    let log = server.stop_and_read_log();
    assert!(
        log.contains("signed webhooks show this computer's clock off by 10 minutes (ahead)"),
        "{log}"
    );
}
