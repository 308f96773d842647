//! Several relays on one PostgreSQL database, as real processes: webhooks spread across them, faults on the way
//! (a relay killed, a relay frozen past its lease, the database stopped as a crash stops it, relays replaced one
//! by one). Every acknowledged webhook must reach GoWA, each conversation in order, repeats only of a reply in
//! flight. These run in the suite's PostgreSQL run (`CHATGOWA_TEST_DATABASE=postgres`), each on a cluster of its
//! own since they stop the server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::faults::check_delivered;
use crate::postgres::Cluster;
use crate::support::{
    Gowa, Received, Reply, Server, clock_off, free_port, heavy, message, on_postgres,
};

/// The lease the relays hold lanes for: the least a 1 s attempt timeout allows.
const LEASE: Duration = Duration::from_secs(6);
const INBOX: i64 = 7;
/// Conversations of each sender.
const CONVERSATIONS: i64 = 4;

/// A relay of the group, restartable on its directory and port.
struct Replica {
    dir: tempfile::TempDir,
    port: u16,
    server: Option<Server>,
}

struct Group {
    url: String,
    replicas: Vec<Replica>,
}

impl Group {
    async fn start(url: &str, count: usize) -> Self {
        let mut group = Self {
            url: url.to_owned(),
            replicas: (0..count)
                .map(|_| Replica {
                    dir: tempfile::tempdir().unwrap(),
                    port: free_port(),
                    server: None,
                })
                .collect(),
        };
        for i in 0..count {
            group.spawn(i).await;
        }
        group
    }

    async fn spawn(&mut self, i: usize) {
        let replica = &mut self.replicas[i];
        let lease = format!("{}s", LEASE.as_secs());
        let server = Server::spawn_logging(
            replica.dir.path(),
            replica.port,
            &[
                ("DATABASE_URL", &self.url),
                ("FETCH_TIMEOUT_MS", "1000"),
                ("CHATGOWA_LANE_LEASE", &lease),
                ("CHATGOWA_RETRY_SCHEDULE", "50ms,100ms,200ms"),
                ("RUST_LOG", "info"),
            ],
        );
        server.wait_healthy().await;
        replica.server = Some(server);
    }

    fn server(&mut self, i: usize) -> &mut Server {
        self.replicas[i].server.as_mut().unwrap()
    }

    fn ports(&self) -> Vec<u16> {
        self.replicas.iter().map(|r| r.port).collect()
    }

    fn signal(&mut self, i: usize, signal: &str) {
        let pid = self.server(i).child.id().to_string();
        let status = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal}");
    }

    fn kill(&mut self, i: usize) {
        let mut server = self.replicas[i].server.take().unwrap();
        server.child.kill().unwrap();
        server.child.wait().unwrap();
    }

    fn logs(mut self) -> Vec<String> {
        self.replicas
            .iter_mut()
            .filter_map(|r| r.server.take())
            .map(Server::stop_and_read_log)
            .collect()
    }
}

/// What the senders saw.
#[derive(Default)]
struct Seen {
    /// `(conversation, message id)` answered 200.
    acked: Vec<(i64, u64)>,
    /// Answers given while the database was stopped, by status (0: no answer).
    while_down: Vec<u16>,
    /// Answers other than 200 while the database was up (a load balancer passes them on to Chatwoot; a
    /// connection refused it tries at the next relay instead).
    refused: Vec<u16>,
    /// Requests that got no answer (refused connection, timeout): a load balancer tries the next relay.
    unanswered: usize,
}

/// Senders posting each conversation's messages one after another, spread over the relays like a load balancer
/// (a relay that does not answer in time, or refuses, gets the same message again at the next one).
fn senders(
    ports: Vec<u16>,
    count: i64,
    seen: Arc<Mutex<Seen>>,
    db_down: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..count)
        .map(|sender| {
            let (ports, seen, db_down, stop) =
                (ports.clone(), seen.clone(), db_down.clone(), stop.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(2))
                    .build()
                    .unwrap();
                let mut next = 0usize;
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    seq += 1;
                    let conversation =
                        sender * CONVERSATIONS + i64::try_from(seq).unwrap() % CONVERSATIONS;
                    // Message ids are unique across the test: they are the messages' identity.
                    let id = u64::try_from(sender).unwrap() * 1_000_000 + seq;
                    loop {
                        let port = ports[next % ports.len()];
                        next += 1;
                        let down = db_down.load(Ordering::Relaxed);
                        let answer = http
                            .post(format!("http://127.0.0.1:{port}/webhook"))
                            .header("content-type", "application/json")
                            // As Chatwoot sends it, a repeat is recognised whichever relay stored it.
                            .header("x-chatwoot-delivery", format!("delivery-{id}"))
                            .body(webhook(conversation, id))
                            .send()
                            .await
                            .map(|r| r.status());
                        let acked = {
                            let mut seen = seen.lock().unwrap();
                            if down && db_down.load(Ordering::Relaxed) {
                                seen.while_down
                                    .push(answer.as_ref().map_or(0, |s| s.as_u16()));
                            } else if let Ok(status) = answer.as_ref()
                                && *status != StatusCode::OK
                            {
                                seen.refused.push(status.as_u16());
                            }
                            seen.unanswered += usize::from(answer.is_err());
                            let acked = answer.is_ok_and(|s| s == StatusCode::OK);
                            if acked {
                                seen.acked.push((conversation, id));
                            }
                            acked
                        };
                        if acked {
                            break;
                        }
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        })
        .collect()
}

/// Every acknowledged webhook arrived, and each conversation's first deliveries came in order; a repeat is of a
/// reply already delivered (the attempt in flight when its relay was killed or frozen). A repeat that arrives
/// after a later reply (a frozen relay's request leaving once it thaws) is counted apart. Returns (delivered,
/// repeats, late repeats).
fn first_deliveries_in_order(acked: &[(i64, u64)], arrived: &[Received]) -> (usize, usize, usize) {
    let mut firsts: std::collections::HashMap<i64, Vec<u64>> = std::collections::HashMap::new();
    let mut seen = std::collections::HashSet::new();
    let (mut repeats, mut late) = (0, 0);
    for r in arrived {
        let m = r.json();
        let key = (
            m["conversation"]["id"].as_i64().unwrap(),
            m["id"].as_u64().unwrap(),
        );
        let first = firsts.entry(key.0).or_default();
        if seen.insert(key) {
            first.push(key.1);
        } else {
            repeats += 1;
            late += usize::from(first.last() != Some(&key.1));
        }
    }
    for (conversation, ids) in &firsts {
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "conversation {conversation} out of order: {ids:?}"
        );
    }
    let missing: Vec<_> = acked.iter().filter(|k| !seen.contains(*k)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but never delivered: {missing:?}"
    );
    (seen.len(), repeats, late)
}

/// A reply of the account's inbox: it carries the message's identity (account and message id).
fn webhook(conversation: i64, id: u64) -> Vec<u8> {
    let mut body: serde_json::Value =
        serde_json::from_slice(&message(INBOX, conversation, usize::try_from(id).unwrap()))
            .unwrap();
    body["account"] = serde_json::json!({"id": 1, "name": "Toko"});
    serde_json::to_vec(&body).unwrap()
}

fn delivered(acked: &[(i64, u64)], arrived: &[Received]) -> bool {
    let got: std::collections::HashSet<(i64, u64)> = sent(arrived).collect();
    acked.iter().all(|k| got.contains(k))
}

/// `(conversation, message id)` of each request GoWA answered 200.
fn sent(arrived: &[Received]) -> impl Iterator<Item = (i64, u64)> + '_ {
    arrived.iter().filter(|r| r.status == 200).map(|r| {
        let m = r.json();
        (
            m["conversation"]["id"].as_i64().unwrap(),
            m["id"].as_u64().unwrap(),
        )
    })
}

/// Waits until every conversation with an acknowledged reply not yet delivered has had a request start at GoWA
/// since: its lane is worked again (taken over, when a stopped relay held it; an answer to a request the stopped
/// relay made before does not count); how long that took.
async fn until_taken_over(gowa: &Gowa, seen: &Mutex<Seen>, within: Duration) -> Duration {
    let started = Instant::now();
    let before = gowa.arrived().len();
    let acked = seen.lock().unwrap().acked.clone();
    let got: std::collections::HashSet<(i64, u64)> = sent(&gowa.received()).collect();
    let waiting: std::collections::HashSet<i64> = acked
        .iter()
        .filter(|k| !got.contains(k))
        .map(|k| k.0)
        .collect();
    crate::support::eventually("every waiting conversation worked again", within, || {
        let worked: std::collections::HashSet<i64> = gowa.arrived()[before..]
            .iter()
            .map(|r| r.json()["conversation"]["id"].as_i64().unwrap())
            .collect();
        std::future::ready(waiting.is_subset(&worked).then_some(()))
    })
    .await;
    started.elapsed()
}

/// Waits until GoWA has every message acknowledged so far; how long that took.
/// Waits until the senders have had `more` webhooks acknowledged (steady load in between faults).
async fn until_acked(seen: &Mutex<Seen>, more: usize) {
    let target = seen.lock().unwrap().acked.len() + more;
    crate::support::eventually(
        "more webhooks acknowledged",
        Duration::from_secs(30),
        || async { (seen.lock().unwrap().acked.len() >= target).then_some(()) },
    )
    .await;
}

async fn until_delivered(gowa: &Gowa, seen: &Mutex<Seen>, within: Duration) -> Duration {
    let acked = seen.lock().unwrap().acked.clone();
    let started = Instant::now();
    gowa.wait_for("the acknowledged webhooks", within, |r| {
        delivered(&acked, r)
    })
    .await;
    started.elapsed()
}

/// Three relays on `cluster`'s database with a route to `gowa`, what the senders saw, and the switches that
/// tell them the database is down and to stop.
async fn three_relays(
    cluster: &Cluster,
    gowa: &Gowa,
) -> (Group, Arc<Mutex<Seen>>, Arc<AtomicBool>, Arc<AtomicBool>) {
    let url = cluster.database();
    let mut group = Group::start(&url, 3).await;
    group
        .server(0)
        .add_route(INBOX, &gowa.url("/chatwoot/webhook"))
        .await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let switches = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    (group, seen, switches.0, switches.1)
}

/// Rounds of the fault test: `CHATGOWA_FAULT_ROUNDS`, 2 by default (CI).
fn rounds() -> usize {
    std::env::var("CHATGOWA_FAULT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

/// Three relays on one database under steady load. Each round: one relay is killed (its lanes are taken over
/// within the lease) and started again; another is frozen (SIGSTOP) for twice the lease, its lanes are taken
/// over meanwhile, and once thawed it records nothing on them; PostgreSQL is stopped as a crash stops it and
/// every answer meanwhile is 503 or none, never 200, then it is started again.
// Long on purpose: the fault schedule reads as one story.
#[tokio::test]
async fn three_relays_ride_out_a_killed_relay_a_frozen_one_and_a_database_crash() {
    if !on_postgres() {
        return;
    }
    let _heavy = heavy().await;
    let cluster = Cluster::private();
    let gowa = Gowa::start().await;
    // Some answers are held (but within the attempt's timeout).
    gowa.set(|r, _| Reply {
        delay: if r.body.len() % 7 == 0 {
            Duration::from_millis(400)
        } else {
            Duration::from_millis(5)
        },
        ..Reply::status(200)
    });
    let (mut group, seen, db_down, stop) = three_relays(&cluster, &gowa).await;
    let tasks = senders(
        group.ports(),
        6,
        seen.clone(),
        db_down.clone(),
        stop.clone(),
    );
    let mut takeovers = Vec::new();
    let mut thawed_takeovers = Vec::new();
    // From each fault until every reply acknowledged before it was delivered.
    let mut drained = Vec::new();
    for _ in 0..rounds() {
        until_acked(&seen, 200).await;

        // Killed: what it held is taken over once its leases end.
        group.kill(0);
        takeovers.push(until_taken_over(&gowa, &seen, LEASE * 3).await);
        drained.push(until_delivered(&gowa, &seen, LEASE * 3).await);
        group.spawn(0).await;

        // Frozen for twice the lease: its lanes go to the others; thawed, it finds them gone (and the writer
        // refuses what it would still record on them: `store::lanes` tests that fence).
        group.signal(1, "-STOP");
        let taken = until_taken_over(&gowa, &seen, LEASE * 3).await;
        thawed_takeovers.push(taken);
        drained.push(until_delivered(&gowa, &seen, LEASE * 3).await);
        tokio::time::sleep((LEASE * 2).saturating_sub(taken)).await;
        group.signal(1, "-CONT");

        // The database crashes and comes back: meanwhile nothing is acknowledged.
        cluster.stop_immediately();
        db_down.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(2)).await;
        db_down.store(false, Ordering::Relaxed);
        cluster.start_server();
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    until_delivered(&gowa, &seen, Duration::from_secs(30)).await;
    let logs = group.logs();
    let seen = seen.lock().unwrap();
    let arrived: Vec<Received> = gowa
        .received()
        .into_iter()
        .filter(|r| r.status == 200)
        .collect();
    let (delivered, duplicates, late) = first_deliveries_in_order(&seen.acked, &arrived);
    assert!(
        seen.while_down.iter().all(|s| *s != 200),
        "acknowledged while the database was down: {:?}",
        seen.while_down
    );
    let lost = logs[1].matches("lane taken over by another relay").count();
    // Until every acknowledged reply of the fault was delivered: the takeover, and the replies queued behind.
    println!(
        "3 relays, {} rounds: {} webhooks acknowledged, {delivered} delivered, {duplicates} duplicates ({late} \
         of them after a later reply: a frozen relay's reply in flight); lanes with waiting replies worked again \
         after a kill {takeovers:?}, after a freeze {thawed_takeovers:?} (lease {LEASE:?}), every earlier reply \
         delivered after {drained:?}; the thawed relay found {lost} \
         lanes taken over; {} answers while the database was down, none 200",
        rounds(),
        seen.acked.len(),
        seen.while_down.len()
    );
    let slowest = takeovers.iter().chain(&thawed_takeovers).max().copied();
    assert!(
        slowest.unwrap_or_default() <= LEASE + Duration::from_secs(1),
        "a stopped relay's lanes were worked again only after {slowest:?} (lease {LEASE:?})"
    );
}

/// Relays replaced one by one (SIGTERM, then a new one in its place) under steady load: no webhook is refused
/// and nothing is lost. A stopping relay hands its lanes over at once.
#[tokio::test]
async fn a_rolling_update_refuses_nothing_and_loses_nothing() {
    if !on_postgres() {
        return;
    }
    let _heavy = heavy().await;
    let cluster = Cluster::private();
    let gowa = Gowa::start().await;
    let (mut group, seen, db_down, stop) = three_relays(&cluster, &gowa).await;
    let tasks = senders(group.ports(), 6, seen.clone(), db_down, stop.clone());
    let mut handovers = Vec::new();
    for i in 0..3 {
        until_acked(&seen, 200).await;
        let server = group.replicas[i].server.take().unwrap();
        let log = server.stop_and_read_log();
        assert!(log.contains("lanes handed over"), "{log}");
        handovers.push(until_delivered(&gowa, &seen, Duration::from_secs(20)).await);
        group.spawn(i).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    until_delivered(&gowa, &seen, Duration::from_secs(20)).await;
    let seen = seen.lock().unwrap();
    let arrived: Vec<Received> = gowa
        .received()
        .into_iter()
        .filter(|r| r.status == 200)
        .collect();
    let (delivered, duplicates) = check_delivered(&seen.acked, &arrived);
    assert!(
        seen.refused.is_empty(),
        "answers other than 200: {:?}",
        seen.refused
    );
    let slowest = handovers.iter().max().copied().unwrap_or_default();
    assert!(
        slowest < LEASE,
        "handed over after {slowest:?}: the lease ran out instead"
    );
    group.logs();
    println!(
        "rolling update of 3 relays: {} webhooks acknowledged, {delivered} delivered, {duplicates} duplicates; \
         lanes handed over in {handovers:?}; {} requests unanswered (tried at the next relay)",
        seen.acked.len(),
        seen.unanswered
    );
}

/// A relay on `url` whose clock is `shift` off (`FAKETIME`'s notation, `+10m`), or right with `None`.
fn relay_with_clock(
    dir: &std::path::Path,
    port: u16,
    url: &str,
    shift: Option<&str>,
    window: &str,
) -> Server {
    let lease = format!("{}s", LEASE.as_secs());
    let mut env = vec![
        ("DATABASE_URL", url),
        ("FETCH_TIMEOUT_MS", "1000"),
        ("CHATGOWA_LANE_LEASE", lease.as_str()),
        ("CHATGOWA_RETRY_SCHEDULE", "3s"),
        ("CHATGOWA_REORDER_WINDOW", window),
        ("RUST_LOG", "info"),
    ];
    if let Some(shift) = shift {
        env.extend(clock_off(shift));
    }
    Server::spawn_logging(dir, port, &env)
}

/// One relay's clock is ten minutes ahead of the database's and the other relay's. The times it stores (a reply's
/// arrival, which ends its reorder window; a retry's time) are the database's, so the relay that takes over its
/// lanes after a kill sends each reply when it is due, not ten minutes late.
// Long on purpose: two hand-overs, each a story of its own.
#[tokio::test]
async fn a_relay_whose_clock_is_off_leaves_times_that_the_next_relay_keeps() {
    if !on_postgres() {
        return;
    }
    let _heavy = heavy().await;
    let url = crate::postgres::cluster().database();
    let gowa = Gowa::start().await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let ports = [free_port(), free_port()];
    let kill = |mut server: Server| {
        server.child.kill().unwrap();
        server.child.wait().unwrap();
    };
    // The reply reaches the relay that is ahead, which holds its lane through a reorder window of 8 s, and is
    // killed then; the other relay takes the lane over once the lease ends.
    let ahead = relay_with_clock(dirs[0].path(), ports[0], &url, Some("+10m"), "8s");
    ahead.wait_healthy().await;
    ahead.add_route(INBOX, &gowa.url("/chatwoot/webhook")).await;
    let acked = Instant::now();
    ahead.post_webhook(webhook(1, 101)).await;
    kill(ahead);
    let right = relay_with_clock(dirs[1].path(), ports[1], &url, None, "8s");
    right.wait_healthy().await;
    gowa.wait_for("the reply, after the window", LEASE * 4, |r| {
        sent(r).any(|k| k == (1, 101))
    })
    .await;
    let window_handover = acked.elapsed();
    kill(right);

    // Without a window: the reply fails once (503) at the relay that is ahead, which is killed then; its retry is
    // due 3 s later.
    gowa.set(|r, before| {
        let first = r.json()["id"] == 102 && !before.iter().any(|b| b.json()["id"] == 102);
        Reply::status(if first { 503 } else { 200 })
    });
    let ahead = relay_with_clock(dirs[0].path(), ports[0], &url, Some("+10m"), "0");
    ahead.wait_healthy().await;
    let failed = Instant::now();
    ahead.post_webhook(webhook(2, 102)).await;
    gowa.wait_for("the first attempt", LEASE, |r| {
        r.iter().any(|r| r.status == 503)
    })
    .await;
    let log = ahead.log_so_far();
    assert!(log.contains("s ahead of the database's"), "{log}");
    kill(ahead);
    let right = relay_with_clock(dirs[1].path(), ports[1], &url, None, "0");
    right.wait_healthy().await;
    gowa.wait_for("the retry", LEASE * 4, |r| sent(r).any(|k| k == (2, 102)))
        .await;
    let retry_handover = failed.elapsed();
    println!(
        "a relay 10 min ahead killed: its reply sent by the other after {window_handover:?} (window 8 s), its \
         retry after {retry_handover:?} (due after 3 s; lease {LEASE:?})"
    );
    right.stop_and_read_log();
}
