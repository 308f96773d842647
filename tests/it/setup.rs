//! First run of the headless relay without `BASIC_AUTH_PASS`: a one-time setup link in the log, the admin
//! chooses the password, and the link is useless afterwards. The real binary, over loopback.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{ADMIN_USER, Admin, Server, eventually, free_port};

const WAIT: Duration = Duration::from_secs(10);
const CHOSEN: &str = "a long enough password";

/// The token of the setup link in `log`, if there is one.
pub fn setup_token(log: &str) -> Option<String> {
    let at = log.find("#/setup?token=")? + "#/setup?token=".len();
    Some(
        log[at..]
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect(),
    )
}

async fn post_setup(
    server: &Server,
    token: &str,
    password: &str,
) -> (StatusCode, serde_json::Value) {
    let response = crate::support::http_client()
        .post(format!("{}/admin/setup", server.base()))
        .json(&json!({"token": token, "password": password}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::test]
async fn a_first_run_without_a_password_gives_a_one_time_setup_link() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let no_password = [
        ("BASIC_AUTH_PASS", ""),
        ("RUST_LOG", "chatgowa_lib=info,warn"),
    ];
    let server = Server::spawn_logging(dir.path(), port, &no_password);
    server.wait_healthy().await;
    let token = eventually("the setup link in the log", WAIT, || async {
        setup_token(&server.log_so_far())
    })
    .await;
    assert_eq!(token.len(), 32);

    // Only the panel's files and the setup answer; no login prompt.
    let anyone = crate::support::http_client();
    let stats = anyone
        .get(format!("{}/admin/stats", server.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(stats.status(), StatusCode::FORBIDDEN);
    assert!(stats.headers().get("www-authenticate").is_none());
    let panel = anyone
        .get(format!("{}/admin/", server.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(panel.status(), StatusCode::OK);

    let (status, body) = post_setup(&server, "not-the-token", CHOSEN).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = post_setup(&server, &token, "short").await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("password"))
    );
    // Two holders of the link at once (a forwarded message, a second tab): one of them chooses the password.
    let (first, second) = tokio::join!(
        post_setup(&server, &token, CHOSEN),
        post_setup(&server, &token, CHOSEN)
    );
    let chosen = [&first, &second]
        .iter()
        .filter(|(status, _)| *status == StatusCode::OK)
        .count();
    assert_eq!(chosen, 1, "{first:?} {second:?}");

    // The password works at once; the link is useless now.
    let admin = Admin::login(server.base(), ADMIN_USER, CHOSEN);
    assert_eq!(admin.get("/admin/stats").await.0, StatusCode::OK);
    let (status, _) = post_setup(&server, &token, "another long password").await;
    assert_ne!(status, StatusCode::OK, "the link works once");
    let log = server.stop_and_read_log();
    assert_eq!(
        log.matches(token.as_str()).count(),
        1,
        "the token is logged once"
    );
    assert!(!log.contains(CHOSEN), "the password is never logged");

    // After a restart the chosen password is in force, and there is no setup link.
    let server = Server::spawn_logging(dir.path(), port, &no_password);
    server.wait_healthy().await;
    let admin = Admin::login(server.base(), ADMIN_USER, CHOSEN);
    assert_eq!(admin.get("/admin/stats").await.0, StatusCode::OK);
    let log = server.stop_and_read_log();
    assert_eq!(setup_token(&log), None, "{log}");
}

#[tokio::test]
async fn a_password_from_the_environment_means_no_setup_state() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::spawn_logging(dir.path(), free_port(), &[]);
    server.wait_healthy().await;
    let (status, _) = post_setup(&server, "anything", CHOSEN).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the setup needs the admin login like the rest"
    );
    assert_eq!(
        Admin::new(server.base()).get("/admin/stats").await.0,
        StatusCode::OK
    );
    let log = server.stop_and_read_log();
    assert_eq!(setup_token(&log), None);
}
