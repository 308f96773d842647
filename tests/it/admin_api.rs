//! The admin API behind the panel, over real HTTP: delivery log, retry, discard, unrouted, stats, route test,
//! the event stream and the panel's files.

use std::time::Duration;

use chatgowa_lib::admin::settings;
use chatgowa_lib::app::App;
use chatgowa_lib::login;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::panel;
use crate::support::{
    ADMIN_PASS, ADMIN_USER, Admin, Gowa, Received, Reply, TestRelay, basic_auth, eventually,
    message, test_config,
};

const WAIT: Duration = Duration::from_secs(10);

async fn wait_status(relay: &TestRelay, id: i64, status: &str) -> Value {
    eventually(&format!("delivery {id} {status}"), WAIT, || async {
        let d = relay.admin.get_ok(&format!("/admin/deliveries/{id}")).await["delivery"].clone();
        (d["status"] == status).then_some(d)
    })
    .await
}

async fn relay_with_gowa(
    behaviour: impl Fn(&Received, &[Received]) -> Reply + Send + Sync + 'static,
) -> (Gowa, TestRelay) {
    let gowa = Gowa::start().await;
    gowa.set(behaviour);
    let relay = TestRelay::start(|_| {}).await;
    relay
        .add_route(7, &gowa.url("/chatwoot/webhook"), None)
        .await;
    (gowa, relay)
}

/// A GoWA that answers `status` for conversation `conversation`, 200 for the others.
fn refusing_conversation(
    conversation: i64,
    status: u16,
) -> impl Fn(&Received, &[Received]) -> Reply + Send + Sync + 'static {
    move |r, _| {
        Reply::status(if r.json()["conversation"]["id"] == conversation {
            status
        } else {
            200
        })
    }
}

#[tokio::test]
async fn every_admin_endpoint_requires_credentials() {
    let relay = TestRelay::start(|_| {}).await;
    for (method, path) in [
        (Method::GET, "/admin"),
        (Method::GET, "/admin/"),
        (Method::GET, "/admin/src/main.js"),
        (Method::GET, "/admin/deliveries"),
        (Method::GET, "/admin/deliveries/1"),
        (Method::POST, "/admin/deliveries/1/retry"),
        (Method::DELETE, "/admin/deliveries/1"),
        (Method::POST, "/admin/routes/1/test"),
        (Method::POST, "/admin/routes/1/retry-dead"),
        (Method::GET, "/admin/unrouted"),
        (Method::GET, "/admin/stats"),
        (Method::GET, "/admin/events"),
    ] {
        let response = relay
            .http
            .request(method.clone(), format!("{}{path}", relay.base))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path}"
        );
    }
    relay.stop().await;
}

/// An authenticated GET, answer as it came.
async fn fetch(relay: &TestRelay, path: &str) -> reqwest::Response {
    relay.admin.request(Method::GET, path).send().await.unwrap()
}

#[tokio::test]
async fn the_panel_is_served_with_a_strict_policy() {
    let relay = TestRelay::start(|_| {}).await;
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = Admin::new(&relay.base)
        .with_client(no_redirect)
        .request(Method::GET, "/admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(r.headers()["location"], "/admin/");

    let r = fetch(&relay, "/admin/").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let html = r.text().await.unwrap();
    assert!(html.contains("src/main.js"));
    assert!(!html.contains("<script>"), "no inline script");

    let r = fetch(&relay, "/admin/src/main.js").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    let r = fetch(&relay, "/admin/nope.js").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    relay.stop().await;
}

#[tokio::test]
async fn delivery_log_filters_and_pages() {
    let (gowa, relay) = relay_with_gowa(refusing_conversation(2, 401)).await;
    relay
        .add_route(8, &gowa.url("/chatwoot/webhook/8"), None)
        .await;
    for seq in 0..5 {
        relay.post_webhook(message(7, 1, seq), None).await;
    }
    relay.post_webhook(message(7, 2, 5), None).await;
    relay.post_webhook(message(8, 3, 6), None).await;
    gowa.wait_for("all seven attempts", WAIT, |r| r.len() == 7)
        .await;
    eventually("stats to settle", WAIT, || async {
        let s = relay.admin.get_ok("/admin/stats").await;
        (s["totals"]["pending"] == 0).then_some(s)
    })
    .await;

    let all = relay.admin.get_ok("/admin/deliveries").await;
    let ids: Vec<i64> = all["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 7);
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first");
    assert!(all.get("nextCursor").is_none() || all["nextCursor"].is_null());
    let first = &all["deliveries"][0];
    assert_eq!(
        (first["inboxId"].as_i64(), first["event"].as_str()),
        (Some(8), Some("message_created"))
    );
    assert!(first["size"].as_i64().unwrap() > 0);
    assert!(first.get("payload").is_none(), "the list carries no bodies");

    let dead = relay.admin.get_ok("/admin/deliveries?status=dead").await;
    assert_eq!(dead["deliveries"].as_array().unwrap().len(), 1);
    assert_eq!(dead["deliveries"][0]["conversationId"], 2);
    assert_eq!(dead["deliveries"][0]["lastStatusCode"], 401);
    let route8 = relay.admin.get_ok("/admin/routes").await["routes"][1]["id"]
        .as_i64()
        .unwrap();
    assert_eq!(
        relay
            .admin
            .get_ok(&format!("/admin/deliveries?routeId={route8}"))
            .await["deliveries"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        relay.admin.get_ok("/admin/deliveries?inboxId=7").await["deliveries"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    assert_eq!(
        relay
            .admin
            .get_ok("/admin/deliveries?conversationId=1&status=delivered")
            .await["deliveries"]
            .as_array()
            .unwrap()
            .len(),
        5
    );

    // Pages of 3: 3 + 3 + 1, no overlap, same order.
    let mut paged = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = relay
            .admin
            .get_ok(&format!("/admin/deliveries?limit=3{cursor}"))
            .await;
        paged.extend(
            page["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["id"].as_i64().unwrap()),
        );
        match page["nextCursor"].as_i64() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(paged, ids);

    for (query, field) in [
        ("status=lost", "status"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("inboxId=abc", "inboxId"),
        ("cursor=-1", "cursor"),
    ] {
        let (status, body) = relay.admin.get(&format!("/admin/deliveries?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(body["field"], field, "{query}");
    }
    let (status, _) = relay.admin.get("/admin/deliveries?routeId=999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let stats = relay.admin.get_ok("/admin/stats").await;
    assert_eq!(
        stats["totals"],
        json!({"pending": 0, "delivered": 6, "dead": 1})
    );
    assert_eq!(
        (stats["queueDepth"].as_i64(), stats["routes"].as_i64()),
        (Some(0), Some(2))
    );
    assert!(stats["oldestPendingAgeMs"].is_null());
    assert_eq!(stats["webhookPath"], "/webhook");
    relay.stop().await;
}

#[tokio::test]
async fn detail_shows_the_payload_and_every_attempt() {
    let (_gowa, relay) =
        relay_with_gowa(|_, before| Reply::status(if before.is_empty() { 500 } else { 200 })).await;
    let body = message(7, 1, 0);
    let id = relay.post_webhook(body.clone(), None).await["deliveryId"]
        .as_i64()
        .unwrap();
    let d = wait_status(&relay, id, "delivered").await;
    assert_eq!(d["payload"].as_str().unwrap().as_bytes(), body.as_slice());
    let attempts = d["attemptLog"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(
        (
            attempts[0]["statusCode"].as_i64(),
            attempts[0]["error"].as_str()
        ),
        (Some(500), Some("HTTP 500"))
    );
    assert_eq!(
        (
            attempts[1]["attempt"].as_i64(),
            attempts[1]["trigger"].as_str()
        ),
        (Some(2), Some("scheduled"))
    );
    assert_eq!(attempts[1]["responseSnippet"], "OK");
    for path in ["/admin/deliveries/999", "/admin/deliveries/abc"] {
        let (status, body) = relay.admin.get(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(body["error"].is_string());
    }
    relay.stop().await;
}

#[tokio::test]
async fn a_manual_retry_sends_again_once_and_records_a_manual_attempt() {
    // GoWA takes a moment to refuse, so that the answer to the retry is read while its attempt is in flight.
    let (gowa, relay) = relay_with_gowa(|_, _| Reply {
        delay: Duration::from_secs(1),
        ..Reply::status(401)
    })
    .await;
    let id = relay.post_webhook(message(7, 1, 0), None).await["deliveryId"]
        .as_i64()
        .unwrap();
    wait_status(&relay, id, "dead").await;

    // Still failing: one manual attempt, then dead again (no retry schedule).
    let (status, body) = relay
        .admin
        .post_json(&format!("/admin/deliveries/{id}/retry"), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["delivery"]["status"], "pending");
    let d = eventually("the manual attempt", WAIT, || async {
        let d = relay.admin.get_ok(&format!("/admin/deliveries/{id}")).await["delivery"].clone();
        (d["attemptLog"].as_array().unwrap().len() == 2 && d["status"] == "dead").then_some(d)
    })
    .await;
    assert_eq!(d["attemptLog"][1]["trigger"], "manual");

    // GoWA fixed: the retry delivers.
    gowa.set(|_, _| Reply::status(200));
    relay
        .admin
        .post_json(&format!("/admin/deliveries/{id}/retry"), json!({}))
        .await;
    let d = wait_status(&relay, id, "delivered").await;
    assert_eq!(d["attemptLog"].as_array().unwrap().len(), 3);
    assert_eq!(gowa.received().len(), 3);

    // A delivered one can be sent again; a pending one cannot be retried twice.
    gowa.set(|_, _| Reply {
        delay: Duration::from_millis(500),
        ..Reply::status(200)
    });
    let (status, _) = relay
        .admin
        .post_json(&format!("/admin/deliveries/{id}/retry"), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, body) = relay
        .admin
        .post_json(&format!("/admin/deliveries/{id}/retry"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    wait_status(&relay, id, "delivered").await;

    // Retrying needs JSON (a cross-site form cannot), and an existing delivery.
    let form = relay
        .admin
        .request(Method::POST, &format!("/admin/deliveries/{id}/retry"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("x=1")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, _) = relay
        .admin
        .post_json("/admin/deliveries/999/retry", json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    relay.stop().await;
}

#[tokio::test]
async fn retry_dead_of_a_route_resends_them_in_order() {
    let (gowa, relay) = relay_with_gowa(|_, _| Reply::status(404)).await;
    let mut ids = Vec::new();
    for seq in 0..3 {
        ids.push(
            relay.post_webhook(message(7, 1, seq), None).await["deliveryId"]
                .as_i64()
                .unwrap(),
        );
    }
    for id in &ids {
        wait_status(&relay, *id, "dead").await;
    }
    gowa.set(|_, _| Reply::status(200));
    let route = relay.admin.get_ok("/admin/routes").await["routes"][0].clone();
    assert_eq!(
        (route["health"]["state"].as_str(), route["dead"].as_i64()),
        (Some("dead"), Some(3))
    );
    let route_id = route["id"].as_i64().unwrap();
    let (status, body) = relay
        .admin
        .post_json(&format!("/admin/routes/{route_id}/retry-dead"), json!({}))
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({"retried": 3})));
    for id in &ids {
        wait_status(&relay, *id, "delivered").await;
    }
    let delivered: Vec<u64> = gowa
        .received()
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.json()["id"].as_u64().unwrap())
        .collect();
    assert_eq!(delivered, [0, 1, 2]);
    let route = relay.admin.get_ok("/admin/routes").await["routes"][0].clone();
    assert_eq!(
        (route["health"]["state"].as_str(), route["pending"].as_i64()),
        (Some("ok"), Some(0))
    );
    let (status, _) = relay
        .admin
        .post_json("/admin/routes/999/retry-dead", json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    relay.stop().await;
}

#[tokio::test]
async fn discarding_a_stuck_head_lets_its_conversation_move_on() {
    let (gowa, relay) =
        relay_with_gowa(|r, _| Reply::status(if r.json()["id"] == 0 { 503 } else { 200 })).await;
    let head = relay.post_webhook(message(7, 1, 0), None).await["deliveryId"]
        .as_i64()
        .unwrap();
    let next = relay.post_webhook(message(7, 1, 1), None).await["deliveryId"]
        .as_i64()
        .unwrap();
    let route = eventually("the route to show as failing", WAIT, || async {
        let route = relay.admin.get_ok("/admin/routes").await["routes"][0].clone();
        (route["health"]["state"] == "failing").then_some(route)
    })
    .await;
    assert_eq!(route["pending"], 2);
    assert_eq!(
        gowa.received()
            .iter()
            .filter(|r| r.json()["id"] == 1)
            .count(),
        0,
        "the next one waits"
    );

    let (status, body) = relay
        .admin
        .delete(&format!("/admin/deliveries/{head}"))
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({"success": true})));
    wait_status(&relay, next, "delivered").await;
    let (status, _) = relay.admin.get(&format!("/admin/deliveries/{head}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = relay
        .admin
        .delete(&format!("/admin/deliveries/{head}"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    relay.stop().await;
}

#[tokio::test]
async fn unrouted_inboxes_are_listed_until_they_get_a_route() {
    let relay = TestRelay::start(|_| {}).await;
    relay.post_webhook(message(99, 1, 0), None).await;
    relay.post_webhook(message(99, 1, 1), None).await;
    let list = relay.admin.get_ok("/admin/unrouted").await;
    let entry = &list["unrouted"][0];
    assert_eq!(
        (
            entry["inboxId"].as_i64(),
            entry["count"].as_i64(),
            entry["lastEvent"].as_str()
        ),
        (Some(99), Some(2), Some("message_created"))
    );
    assert!(entry["firstSeen"].as_str().unwrap() <= entry["lastSeen"].as_str().unwrap());
    assert_eq!(
        relay.admin.get_ok("/admin/stats").await["unroutedInboxes"],
        1
    );
    relay.add_route(99, "http://127.0.0.1:9/x", None).await;
    assert_eq!(
        relay.admin.get_ok("/admin/unrouted").await,
        json!({"unrouted": []})
    );
    relay.stop().await;
}

#[tokio::test]
async fn testing_a_route_reports_what_gowa_answered() {
    let gowa = Gowa::start().await;
    let relay = TestRelay::start(|_| {}).await;
    let created = relay
        .add_route(
            7,
            &gowa.url("/chatwoot/webhook"),
            Some("gowa-shared-secret"),
        )
        .await;
    let id = created["route"]["id"].as_i64().unwrap();
    let (status, result) = relay
        .admin
        .post_json(&format!("/admin/routes/{id}/test"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (result["ok"].as_bool(), result["statusCode"].as_i64()),
        (Some(true), Some(200))
    );
    assert!(result["latencyMs"].as_u64().is_some());
    assert_eq!(
        result["internalTarget"], true,
        "the stand-in is on loopback: the panel says so"
    );
    let sent = &gowa.received()[0];
    assert_eq!(sent.json()["event"], "chatgowa_test");
    let expected = chatgowa_lib::delivery::gowa::hub_signature("gowa-shared-secret", &sent.body);
    assert_eq!(sent.header("x-hub-signature-256"), Some(expected.as_str()));

    gowa.set(|_, _| Reply::status(401));
    let (_, result) = relay
        .admin
        .post_json(&format!("/admin/routes/{id}/test"), json!({}))
        .await;
    assert_eq!(
        (result["ok"].as_bool(), result["statusCode"].as_i64()),
        (Some(false), Some(401))
    );
    assert_eq!(result["error"], "HTTP 401");
    assert_eq!(result["problem"], "unauthorized");

    relay
        .add_route(8, "http://127.0.0.1:9/nothing-listens", None)
        .await;
    let id8 = relay.admin.get_ok("/admin/routes").await["routes"][1]["id"]
        .as_i64()
        .unwrap();
    let (_, result) = relay
        .admin
        .post_json(&format!("/admin/routes/{id8}/test"), json!({}))
        .await;
    assert_eq!(
        (result["ok"].as_bool(), result["statusCode"].clone()),
        (Some(false), Value::Null)
    );
    assert!(result["error"].as_str().unwrap().contains("connection"));
    assert_eq!(
        result["problem"], "refused",
        "the panel's sentence: nothing answers there"
    );
    let (status, _) = relay
        .admin
        .post_json("/admin/routes/999/test", json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    relay.stop().await;
}

#[tokio::test]
async fn the_event_stream_announces_changes() {
    let relay = TestRelay::start(|_| {}).await;
    let mut stream = relay
        .admin
        .request(Method::GET, "/admin/events")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );

    relay.post_webhook(message(42, 1, 0), None).await; // unrouted
    relay.add_route(7, "http://127.0.0.1:9/x", None).await; // routes
    relay.post_webhook(message(7, 1, 0), None).await; // deliveries
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !["\"unrouted\"", "\"routes\"", "\"deliveries\""]
        .iter()
        .all(|t| seen.contains(t))
    {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .expect("events in time")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: change"), "{seen}");
    // The stream ends when the relay stops, so shutdown is not held up by an open panel.
    relay.stop().await;
    while stream.chunk().await.unwrap_or(None).is_some() {}
}

#[tokio::test]
async fn a_new_panel_password_replaces_the_old_one_at_once() {
    let relay = TestRelay::start(|_| {}).await;
    let status = |user: &'static str, pass: String| {
        let request = relay
            .http
            .get(format!("{}/admin/routes", relay.base))
            .header("authorization", basic_auth(user, &pass));
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(status(ADMIN_USER, ADMIN_PASS.into()).await, StatusCode::OK);

    let new = settings::new_admin_password(&relay.state).await.unwrap();
    assert_eq!(new.len(), settings::GENERATED_PASSWORD_CHARS);
    assert_eq!(status(ADMIN_USER, new.clone()).await, StatusCode::OK);
    assert_eq!(
        status(ADMIN_USER, ADMIN_PASS.into()).await,
        StatusCode::UNAUTHORIZED,
        "the old password stops working"
    );
    let stored = chatgowa_lib::store::settings::find(
        &relay.state.db,
        chatgowa_lib::store::settings::ADMIN_PASSWORD_HASH,
    )
    .await
    .unwrap()
    .unwrap();
    assert!(
        stored.starts_with("$argon2id$") && !stored.contains(&new),
        "only the hash is kept"
    );
    relay.stop().await;
}

#[tokio::test]
async fn the_generated_panel_password_is_made_once_and_kept_as_a_hash() {
    let dir = tempfile::tempdir().unwrap();
    let start = || async {
        let mut config = test_config(dir.path().join("relay.db"));
        config.admin = None;
        App::start(config, CancellationToken::new()).await.unwrap()
    };
    let app = start().await;
    let shown = settings::ensure_admin_login(app.state())
        .await
        .unwrap()
        .expect("the first run shows the password");
    assert_eq!(shown.len(), settings::GENERATED_PASSWORD_CHARS);
    let admin = app.state().admin.read().unwrap().clone().unwrap();
    assert!(admin.is_hashed() && !admin.password.expose().contains(&shown));
    assert!(login::check(&admin, &basic_auth(ADMIN_USER, &shown)));
    assert!(!login::check(&admin, &basic_auth(ADMIN_USER, ADMIN_PASS)));
    app.shutdown().await;

    let app = start().await;
    assert_eq!(
        settings::ensure_admin_login(app.state()).await.unwrap(),
        None,
        "later runs keep it, unshown"
    );
    let again = app.state().admin.read().unwrap().clone().unwrap();
    assert_eq!(again.password.expose(), admin.password.expose());
    app.shutdown().await;
}

/// Ids of a delivery log page.
fn ids_of(page: &Value) -> Vec<i64> {
    page["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn the_log_finds_customers_by_phone_name_and_words_and_hides_what_gowa_ignores() {
    let (gowa, relay) = relay_with_gowa(|_, _| Reply::status(200)).await;
    let route = relay.admin.get_ok("/admin/routes").await["routes"][0]["id"].clone();
    let (status, _) = relay
        .admin
        .put_json(
            &format!("/admin/routes/{route}"),
            json!({"name": "Toko Bandung"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let customers = [
        (
            1,
            ("Ibu Maria", "+6281234567890"),
            "Pesanan Ibu sudah kami kirim.",
        ),
        (
            2,
            ("Budi Santoso", "+6281398765432"),
            "Terima kasih, Pak Budi!\nSampai besok.",
        ),
        (3, ("Sari", "+6285611112222"), "Stok 100% tersedia."),
    ];
    for (conversation, customer, text) in customers {
        relay
            .post_webhook(
                panel::reply_to(7, conversation, conversation * 10, customer, text),
                None,
            )
            .await;
    }
    let typing = json!({"event": "conversation_typing_on", "user": {"id": 3, "type": "user"},
        "conversation": {"id": 1, "inbox_id": 7, "meta": {"sender": {"name": "Ibu Maria",
            "phone_number": "+6281234567890"}}}});
    relay
        .post_webhook(serde_json::to_vec(&typing).unwrap(), None)
        .await;
    gowa.wait_for("four deliveries", WAIT, |r| r.len() == 4)
        .await;

    let all = relay.admin.get_ok("/admin/deliveries").await;
    assert_eq!(ids_of(&all).len(), 4);
    let budi = &all["deliveries"][2];
    assert_eq!(
        (
            budi["customerName"].as_str(),
            budi["customerPhone"].as_str(),
            budi["preview"].as_str(),
            budi["messageType"].as_str(),
            budi["routeName"].as_str()
        ),
        (
            Some("Budi Santoso"),
            Some("+6281398765432"),
            Some("Terima kasih, Pak Budi! …"),
            Some("outgoing"),
            Some("Toko Bandung")
        )
    );
    let found = |query: &'static str| {
        let admin = &relay.admin;
        async move {
            let page = admin.get_ok(&format!("/admin/deliveries?{query}")).await;
            page["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| {
                    (
                        d["event"].as_str().unwrap().to_owned(),
                        d["customerName"].as_str().unwrap().to_owned(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    let maria = || ("message_created".to_owned(), "Ibu Maria".to_owned());
    assert_eq!(found("q=0812-3456-7890&hideIgnored=true").await, [maria()]);
    assert_eq!(
        found("q=%2B62%20812%203456%207890&hideIgnored=true").await,
        [maria()]
    );
    assert_eq!(found("q=ibu%20MARIA&hideIgnored=true").await, [maria()]);
    assert_eq!(
        found("q=sampai%20BESOK").await[0].1,
        "Budi Santoso",
        "the whole message, not only its preview"
    );
    assert_eq!(
        found("q=100%25").await[0].1,
        "Sari",
        "% is a character, not a wildcard"
    );
    for nothing in [
        "q=message_type",
        "q=Yohanes",
        "q=5%25%25",
        "q=0899-0000-0000",
    ] {
        assert_eq!(
            found(nothing).await,
            [],
            "{nothing}: keys, the agent and other numbers do not match"
        );
    }
    assert_eq!(
        found("hideIgnored=true").await.len(),
        3,
        "the typing indicator is hidden"
    );
    assert_eq!(
        found("event=conversation_typing_on").await,
        [("conversation_typing_on".to_owned(), "Ibu Maria".to_owned())]
    );

    // A search pages like the whole log: one at a time, every match once, newest first.
    let mut paged = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = relay
            .admin
            .get_ok(&format!("/admin/deliveries?q=%2B628&limit=1{cursor}"))
            .await;
        paged.extend(ids_of(&page));
        match page["nextCursor"].as_i64() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    let everyone = ids_of(&relay.admin.get_ok("/admin/deliveries?q=%2B628").await);
    assert_eq!((paged.len(), &paged), (4, &everyone));

    let long = format!("q={}", "x".repeat(201));
    for (query, field) in [
        ("hideIgnored=maybe", "hideIgnored"),
        ("event=DROP%20TABLE", "event"),
        (long.as_str(), "q"),
    ] {
        let (status, body) = relay.admin.get(&format!("/admin/deliveries?{query}")).await;
        assert_eq!(
            (status, body["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some(field)),
            "{query}"
        );
    }
    let detail = relay
        .admin
        .get_ok(&format!("/admin/deliveries/{}", everyone[1]))
        .await;
    assert_eq!(detail["delivery"]["customerName"], "Sari");
    relay.stop().await;
}

#[tokio::test]
async fn chosen_deliveries_are_sent_again_or_discarded_together() {
    let (gowa, relay) = relay_with_gowa(refusing_conversation(1, 404)).await;
    let sent = relay.post_webhook(message(7, 2, 3), None).await["deliveryId"]
        .as_i64()
        .unwrap();
    wait_status(&relay, sent, "delivered").await;
    let mut dead = Vec::new();
    for seq in 0..3 {
        dead.push(
            relay.post_webhook(message(7, 1, seq), None).await["deliveryId"]
                .as_i64()
                .unwrap(),
        );
    }
    for id in &dead {
        let d = wait_status(&relay, *id, "dead").await;
        assert_eq!(d["problem"], "not_found");
        assert_eq!(d["attemptLog"][0]["problem"], "not_found");
    }
    wait_status(&relay, sent, "delivered").await;
    let route = relay.admin.get_ok("/admin/routes").await["routes"][0].clone();
    assert_eq!(route["health"]["problem"], "not_found");
    assert!(route["lastDeliveredAt"].is_string(), "{route}");
    let stats = relay.admin.get_ok("/admin/stats").await;
    assert_eq!(
        (
            stats["deliveredLastDay"].as_i64(),
            stats["retentionSeconds"].as_u64(),
            stats["deadRetentionSeconds"].as_u64()
        ),
        (Some(1), Some(7 * 86_400), Some(30 * 86_400))
    );

    // Wrong choices are refused and change nothing.
    let too_many: Vec<i64> = (1..=501).collect();
    for ids in [
        json!([]),
        json!("1"),
        json!([0]),
        json!([1.5]),
        json!(null),
        json!(too_many),
    ] {
        for action in ["retry", "discard"] {
            let (status, body) = relay
                .admin
                .post_json(&format!("/admin/deliveries/{action}"), json!({"ids": ids}))
                .await;
            assert_eq!(
                (status, body["field"].as_str()),
                (StatusCode::BAD_REQUEST, Some("ids")),
                "{ids}"
            );
        }
    }
    assert_eq!(
        relay.admin.get_ok("/admin/stats").await["totals"],
        stats["totals"]
    );

    gowa.set(|_, _| Reply::status(200));
    let before = gowa.received().len();
    let mut chosen = dead.clone();
    chosen.extend([sent, 999_999, dead[0]]);
    let (status, body) = relay
        .admin
        .post_json("/admin/deliveries/retry", json!({"ids": chosen}))
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::ACCEPTED, json!({"retried": 3, "skipped": 2})),
        "a delivered reply is not sent twice by a bulk action; a repeated id counts once"
    );
    for id in &dead {
        wait_status(&relay, *id, "delivered").await;
    }
    let again: Vec<u64> = gowa.received()[before..]
        .iter()
        .map(|r| r.json()["id"].as_u64().unwrap())
        .collect();
    assert_eq!(again, [0, 1, 2], "once each, in their conversation's order");

    let (status, body) = relay
        .admin
        .post_json(
            "/admin/deliveries/discard",
            json!({"ids": [dead[0], sent, 999_999]}),
        )
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({"discarded": 2})));
    for id in [dead[0], sent] {
        let (status, _) = relay.admin.get(&format!("/admin/deliveries/{id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    assert_eq!(
        ids_of(&relay.admin.get_ok("/admin/deliveries").await),
        [dead[2], dead[1]]
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_wrong_route_names_every_field_with_a_code() {
    let (gowa, relay) = relay_with_gowa(|_, _| Reply::status(200)).await;
    let (status, body) = relay.admin.post_json("/admin/routes", json!({})).await;
    assert_eq!(
        (status, body["code"].as_str(), body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid"), Some("inboxId"))
    );
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("inboxId is required"),
        "{body}"
    );
    let codes = |body: &Value| {
        body["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["field"].as_str().unwrap().to_owned(),
                    f["code"].as_str().unwrap().to_owned(),
                    f["max"].as_u64(),
                )
            })
            .collect::<Vec<_>>()
    };
    let field = |f: &str, c: &str, max: Option<u64>| (f.to_owned(), c.to_owned(), max);
    assert_eq!(
        codes(&body),
        [
            field("inboxId", "required", None),
            field("webhookUrl", "required", None)
        ]
    );

    let (status, body) = relay
        .admin
        .post_json(
            "/admin/routes",
            json!({"inboxId": "x", "webhookUrl": "ftp://gowa", "name": "n".repeat(101), "secret": 5}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        codes(&body),
        [
            field("inboxId", "not_inbox_id", None),
            field("webhookUrl", "not_url", None),
            field("name", "too_long", Some(100)),
            field("secret", "not_text", None),
        ]
    );

    let (status, body) = relay
        .admin
        .post_json(
            "/admin/routes",
            json!({"inboxId": 7, "webhookUrl": gowa.url("/x")}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str(), body["field"].as_str()),
        (StatusCode::CONFLICT, Some("conflict"), Some("inboxId"))
    );
    assert_eq!(codes(&body), [field("inboxId", "taken", None)]);
    assert_eq!(
        relay.admin.get_ok("/admin/routes").await["routes"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    relay.stop().await;
}
