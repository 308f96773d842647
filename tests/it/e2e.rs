//! The real binary: `chatgowa --server`, `chatgowa healthcheck`, SIGTERM, and `kill -9` mid-delivery.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{ADMIN_PASS, ADMIN_USER, Gowa, Reply, basic_auth, eventually, message};

const BIN: &str = env!("CARGO_BIN_EXE_chatgowa");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn spawn(dir: &Path, port: u16) -> Self {
        let child = Command::new(BIN)
            .arg("--server")
            .current_dir(dir)
            .env_clear()
            .env("PORT", port.to_string())
            .env("CHATGOWA_BIND", "127.0.0.1")
            .env("DATABASE_URL", "file:./data/relay.db")
            .env("BASIC_AUTH_PASS", ADMIN_PASS)
            .env("CHATGOWA_RETRY_SCHEDULE", "30ms,60ms")
            .env("FETCH_TIMEOUT_MS", "2000")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Self { child, port }
    }

    fn healthcheck(&self) -> bool {
        Command::new(BIN)
            .arg("healthcheck")
            .env_clear()
            .env("PORT", self.port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }

    async fn wait_healthy(&self) {
        eventually("the relay to answer its health check", Duration::from_secs(20), || async {
            self.healthcheck().then_some(())
        })
        .await;
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn sigterm_stops_the_relay_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::spawn(dir.path(), free_port());
    server.wait_healthy().await;
    let status = Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = server.child.try_wait().unwrap() {
            break exit;
        }
        assert!(std::time::Instant::now() < deadline, "the relay did not exit within 10 s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "exit status {exit:?}");
    assert!(!server.healthcheck(), "healthcheck fails once the relay is gone");
}

#[tokio::test]
async fn nothing_acknowledged_is_lost_across_kill_9() {
    let gowa = Gowa::start().await;
    gowa.set(|_, _| Reply::status(503));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = Server::spawn(dir.path(), port);
    server.wait_healthy().await;

    let http = reqwest::Client::new();
    let auth = basic_auth(ADMIN_USER, ADMIN_PASS);
    for inbox in [7, 8] {
        let created = http
            .post(format!("{}/admin/routes", server.base()))
            .header("authorization", &auth)
            .json(&serde_json::json!({"inboxId": inbox, "webhookUrl": gowa.url(&format!("/chatwoot/webhook/{inbox}"))}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
    }

    // Webhooks for 6 conversations over 2 inboxes, acknowledged while GoWA is failing.
    let mut acked = Vec::new();
    for seq in 0..60 {
        let (inbox, conversation) = (7 + (seq % 2) as i64, (seq % 6) as i64);
        let response = http
            .post(format!("{}/webhook", server.base()))
            .header("content-type", "application/json")
            .body(message(inbox, conversation, seq))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let answer: serde_json::Value = response.json().await.unwrap();
        assert_eq!(answer["queued"], true);
        acked.push((conversation, seq));
    }
    gowa.wait_for("failing attempts", Duration::from_secs(10), |r| r.len() >= 6).await;

    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    gowa.set(|_, _| Reply::status(200));
    let server = Server::spawn(dir.path(), port);
    server.wait_healthy().await;

    let got = gowa
        .wait_for("every acknowledged webhook", Duration::from_secs(20), |r| {
            let delivered: std::collections::HashSet<u64> =
                r.iter().filter(|r| r.status == 200).map(|r| r.json()["id"].as_u64().unwrap()).collect();
            delivered.len() == acked.len()
        })
        .await;
    let mut per_conversation: HashMap<i64, Vec<u64>> = HashMap::new();
    for r in got.iter().filter(|r| r.status == 200) {
        let m = r.json();
        per_conversation.entry(m["conversation"]["id"].as_i64().unwrap()).or_default().push(m["id"].as_u64().unwrap());
    }
    for (conversation, seqs) in per_conversation {
        let expected: Vec<u64> = acked.iter().filter(|(c, _)| *c == conversation).map(|(_, s)| *s as u64).collect();
        assert_eq!(seqs, expected, "conversation {conversation} in order, each once after the restart");
    }
    drop(server);
}
