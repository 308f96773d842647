//! Inbound authenticity and admin hardening: Chatwoot signatures, login throttling, foreign origins, masked
//! credentials, security headers, and a whole run's log and answers searched for every secret.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::support::{
    ADMIN_PASS, ADMIN_USER, Admin, Gowa, Server, TestRelay, basic_auth, fixture, free_port, message,
};

/// Chatwoot's signature, computed here independently of the relay.
fn chatwoot_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

struct Signed<'a> {
    secret: &'a str,
    timestamp: i64,
}

async fn post(relay: &TestRelay, body: &[u8], signed: Option<Signed<'_>>) -> (StatusCode, Value) {
    let mut request = relay
        .http
        .post(format!("{}/webhook", relay.base))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(Signed { secret, timestamp }) = signed {
        let ts = timestamp.to_string();
        request = request.header("x-chatwoot-timestamp", &ts).header(
            "x-chatwoot-signature",
            chatwoot_signature(secret, &ts, body),
        );
    }
    let response = request.send().await.unwrap();
    (response.status(), response.json().await.unwrap())
}

#[tokio::test]
async fn with_a_chatwoot_secret_only_signed_webhooks_are_stored() {
    let relay = TestRelay::start(|c| {
        c.chatwoot_secrets = chatgowa_lib::config::secrets("rotated-out, test-webhook-secret");
    })
    .await;
    // Inbox 9 (the signed fixture's) uses the relay's secrets; inbox 7 has a secret of its own.
    relay.add_route(9, "http://127.0.0.1:9/x", None).await;
    let (status, created) = relay
        .admin
        .post_json(
            "/admin/routes",
            json!({"inboxId": 7, "webhookUrl": "http://127.0.0.1:9/y", "chatwootSecret": "inbox-7-secret"}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(created["route"]["hasChatwootSecret"], true);
    assert!(created["route"].get("chatwootSecret").is_none());

    let body = fixture("message_created.unicode_emoji.json");
    // Another reply: the same one again would be a twin, answered `duplicate`.
    let mut next: serde_json::Value = serde_json::from_slice(&body).unwrap();
    next["id"] = (next["id"].as_i64().unwrap() + 1).into();
    let next = serde_json::to_vec(&next).unwrap();
    let seven = fixture("message_created.outgoing_text.json");
    let t = now();
    let refused = [
        ("unsigned", &body, None),
        (
            "unknown secret",
            &body,
            Some(Signed {
                secret: "guess",
                timestamp: t,
            }),
        ),
        (
            "six minutes old",
            &body,
            Some(Signed {
                secret: "test-webhook-secret",
                timestamp: t - 360,
            }),
        ),
        (
            "six minutes ahead",
            &body,
            Some(Signed {
                secret: "test-webhook-secret",
                timestamp: t + 360,
            }),
        ),
        (
            "the relay's secret on an inbox with its own",
            &seven,
            Some(Signed {
                secret: "test-webhook-secret",
                timestamp: t,
            }),
        ),
        (
            "an event without an inbox, unsigned",
            &fixture("contact_created.json"),
            None,
        ),
    ];
    for (case, body, signed) in refused {
        let (status, answer) = post(&relay, body, signed).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {answer}");
        assert_eq!(answer["code"], "unauthorized", "{case}");
        assert!(
            answer["error"].as_str().unwrap().contains("X-Chatwoot"),
            "{case}: {answer}"
        );
    }
    // A tampered body with a valid signature of the original.
    let ts = t.to_string();
    let mut tampered = body.clone();
    tampered[200] ^= 1;
    let response = relay
        .http
        .post(format!("{}/webhook", relay.base))
        .header("content-type", "application/json")
        .header("x-chatwoot-timestamp", &ts)
        .header(
            "x-chatwoot-signature",
            chatwoot_signature("test-webhook-secret", &ts, &body),
        )
        .body(tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        relay.count("deliveries").await,
        0,
        "nothing refused is stored"
    );
    assert_eq!(relay.count("unrouted_inboxes").await, 0);

    let accepted = [
        ("current secret", &body, "test-webhook-secret", t),
        (
            "the secret being rotated out",
            &next,
            "rotated-out",
            t - 290,
        ),
        ("the inbox's own secret", &seven, "inbox-7-secret", t + 290),
    ];
    for (case, body, secret, timestamp) in accepted {
        let (status, answer) = post(&relay, body, Some(Signed { secret, timestamp })).await;
        assert_eq!(status, StatusCode::OK, "{case}: {answer}");
        assert_eq!(answer["queued"], true, "{case}");
    }
    assert_eq!(relay.count("deliveries").await, 3);
    relay.stop().await;
}

async fn login(relay: &TestRelay, from: Ipv4Addr, password: &str) -> reqwest::Response {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(from))
        .build()
        .unwrap()
        .get(format!("{}/admin/routes", relay.base))
        .header("authorization", basic_auth(ADMIN_USER, password))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn failed_logins_pause_that_address_only() {
    let relay = TestRelay::start(|_| {}).await;
    let attacker = Ipv4Addr::new(127, 0, 0, 1);
    let admin = Ipv4Addr::new(127, 0, 0, 2);
    // Five wrong guesses are answered 401; the fifth starts the pause.
    for guess in 0..5 {
        let answer = login(&relay, attacker, &format!("guess {guess}")).await;
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "guess {guess}");
    }
    for password in ["guess 5", ADMIN_PASS] {
        let answer = login(&relay, attacker, password).await;
        assert_eq!(answer.status(), StatusCode::TOO_MANY_REQUESTS, "{password}");
        let wait: u64 = answer.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=30).contains(&wait), "Retry-After {wait}");
        let body: Value = answer.json().await.unwrap();
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("too many failed logins")
        );
    }
    // The admin, elsewhere, is not locked out.
    assert_eq!(
        login(&relay, admin, ADMIN_PASS).await.status(),
        StatusCode::OK
    );
    // A browser's first request (no credentials yet) is not a failed guess.
    for _ in 0..10 {
        let challenge = reqwest::Client::builder()
            .local_address(IpAddr::V4(admin))
            .build()
            .unwrap()
            .get(format!("{}/admin/routes", relay.base))
            .send()
            .await
            .unwrap();
        assert_eq!(challenge.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        login(&relay, admin, ADMIN_PASS).await.status(),
        StatusCode::OK
    );
    relay.stop().await;
}

#[tokio::test]
async fn changes_from_another_site_are_refused_and_there_is_no_cors() {
    let relay = TestRelay::start(|_| {}).await;
    let route = json!({"inboxId": 7, "webhookUrl": "http://127.0.0.1:9/x"});
    let send = |method: Method, path: &str, origin: Option<&str>, body: Option<&Value>| {
        let mut request = relay.admin.request(method, path);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send()
    };
    for origin in ["http://evil.example", "null", "http://127.0.0.1:1"] {
        let answer = send(Method::POST, "/admin/routes", Some(origin), Some(&route))
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::FORBIDDEN, "{origin}");
        let body: Value = answer.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("Origin"));
    }
    assert_eq!(relay.count("routes").await, 0);
    let own = relay.base.clone();
    let created = send(Method::POST, "/admin/routes", Some(&own), Some(&route))
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let id = created.json::<Value>().await.unwrap()["route"]["id"].clone();
    let path = format!("/admin/routes/{id}");
    for method in [Method::PUT, Method::DELETE] {
        let answer = send(
            method.clone(),
            &path,
            Some("https://evil.example"),
            Some(&json!({"name": "x"})),
        )
        .await
        .unwrap();
        assert_eq!(answer.status(), StatusCode::FORBIDDEN, "{method}");
    }
    assert_eq!(relay.count("routes").await, 1);

    // No CORS: a preflight gets no permission, and reads carry no Access-Control header.
    let preflight = relay
        .http
        .request(Method::OPTIONS, format!("{}/admin/routes", relay.base))
        .header("origin", "http://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(!preflight.status().is_success());
    let read = send(
        Method::GET,
        "/admin/routes",
        Some("http://evil.example"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    for answer in [&preflight, &read] {
        assert!(
            !answer
                .headers()
                .keys()
                .any(|k| k.as_str().starts_with("access-control-")),
            "{:?}",
            answer.headers()
        );
    }
    // Every admin answer, a refusal included, forbids sniffing, framing, caching and referrers.
    let refused = relay
        .http
        .get(format!("{}/admin/stats", relay.base))
        .send()
        .await
        .unwrap();
    for answer in [&read, &refused] {
        let h = answer.headers();
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["cache-control"], "no-store");
    }
    relay.stop().await;
}

#[tokio::test]
async fn url_passwords_are_masked_in_answers_and_kept_on_save() {
    let gowa = Gowa::start().await;
    let relay = TestRelay::start(|_| {}).await;
    let url = gowa
        .url("/chatwoot/webhook")
        .replace("http://", "http://gowa:p%40ss%20w0rd@");
    let created = relay.add_route(7, &url, None).await;
    let masked = created["route"]["webhookUrl"].as_str().unwrap().to_owned();
    assert_eq!(masked, url.replace("p%40ss%20w0rd", "********"));
    let (_, list) = relay.admin.get("/admin/routes").await;
    assert_eq!(list["routes"][0]["webhookUrl"], masked.as_str());

    // The form sends the masked URL back with another change: the password is kept.
    let id = created["route"]["id"].clone();
    let (saved, _) = relay
        .admin
        .put_json(
            &format!("/admin/routes/{id}"),
            json!({"webhookUrl": masked, "name": "Shop"}),
        )
        .await;
    assert_eq!(saved, StatusCode::OK);
    relay.post_webhook(message(7, 1, 1), None).await;
    let got = gowa
        .wait_for("the delivery", Duration::from_secs(10), |r| !r.is_empty())
        .await;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("gowa:p@ss w0rd")
    );
    assert_eq!(got[0].header("authorization"), Some(expected.as_str()));

    // A masked password where none is stored cannot be kept.
    let plain = relay.add_route(8, "http://127.0.0.1:9/x", None).await;
    let (status, body) = relay
        .admin
        .put_json(
            &format!("/admin/routes/{}", plain["route"]["id"]),
            json!({"webhookUrl": "http://u:********@127.0.0.1:9/x"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["field"], "webhookUrl");
    relay.stop().await;
}

/// Everything the relay said during a full run, and every answer it gave, searched for every secret it knows.
#[tokio::test]
async fn no_secret_reaches_the_log_or_an_answer() {
    let gowa = Gowa::start().await;
    let dir = tempfile::tempdir().unwrap();
    let url_password = "Url-Pa55-7f3c";
    let gowa_secret = "GoWA-Secret-91ab";
    let route_chatwoot_secret = "Route-CW-Secret-55de";
    let chatwoot_secret = "Relay-CW-Secret-0c1d";
    let server = Server::spawn_logging(
        dir.path(),
        free_port(),
        &[
            ("RUST_LOG", "debug"),
            ("CHATGOWA_CHATWOOT_SECRET", chatwoot_secret),
        ],
    );
    server.wait_healthy().await;
    let base = server.base();
    let http = crate::support::http_client();
    let answers = std::cell::RefCell::new(Vec::new());
    let call = async |who: &Admin, method: Method, path: &str, body: Option<Value>| {
        let mut request = who.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let headers = format!("{:?}", response.headers());
        let body = response.text().await.unwrap();
        answers.borrow_mut().push(format!("{headers} {body}"));
        serde_json::from_str::<Value>(&body).unwrap_or(Value::Null)
    };
    let admin = Admin::new(&base).with_client(http.clone());
    let url = gowa
        .url("/chatwoot/webhook")
        .replace("http://", &format!("http://gowa:{url_password}@"));
    let created = call(
        &admin,
        Method::POST,
        "/admin/routes",
        Some(json!({"inboxId": 7, "webhookUrl": url, "secret": gowa_secret, "chatwootSecret": route_chatwoot_secret})),
    )
    .await;
    let id = created["route"]["id"].clone();
    call(&admin, Method::GET, "/admin/routes", None).await;
    call(
        &admin,
        Method::PUT,
        &format!("/admin/routes/{id}"),
        Some(json!({"name": "Shop"})),
    )
    .await;
    call(
        &admin,
        Method::POST,
        &format!("/admin/routes/{id}/test"),
        None,
    )
    .await;
    call(
        &admin,
        Method::POST,
        "/admin/routes",
        Some(json!({"inboxId": 8, "webhookUrl": "javascript:alert(1)"})),
    )
    .await;
    let wrong = Admin::login(&base, ADMIN_USER, "wrong").with_client(http.clone());
    call(&wrong, Method::GET, "/admin/routes", None).await;

    // Webhooks: signed with the route's secret, badly signed, unsigned.
    for (seq, secret) in [
        (1, Some(route_chatwoot_secret)),
        (2, Some("wrong")),
        (3, None),
    ] {
        let body = message(7, 1, seq);
        let ts = now().to_string();
        let mut request = http
            .post(format!("{base}/webhook"))
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(secret) = secret {
            request = request.header("x-chatwoot-timestamp", &ts).header(
                "x-chatwoot-signature",
                chatwoot_signature(secret, &ts, &body),
            );
        }
        let response = request.send().await.unwrap();
        let text = response.text().await.unwrap();
        answers.borrow_mut().push(text);
    }
    let got = gowa
        .wait_for("the signed webhook", Duration::from_secs(10), |r| {
            r.iter().any(|r| r.json()["content"] == "message 1")
        })
        .await;
    assert!(got.iter().all(|r| r.header("authorization").is_some()));
    let deliveries = call(&admin, Method::GET, "/admin/deliveries", None).await;
    for d in deliveries["deliveries"].as_array().unwrap() {
        call(
            &admin,
            Method::GET,
            &format!("/admin/deliveries/{}", d["id"]),
            None,
        )
        .await;
    }
    call(&admin, Method::GET, "/admin/stats", None).await;
    call(&admin, Method::GET, "/metrics", None).await;
    let log = server.stop_and_read_log();
    let answers = answers.into_inner();

    assert!(
        log.contains("admin login failed"),
        "the run was logged at debug level"
    );
    assert!(log.contains("webhook refused"));
    let basic = |user: &str, pass: &str| {
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    };
    let secrets = [
        ADMIN_PASS.to_owned(),
        basic(ADMIN_USER, ADMIN_PASS),
        url_password.to_owned(),
        basic("gowa", url_password),
        gowa_secret.to_owned(),
        route_chatwoot_secret.to_owned(),
        chatwoot_secret.to_owned(),
    ];
    for secret in &secrets {
        assert!(!log.contains(secret.as_str()), "the log holds {secret}");
        for answer in &answers {
            assert!(
                !answer.contains(secret.as_str()),
                "an answer holds {secret}: {answer}"
            );
        }
    }
    assert!(answers.len() > 10);
}
