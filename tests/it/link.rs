//! The Chatwoot link through the admin API, against the Chatwoot API stand-in: connecting (each failure names what
//! to fix, nothing half-saved), several accounts, registering the webhook (adopt, move, repeat), signature
//! verification with Chatwoot's secret, inboxes by name, the double-delivery fix, the reachability check, and the
//! environment's link. No token or secret in any answer.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::chatwoot_api::{ADMIN_TOKEN, AGENT_TOKEN, ChatwootApi, Mode, World};
use crate::support::{Gowa, TestRelay, eventually, fixture, free_port};
use chatgowa_lib::relay::signature;

const WAIT: Duration = Duration::from_secs(10);

fn link_body(url: &str, account: i64, token: &str) -> Value {
    json!({"url": url, "accountId": account, "token": token})
}

/// No answer of the relay may hold a token or a webhook secret.
fn assert_no_secret(what: &str, body: &Value) {
    let text = body.to_string();
    for secret in [
        ADMIN_TOKEN,
        AGENT_TOKEN,
        "cw-generated-secret",
        "inbox-secret",
        "secret=x",
    ] {
        assert!(!text.contains(secret), "{what} holds a secret: {text}");
    }
}

async fn linked(relay: &TestRelay, chatwoot: &ChatwootApi, account: i64) -> i64 {
    let (status, body) = relay
        .admin
        .post_json(
            "/admin/chatwoot/links",
            link_body(&chatwoot.base, account, ADMIN_TOKEN),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_no_secret("the link", &body);
    body["link"]["id"].as_i64().unwrap()
}

async fn set_public_url(relay: &TestRelay, url: &str) -> Value {
    let (status, body) = relay
        .admin
        .put_json("/admin/chatwoot/public-url", json!({"url": url}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn register(relay: &TestRelay, link: i64) -> Value {
    let (status, body) = relay
        .admin
        .post_json(&format!("/admin/chatwoot/links/{link}/webhook"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_no_secret("the registration", &body);
    body
}

/// Posts `body` to the relay as Chatwoot would, signed with `secret` (or unsigned).
async fn post_signed(relay: &TestRelay, body: &[u8], secret: Option<&str>) -> StatusCode {
    let mut request = relay
        .http
        .post(format!("{}/webhook", relay.base))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(secret) = secret {
        let ts = chrono::Utc::now().timestamp().to_string();
        request = request
            .header("x-chatwoot-signature", signature::sign(secret, &ts, body))
            .header("x-chatwoot-timestamp", ts);
    }
    request.send().await.unwrap().status()
}

#[tokio::test]
async fn connecting_names_what_to_fix_and_saves_nothing_until_it_works() {
    let chatwoot = ChatwootApi::start().await;
    let relay = TestRelay::start(|_| {}).await;
    let nothing_there = format!("http://127.0.0.1:{}", free_port());
    let cases = [
        (
            link_body(&nothing_there, 1, ADMIN_TOKEN),
            502,
            "chatwoot_unreachable",
            "url",
        ),
        (
            link_body(&format!("{}/support", chatwoot.base), 1, ADMIN_TOKEN),
            422,
            "chatwoot_not_api",
            "url",
        ),
        (
            link_body(&chatwoot.base, 1, "not-a-token"),
            422,
            "chatwoot_token",
            "token",
        ),
        (
            link_body(&chatwoot.base, 1, AGENT_TOKEN),
            422,
            "chatwoot_not_admin",
            "token",
        ),
        (
            link_body(&chatwoot.base, 3, ADMIN_TOKEN),
            422,
            "chatwoot_account",
            "accountId",
        ),
        (
            link_body("chat.example.com", 1, ADMIN_TOKEN),
            400,
            "invalid",
            "url",
        ),
        (
            link_body(&chatwoot.base, 0, ADMIN_TOKEN),
            400,
            "invalid",
            "accountId",
        ),
        (
            json!({"url": chatwoot.base, "accountId": 1}),
            400,
            "invalid",
            "token",
        ),
    ];
    for (input, status, code, field) in cases {
        let (got, body) = relay
            .admin
            .post_json("/admin/chatwoot/links", input.clone())
            .await;
        assert_eq!(got.as_u16(), status, "{input}: {body}");
        assert_eq!(body["code"], code, "{input}: {body}");
        assert_eq!(body["field"], field, "{input}: {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| m.len() > 20),
            "{body}"
        );
        assert_no_secret("an error", &body);
    }
    for (mode, code) in [
        (Mode::Html, "chatwoot_not_api"),
        (Mode::Broken, "chatwoot_error"),
        // Rack::Attack's throttle (plain text) and a proxy's pages while Chatwoot restarts: Chatwoot is there.
        (Mode::Refusing(429), "chatwoot_error"),
        (Mode::Refusing(502), "chatwoot_error"),
        (Mode::Refusing(503), "chatwoot_error"),
    ] {
        chatwoot.with(|w| w.mode = mode);
        let (_, body) = relay
            .admin
            .post_json(
                "/admin/chatwoot/links",
                link_body(&chatwoot.base, 1, ADMIN_TOKEN),
            )
            .await;
        assert_eq!(body["code"], code, "{mode:?}: {body}");
    }
    chatwoot.with(|w| w.mode = Mode::Normal);
    let status = relay.admin.get_ok("/admin/chatwoot").await;
    assert_eq!(status["links"], json!([]), "nothing half-saved: {status}");
    assert_eq!(relay.count("chatwoot_links").await, 0);

    // Several accounts; linking one again renews it instead of adding it twice.
    let first = linked(&relay, &chatwoot, 1).await;
    let second = linked(&relay, &chatwoot, 2).await;
    assert_ne!(first, second);
    assert_eq!(linked(&relay, &chatwoot, 1).await, first);
    let status = relay.admin.get_ok("/admin/chatwoot").await;
    assert_no_secret("the status", &status);
    let names: Vec<&str> = status["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["accountName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Toko Bandung", "Klinik Sehat"]);
    assert!(
        chatwoot.hooks().is_empty(),
        "linking registers nothing by itself"
    );
    relay.stop().await;
}

#[tokio::test]
async fn the_registered_webhook_is_verified_with_chatwoots_secret_and_registering_again_is_harmless()
 {
    let chatwoot = ChatwootApi::start().await;
    let relay = TestRelay::start(|_| {}).await;
    let link = linked(&relay, &chatwoot, 1).await;
    let (status, body) = relay
        .admin
        .post_json(&format!("/admin/chatwoot/links/{link}/webhook"), json!({}))
        .await;
    assert_eq!(
        (status.as_u16(), body["field"].as_str()),
        (400, Some("publicUrl")),
        "{body}"
    );

    let public = format!("{}/webhook", relay.base);
    let status = set_public_url(&relay, &relay.base).await;
    assert_eq!(status["publicUrl"], public, "a bare address gets /webhook");
    assert_eq!(status["publicUrlReach"], "loopback");
    let registered = register(&relay, link).await;
    assert_eq!(registered["link"]["webhook"]["current"], true);
    assert_eq!(registered["link"]["webhook"]["verified"], true);
    let hooks = chatwoot.hooks();
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0].url, public);
    assert_eq!(
        hooks[0].subscriptions,
        ["message_created", "message_updated"]
    );

    // Webhooks of the account must now carry Chatwoot's signature.
    let reply = fixture("message_created.outgoing_text.json");
    assert_eq!(
        post_signed(&relay, &reply, None).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post_signed(&relay, &reply, Some("guessed")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post_signed(&relay, &reply, Some(&hooks[0].secret)).await,
        StatusCode::OK
    );

    // Again: the same webhook. A moved public URL moves it instead of adding one.
    register(&relay, link).await;
    assert_eq!(chatwoot.hooks().len(), 1);
    let moved = format!("{}/chatgowa/webhook", relay.base);
    set_public_url(&relay, &moved).await;
    register(&relay, link).await;
    let hooks_now = chatwoot.hooks();
    assert_eq!(hooks_now.len(), 1);
    assert_eq!(
        (hooks_now[0].id, hooks_now[0].url.as_str()),
        (hooks[0].id, moved.as_str())
    );

    // Unlinking can remove it; webhooks need no signature afterwards.
    let (status, body) = relay
        .admin
        .delete(&format!("/admin/chatwoot/links/{link}?removeWebhook=true"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(chatwoot.hooks().is_empty());
    assert_eq!(post_signed(&relay, &reply, None).await, StatusCode::OK);
    relay.stop().await;
}

#[tokio::test]
async fn a_webhook_made_by_hand_for_the_same_address_is_adopted() {
    let chatwoot = ChatwootApi::start().await;
    let relay = TestRelay::start(|_| {}).await;
    let public = format!("{}/webhook", relay.base);
    let secret = chatwoot.add_hook(1, &public, &["message_created", "conversation_created"]);
    let link = linked(&relay, &chatwoot, 1).await;
    set_public_url(&relay, &public).await;
    register(&relay, link).await;
    let hooks = chatwoot.hooks();
    assert_eq!(hooks.len(), 1, "adopted, not a 422");
    assert_eq!(
        hooks[0].subscriptions,
        ["message_created", "conversation_created", "message_updated"],
        "the admin's choices are kept, what the routes need is added"
    );
    let reply = fixture("message_created.outgoing_text.json");
    assert_eq!(
        post_signed(&relay, &reply, Some(&secret)).await,
        StatusCode::OK
    );
    relay.stop().await;
}

#[tokio::test]
async fn inboxes_have_names_and_an_inbox_that_would_send_twice_is_flagged_and_fixed() {
    let chatwoot = ChatwootApi::start().await;
    let gowa = Gowa::start().await;
    let relay = TestRelay::start(|_| {}).await;
    // Inbox 7 still posts straight to GoWA (with GoWA's secret in its URL), as GoWA's own setup tells one to.
    let straight = gowa.url("/chatwoot/webhook?secret=x");
    chatwoot.with(|w| {
        w.inboxes
            .iter_mut()
            .find(|i| i.id == 7)
            .unwrap()
            .webhook_url = straight.clone()
    });
    linked(&relay, &chatwoot, 1).await;
    relay
        .add_route(7, &gowa.url("/chatwoot/webhook"), None)
        .await;

    let inboxes = relay.admin.get_ok("/admin/chatwoot/inboxes").await;
    assert_no_secret("the inboxes", &inboxes);
    let by_id = |body: &Value, id: i64| {
        body["inboxes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == id)
            .cloned()
            .unwrap()
    };
    let toko = by_id(&inboxes, 7);
    assert_eq!(toko["name"], "WhatsApp Toko");
    assert_eq!(toko["channelType"], "Channel::Api");
    assert_eq!(toko["doubleDelivery"], true);
    assert_eq!(toko["ownWebhook"], gowa.base);
    assert!(toko["routeId"].is_i64());
    assert_eq!(by_id(&inboxes, 8)["doubleDelivery"], false);

    let routes = relay.admin.get_ok("/admin/routes").await;
    assert_eq!(routes["routes"][0]["inboxName"], "WhatsApp Toko");
    relay
        .post_webhook(crate::support::message(7, 3, 1), None)
        .await;
    relay
        .post_webhook(crate::support::message(8, 4, 2), None)
        .await;
    let deliveries = relay.admin.get_ok("/admin/deliveries").await;
    assert_eq!(deliveries["deliveries"][0]["inboxName"], "WhatsApp Toko");
    let unrouted = relay.admin.get_ok("/admin/unrouted").await;
    assert_eq!(unrouted["unrouted"][0]["inboxName"], "Website");

    let (status, fixed) = relay
        .admin
        .post_json(
            "/admin/chatwoot/inboxes/clear-webhook",
            json!({"linkId": toko["linkId"], "inboxId": 7}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{fixed}");
    assert_eq!(by_id(&fixed, 7)["doubleDelivery"], false);
    let cleared = chatwoot.with(|w| {
        w.inboxes
            .iter()
            .find(|i| i.id == 7)
            .unwrap()
            .webhook_url
            .clone()
    });
    assert_eq!(cleared, "");

    // An account that cannot be read is reported beside the others.
    chatwoot.with(|w| w.mode = Mode::Broken);
    let inboxes = relay.admin.get_ok("/admin/chatwoot/inboxes").await;
    assert_eq!(inboxes["problems"][0]["code"], "chatwoot_error");
    relay.stop().await;
}

#[tokio::test]
async fn the_reachability_check_proves_chatwoot_reaches_the_relay_or_names_the_step_that_failed() {
    let chatwoot = ChatwootApi::start().await;
    let relay = TestRelay::start(|_| {}).await;
    let link = linked(&relay, &chatwoot, 1).await;
    let check = |wait: u64| {
        let relay = &relay;
        async move {
            let (status, body) = relay
                .admin
                .post_json(
                    &format!("/admin/chatwoot/links/{link}/check"),
                    json!({"waitSeconds": wait}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body
        }
    };
    assert_eq!(check(1).await["step"], "no_public_url");
    set_public_url(&relay, &relay.base).await;
    assert_eq!(check(1).await["step"], "webhook_missing");
    register(&relay, link).await;

    let reached = check(10).await;
    assert_eq!(
        (reached["ok"].as_bool(), reached["step"].as_str()),
        (Some(true), Some("reached")),
        "{reached}"
    );
    assert!(reached["reachedAt"].is_string());
    assert_eq!(
        chatwoot.hooks()[0].subscriptions,
        ["message_created", "message_updated"],
        "the check's event is unsubscribed again"
    );
    let status = relay.admin.get_ok("/admin/chatwoot").await;
    assert!(status["links"][0]["heardAt"].is_string(), "{status}");

    chatwoot.with(|w| w.wrong_secret = Some("changed-in-chatwoot".into()));
    assert_eq!(check(5).await["step"], "refused");
    chatwoot.with(|w| {
        w.wrong_secret = None;
        w.deliver = false;
    });
    let timeout = check(1).await;
    assert_eq!(timeout["step"], "timeout");
    assert!(
        timeout["message"]
            .as_str()
            .unwrap()
            .contains("SAFE_FETCH_ALLOW_PRIVATE_NETWORK"),
        "a loopback address is named as the likely cause: {timeout}"
    );
    chatwoot.with(World::remove_conversations);
    assert_eq!(check(1).await["step"], "no_conversation");
    chatwoot.with(|w| w.hooks.clear());
    assert_eq!(check(1).await["step"], "webhook_missing");
    chatwoot.with(|w| w.mode = Mode::Broken);
    assert_eq!(check(1).await["step"], "api");
    relay.stop().await;
}

#[tokio::test]
async fn the_environment_links_accounts_and_registers_their_webhook_at_start() {
    let chatwoot = ChatwootApi::start().await;
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}/webhook");
    let base = chatwoot.base.clone();
    let relay = TestRelay::start(|c| {
        c.public_url = Some(public.parse().unwrap());
        c.chatwoot_link = Some(chatgowa_lib::config::ChatwootLink {
            url: base.parse().unwrap(),
            accounts: vec![1, 2],
            token: chatgowa_lib::config::Secret::new(ADMIN_TOKEN.into()),
        });
    })
    .await;
    let status = eventually(
        "both accounts linked, webhooks registered",
        WAIT,
        || async {
            let status = relay.admin.get_ok("/admin/chatwoot").await;
            let links = status["links"].as_array().cloned().unwrap_or_default();
            (links.len() == 2 && links.iter().all(|l| l["webhook"]["verified"] == true))
                .then_some(status)
        },
    )
    .await;
    assert_eq!(status["publicUrlSource"], "env");
    assert_eq!(status["links"][0]["fromEnv"], true);
    assert_no_secret("the status", &status);
    let (code, body) = relay
        .admin
        .put_json(
            "/admin/chatwoot/public-url",
            json!({"url": "https://other.example.com"}),
        )
        .await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert_eq!(chatwoot.hooks().len(), 2);
    relay.stop().await;
}

#[tokio::test]
async fn a_chatwoot_that_is_down_at_start_does_not_stop_the_relay() {
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let relay = TestRelay::start(|c| {
        c.chatwoot_link = Some(chatgowa_lib::config::ChatwootLink {
            url: nowhere.parse().unwrap(),
            accounts: vec![1],
            token: chatgowa_lib::config::Secret::new(ADMIN_TOKEN.into()),
        });
    })
    .await;
    let health = relay
        .http
        .get(format!("{}/healthz", relay.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    // Webhooks wait for the secret the link brings: until then they are refused, not taken unsigned.
    let refused = relay
        .http
        .post(format!("{}/webhook", relay.base))
        .header("content-type", "application/json")
        .body(fixture("message_created.outgoing_text.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let status = relay.admin.get_ok("/admin/chatwoot").await;
    assert_eq!(
        status["links"],
        json!([]),
        "nothing linked while Chatwoot cannot be reached"
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_reachability_check_cut_off_by_the_admin_timeout_still_unsubscribes_its_event() {
    let chatwoot = ChatwootApi::start().await;
    // The admin request's time limit is the attempt timeout (2 s here) and 10 s.
    let relay = TestRelay::start(|_| {}).await;
    let link = linked(&relay, &chatwoot, 1).await;
    set_public_url(&relay, &relay.base).await;
    register(&relay, link).await;
    // Chatwoot cannot reach the relay: the check waits its whole 30 s, longer than the request may take.
    chatwoot.with(|w| w.deliver = false);
    let (status, body) = relay
        .admin
        .post_json(
            &format!("/admin/chatwoot/links/{link}/check"),
            json!({"waitSeconds": 30}),
        )
        .await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{body}");
    assert!(
        chatwoot.hooks()[0]
            .subscriptions
            .contains(&chatgowa_lib::chatwoot::CHECK_EVENT.to_owned()),
        "subscribed while the check runs"
    );
    eventually(
        "the check's event unsubscribed",
        Duration::from_secs(60),
        || async {
            (chatwoot.hooks()[0].subscriptions == ["message_created", "message_updated"])
                .then_some(())
        },
    )
    .await;
    relay.stop().await;
}
