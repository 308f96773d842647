//! Faults against the real binary and a GoWA stand-in on loopback: `kill -9` under load, a long GoWA outage,
//! a slow or resetting GoWA, a locked database, a full disk, and a burst far above capacity. Each test prints
//! its figures (`cargo test … -- --nocapture` shows them; the README quotes them).

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chatgowa_lib::store::Db;
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{Gowa, Received, Reply, Server, eventually, free_port, heavy, message};

/// `(conversation, sequence)` of a `message()` body.
fn key(r: &Received) -> (i64, u64) {
    let m = r.json();
    (
        m["conversation"]["id"].as_i64().unwrap(),
        m["id"].as_u64().unwrap(),
    )
}

/// What GoWA saw, checked against what was acknowledged: every acknowledged webhook arrived, each
/// conversation in order, and repeats only right after the same message (a resend of the attempt in flight).
/// Returns (delivered, duplicates).
pub(crate) fn check_delivered(acked: &[(i64, u64)], arrived: &[Received]) -> (usize, usize) {
    let mut per_conversation: HashMap<i64, Vec<u64>> = HashMap::new();
    for r in arrived {
        let (conversation, seq) = key(r);
        per_conversation.entry(conversation).or_default().push(seq);
    }
    let mut delivered = 0;
    let mut duplicates = 0;
    for (conversation, seqs) in &per_conversation {
        let mut collapsed = seqs.clone();
        collapsed.dedup();
        duplicates += seqs.len() - collapsed.len();
        delivered += collapsed.len();
        assert!(
            collapsed.windows(2).all(|w| w[0] < w[1]),
            "conversation {conversation} out of order: {seqs:?}"
        );
    }
    let got: HashSet<(i64, u64)> = arrived.iter().map(key).collect();
    let missing: Vec<_> = acked.iter().filter(|k| !got.contains(k)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but never delivered: {missing:?}"
    );
    (delivered, duplicates)
}

fn all_arrived(acked: &[(i64, u64)], arrived: &[Received]) -> bool {
    let got: HashSet<(i64, u64)> = arrived.iter().map(key).collect();
    acked.iter().all(|k| got.contains(k))
}

/// Waits for every acknowledged webhook to reach GoWA; on a timeout, says which did not and what the store holds of
/// their lanes (a lane no relay works, or one waiting for a lease that does not end, shows there).
async fn every_acknowledged_arrives(acked: &[(i64, u64)], gowa: &Gowa, dir: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !all_arrived(acked, &gowa.arrived()) {
        if Instant::now() > deadline {
            let got: HashSet<(i64, u64)> = gowa.arrived().iter().map(key).collect();
            let missing: Vec<_> = acked.iter().filter(|k| !got.contains(k)).collect();
            let db = crate::support::open_database(dir).await;
            let pending: Vec<(i64, Option<i64>, i64, i64, i64)> = on_db!(&db, |pool| sqlx::query_as(
                "SELECT id, conversation_id, attempts, next_attempt_at, received_at FROM deliveries \
                 WHERE status = 'pending' ORDER BY id LIMIT 20",
            )
            .fetch_all(pool)
            .await)
            .unwrap();
            let lanes: Vec<String> = match &db {
                Db::Postgres(pool) => sqlx::query_scalar(
                    "SELECT concat_ws(' ', conversation_id, owner, lease_until - chatgowa_clock_ms(), \
                     due_at - chatgowa_clock_ms(), version) FROM lanes ORDER BY conversation_id",
                )
                .fetch_all(pool)
                .await
                .unwrap(),
                Db::Sqlite(_) => Vec::new(),
            };
            panic!(
                "acknowledged but never delivered: {missing:?}\npending (id, conversation, attempts, next attempt, \
                 received): {pending:?}\nlanes (conversation, owner, lease left, due in, version): {lanes:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A `/proc/<pid>/status` figure (kB for memory lines).
fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

async fn post(
    http: &reqwest::Client,
    base: &str,
    body: Vec<u8>,
) -> reqwest::Result<(StatusCode, Option<String>, Value)> {
    let response = http
        .post(format!("{base}/webhook"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let answer = response.json().await.unwrap_or(Value::Null);
    Ok((status, retry_after, answer))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::test]
async fn kill_9_ten_times_under_load_loses_nothing_acknowledged() {
    let _heavy = heavy().await;
    let gowa = Gowa::start().await;
    gowa.set(|_, _| Reply {
        delay: Duration::from_millis(5),
        ..Reply::status(200)
    });
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // On PostgreSQL the restarted relay takes the killed one's lanes over once its leases end (the least lease
    // a 2 s attempt timeout allows): fewer rounds.
    let (env, kills): (&[(&str, &str)], usize) = if crate::support::on_postgres() {
        (&[("CHATGOWA_LANE_LEASE", "7s")], 5)
    } else {
        (&[], 10)
    };
    let mut server = Server::spawn(dir.path(), port, env);
    server.wait_healthy().await;
    for inbox in [7, 8] {
        server
            .add_route(inbox, &gowa.url(&format!("/chatwoot/webhook/{inbox}")))
            .await;
    }

    // 8 senders, 4 conversations each, posting back to back; a webhook counts once answered `queued`.
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let base = server.base();
    let senders: Vec<_> = (0..8i64)
        .map(|sender| {
            let (acked, stop, base) = (acked.clone(), stop.clone(), base.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap();
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for conversation in sender * 4..sender * 4 + 4 {
                        seq += 1;
                        let body = message(7 + conversation % 2, conversation, seq as usize);
                        match post(&http, &base, body).await {
                            Ok((StatusCode::OK, _, a)) if a["queued"] == true => {
                                acked.lock().unwrap().push((conversation, seq));
                            }
                            // The relay is down (being killed or restarting): not acknowledged.
                            _ => tokio::time::sleep(Duration::from_millis(5)).await,
                        }
                    }
                }
            })
        })
        .collect();

    for _ in 0..kills {
        let (acked_before, arrived_before) = (acked.lock().unwrap().len(), gowa.arrivals());
        eventually(
            "more acknowledged and delivered",
            Duration::from_secs(30),
            || async {
                let more = acked.lock().unwrap().len() >= acked_before + 100
                    && gowa.arrivals() >= arrived_before + 50;
                more.then_some(())
            },
        )
        .await;
        server.child.kill().unwrap(); // SIGKILL, deliveries in flight
        server.child.wait().unwrap();
        server = Server::spawn(dir.path(), port, env);
        server.wait_healthy().await;
    }
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    every_acknowledged_arrives(&acked, &gowa, dir.path()).await;
    // A duplicate is an attempt that was in flight when the relay was killed: GoWA saw it, but the relay has
    // no record of it and sent it again after the restart. So every delivery has exactly one recorded attempt
    // (GoWA always answers 200), and GoWA saw exactly `duplicates` requests more than the relay recorded. What
    // GoWA saw is counted once all is recorded: a webhook the relay stored as it was killed was never
    // acknowledged, and may go after the acknowledged ones arrived.
    eventually(
        "every delivery recorded",
        Duration::from_secs(20),
        || async {
            let stats = server.admin(reqwest::Method::GET, "/admin/stats").await;
            (stats["totals"]["pending"] == 0).then_some(())
        },
    )
    .await;
    let arrived = gowa.arrived();
    let (delivered, duplicates) = check_delivered(&acked, &arrived);
    println!(
        "kill -9 ×{kills}: acknowledged {}, delivered {delivered}, duplicates {duplicates}",
        acked.len()
    );
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let db = crate::support::open_database(dir.path()).await;
    let sent_twice: Vec<(i64, i64)> = on_db!(&db, |pool| sqlx::query_as(
        "SELECT delivery_id, count(*) FROM delivery_attempts GROUP BY delivery_id HAVING count(*) > 1",
    )
    .fetch_all(pool)
    .await)
    .unwrap();
    assert!(
        sent_twice.is_empty(),
        "sent twice by a running relay: {sent_twice:?}"
    );
    let recorded = crate::support::scalar(&db, "SELECT count(*) FROM delivery_attempts").await;
    assert_eq!(recorded as usize, delivered);
    assert_eq!(arrived.len() - delivered, duplicates);
    drop(server);
}

#[tokio::test]
async fn a_thirty_minute_gowa_outage_is_ridden_out_in_order() {
    let _heavy = heavy().await;
    // The default schedule and maximum age at 1/1000 scale: a millisecond here stands for a second.
    let schedule = "1ms,5ms,30ms,120ms,600ms,1800ms,3600ms,7200ms,14400ms,28800ms";
    let outage = Duration::from_millis(1800); // 30 minutes
    let gowa_port = free_port(); // nothing listens: GoWA is down
    let dir = tempfile::tempdir().unwrap();
    let server = Server::spawn(
        dir.path(),
        free_port(),
        &[
            ("CHATGOWA_RETRY_SCHEDULE", schedule),
            ("CHATGOWA_MAX_AGE", "86400ms"),
        ],
    );
    server.wait_healthy().await;
    let url = format!("http://127.0.0.1:{gowa_port}/chatwoot/webhook");
    server.add_route(7, &url).await;
    let down_since = Instant::now();
    let mut acked = Vec::new();
    for seq in 0..100u64 {
        let conversation = (seq % 20) as i64;
        let answer = server
            .post_webhook(message(7, conversation, seq as usize))
            .await;
        assert_eq!(answer["queued"], true);
        acked.push((conversation, seq));
    }
    let remaining = outage.saturating_sub(down_since.elapsed());
    tokio::time::sleep(remaining).await; // the outage itself, not a wait for the relay
    let stats = server.admin(reqwest::Method::GET, "/admin/stats").await;
    assert_eq!(stats["totals"]["dead"], 0, "{stats}");
    assert_eq!(stats["totals"]["pending"], 100, "{stats}");

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", gowa_port))
        .await
        .unwrap();
    let back = Instant::now();
    let gowa = Gowa::start_on(listener);
    eventually(
        "everything delivered after GoWA is back",
        Duration::from_secs(20),
        || async { all_arrived(&acked, &gowa.arrived()).then_some(()) },
    )
    .await;
    let caught_up = back.elapsed();
    let (delivered, duplicates) = check_delivered(&acked, &gowa.arrived());
    let stats = server.admin(reqwest::Method::GET, "/admin/stats").await;
    assert_eq!(
        stats["totals"]["dead"], 0,
        "none dead before CHATGOWA_MAX_AGE: {stats}"
    );
    assert_eq!(duplicates, 0);
    println!(
        "30 min outage (1:1000): {delivered} delivered in order, 0 dead, all within {} ms of GoWA's return \
         ({:.1} min at scale)",
        caught_up.as_millis(),
        caught_up.as_secs_f64() * 1000.0 / 60.0
    );
}

/// Accepts connections, reads the start of each request and resets the connection.
async fn resetting_gowa() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/chatwoot/webhook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 256];
                let _ = stream.readable().await;
                let _ = stream.try_read(&mut buf);
                stream.set_zero_linger().unwrap();
                drop(stream); // RST
            });
        }
    });
    url
}

#[tokio::test]
async fn a_slow_or_resetting_gowa_does_not_slow_acknowledgements() {
    let _heavy = heavy().await;
    let slow = Gowa::start().await;
    slow.set(|_, _| Reply {
        delay: Duration::from_secs(5),
        ..Reply::status(200)
    });
    let healthy = Gowa::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::spawn(
        dir.path(),
        free_port(),
        &[
            ("FETCH_TIMEOUT_MS", "1500"),
            ("CHATGOWA_RETRY_SCHEDULE", "50ms,100ms"),
        ],
    );
    server.wait_healthy().await;
    server.add_route(7, &slow.url("/chatwoot/webhook")).await;
    server.add_route(8, &resetting_gowa().await).await;
    server.add_route(9, &healthy.url("/chatwoot/webhook")).await;
    let pid = server.child.id();

    let latencies = Arc::new(Mutex::new(Vec::new()));
    let base = server.base();
    let senders: Vec<_> = (0..10i64)
        .map(|sender| {
            let (latencies, base) = (latencies.clone(), base.clone());
            tokio::spawn(async move {
                let http = crate::support::http_client();
                for seq in 0..150usize {
                    let conversation = sender * 15 + (seq as i64 % 15);
                    let inbox = 7 + conversation % 3;
                    let started = Instant::now();
                    let (status, _, answer) = post(&http, &base, message(inbox, conversation, seq))
                        .await
                        .unwrap();
                    assert_eq!(
                        (status, &answer["queued"]),
                        (StatusCode::OK, &Value::Bool(true))
                    );
                    latencies.lock().unwrap().push(started.elapsed());
                }
            })
        })
        .collect();
    let (mut threads, mut files) = (0, 0);
    while !senders.iter().all(tokio::task::JoinHandle::is_finished) {
        threads = threads.max(proc_status(pid, "Threads"));
        files = files.max(open_files(pid));
        tokio::time::sleep(Duration::from_millis(50)).await; // sampling interval, not synchronisation
    }
    for s in senders {
        s.await.unwrap();
    }
    // The healthy route is not held up by the other two.
    healthy
        .wait_for(
            "the healthy route's deliveries",
            Duration::from_secs(20),
            |r| r.len() == 500,
        )
        .await;
    // Attempts keep going against the bad ones meanwhile; the process stays bounded.
    let slow_attempts = slow.arrivals();
    for _ in 0..20 {
        threads = threads.max(proc_status(pid, "Threads"));
        files = files.max(open_files(pid));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let peak_kib = proc_status(pid, "VmHWM");
    let mut latencies = latencies.lock().unwrap().clone();
    latencies.sort();
    let (p50, p99, max) = (
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        *latencies.last().unwrap(),
    );
    println!(
        "slow (5 s, timeout 3 s) + resetting GoWA, 1500 webhooks from 10 senders: ack p50 {p50:?}, p99 {p99:?}, max {max:?}; \
         threads ≤ {threads}, open files ≤ {files}, peak RSS {} MiB; slow GoWA saw {slow_attempts} attempts",
        peak_kib / 1024
    );
    assert!(slow_attempts > 0);
    // An acknowledgement never waits for GoWA: a coupling would show as the 3 s fetch timeout.
    assert!(p99 < Duration::from_millis(1000), "p99 {p99:?}");
    assert!(max < Duration::from_millis(3000), "max {max:?}");
    assert!(threads <= 40, "{threads} threads");
    // Attempts in flight are capped at 32 per route: 64 sockets to the bad routes, plus the rest.
    assert!(files <= 200, "{files} open files");
    assert!(peak_kib < 150 * 1024, "peak RSS {peak_kib} KiB");
}

/// SQLite's own check of the file (PostgreSQL checks its pages as it reads them: "ok" there) and the webhooks
/// stored.
async fn integrity(dir: &std::path::Path) -> (String, i64) {
    let db = crate::support::open_database(dir).await;
    let check = match &db {
        Db::Sqlite(pool) => sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(pool)
            .await
            .unwrap(),
        Db::Postgres(_) => "ok".to_owned(),
    };
    let stored = crate::support::scalar(&db, "SELECT count(*) FROM deliveries").await;
    db.close().await;
    (check, stored)
}

/// Posts until an answer is 200 (the fault has cleared), returning the acknowledged key.
async fn post_until_accepted(server: &Server, conversation: i64, seq: u64) -> (i64, u64) {
    let http = crate::support::http_client();
    let base = server.base();
    eventually(
        "the relay to accept webhooks again",
        Duration::from_secs(15),
        || {
            let (http, base) = (&http, &base);
            async move {
                let (status, _, _) = post(http, base, message(7, conversation, seq as usize))
                    .await
                    .unwrap();
                (status == StatusCode::OK).then_some((conversation, seq))
            }
        },
    )
    .await
}

#[tokio::test]
async fn a_database_locked_by_another_process_is_answered_503_then_recovers() {
    let _heavy = heavy().await;
    let gowa = Gowa::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::spawn_logging(dir.path(), free_port(), &[]);
    server.wait_healthy().await;
    server.add_route(7, &gowa.url("/chatwoot/webhook")).await;
    let mut acked = vec![(1, 1)];
    server.post_webhook(message(7, 1, 1)).await;

    // Another program takes the write lock and keeps it: the whole file, or the table of deliveries.
    let other = crate::support::open_database(dir.path()).await;
    let mut other = on_db!(&other, |pool| pool.begin().await.map(Locked::from)).unwrap();
    other.lock().await;
    let http = crate::support::http_client();
    let started = Instant::now();
    let (status, retry_after, answer) =
        post(&http, &server.base(), message(7, 1, 2)).await.unwrap();
    let answered_in = started.elapsed();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert!(
        answered_in < Duration::from_millis(4500),
        "answered after {answered_in:?}"
    );
    assert!(
        server.healthcheck(),
        "still up while the database is locked"
    );

    other.release().await;
    acked.push(post_until_accepted(&server, 1, 3).await);
    gowa.wait_for("the acknowledged webhooks", Duration::from_secs(10), |r| {
        r.len() == 2
    })
    .await;
    check_delivered(&acked, &gowa.arrived());
    let log = server.stop_and_read_log();
    assert!(
        log.contains("database is locked") || log.contains("lock timeout"),
        "{log}"
    );
    let (check, stored) = integrity(dir.path()).await;
    assert_eq!(
        (check.as_str(), stored),
        ("ok", 2),
        "the refused webhook is not stored"
    );
    println!("database locked: answered 503 in {answered_in:?}, accepted again once released");
}

/// PostgreSQL stopped as a crash stops it (`pg_ctl stop -m immediate`) while webhooks arrive: each is answered
/// 503, never 200, quickly enough for Chatwoot's 5 s; the relay stays up; once the server is back it accepts
/// again by itself, and everything acknowledged is delivered once per conversation, in order. (The suite's
/// PostgreSQL run; a cluster of the test's own, since the shared one serves the other tests.)
#[tokio::test]
async fn a_postgres_that_goes_away_is_answered_503_then_recovers() {
    if !crate::support::on_postgres() {
        return;
    }
    let _heavy = heavy().await;
    let cluster = crate::postgres::Cluster::private();
    let gowa = Gowa::start().await;
    let dir = tempfile::tempdir().unwrap();
    let url = cluster.database();
    let mut server = Server::spawn_logging(dir.path(), free_port(), &[("DATABASE_URL", &url)]);
    server.wait_healthy().await;
    server.add_route(7, &gowa.url("/chatwoot/webhook")).await;
    let http = crate::support::http_client();
    // Two conversations, alternating.
    let conversation = |seq: u64| i64::from(seq.is_multiple_of(2));
    let mut acked = Vec::new();
    for seq in 1..=5 {
        server
            .post_webhook(message(7, conversation(seq), seq as usize))
            .await;
        acked.push((conversation(seq), seq));
    }

    cluster.stop_immediately();
    let mut refused = Vec::new();
    for seq in 6..=10 {
        let started = Instant::now();
        let body = message(7, conversation(seq), seq as usize);
        let (status, retry_after, answer) = post(&http, &server.base(), body).await.unwrap();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
        assert_eq!(retry_after.as_deref(), Some("1"));
        refused.push(started.elapsed());
    }
    // Still running, and not ready: a load balancer sends Chatwoot's webhooks elsewhere if it can.
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the relay exited"
    );
    assert!(
        !server.healthcheck(),
        "/healthz says ok without its database"
    );
    let slowest = refused.iter().max().copied().unwrap_or_default();
    assert!(
        slowest < Duration::from_millis(4500),
        "answered after {slowest:?}"
    );

    cluster.start_server();
    server.wait_healthy().await;
    acked.push(post_until_accepted(&server, conversation(11), 11).await);
    for seq in 12..=15 {
        server
            .post_webhook(message(7, conversation(seq), seq as usize))
            .await;
        acked.push((conversation(seq), seq));
    }
    gowa.wait_for("the acknowledged webhooks", Duration::from_secs(20), |r| {
        all_arrived(&acked, r)
    })
    .await;
    let (delivered, _) = check_delivered(&acked, &gowa.arrived());
    assert_eq!(delivered, acked.len(), "the refused ones are not stored");
    let log = server.stop_and_read_log();
    assert!(!log.contains(&url), "the log shows the database URL: {log}");
    println!(
        "PostgreSQL down: {} webhooks answered 503 (slowest in {slowest:?}), accepted again once it was back; \
         {delivered} delivered",
        refused.len()
    );
}

/// Another program's transaction holding a lock the relay needs to store a webhook.
enum Locked {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl From<sqlx::Transaction<'static, sqlx::Sqlite>> for Locked {
    fn from(tx: sqlx::Transaction<'static, sqlx::Sqlite>) -> Self {
        Self::Sqlite(tx)
    }
}

impl From<sqlx::Transaction<'static, sqlx::Postgres>> for Locked {
    fn from(tx: sqlx::Transaction<'static, sqlx::Postgres>) -> Self {
        Self::Postgres(tx)
    }
}

impl Locked {
    /// SQLite: the file's write lock (an insert takes it); PostgreSQL: the table of deliveries.
    async fn lock(&mut self) {
        match self {
            Self::Sqlite(tx) => {
                sqlx::query("INSERT INTO settings (key, value) VALUES ('lock', 'x')")
                    .execute(&mut **tx)
                    .await
                    .map(|_| ())
            }
            Self::Postgres(tx) => sqlx::query("LOCK TABLE deliveries IN EXCLUSIVE MODE")
                .execute(&mut **tx)
                .await
                .map(|_| ()),
        }
        .unwrap();
    }

    async fn release(self) {
        match self {
            Self::Sqlite(tx) => tx.rollback().await,
            Self::Postgres(tx) => tx.rollback().await,
        }
        .unwrap();
    }
}

/// SQLite only: the relay's file on a full disk. (On PostgreSQL the disk is the database server's: a relay
/// sees a server that fails or goes away, which `postgres_faults` covers.)
#[tokio::test]
async fn a_full_disk_is_answered_503_then_recovers() {
    if crate::support::on_postgres() {
        return;
    }
    let _heavy = heavy().await;
    let gowa = Gowa::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The relay ignores SIGXFSZ as a shell prelude sets it (as a service manager may), so that a file size
    // limit shows as failed writes (EFBIG), like a full disk.
    let server = Server::spawn_after(dir.path(), free_port(), &[], "trap '' XFSZ");
    server.wait_healthy().await;
    server.add_route(7, &gowa.url("/chatwoot/webhook")).await;
    let pid = server.child.id().to_string();
    let mut acked = vec![(1, 0)];
    server.post_webhook(message(7, 1, 0)).await;
    let mut full_at = 0;

    // Files may not grow more than 64 KiB past their size now: the next big webhooks cannot be written.
    let largest = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .max()
        .unwrap();
    let limit = format!("--fsize={}:", largest + 64 * 1024);
    let prlimit = |arg: &str| {
        let status = Command::new("prlimit")
            .args(["--pid", &pid, arg])
            .status()
            .unwrap();
        assert!(status.success(), "prlimit {arg}");
    };
    prlimit(&limit);
    let http = crate::support::http_client();
    let padding = "x".repeat(200 * 1024);
    let mut refused = 0;
    let mut seq = 1u64;
    while refused == 0 {
        assert!(seq < 50, "the size limit never made a write fail");
        let mut body: Value = serde_json::from_slice(&message(7, 1, seq as usize)).unwrap();
        body["content"] = Value::from(padding.as_str());
        let (status, retry_after, answer) =
            post(&http, &server.base(), serde_json::to_vec(&body).unwrap())
                .await
                .unwrap();
        match status {
            StatusCode::OK => acked.push((1, seq)),
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(retry_after.as_deref(), Some("1"));
                refused += 1;
                full_at = acked.len() - 1;
            }
            other => panic!("{other}: {answer}"),
        }
        seq += 1;
    }
    assert!(server.healthcheck(), "still up with the disk full");

    prlimit("--fsize=unlimited:");
    acked.push(post_until_accepted(&server, 1, seq).await);
    gowa.wait_for("the acknowledged webhooks", Duration::from_secs(10), |r| {
        r.len() == acked.len()
    })
    .await;
    check_delivered(&acked, &gowa.arrived());
    let log = server.stop_and_read_log();
    assert!(log.contains("request could not be stored"), "{log}");
    let (check, stored) = integrity(dir.path()).await;
    assert_eq!(check, "ok");
    assert_eq!(
        stored,
        acked.len() as i64,
        "exactly the acknowledged webhooks are stored"
    );
    println!(
        "disk full: {full_at} large webhooks accepted, then 503 until the limit was lifted, then accepted \
         again; {} stored, integrity_check ok",
        acked.len()
    );
}

#[tokio::test]
async fn a_burst_far_above_capacity_is_shed_with_503_not_buffered() {
    let _heavy = heavy().await;
    let gowa = Gowa::start().await;
    let dir = tempfile::tempdir().unwrap();
    // 64 KiB bodies at most: 64 of them (4 MiB) may be in progress at once.
    let server = Server::spawn(dir.path(), free_port(), &[("CHATGOWA_MAX_BODY", "64KiB")]);
    server.wait_healthy().await;
    server.add_route(7, &gowa.url("/chatwoot/webhook")).await;
    let pid = server.child.id();
    let idle_kib = proc_status(pid, "VmRSS");

    // 200 senders at once, 15 bodies of 60 KB each: 180 MB offered as fast as the machine can send.
    let padding = "x".repeat(60_000);
    let base = server.base();
    let results = Arc::new(Mutex::new(Vec::new()));
    let senders: Vec<_> = (0..200i64)
        .map(|conversation| {
            let (padding, base, results) = (padding.clone(), base.clone(), results.clone());
            tokio::spawn(async move {
                let http = crate::support::http_client();
                for seq in 0..15usize {
                    let mut body: Value =
                        serde_json::from_slice(&message(7, conversation, seq)).unwrap();
                    body["content"] = Value::from(padding.as_str());
                    let outcome = post(&http, &base, serde_json::to_vec(&body).unwrap())
                        .await
                        .unwrap();
                    results
                        .lock()
                        .unwrap()
                        .push((conversation, seq as u64, outcome));
                }
            })
        })
        .collect();
    let mut peak_kib = 0;
    while !senders.iter().all(tokio::task::JoinHandle::is_finished) {
        peak_kib = peak_kib.max(proc_status(pid, "VmRSS"));
        tokio::time::sleep(Duration::from_millis(20)).await; // sampling interval
    }
    for s in senders {
        s.await.unwrap();
    }
    peak_kib = peak_kib.max(proc_status(pid, "VmHWM"));
    let results = results.lock().unwrap().clone();
    let mut acked = Vec::new();
    let mut shed = 0;
    for (conversation, seq, (status, retry_after, answer)) in &results {
        match *status {
            StatusCode::OK => acked.push((*conversation, *seq)),
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(retry_after.as_deref(), Some("1"), "{answer}");
                assert_eq!(answer["code"], "overloaded", "{answer}");
                shed += 1;
            }
            other => panic!("{other}: {answer}"),
        }
    }
    println!(
        "burst of {} × 60 KB from 200 senders: {} accepted, {shed} shed with 503; RSS idle {} MiB, peak {} MiB",
        results.len(),
        acked.len(),
        idle_kib / 1024,
        peak_kib / 1024
    );
    assert!(shed > 0, "nothing was shed");
    assert!(!acked.is_empty());
    // Bodies in progress are capped at 4 MiB; the rest is SQLite's and the allocator's per-thread memory under
    // a large write. Buffering the burst would take the 180 MB offered.
    assert!(peak_kib < idle_kib + 140 * 1024, "peak RSS {peak_kib} KiB");
    gowa.wait_for("every accepted webhook", Duration::from_secs(60), |r| {
        r.len() >= acked.len()
    })
    .await;
    check_delivered(&acked, &gowa.arrived());
    let stats = server.admin(reqwest::Method::GET, "/admin/stats").await;
    assert_eq!(
        stats["totals"]["delivered"],
        acked.len(),
        "only accepted ones are stored: {stats}"
    );
}
