//! The router without sockets (`oneshot`): status codes and bodies of the webhook and the admin API.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chatgowa_lib::server::build_router;
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::support::{ADMIN_PASS, ADMIN_USER, TestRelay, basic_auth, fixture};

async fn call(
    relay: &TestRelay,
    request: Request<Body>,
) -> (StatusCode, Value, axum::http::HeaderMap) {
    let response = build_router(relay.state.clone())
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, body, headers)
}

/// `request`, logged in as the admin.
fn as_admin(request: axum::http::request::Builder) -> axum::http::request::Builder {
    request.header("authorization", basic_auth(ADMIN_USER, ADMIN_PASS))
}

fn admin(method: &str, uri: &str, body: Option<Value>) -> Request<Body> {
    let builder = as_admin(Request::builder().method(method).uri(uri));
    match body {
        Some(b) => builder
            .header("content-type", "application/json")
            .body(Body::from(b.to_string())),
        None => builder.body(Body::empty()),
    }
    .unwrap()
}

fn webhook(body: impl Into<Body>) -> Request<Body> {
    Request::post("/webhook")
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap()
}

async fn count(relay: &TestRelay, table: &str) -> i64 {
    relay.count(table).await
}

#[tokio::test]
async fn admin_requires_the_right_credentials() {
    let relay = TestRelay::start(|_| {}).await;
    let cases = [
        None,
        Some(basic_auth(ADMIN_USER, "wrong")),
        Some(basic_auth("root", ADMIN_PASS)),
        Some("Basic not-base64!".to_owned()),
        Some("Bearer token".to_owned()),
    ];
    for auth in cases {
        let mut request = Request::get("/admin/routes");
        if let Some(a) = &auth {
            request = request.header("authorization", a);
        }
        let (status, body, headers) = call(&relay, request.body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(
            headers["www-authenticate"].to_str().unwrap(),
            r#"Basic realm="Chatgowa Admin", charset="UTF-8""#
        );
        assert!(body["error"].is_string());
    }
    let (status, body, _) = call(&relay, admin("GET", "/admin/routes", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"routes": []}));
    relay.stop().await;
}

#[tokio::test]
async fn without_a_password_the_admin_api_waits_for_setup() {
    let relay = TestRelay::start(|c| c.admin = None).await;
    let (status, body, headers) = call(&relay, admin("GET", "/admin/routes", None)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("setup_required"))
    );
    assert!(
        headers.get("www-authenticate").is_none(),
        "no login prompt that nobody could answer"
    );
    let (status, body, _) = call(
        &relay,
        admin(
            "POST",
            "/admin/routes",
            Some(json!({"inboxId": 1, "webhookUrl": "http://g/x"})),
        ),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("setup_required"))
    );
    // The webhook keeps working.
    let (status, body, _) = call(
        &relay,
        webhook(fixture("message_created.outgoing_text.json")),
    )
    .await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (StatusCode::OK, Some("no_route"))
    );
    relay.stop().await;
}

#[tokio::test]
async fn route_crud_is_a_drop_in_for_the_typescript_api() {
    let relay = TestRelay::start(|_| {}).await;
    let (status, body, _) = call(
        &relay,
        admin(
            "POST",
            "/admin/routes",
            Some(json!({"inboxId": 7, "webhookUrl": "http://gowa:3000/chatwoot/webhook", "name": "Shop", "secret": "k"})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let route = &body["route"];
    assert_eq!(route["inboxId"], 7);
    assert_eq!(route["webhookUrl"], "http://gowa:3000/chatwoot/webhook");
    assert_eq!(route["name"], "Shop");
    assert_eq!(route["enabled"], true);
    assert_eq!(route["hasSecret"], true);
    assert!(route.get("secret").is_none(), "the secret is write-only");
    assert!(route["createdAt"].as_str().unwrap().ends_with('Z'));
    let id = route["id"].as_i64().unwrap();

    // Duplicate inbox → 409, and nothing changes.
    let (status, body, _) = call(
        &relay,
        admin(
            "POST",
            "/admin/routes",
            Some(json!({"inboxId": 7, "webhookUrl": "http://other/x"})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body["error"].as_str().unwrap().contains("inbox 7"));

    // Partial update.
    let (status, body, _) = call(
        &relay,
        admin(
            "PUT",
            &format!("/admin/routes/{id}"),
            Some(json!({"name": "Shop 2", "enabled": false})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            body["route"]["name"].as_str(),
            body["route"]["enabled"].as_bool()
        ),
        (Some("Shop 2"), Some(false))
    );
    assert_eq!(
        body["route"]["webhookUrl"],
        "http://gowa:3000/chatwoot/webhook"
    );
    assert_eq!(body["route"]["hasSecret"], true);

    let (status, body, _) = call(&relay, admin("GET", "/admin/routes", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["routes"].as_array().unwrap().len(), 1);

    let (status, body, _) = call(
        &relay,
        admin("DELETE", &format!("/admin/routes/{id}"), None),
    )
    .await;
    assert_eq!((status, body), (StatusCode::OK, json!({"success": true})));
    for (method, body) in [("PUT", Some(json!({"name": "x"}))), ("DELETE", None)] {
        for path in [
            format!("/admin/routes/{id}"),
            "/admin/routes/abc".into(),
            "/admin/routes/-1".into(),
        ] {
            let (status, body, _) = call(&relay, admin(method, &path, body.clone())).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
            assert!(body["error"].is_string());
        }
    }
    assert_eq!(count(&relay, "routes").await, 0);
    relay.stop().await;
}

#[tokio::test]
async fn bad_admin_input_is_refused_and_changes_nothing() {
    let relay = TestRelay::start(|_| {}).await;
    let bad = [
        (json!({"webhookUrl": "http://g/x"}), "inboxId"),
        (
            json!({"inboxId": "seven", "webhookUrl": "http://g/x"}),
            "inboxId",
        ),
        (
            json!({"inboxId": 7, "webhookUrl": "javascript:alert(1)"}),
            "webhookUrl",
        ),
        (
            json!({"inboxId": 7, "webhookUrl": "http://g/x", "name": "n".repeat(10_000)}),
            "name",
        ),
    ];
    for (body, field) in bad {
        let (status, answer, _) = call(&relay, admin("POST", "/admin/routes", Some(body))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(answer["field"], field);
        assert!(
            answer["error"].as_str().unwrap().contains(field),
            "{answer}"
        );
    }
    // Not JSON, and JSON that is not an object.
    for raw in ["{nope", "[1,2]", "\"x\""] {
        let request = as_admin(Request::post("/admin/routes"))
            .header("content-type", "application/json")
            .body(Body::from(raw))
            .unwrap();
        let (status, answer, _) = call(&relay, request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{raw}");
        assert!(answer["error"].is_string());
    }
    // A form post (what a cross-site page could forge) is refused before it is read.
    for ct in [
        None,
        Some("application/x-www-form-urlencoded"),
        Some("text/plain"),
    ] {
        let mut request = as_admin(Request::post("/admin/routes"));
        if let Some(ct) = ct {
            request = request.header("content-type", ct);
        }
        let body = Body::from(json!({"inboxId": 7, "webhookUrl": "http://g/x"}).to_string());
        let (status, answer, _) = call(&relay, request.body(body).unwrap()).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}");
        assert!(answer["error"].is_string());
    }
    assert_eq!(count(&relay, "routes").await, 0);
    relay.stop().await;
}

#[tokio::test]
async fn webhook_answers() {
    let relay = TestRelay::start(|c| c.max_body = 64 * 1024).await;
    let (status, body, _) = call(
        &relay,
        admin(
            "POST",
            "/admin/routes",
            Some(json!({"inboxId": 7, "webhookUrl": "http://127.0.0.1:9/x"})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let (status, body, _) = call(
        &relay,
        webhook(fixture("message_created.outgoing_text.json")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (body["received"].as_bool(), body["queued"].as_bool()),
        (Some(true), Some(true))
    );
    assert!(body["deliveryId"].as_i64().is_some());
    assert_eq!(count(&relay, "deliveries").await, 1);

    // Deliberate decisions not to queue are 200 and say why.
    for (file, reason) in [
        ("contact_created.json", "no_inbox"),
        ("message_created.unicode_emoji.json", "no_route"),
    ] {
        let (status, body, _) = call(&relay, webhook(fixture(file))).await;
        assert_eq!(
            (status, body["queued"].as_bool(), body["reason"].as_str()),
            (StatusCode::OK, Some(false), Some(reason))
        );
    }

    // Not JSON, not an object, not UTF-8 → 400; too big → 413; a form → 415. Nothing stored.
    for raw in [&b"{not json"[..], b"[1]", b"{\"a\":\"\xff\"}", b""] {
        let (status, body, _) = call(&relay, webhook(raw.to_vec())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{raw:?}");
        assert!(body["error"].is_string());
    }
    let (status, body, _) = call(&relay, webhook(fixture("message_created.large_text.json"))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("CHATGOWA_MAX_BODY")
    );
    let form = Request::post("/webhook")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(fixture("message_created.outgoing_text.json")))
        .unwrap();
    assert_eq!(
        call(&relay, form).await.0,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    assert_eq!(count(&relay, "deliveries").await, 1);

    // When nothing can be stored, Chatwoot must hear about it: 503, not a silent 200.
    crate::support::execute(
        &relay.state.db,
        "DROP TABLE delivery_attempts; DROP TABLE delivery_bodies; DROP TABLE deliveries",
    )
    .await;
    let (status, body, headers) = call(
        &relay,
        webhook(fixture("message_created.outgoing_text.json")),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body["error"].is_string());
    assert!(headers.contains_key("retry-after"));
    relay.state.db.close().await;
    let (status, _, _) = call(
        &relay,
        Request::get("/healthz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    relay.stop().await;
}

#[tokio::test]
async fn healthz_tells_an_outsider_only_that_it_works() {
    let relay = TestRelay::start(|_| {}).await;
    let (status, body, _) = call(
        &relay,
        Request::get("/healthz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        serde_json::json!({"status": "ok"}),
        "no version, no queue"
    );
    relay.stop().await;
}
