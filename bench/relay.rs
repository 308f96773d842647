//! The relay benchmark: a GoWA stand-in, a load generator and the real `chatgowa --server`, on loopback.
//!
//!   cargo run --release --example bench -- --relay target/release/chatgowa [--seconds 10] [--sweep-seconds 3]
//!       [--out FILE] [--svg FILE] [--relays N]
//!   … --plot bench/results/relay.json [--svg FILE]     (only redraw the plot of an earlier run)
//!
//! The relay runs with `RUST_LOG=warn` and its standard error discarded; `BENCH_RELAY_LOG=info` keeps its
//! default per-webhook log lines instead. `BENCH_DATABASE_URL` (a PostgreSQL URL) replaces the relay's own SQLite
//! file; with it, `--relays N` starts N relays on that database, which share the full-load phases.
//!
//! `bench/run` builds both and calls this. Payloads are the Chatwoot fixtures (`tests/fixtures/chatwoot/`), spread
//! over 20 routes and 1 000 conversations, each with a unique message id so that the receiver can tell when each
//! one arrived. Latencies go into HDR histograms; the fixed-rate phases measure from each request's scheduled
//! start (no coordinated omission). Prints a table and writes the figures as JSON, and the load sweep as SVG.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cast_precision_loss)] // a measuring tool

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use hdrhistogram::Histogram;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

const ROUTES: u64 = 20;
const CONVERSATIONS: u64 = 1000;
const MAX_IDS: usize = 4_000_000;
const PASSWORD: &str = "bench-password-1";
/// Replaced by each request's message id: `ID_BASE` + a sequence number (same width, no leading zeros).
const ID_MARK: &str = "987654321987";
const ID_BASE: u64 = 100_000_000_000;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

struct Args {
    /// Only draw `svg` from this earlier result.
    plot: Option<PathBuf>,
    relay: PathBuf,
    seconds: u64,
    sweep_seconds: u64,
    out: PathBuf,
    svg: PathBuf,
    /// Relays on the one database (`BENCH_DATABASE_URL`, PostgreSQL) sharing the full load.
    relays: usize,
}

fn args() -> Args {
    let mut a = Args {
        plot: None,
        relay: "target/release/chatgowa".into(),
        seconds: 10,
        sweep_seconds: 3,
        out: "bench/results/relay.json".into(),
        svg: "docs/bench-relay.svg".into(),
        relays: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--relay" => a.relay = value.into(),
            "--plot" => a.plot = Some(value.into()),
            "--seconds" => a.seconds = value.parse().expect("--seconds: a number"),
            "--sweep-seconds" => {
                a.sweep_seconds = value.parse().expect("--sweep-seconds: a number")
            }
            "--out" => a.out = value.into(),
            "--svg" => a.svg = value.into(),
            "--relays" => a.relays = value.parse().expect("--relays: a number"),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// When each message id was sent and when it arrived at the receiver, in ns since the start (0 = not yet).
struct Clock {
    start: Instant,
    sent: Vec<AtomicU64>,
    arrived: Vec<AtomicU64>,
    arrivals: AtomicUsize,
}

impl Clock {
    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos())
            .unwrap()
            .max(1)
    }
}

/// Bodies per (route, conversation, fixture) with a mark where the message id goes.
struct Payloads {
    templates: Vec<(String, usize)>,
    next_id: AtomicU64,
}

impl Payloads {
    fn load() -> Self {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/chatwoot");
        let mut fixtures = Vec::new();
        for name in [
            "message_created.outgoing_text.json",
            "message_created.outgoing_image.json",
            "message_created.incoming_text.json",
            "conversation_status_changed.resolved.json",
        ] {
            let text = std::fs::read_to_string(format!("{dir}/{name}")).unwrap();
            fixtures.push(serde_json::from_str::<Value>(&text).unwrap());
        }
        let mut templates = Vec::new();
        for conversation in 1..=CONVERSATIONS {
            let inbox = 1 + conversation % ROUTES;
            let mut v = fixtures[(conversation % 4) as usize].clone();
            let mark: u64 = ID_MARK.parse().unwrap();
            if v["event"] == "conversation_status_changed" {
                v["inbox_id"] = json!(inbox);
                v["id"] = json!(conversation);
                v["bench_id"] = json!(mark);
            } else {
                v["id"] = json!(mark);
                v["inbox"]["id"] = json!(inbox);
                v["conversation"]["id"] = json!(conversation);
                v["conversation"]["inbox_id"] = json!(inbox);
            }
            // Compact, as Chatwoot sends it.
            let body = serde_json::to_string(&v).unwrap();
            let at = body.find(ID_MARK).unwrap();
            templates.push((body, at));
        }
        Self {
            templates,
            next_id: AtomicU64::new(1),
        }
    }

    /// A new message: its id and body.
    fn next(&self) -> (u64, Bytes) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (body, at) = &self.templates[(id % CONVERSATIONS) as usize];
        let mut out = String::with_capacity(body.len());
        out.push_str(&body[..*at]);
        out.push_str(&(ID_BASE + id).to_string());
        out.push_str(&body[at + ID_MARK.len()..]);
        (id, Bytes::from(out))
    }
}

/// The sequence number of a body made by [`Payloads::next`].
fn message_id(body: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Ids {
        id: Option<u64>,
        bench_id: Option<u64>,
    }
    let ids: Ids = serde_json::from_slice(body).ok()?;
    ids.bench_id.or(ids.id)?.checked_sub(ID_BASE)
}

async fn receive(State(clock): State<Arc<Clock>>, body: Bytes) -> StatusCode {
    if let Some(id) = message_id(&body).and_then(|id| usize::try_from(id).ok())
        && let Some(slot) = clock.arrived.get(id)
    {
        let _ = slot.compare_exchange(0, clock.now(), Ordering::Relaxed, Ordering::Relaxed);
    }
    clock.arrivals.fetch_add(1, Ordering::Relaxed);
    StatusCode::OK
}

async fn start_receiver(clock: Arc<Clock>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(receive).with_state(clock);
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

struct Relay {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `key: value` figure of a `/proc` file (0 when absent).
fn proc_field(path: &str, key: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Context switches of each thread of `pid` (by thread id): each one is a wake-up.
fn wakeups(pid: u32) -> std::collections::HashMap<String, u64> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .filter_map(Result::ok)
                .map(|t| {
                    let status = t.path().join("status");
                    let status = status.to_string_lossy();
                    let switches = proc_field(&status, "voluntary_ctxt_switches")
                        + proc_field(&status, "nonvoluntary_ctxt_switches");
                    (t.file_name().to_string_lossy().into_owned(), switches)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Wake-ups between two readings of [`wakeups`]: of the threads alive at the second (a thread that ended
/// meanwhile, such as an idle blocking-pool thread, is not counted, and does not make the sum go down).
fn wakeups_since(before: &std::collections::HashMap<String, u64>, pid: u32) -> u64 {
    wakeups(pid)
        .iter()
        .map(|(tid, now)| now.saturating_sub(before.get(tid).copied().unwrap_or(0)))
        .sum()
}

/// User + system CPU seconds of `pid` so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, r)| r.split(' ').collect())
        .unwrap_or_default();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    let per_second: f64 = String::from_utf8(
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    ticks as f64 / per_second
}

/// A webhook as Chatwoot sends it: JSON, with a fresh random UUID in `X-Chatwoot-Delivery` (one per job).
fn post(base: &str, body: Bytes) -> Request<Full<Bytes>> {
    let id = rand::random::<u128>() & !(0xf000 << 64) & !(0xc << 60) | (0x4000 << 64) | (0x8 << 60);
    let id = format!("{id:032x}");
    Request::post(format!("{base}/webhook"))
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header(
            "x-chatwoot-delivery",
            format!(
                "{}-{}-{}-{}-{}",
                &id[..8],
                &id[8..12],
                &id[12..16],
                &id[16..20],
                &id[20..]
            ),
        )
        .body(Full::new(body))
        .unwrap()
}

/// Starts the relay and measures the time from spawn to its first 200 on `/webhook`.
async fn start_relay(bin: &PathBuf, http: &HttpClient) -> (Relay, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let probe = Bytes::from_static(br#"{"event":"contact_created","id":1}"#);
    let started = Instant::now();
    let child = Command::new(bin)
        .arg("--server")
        .env_clear()
        .env("PORT", port.to_string())
        .env("CHATGOWA_BIND", "127.0.0.1")
        // SQLite in a directory of its own, or the database that `BENCH_DATABASE_URL` names (PostgreSQL).
        .env(
            "DATABASE_URL",
            std::env::var("BENCH_DATABASE_URL")
                .unwrap_or_else(|_| format!("file:{}/relay.db", dir.path().display())),
        )
        .env("BASIC_AUTH_PASS", PASSWORD)
        .env(
            "RUST_LOG",
            std::env::var("BENCH_RELAY_LOG").unwrap_or_else(|_| "warn".into()),
        )
        // Unset: the relay's default window, which every reply waits out.
        .envs(
            std::env::var("BENCH_REORDER_WINDOW")
                .map(|w| ("CHATGOWA_REORDER_WINDOW", w))
                .ok(),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let cold = loop {
        if let Ok(r) = http.request(post(&base, probe.clone())).await
            && r.status() == StatusCode::OK
        {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the relay did not start"
        );
        tokio::task::yield_now().await; // measuring the start itself: retry at once
    };
    (
        Relay {
            child,
            port,
            _dir: dir,
        },
        cold,
    )
}

struct Load {
    acked: u64,
    seconds: f64,
    latency: Histogram<u64>,
    first_id: u64,
    last_id: u64,
}

/// `connections` senders back to back for `seconds`.
/// `connections` senders, each posting one webhook after another (sender `i` to `bases[i % bases.len()]`).
async fn closed_loop(
    http: &HttpClient,
    bases: &[String],
    payloads: &Arc<Payloads>,
    clock: &Arc<Clock>,
    connections: usize,
    seconds: u64,
) -> Load {
    let first_id = payloads.next_id.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|i| {
            let (http, base, payloads, clock) = (
                http.clone(),
                bases[i % bases.len()].clone(),
                payloads.clone(),
                clock.clone(),
            );
            tokio::spawn(async move {
                let mut h = Histogram::<u64>::new(3).unwrap();
                let mut acked = 0u64;
                while Instant::now() < deadline {
                    let (id, body) = payloads.next();
                    let t = Instant::now();
                    if let Some(slot) = clock.sent.get(usize::try_from(id).unwrap()) {
                        slot.store(clock.now(), Ordering::Relaxed);
                    }
                    let r = http.request(post(&base, body)).await.unwrap();
                    let ok = r.status() == StatusCode::OK;
                    let _ = http_body_util::BodyExt::collect(r.into_body()).await;
                    h.record(u64::try_from(t.elapsed().as_micros()).unwrap())
                        .unwrap();
                    acked += u64::from(ok);
                }
                (acked, h)
            })
        })
        .collect();
    let mut latency = Histogram::<u64>::new(3).unwrap();
    let mut acked = 0;
    for t in tasks {
        let (a, h) = t.await.unwrap();
        acked += a;
        latency.add(h).unwrap();
    }
    Load {
        acked,
        seconds: started.elapsed().as_secs_f64(),
        latency,
        first_id,
        last_id: payloads.next_id.load(Ordering::Relaxed),
    }
}

/// Instants `rate` per second apart, each sent when it is due, from a thread of its own that sleeps with the
/// OS's precise timer: tokio's timer works in whole milliseconds, which at 1 000/s would add up to a millisecond
/// of the generator's own lateness to every latency measured from the schedule.
fn pace(rate: u64, total: u64) -> tokio::sync::mpsc::UnboundedReceiver<Instant> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let started = Instant::now();
    std::thread::spawn(move || {
        for i in 0..total {
            let due = started + Duration::from_nanos(i * 1_000_000_000 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if tx.send(due).is_err() {
                break;
            }
        }
    });
    rx
}

/// `rate` requests a second for `seconds`, each timed from when it was due (no coordinated omission). Also
/// returns how late the generator started each request (µs): the harness's own error.
async fn fixed_rate(
    http: &HttpClient,
    base: &str,
    payloads: &Arc<Payloads>,
    rate: u64,
    seconds: u64,
) -> (Load, Histogram<u64>) {
    let first_id = payloads.next_id.load(Ordering::Relaxed);
    let total = rate * seconds;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(usize::try_from(total).unwrap());
    let mut lateness = Histogram::<u64>::new(3).unwrap();
    // At most this many requests open at once; beyond, a request waits, and its wait counts in its latency.
    let open = Arc::new(tokio::sync::Semaphore::new(512));
    let mut ticks = pace(rate, total);
    while let Some(due) = ticks.recv().await {
        let permit = open.clone().acquire_owned().await.unwrap();
        lateness
            .record(u64::try_from(due.elapsed().as_micros()).unwrap())
            .unwrap();
        let (http, base, payloads) = (http.clone(), base.to_owned(), payloads.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let (_, body) = payloads.next();
            let r = http.request(post(&base, body)).await.unwrap();
            let ok = r.status() == StatusCode::OK;
            let _ = http_body_util::BodyExt::collect(r.into_body()).await;
            (ok, due.elapsed())
        }));
    }
    let mut latency = Histogram::<u64>::new(3).unwrap();
    let mut acked = 0;
    for t in tasks {
        let (ok, took) = t.await.unwrap();
        acked += u64::from(ok);
        latency
            .record(u64::try_from(took.as_micros()).unwrap())
            .unwrap();
    }
    let load = Load {
        acked,
        seconds: started.elapsed().as_secs_f64(),
        latency,
        first_id,
        last_id: payloads.next_id.load(Ordering::Relaxed),
    };
    (load, lateness)
}

/// POST → arrival at the receiver, for the messages of `load` (µs), and how many arrived.
fn end_to_end(clock: &Clock, load: &Load) -> (Histogram<u64>, u64) {
    let mut h = Histogram::<u64>::new(3).unwrap();
    let mut arrived = 0;
    for id in load.first_id..load.last_id {
        let i = usize::try_from(id).unwrap();
        let (Some(s), Some(a)) = (clock.sent.get(i), clock.arrived.get(i)) else {
            continue;
        };
        let (s, a) = (s.load(Ordering::Relaxed), a.load(Ordering::Relaxed));
        if s > 0 && a > s {
            h.record((a - s) / 1000).unwrap();
            arrived += 1;
        }
    }
    (h, arrived)
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    let args = args();
    if let Some(result) = &args.plot {
        let result: Value =
            serde_json::from_str(&std::fs::read_to_string(result).unwrap()).unwrap();
        std::fs::write(&args.svg, svg(&result)).unwrap();
        return;
    }
    let clock = Arc::new(Clock {
        start: Instant::now(),
        sent: (0..MAX_IDS).map(|_| AtomicU64::new(0)).collect(),
        arrived: (0..MAX_IDS).map(|_| AtomicU64::new(0)).collect(),
        arrivals: AtomicUsize::new(0),
    });
    let payloads = Arc::new(Payloads::load());
    let receiver = start_receiver(clock.clone()).await;
    let http: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build_http();
    let admin = reqwest::Client::new();
    let secs = args.seconds;

    // (4) The limit: the same load straight to the receiver.
    let direct = closed_loop(
        &http,
        &[format!("http://{receiver}")],
        &payloads,
        &clock,
        64,
        secs,
    )
    .await;

    // The floor under a lone commit: one durable append on the filesystem the relay's database is on.
    let floor = durable_write_floor();

    // (6) Cold start, idle memory, wake-ups while idle.
    let (relay, cold) = start_relay(&args.relay, &http).await;
    let pid = relay.child.id();
    let base = format!("http://127.0.0.1:{}", relay.port);
    for n in 1..=ROUTES {
        let r = admin
            .post(format!("{base}/admin/routes"))
            .basic_auth("admin", Some(PASSWORD))
            .json(&json!({"inboxId": n, "webhookUrl": format!("http://{receiver}/chatwoot/webhook/{n}"), "name": format!("bench {n}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    // Let it settle before reading idle figures: the relay closes idle keep-alive connections (ours included)
    // after 5 s, and idle means none is open.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let idle_kib = proc_field(&format!("/proc/{pid}/status"), "VmRSS");
    let w0 = wakeups(pid);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_wakeups = wakeups_since(&w0, pid);

    // (2) At a fixed moderate rate.
    let (moderate, lateness) = fixed_rate(&http, &base, &payloads, 1000, secs).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // (1)(2)(3)(5) Full load.
    let cpu0 = cpu_seconds(pid);
    let disk0 = proc_field(&format!("/proc/{pid}/io"), "write_bytes");
    let arrivals0 = clock.arrivals.load(Ordering::Relaxed);
    // Further relays on the same database (routes are read from it) share the full load.
    let mut others = Vec::new();
    for _ in 1..args.relays {
        others.push(start_relay(&args.relay, &http).await.0);
    }
    let bases: Vec<String> = std::iter::once(base.clone())
        .chain(
            others
                .iter()
                .map(|r| format!("http://127.0.0.1:{}", r.port)),
        )
        .collect();
    let pids: Vec<u32> = std::iter::once(pid)
        .chain(others.iter().map(|r| r.child.id()))
        .collect();
    let cpu0: f64 = cpu0 + pids[1..].iter().map(|p| cpu_seconds(*p)).sum::<f64>();
    let full = closed_loop(&http, &bases, &payloads, &clock, 64, secs).await;
    let cpu = pids.iter().map(|p| cpu_seconds(*p)).sum::<f64>() - cpu0;
    let drain_start = Instant::now();
    while end_to_end(&clock, &full).1 < full.acked
        && drain_start.elapsed() < Duration::from_secs(120)
    {
        tokio::time::sleep(Duration::from_millis(50)).await; // waiting for the queue to drain, then measuring
    }
    let drained = full.seconds + drain_start.elapsed().as_secs_f64();
    let delivered = clock.arrivals.load(Ordering::Relaxed) - arrivals0;
    let (e2e, arrived) = end_to_end(&clock, &full);
    let peak_kib = proc_field(&format!("/proc/{pid}/status"), "VmHWM");
    // Everything the relay wrote to storage for these webhooks and their attempts (WAL, checkpoints).
    let disk = proc_field(&format!("/proc/{pid}/io"), "write_bytes") - disk0;

    // Full load from fewer senders: the same work with less of the latency being queueing in the relay.
    let fewer = closed_loop(&http, &bases, &payloads, &clock, 16, secs).await;

    // The sweep for the plot: offered load against what was acknowledged and its p99.
    let mut sweep = Vec::new();
    for rate in [500, 1000, 2000, 4000, 8000, 16000, 32000] {
        let (l, _) = fixed_rate(&http, &base, &payloads, rate, args.sweep_seconds).await;
        sweep.push(json!({"offered": rate, "acked_per_s": l.acked as f64 / l.seconds, "p99_ms": ms(&l.latency, 0.99)}));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    drop(others);
    drop(relay);

    let result = json!({
        "machine": machine(),
        "seconds_per_phase": secs,
        "database": if std::env::var_os("BENCH_DATABASE_URL").is_some() { "postgresql" } else { "sqlite" },
        "relays": args.relays,
        "reorder_window": std::env::var("BENCH_REORDER_WINDOW").unwrap_or_else(|_| "default (2s)".into()),
        "acked_per_s": full.acked as f64 / full.seconds,
        "ack_latency_full_ms": {"p50": ms(&full.latency, 0.5), "p99": ms(&full.latency, 0.99), "max": full.latency.max() as f64 / 1000.0},
        "acked_per_s_16_connections": fewer.acked as f64 / fewer.seconds,
        "ack_latency_16_connections_ms": {"p50": ms(&fewer.latency, 0.5), "p99": ms(&fewer.latency, 0.99), "max": fewer.latency.max() as f64 / 1000.0},
        "ack_latency_1000_per_s_ms": {"p50": ms(&moderate.latency, 0.5), "p99": ms(&moderate.latency, 0.99), "max": moderate.latency.max() as f64 / 1000.0},
        "generator_lateness_1000_per_s_ms": {"p50": ms(&lateness, 0.5), "p99": ms(&lateness, 0.99)},
        "delivered_per_s": arrived as f64 / drained,
        "deliveries_seen": delivered,
        "post_to_arrival_ms": {"p50": ms(&e2e, 0.5), "p99": ms(&e2e, 0.99)},
        "direct_to_receiver_per_s": direct.acked as f64 / direct.seconds,
        "fsync_floor_ms": {"p50": ms(&floor, 0.5), "p99": ms(&floor, 0.99), "max": floor.max() as f64 / 1000.0},
        "cpu_seconds_per_1000": cpu / full.acked as f64 * 1000.0,
        "disk_kib_per_webhook": disk as f64 / 1024.0 / full.acked as f64,
        "idle_rss_mib": idle_kib as f64 / 1024.0,
        "peak_rss_mib": peak_kib as f64 / 1024.0,
        "cold_start_ms": cold.as_secs_f64() * 1000.0,
        "idle_wakeups_in_5s": idle_wakeups,
        "sweep": sweep,
    });
    print_table(&result);
    std::fs::create_dir_all(args.out.parent().unwrap()).unwrap();
    std::fs::write(&args.out, serde_json::to_string_pretty(&result).unwrap()).unwrap();
    std::fs::create_dir_all(args.svg.parent().unwrap()).unwrap();
    std::fs::write(&args.svg, svg(&result)).unwrap();
    println!("\nwrote {} and {}", args.out.display(), args.svg.display());
}

/// Latencies (µs) of 4 KiB appended and made durable with `fdatasync`, as SQLite commits a small transaction
/// to its WAL, in a file next to where the relay keeps its database. No commit can be faster than this.
fn durable_write_floor() -> Histogram<u64> {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let mut file = std::fs::File::create(dir.path().join("floor")).unwrap();
    let page = [0x5a_u8; 4096];
    let mut latency = Histogram::new(3).unwrap();
    for _ in 0..2000 {
        let started = Instant::now();
        file.write_all(&page).unwrap();
        file.sync_data().unwrap();
        latency
            .record(started.elapsed().as_micros() as u64)
            .unwrap();
    }
    latency
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let mem = proc_field("/proc/meminfo", "MemTotal") / 1024 / 1024;
    format!("{cores} cores, {cpu}, {mem} GiB")
}

fn print_table(r: &Value) {
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    println!("machine: {}", r["machine"].as_str().unwrap_or_default());
    let spread = |v: &Value| {
        format!(
            "{:.2} / {:.2} / {:.2}",
            f(&v["p50"]),
            f(&v["p99"]),
            f(&v["max"])
        )
    };
    let rows = [
        (
            "acknowledged webhooks/s (durable commits, 64 connections)",
            format!("{:.0}", f(&r["acked_per_s"])),
        ),
        (
            "ack latency at full load p50 / p99 / max (ms)",
            spread(&r["ack_latency_full_ms"]),
        ),
        (
            "acknowledged webhooks/s with 16 connections",
            format!("{:.0}", f(&r["acked_per_s_16_connections"])),
        ),
        (
            "ack latency with 16 connections p50 / p99 / max (ms)",
            spread(&r["ack_latency_16_connections_ms"]),
        ),
        (
            "ack latency at 1 000/s p50 / p99 / max (ms)",
            spread(&r["ack_latency_1000_per_s_ms"]),
        ),
        (
            "delivered/s end to end",
            format!("{:.0}", f(&r["delivered_per_s"])),
        ),
        (
            "POST → arrival at GoWA p50 / p99 (ms)",
            format!(
                "{:.1} / {:.1}",
                f(&r["post_to_arrival_ms"]["p50"]),
                f(&r["post_to_arrival_ms"]["p99"])
            ),
        ),
        (
            "limit: same load straight to the receiver (req/s)",
            format!("{:.0}", f(&r["direct_to_receiver_per_s"])),
        ),
        (
            "floor: 4 KiB append + fdatasync p50 / p99 / max (ms)",
            spread(&r["fsync_floor_ms"]),
        ),
        (
            "CPU seconds per 1 000 webhooks",
            format!("{:.3}", f(&r["cpu_seconds_per_1000"])),
        ),
        (
            "written to disk per webhook (KiB)",
            format!("{:.1}", f(&r["disk_kib_per_webhook"])),
        ),
        (
            "idle RSS / peak RSS (MiB)",
            format!(
                "{:.1} / {:.1}",
                f(&r["idle_rss_mib"]),
                f(&r["peak_rss_mib"])
            ),
        ),
        (
            "cold start to first 200 (ms)",
            format!("{:.1}", f(&r["cold_start_ms"])),
        ),
        (
            "wake-ups while idle (5 s)",
            format!("{}", r["idle_wakeups_in_5s"]),
        ),
    ];
    for (what, value) in rows {
        println!("| {what:<58} | {value:>22} |");
    }
    println!("\noffered/s  acked/s  p99 ms");
    for s in r["sweep"].as_array().unwrap() {
        println!(
            "{:>9} {:>8.0} {:>7.2}",
            s["offered"],
            f(&s["acked_per_s"]),
            f(&s["p99_ms"])
        );
    }
}

/// One step of the sweep: offered/s, acknowledged/s, p99 ms.
type Point = (f64, f64, f64);

/// Throughput (left axis) and p99 (right axis) against offered load (log scale).
fn svg(r: &Value) -> String {
    let points: Vec<Point> = r["sweep"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["offered"].as_f64().unwrap(),
                s["acked_per_s"].as_f64().unwrap(),
                s["p99_ms"].as_f64().unwrap(),
            )
        })
        .collect();
    let (w, h, left, right, top, bottom) = (720.0, 420.0, 70.0, 650.0, 50.0, 360.0);
    let max_x = points.iter().map(|p| p.0).fold(1.0, f64::max);
    let max_t = points.iter().map(|p| p.1.max(p.0)).fold(1.0, f64::max);
    let max_l = points.iter().map(|p| p.2).fold(1.0, f64::max);
    let x = |v: f64| left + (v.ln() - 500f64.ln()) / (max_x.ln() - 500f64.ln()) * (right - left);
    let yt = |v: f64| bottom - v / max_t * (bottom - top);
    // p99 spans milliseconds to seconds: log scale from 0.5 ms.
    let min_l = 0.5f64;
    let yl = |v: f64| {
        bottom - (v.max(min_l) / min_l).ln() / (max_l.max(1.0) / min_l).ln() * (bottom - top)
    };
    let line = |f: &dyn Fn(&Point) -> (f64, f64)| {
        points
            .iter()
            .map(|p| {
                let (a, b) = f(p);
                format!("{a:.1},{b:.1}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut out = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{left}" y="18" font-size="14">Chatgowa --server: acknowledged/s and p99 against offered load</text>
<text x="{left}" y="34" fill="#555">{}</text>
<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="black"/>
<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="black"/>
<line x1="{right}" y1="{top}" x2="{right}" y2="{bottom}" stroke="black"/>
<polyline fill="none" stroke="#999" stroke-dasharray="4 3" points="{}"/>
<polyline fill="none" stroke="#1f6feb" stroke-width="2" points="{}"/>
<polyline fill="none" stroke="#d1242f" stroke-width="2" points="{}"/>
<text x="{}" y="{}" fill="#1f6feb">acknowledged/s (left)</text>
<text x="{}" y="{}" fill="#d1242f">p99 ms (right, log scale)</text>
<text x="{}" y="{}" fill="#999">offered</text>
"##,
        r["machine"].as_str().unwrap_or_default(),
        line(&|p| (x(p.0), yt(p.0))),
        line(&|p| (x(p.0), yt(p.1))),
        line(&|p| (x(p.0), yl(p.2))),
        left + 10.0,
        top + 16.0,
        left + 10.0,
        top + 32.0,
        left + 10.0,
        top + 48.0
    );
    for p in &points {
        out.push_str(&format!(
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            x(p.0),
            bottom + 16.0,
            p.0
        ));
        out.push('\n');
    }
    for i in 0..=4 {
        let f = f64::from(i) / 4.0;
        out.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{:.0}</text><text x=\"{:.1}\" y=\"{:.1}\">{:.1}</text>\n",
            left - 6.0,
            yt(max_t * f) + 4.0,
            max_t * f,
            right + 6.0,
            yl(min_l * (max_l.max(1.0) / min_l).powf(f)) + 4.0,
            min_l * (max_l.max(1.0) / min_l).powf(f)
        ));
    }
    out.push_str(&format!("<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">offered webhooks/s (log scale)</text>\n</svg>\n", (left + right) / 2.0, bottom + 34.0));
    out
}
