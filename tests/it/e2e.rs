//! The real binary: `chatgowa --server`, `chatgowa healthcheck`, SIGTERM, and `kill -9` mid-delivery.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use crate::support::{Admin, BIN, Gowa, Reply, Server, eventually, free_port, message, wait_exit};

#[tokio::test]
async fn sigterm_finishes_and_records_attempts_in_flight_then_exits() {
    let slow = Gowa::start().await;
    slow.set(|_, _| Reply {
        delay: Duration::from_millis(1500),
        ..Reply::status(200)
    });
    let hung = Gowa::start().await;
    hung.set(|_, _| Reply {
        delay: Duration::from_secs(60),
        ..Reply::status(200)
    });
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::spawn(dir.path(), free_port(), &[("FETCH_TIMEOUT_MS", "30000")]);
    server.wait_healthy().await;
    server.add_route(7, &slow.url("/chatwoot/webhook")).await;
    server.add_route(8, &hung.url("/chatwoot/webhook")).await;
    let finished = server.post_webhook(message(7, 1, 0)).await["deliveryId"]
        .as_i64()
        .unwrap();
    let abandoned = server.post_webhook(message(8, 1, 0)).await["deliveryId"]
        .as_i64()
        .unwrap();
    eventually(
        "both attempts in flight",
        Duration::from_secs(10),
        || async { (slow.arrivals() == 1 && hung.arrivals() == 1).then_some(()) },
    )
    .await;

    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = wait_exit(
        &mut server.child,
        "the relay to exit after SIGTERM",
        Duration::from_secs(10),
    )
    .await;
    assert!(exit.success(), "exit status {exit:?}");
    assert!(
        !server.healthcheck(),
        "healthcheck fails once the relay is gone"
    );

    // The slow attempt finished and was recorded; the hung one was recorded as interrupted and stays pending.
    let db = crate::support::open_database(dir.path()).await;
    let state = |id: i64| {
        let db = &db;
        async move {
            on_db!(db, |pool| {
                sqlx::query_as::<_, (String, i64, Option<i64>, Option<String>)>(
                    "SELECT d.status, d.attempts, a.status_code, a.error FROM deliveries d
                     JOIN delivery_attempts a ON a.delivery_id = d.id WHERE d.id = $1",
                )
                .bind(id)
                .fetch_one(pool)
                .await
            })
        }
    };
    let (status, attempts, code, _) = state(finished).await.unwrap();
    assert_eq!(
        (status.as_str(), attempts, code),
        ("delivered", 1, Some(200))
    );
    let (status, attempts, code, error) = state(abandoned).await.unwrap();
    assert_eq!((status.as_str(), attempts, code), ("pending", 1, None));
    assert!(error.unwrap().contains("interrupted"));
}

/// Killed with an attempt in flight on every lane: GoWA holds each first request unanswered (and the relay
/// waits longer than that), so no lane can send anything else before the kill, and no request of the killed
/// relay can be answered 200 after it. (`faults::kill_9_ten_times_under_load_loses_nothing_acknowledged`
/// covers kills at random moments, where such a request is a permitted duplicate.)
#[tokio::test]
async fn nothing_acknowledged_is_lost_across_kill_9() {
    let gowa = Gowa::start().await;
    gowa.set(|_, _| Reply {
        delay: Duration::from_secs(60),
        ..Reply::status(503)
    });
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // On PostgreSQL the restarted relay is a new holder: it takes the lanes over once the dead one's leases end,
    // which outlast an attempt's timeout. There attempts time out (and are retried) instead of hanging.
    let env: &[(&str, &str)] = if crate::support::on_postgres() {
        &[("FETCH_TIMEOUT_MS", "2000"), ("CHATGOWA_LANE_LEASE", "7s")]
    } else {
        &[("FETCH_TIMEOUT_MS", "120000")]
    };
    let mut server = Server::spawn(dir.path(), port, env);
    server.wait_healthy().await;

    for inbox in [7, 8] {
        server
            .add_route(inbox, &gowa.url(&format!("/chatwoot/webhook/{inbox}")))
            .await;
    }

    // Webhooks for 6 conversations over 2 inboxes, acknowledged while GoWA does not answer.
    let mut acked = Vec::new();
    for seq in 0..60 {
        let (inbox, conversation) = (7 + (seq % 2) as i64, (seq % 6) as i64);
        assert_eq!(
            server.post_webhook(message(inbox, conversation, seq)).await["queued"],
            true
        );
        acked.push((conversation, seq));
    }
    eventually(
        "an attempt in flight on every lane",
        Duration::from_secs(10),
        || async { (gowa.arrivals() >= 6).then_some(()) },
    )
    .await;

    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    gowa.set(|_, _| Reply::status(200));
    let server = Server::spawn(dir.path(), port, &env[1..]);
    server.wait_healthy().await;

    let got = gowa
        .wait_for("every acknowledged webhook", Duration::from_secs(20), |r| {
            let delivered: std::collections::HashSet<u64> = r
                .iter()
                .filter(|r| r.status == 200)
                .map(|r| r.json()["id"].as_u64().unwrap())
                .collect();
            delivered.len() == acked.len()
        })
        .await;
    let mut per_conversation: HashMap<i64, Vec<u64>> = HashMap::new();
    for r in got.iter().filter(|r| r.status == 200) {
        let m = r.json();
        per_conversation
            .entry(m["conversation"]["id"].as_i64().unwrap())
            .or_default()
            .push(m["id"].as_u64().unwrap());
    }
    for (conversation, seqs) in per_conversation {
        let expected: Vec<u64> = acked
            .iter()
            .filter(|(c, _)| *c == conversation)
            .map(|(_, s)| *s as u64)
            .collect();
        assert_eq!(
            seqs, expected,
            "conversation {conversation} in order, each once after the restart"
        );
    }
    drop(server);
}

#[tokio::test]
async fn a_second_relay_on_the_same_database_refuses_to_start() {
    // SQLite only: relays on PostgreSQL share their database (see `replicas`).
    if crate::support::on_postgres() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let first = Server::spawn(dir.path(), free_port(), &[]);
    first.wait_healthy().await;
    let second = Command::new(BIN)
        .arg("--server")
        .current_dir(dir.path())
        .env_clear()
        .env("PORT", free_port().to_string())
        .env("DATABASE_URL", crate::support::database_url(dir.path()))
        .output()
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("already using this"), "{stderr}");
    assert!(first.healthcheck(), "the first relay is unaffected");
}

#[tokio::test]
async fn an_argon2_hash_from_hash_password_guards_the_admin_api() {
    use std::io::Write as _;
    let mut child = Command::new(BIN)
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"kopi tubruk 42\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(hash.starts_with("$argon2id$"), "{hash}");

    let dir = tempfile::tempdir().unwrap();
    let server = Server::spawn(
        dir.path(),
        free_port(),
        &[("BASIC_AUTH_PASS", hash.as_str())],
    );
    server.wait_healthy().await;
    let routes = |password: &'static str| {
        crate::support::http_client()
            .get(format!("{}/admin/routes", server.base()))
            .basic_auth("admin", Some(password))
            .send()
    };
    for _ in 0..2 {
        assert_eq!(routes("kopi tubruk 42").await.unwrap().status(), 200);
        assert_eq!(routes("kopi tubruk 43").await.unwrap().status(), 401);
    }
}

#[tokio::test]
async fn the_admin_can_listen_apart_from_the_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let admin_port = free_port();
    let admin_bind = format!("127.0.0.1:{admin_port}");
    let server = Server::spawn(
        dir.path(),
        free_port(),
        &[("CHATGOWA_ADMIN_BIND", admin_bind.as_str())],
    );
    server.wait_healthy().await;
    let http = crate::support::http_client();
    let main = Admin::new(server.base()).with_client(http.clone());
    let admin = Admin::new(format!("http://{admin_bind}")).with_client(http.clone());
    // Only the webhook (and health) on the main port: a tunnel to it exposes no admin.
    assert_eq!(main.get("/admin/routes").await.0, 404);
    assert_eq!(main.get("/admin/").await.0, 404);
    assert_eq!(main.get("/healthz").await.0, 200);
    // The admin API and panel on their own address, without the webhook.
    assert_eq!(admin.get("/admin/routes").await.0, 200);
    assert_eq!(admin.get("/admin/").await.0, 200);
    assert_eq!(admin.get("/healthz").await.0, 200);
    // The panel is told the webhook's port, which its own address does not show.
    let stats = admin.get_ok("/admin/stats").await;
    assert_eq!(stats["webhookPort"], server.port, "{stats}");
    assert!(
        main.get("/admin/stats")
            .await
            .1
            .get("webhookPort")
            .is_none(),
        "no admin there at all"
    );
    let webhook = http
        .post(format!("http://{admin_bind}/webhook"))
        .body(message(7, 1, 0))
        .send()
        .await
        .unwrap();
    assert_eq!(webhook.status(), 404);
    assert_eq!(
        server.post_webhook(message(7, 1, 0)).await["reason"],
        "no_route"
    );
}
