//! Bad input against the real binary: every case gets a clear answer, nothing that should not be stored is,
//! and the process never panics.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{ADMIN_PASS, ADMIN_USER, Server, basic_auth, free_port, message};

/// One request and what it must get.
struct Case {
    what: &'static str,
    method: Method,
    path: &'static str,
    content_type: Option<&'static str>,
    authorization: Option<String>,
    body: Vec<u8>,
    status: StatusCode,
    /// For 200 answers to webhooks: the `reason` of a deliberate drop, or `None` when it is queued.
    reason: Option<&'static str>,
    /// The admin field named by the error.
    field: Option<&'static str>,
}

fn webhook(what: &'static str, body: impl Into<Vec<u8>>, status: StatusCode) -> Case {
    Case {
        what,
        method: Method::POST,
        path: "/webhook",
        content_type: Some("application/json"),
        authorization: None,
        body: body.into(),
        status,
        reason: None,
        field: None,
    }
}

fn dropped(what: &'static str, body: impl Into<Vec<u8>>, reason: &'static str) -> Case {
    Case {
        reason: Some(reason),
        ..webhook(what, body, StatusCode::OK)
    }
}

fn inbox_id(what: &'static str, id: &str) -> Case {
    let body =
        format!(r#"{{"event":"message_created","inbox":{{"id":{id}}},"conversation":{{"id":1}}}}"#);
    dropped(what, body, "no_inbox")
}

fn route(what: &'static str, body: Value, field: &'static str) -> Case {
    Case {
        what,
        method: Method::POST,
        path: "/admin/routes",
        content_type: Some("application/json"),
        authorization: Some(basic_auth(ADMIN_USER, ADMIN_PASS)),
        body: body.to_string().into_bytes(),
        status: StatusCode::BAD_REQUEST,
        reason: None,
        field: Some(field),
    }
}

fn login(what: &'static str, authorization: &str) -> Case {
    Case {
        what,
        method: Method::GET,
        path: "/admin/routes",
        content_type: None,
        authorization: Some(authorization.to_owned()),
        body: Vec::new(),
        status: StatusCode::UNAUTHORIZED,
        reason: None,
        field: None,
    }
}

fn cases() -> Vec<Case> {
    use StatusCode as S;
    let deep = format!(
        r#"{{"inbox":{{"id":7}},"x":{}{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let url = |u: &str| json!({"inboxId": 20, "webhookUrl": u});
    vec![
        webhook("not JSON", "hello", S::BAD_REQUEST),
        webhook("truncated JSON", &message(7, 1, 1)[..40], S::BAD_REQUEST),
        webhook("empty body", "", S::BAD_REQUEST),
        webhook("a JSON array", "[1,2,3]", S::BAD_REQUEST),
        webhook("a JSON string", r#""inbox""#, S::BAD_REQUEST),
        webhook("a JSON number", "7", S::BAD_REQUEST),
        webhook("JSON null", "null", S::BAD_REQUEST),
        webhook(
            "invalid UTF-8",
            &b"{\"inbox\":{\"id\":7},\"content\":\"\xc3\x28\"}"[..],
            S::BAD_REQUEST,
        ),
        webhook("10 000-deep nesting", deep, S::BAD_REQUEST),
        webhook(
            "duplicated keys",
            r#"{"inbox":{"id":7},"inbox":{"id":8}}"#,
            S::BAD_REQUEST,
        ),
        webhook(
            "a raw NUL byte",
            &b"{\"inbox\":{\"id\":7},\0\"x\":1}"[..],
            S::BAD_REQUEST,
        ),
        webhook(
            "100 MB body",
            vec![b' '; 100 * 1024 * 1024],
            S::PAYLOAD_TOO_LARGE,
        ),
        Case {
            content_type: Some("text/plain"),
            ..webhook(
                "text/plain content type",
                message(7, 1, 2),
                S::UNSUPPORTED_MEDIA_TYPE,
            )
        },
        Case {
            content_type: Some("application/x-www-form-urlencoded"),
            ..webhook("a form", "inbox[id]=7", S::UNSUPPORTED_MEDIA_TYPE)
        },
        Case {
            content_type: None,
            ..webhook(
                "no content type",
                message(7, 1, 3),
                S::UNSUPPORTED_MEDIA_TYPE,
            )
        },
        Case {
            method: Method::GET,
            ..webhook("GET instead of POST", "", S::METHOD_NOT_ALLOWED)
        },
        inbox_id("inbox id negative", "-7"),
        inbox_id("inbox id zero", "0"),
        inbox_id("inbox id float", "7.5"),
        inbox_id("inbox id huge", "99999999999999999999999"),
        inbox_id("inbox id boolean", "true"),
        inbox_id("inbox id null", "null"),
        inbox_id("inbox id an object", r#"{"id":7}"#),
        inbox_id("inbox id with letters", r#""7a""#),
        dropped(
            "no inbox at all",
            r#"{"event":"contact_created","id":5}"#,
            "no_inbox",
        ),
        dropped("an inbox without a route", message(99, 1, 1), "no_route"),
        // Control: escaped NUL characters are valid JSON and go through byte for byte.
        webhook(
            "escaped NUL in a string",
            r#"{"event":"message_created","content":"a\u0000b","inbox":{"id":7},"conversation":{"id":1}}"#,
            S::OK,
        ),
        route("javascript: URL", url("javascript:alert(1)"), "webhookUrl"),
        route("file: URL", url("file:///etc/passwd"), "webhookUrl"),
        route("data: URL", url("data:text/html,<b>x</b>"), "webhookUrl"),
        route("URL without host", url("http://"), "webhookUrl"),
        route(
            "name of 10 000 characters",
            json!({"inboxId": 20, "webhookUrl": "http://g/x", "name": "n".repeat(10_000)}),
            "name",
        ),
        route(
            "name with a NUL",
            json!({"inboxId": 20, "webhookUrl": "http://g/x", "name": "a\u{0}b"}),
            "name",
        ),
        route(
            "inboxId negative",
            json!({"inboxId": -1, "webhookUrl": "http://g/x"}),
            "inboxId",
        ),
        route(
            "inboxId float",
            json!({"inboxId": 1.5, "webhookUrl": "http://g/x"}),
            "inboxId",
        ),
        route(
            "inboxId boolean",
            json!({"inboxId": true, "webhookUrl": "http://g/x"}),
            "inboxId",
        ),
        route(
            "inboxId huge",
            json!({"inboxId": 1e30, "webhookUrl": "http://g/x"}),
            "inboxId",
        ),
        route(
            "inboxId missing",
            json!({"webhookUrl": "http://g/x"}),
            "inboxId",
        ),
        Case {
            body: b"{\"inboxId\": 20,".to_vec(),
            field: None,
            ..route("admin body not JSON", json!({}), "")
        },
        Case {
            content_type: Some("text/plain"),
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            field: None,
            ..route(
                "admin body as text/plain",
                json!({"inboxId": 20, "webhookUrl": "http://g/x"}),
                "",
            )
        },
        Case {
            method: Method::PUT,
            path: "/admin/routes/abc",
            status: StatusCode::NOT_FOUND,
            field: None,
            ..route("route id not a number", json!({"name": "x"}), "")
        },
        Case {
            method: Method::PUT,
            path: "/admin/routes/999999",
            status: StatusCode::NOT_FOUND,
            field: None,
            ..route("route that does not exist", json!({"name": "x"}), "")
        },
        Case {
            status: StatusCode::CONFLICT,
            field: Some("inboxId"),
            ..route(
                "a second route for inbox 7",
                json!({"inboxId": 7, "webhookUrl": "http://g/x"}),
                "",
            )
        },
        // Four bad logins: one fewer than what pauses this address.
        login(
            "Basic auth without a colon",
            &format!("Basic {}", b64("adminsecret")),
        ),
        login("Basic auth that is not base64", "Basic !!!***"),
        login("another scheme", "Bearer abc.def"),
        login(
            "Basic auth of invalid UTF-8",
            &format!("Basic {}", b64("admin:\u{fffd}\u{0}")),
        ),
    ]
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

async fn count(server: &Server, what: &str) -> usize {
    let answer = server.admin(Method::GET, what).await;
    let key = what
        .trim_start_matches("/admin/")
        .split('?')
        .next()
        .unwrap();
    answer[key].as_array().unwrap().len()
}

#[tokio::test]
async fn every_kind_of_bad_input_gets_a_clear_answer_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::spawn_logging(dir.path(), free_port(), &[]);
    server.wait_healthy().await;
    server
        .add_route(7, "http://127.0.0.1:9/chatwoot/webhook")
        .await;
    let http = crate::support::http_client();
    let cases = cases();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    println!("{} bad-input cases", cases.len());
    let mut queued = 0;
    for case in cases {
        let mut request = http
            .request(
                case.method.clone(),
                format!("{}{}", server.base(), case.path),
            )
            .body(case.body);
        if let Some(ct) = case.content_type {
            request = request.header("content-type", ct);
        }
        if let Some(auth) = case.authorization {
            request = request.header("authorization", auth);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", case.what));
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, case.status, "{}: {text}", case.what);
        if status == StatusCode::METHOD_NOT_ALLOWED {
            continue;
        }
        let answer: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: the answer is not JSON ({e}): {text}", case.what));
        if status.is_success() {
            assert_eq!(
                answer["reason"].as_str(),
                case.reason,
                "{}: {answer}",
                case.what
            );
            assert_eq!(answer["queued"], case.reason.is_none(), "{}", case.what);
            queued += usize::from(case.reason.is_none());
        } else {
            let error = answer["error"].as_str().unwrap_or_default();
            assert!(error.len() > 5, "{}: no clear error: {answer}", case.what);
            assert_eq!(
                answer["field"].as_str(),
                case.field,
                "{}: {answer}",
                case.what
            );
        }
    }

    assert_eq!(
        count(&server, "/admin/routes").await,
        1,
        "only the route set up"
    );
    let deliveries = server.admin(Method::GET, "/admin/deliveries").await;
    assert_eq!(
        deliveries["deliveries"].as_array().unwrap().len(),
        queued,
        "only the webhooks answered queued are stored: {deliveries}"
    );
    let unrouted = server.admin(Method::GET, "/admin/unrouted").await;
    let inboxes: Vec<i64> = unrouted["unrouted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["inboxId"].as_i64().unwrap())
        .collect();
    assert_eq!(
        inboxes,
        [99],
        "only the routable inbox without a route is counted"
    );
    assert!(server.healthcheck(), "still serving");
    let log = server.stop_and_read_log();
    assert!(!log.contains("panicked"), "{log}");
}
