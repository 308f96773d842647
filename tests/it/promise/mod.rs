//! The promise checker: campaigns of the real relay binary against models of Chatwoot (`crate::chatwoot_api`,
//! with its webhook sender losing, twinning and reordering webhooks) and GoWA ([`gowa`]), driven by a schedule
//! derived from a seed ([`schedule`]), with faults on the way: GoWA's devices down, slow, refusing or logged out,
//! the tunnel dropping webhooks, the relay killed or stopped, strangers posting replies. Once the campaign is quiet
//! the promise itself is the oracle ([`oracle`]).
//!
//! [`campaigns_keep_the_promise`] is the campaign (ignored until the violations it still finds are fixed);
//! `scripts/promise --minutes N` runs long ones, and `scripts/promise --seed S` one seed again. What the models leave out of the real thing: `README.md` here.

mod gowa;
mod oracle;
pub mod schedule;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use self::gowa::GowaModel;
use self::oracle::{Journal, Oracle, Verdict};
use self::schedule::{Act, Device, Shape, Step};
use crate::chatwoot_api::{ADMIN_TOKEN, ChatwootApi, Inbox, Message};
use crate::support::{Admin, Server, eventually, free_port, http_client};

/// The relay's attempt timeout; a slow device answers later than this.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1_000);
const DELAYED_AFTER: Duration = Duration::from_secs(6);
const CATCH_UP_EVERY: Duration = Duration::from_secs(2);
/// The inboxes of account 1 the campaign's conversations are spread over, one GoWA device each.
const INBOXES: [i64; 2] = [7, 10];
/// Conversation numbers start here.
const FIRST_CONVERSATION: i64 = 1_000;
/// Ids of strangers' replies start here, far above Chatwoot's.
const FIRST_FORGED: i64 = 900_000_000;

/// One relay (its directory, port and environment), restartable.
struct Relay {
    dir: tempfile::TempDir,
    port: u16,
    env: Vec<(String, String)>,
    server: Option<Server>,
    /// What earlier processes on this directory logged.
    log: String,
}

impl Relay {
    fn start(&mut self) {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.server = Some(Server::spawn_logging(self.dir.path(), self.port, &env));
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn signal(&self, signal: &str) {
        if let Some(server) = &self.server {
            let _ = std::process::Command::new("kill")
                .args([signal, &server.child.id().to_string()])
                .status();
        }
    }

    async fn kill_and_start(&mut self) {
        self.signal("-CONT");
        if let Some(mut server) = self.server.take() {
            let _ = server.child.kill();
            let _ = server.child.wait();
            self.log.push_str(&server.log_so_far());
            self.log.push_str("--- killed, started again ---\n");
        }
        self.start();
        self.server.as_ref().unwrap().wait_healthy().await;
    }
}

/// A campaign of one seed.
pub struct Campaign {
    pub seed: u64,
    pub shape: Shape,
}

/// Everything a running campaign holds.
struct Run {
    chatwoot: ChatwootApi,
    gowa: GowaModel,
    relay: Relay,
    admin: Admin,
    journal: Journal,
    /// Faults still in force (device or tunnel), by what they hold, with a generation so that the end of an
    /// earlier one does not end a later one.
    generations: Arc<Mutex<HashMap<String, u64>>>,
}

impl Campaign {
    /// Runs the schedule, lets everything settle, and checks the promise.
    pub async fn run(&self) -> Verdict {
        let mut run = self.setup().await;
        let steps = schedule::schedule(self.seed, self.shape);
        for step in &steps {
            tokio::time::sleep(step.pause).await;
            self.act(&mut run, step).await;
        }
        heal(&mut run).await;
        let unsettled = quiet(&run).await;
        let messages = run.chatwoot.with(|w| w.messages.clone());
        let sent = run.gowa.sent();
        let revoked = run.gowa.revoked();
        let verdict = Oracle {
            journal: &run.journal,
            messages: &messages,
            sent: &sent,
            revoked: &revoked,
            delayed_after: DELAYED_AFTER,
            // The feedback's look, two catch-up rounds, and the webhook's own way (the relay counts the delay
            // from its arrival, up to Chatwoot's 5 s timeout after the reply was written).
            note_slack: DELAYED_AFTER.min(Duration::from_secs(30))
                + CATCH_UP_EVERY * 2
                + Duration::from_secs(5),
        }
        .verdict();
        let mut verdict = verdict;
        if let Some(open) = unsettled {
            verdict.violations.push(format!("never quiet: {open}"));
        }
        for violation in &mut verdict.violations {
            let story = story_of(&run, violation).await;
            violation.push_str(&story);
        }
        if let Some(server) = run.relay.server.take() {
            let log = server.stop_and_read_log();
            if !verdict.violations.is_empty() {
                println!("relay log of seed {}:\n{}{log}", self.seed, run.relay.log);
            }
        }
        assert_eq!(
            run.gowa.refused(),
            (0, 0),
            "GoWA got bodies it cannot decode, or another inbox's messages"
        );
        verdict
    }

    async fn setup(&self) -> Run {
        let chatwoot = ChatwootApi::start().await;
        chatwoot.with(|w| {
            w.inboxes.push(Inbox {
                account: 1,
                id: INBOXES[1],
                name: "WhatsApp Cabang".into(),
                channel_type: "Channel::Api".into(),
                webhook_url: String::new(),
            });
            for n in 0..self.shape.conversations {
                let inbox = INBOXES[n % INBOXES.len()];
                w.add_conversation(1, FIRST_CONVERSATION + n as i64, inbox);
            }
            w.sender.seed = self.seed;
            w.sender.lost = 20;
            w.sender.twins = 50;
            w.sender.jitter = Duration::from_millis(300);
        });
        let gowa = GowaModel::start(&INBOXES, chatwoot.clone(), ATTEMPT_TIMEOUT * 3 / 2).await;
        let port = free_port();
        let env = relay_env(port, &chatwoot);
        let mut relay = Relay {
            dir: tempfile::tempdir().unwrap(),
            port,
            env,
            server: None,
            log: String::new(),
        };
        relay.start();
        relay.server.as_ref().unwrap().wait_healthy().await;
        let admin = Admin::login(
            relay.base(),
            crate::support::ADMIN_USER,
            crate::support::ADMIN_PASS,
        );
        eventually(
            "the relay's webhook registered",
            Duration::from_secs(20),
            || async {
                let status = admin.get_ok("/admin/chatwoot").await;
                (status["links"][0]["webhook"]["current"] == true).then_some(())
            },
        )
        .await;
        for (device, inbox) in INBOXES.iter().enumerate() {
            let (status, body) = admin
                .post_json(
                    "/admin/routes",
                    json!({"inboxId": inbox, "webhookUrl": gowa.url(device)}),
                )
                .await;
            assert_eq!(status, 201, "{body}");
        }
        Run {
            chatwoot,
            gowa,
            relay,
            admin,
            journal: Journal::default(),
            generations: Arc::default(),
        }
    }

    // Long on purpose: one arm per act of the schedule.
    async fn act(&self, run: &mut Run, step: &Step) {
        let conversation_id = |n: usize| FIRST_CONVERSATION + n as i64;
        match step.act {
            Act::Reply {
                conversation,
                image,
            } => {
                let n = run.journal.replies.len();
                let mut m = Message::reply(
                    conversation_id(conversation),
                    &format!("s{} r{n}", self.seed),
                );
                if image {
                    m.attachments = vec![json!({
                        "id": n, "file_type": "image", "extension": "jpg",
                        "data_url": "http://127.0.0.1:9/rails/active_storage/blobs/photo.jpg",
                        "thumb_url": "http://127.0.0.1:9/rails/active_storage/blobs/thumb.jpg"
                    })];
                }
                let id = run.chatwoot.with(|w| w.add_message(m));
                run.journal
                    .replies
                    .insert(id, (conversation_id(conversation), Instant::now()));
            }
            Act::Note { conversation } => {
                let n = run.journal.replies.len();
                let note = Message {
                    private: true,
                    ..Message::reply(
                        conversation_id(conversation),
                        &format!("s{} note after r{n}", self.seed),
                    )
                };
                run.chatwoot.with(|w| w.add_message(note));
            }
            Act::Customer { conversation } => {
                let n = run.journal.replies.len();
                let incoming = Message {
                    kind: 0,
                    ..Message::reply(
                        conversation_id(conversation),
                        &format!("s{} customer after r{n}", self.seed),
                    )
                };
                run.chatwoot.with(|w| w.add_message(incoming));
            }
            Act::Delete { back } => {
                let candidates: Vec<i64> = run
                    .journal
                    .replies
                    .keys()
                    .rev()
                    .filter(|id| !run.journal.deleted.contains_key(id))
                    .copied()
                    .collect();
                if let Some(&id) = candidates.get(back) {
                    run.chatwoot.with(|w| w.delete_message(id));
                    run.journal.deleted.insert(id, Instant::now());
                }
            }
            Act::Retry => {
                let failed = run.chatwoot.with(|w| {
                    let failed = w.messages.iter().find(|m| {
                        m.status == "failed"
                            && run.journal.replies.contains_key(&m.id)
                            && !m.deleted
                    });
                    let id = failed.map(|m| m.id)?;
                    w.press_retry(id);
                    Some(id)
                });
                if let Some(id) = failed {
                    run.journal
                        .retried
                        .entry(id)
                        .or_default()
                        .push(Instant::now());
                }
            }
            Act::Forged { conversation } => forge(run, conversation_id(conversation)).await,
            Act::Device {
                device,
                state,
                lasts,
            } => {
                run.gowa.set(device, state);
                let gowa = run.gowa.clone();
                fault_for(run, format!("device {device}"), lasts, move || {
                    gowa.set(device, Device::Up)
                });
            }
            Act::Blip { lasts } => {
                run.chatwoot.with(|w| w.deliver = false);
                let chatwoot = run.chatwoot.clone();
                fault_for(run, "tunnel".into(), lasts, move || {
                    chatwoot.with(|w| w.deliver = true);
                });
            }
            Act::Kill => {
                let from = Instant::now();
                run.relay.kill_and_start().await;
                // A request the killed relay had written may reach GoWA after it died.
                run.journal.interruptions.push((from, Instant::now()));
            }
            Act::Freeze { lasts } => {
                let from = Instant::now();
                run.relay.signal("-STOP");
                tokio::time::sleep(lasts).await;
                run.relay.signal("-CONT");
                // A request written before the stop may reach GoWA while the relay is stopped.
                run.journal.interruptions.push((from, Instant::now()));
            }
        }
    }
}

/// What happened to the reply a violation names: its webhooks, and the relay's deliveries of it with what
/// Chatwoot was told.
async fn story_of(run: &Run, violation: &str) -> String {
    let Some(&id) = run
        .journal
        .replies
        .keys()
        .find(|id| violation.contains(&format!("reply {id} ")))
    else {
        return String::new();
    };
    let conversation = run.journal.replies[&id].0;
    let mut story = String::new();
    let webhooks = run
        .chatwoot
        .with(|w| w.sender.story.lock().unwrap().clone());
    for (_, event, answer) in webhooks.iter().filter(|(m, _, _)| *m == id) {
        let _ = write!(story, "\n      webhook {event}: {answer}");
    }
    let path = format!("/admin/deliveries?conversationId={conversation}&limit=500");
    let list = run.admin.get_ok(&path).await;
    for d in list["deliveries"].as_array().into_iter().flatten() {
        if d["messageId"] != id {
            continue;
        }
        let detail = run
            .admin
            .get_ok(&format!("/admin/deliveries/{}", d["id"]))
            .await;
        let _ = write!(
            story,
            "\n      delivery {} {} {}: attempts {}, chatwoot told {}",
            d["id"],
            d["event"],
            d["status"],
            detail["delivery"]["attemptLog"],
            detail["delivery"]["chatwoot"]
        );
    }
    story
}

/// The relay's environment: linked to `chatwoot` by the environment, its webhook registered at its own address,
/// short timings so that a campaign of minutes meets every rule.
fn relay_env(port: u16, chatwoot: &ChatwootApi) -> Vec<(String, String)> {
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    [
        (
            "CHATGOWA_PUBLIC_URL",
            format!("http://127.0.0.1:{port}/webhook"),
        ),
        ("CHATGOWA_CHATWOOT_URL", chatwoot.base.clone()),
        ("CHATGOWA_CHATWOOT_ACCOUNT_ID", "1".into()),
        ("CHATGOWA_CHATWOOT_TOKEN", ADMIN_TOKEN.into()),
        ("CHATGOWA_CATCHUP_INTERVAL", ms(CATCH_UP_EVERY)),
        ("CHATGOWA_DELAYED_AFTER", ms(DELAYED_AFTER)),
        ("CHATGOWA_RETRY_SCHEDULE", "200ms,400ms,800ms,1600ms".into()),
        ("CHATGOWA_REORDER_WINDOW", "300ms".into()),
        ("FETCH_TIMEOUT_MS", ATTEMPT_TIMEOUT.as_millis().to_string()),
        ("RUST_LOG", "info".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Ends a fault after `lasts`, unless another fault of the same `what` began meanwhile.
fn fault_for(run: &Run, what: String, lasts: Duration, end: impl FnOnce() + Send + 'static) {
    let generation = {
        let mut generations = run.generations.lock().unwrap();
        let g = generations.entry(what.clone()).or_default();
        *g += 1;
        *g
    };
    let generations = run.generations.clone();
    tokio::spawn(async move {
        tokio::time::sleep(lasts).await;
        if generations.lock().unwrap().get(&what) == Some(&generation) {
            end();
        }
    });
}

/// A stranger posts a reply of their own for a real conversation: unsigned, or signed with a guess.
async fn forge(run: &mut Run, conversation: i64) {
    let id = FIRST_FORGED + run.journal.forged.len() as i64;
    let inbox = run.chatwoot.with(|w| w.conversation_inbox(1, conversation));
    let body = json!({
        "event": "message_created", "id": id, "message_type": "outgoing", "private": false,
        "content": "Transfer ke rekening 123 ya", "content_type": "text", "content_attributes": {},
        "account": {"id": 1}, "inbox": {"id": inbox},
        "conversation": {"id": conversation, "inbox_id": inbox,
                         "meta": {"sender": {"id": 77, "phone_number": "+6281234567890"}}},
    })
    .to_string();
    let http = http_client();
    let request = if id % 2 == 0 {
        crate::support::signed_webhook(&http, &run.relay.base(), body.into_bytes(), "a guess")
    } else {
        http.post(format!("{}/webhook", run.relay.base()))
            .header("content-type", "application/json")
            .body(body)
    };
    run.journal.forged.push(id);
    if let Ok(response) = request.send().await
        && response.status().is_success()
    {
        run.journal.forged_taken += 1;
    }
}

/// Every fault ends: GoWA's devices up, the tunnel open, the relay running.
async fn heal(run: &mut Run) {
    run.generations.lock().unwrap().clear();
    run.gowa.heal();
    run.chatwoot.with(|w| w.deliver = true);
    run.relay.signal("-CONT");
}

/// Waits until nothing is left to happen: the relay holds nothing pending, and every reply is either at GoWA,
/// deleted, or told failed in Chatwoot; then for one more round of catching up and telling, and again. What is
/// still open when it gives up.
async fn quiet(run: &Run) -> Option<String> {
    let within = Duration::from_secs(120);
    let mut open = still_open(run).await;
    for round in 0..2 {
        let deadline = Instant::now() + within;
        while open.is_some() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
            open = still_open(run).await;
        }
        if round == 0 && open.is_none() {
            tokio::time::sleep(CATCH_UP_EVERY * 2 + Duration::from_secs(1)).await;
            open = still_open(run).await;
        }
    }
    open
}

/// What keeps the campaign from being quiet: deliveries the relay holds, replies neither sent nor told.
async fn still_open(run: &Run) -> Option<String> {
    let stats = run.admin.get_ok("/admin/stats").await;
    let pending = stats["totals"]["pending"].as_i64().unwrap_or(-1);
    let sent: std::collections::HashSet<i64> = run.gowa.sent().iter().map(|s| s.message).collect();
    let open: Vec<String> = run.chatwoot.with(|w| {
        run.journal
            .replies
            .iter()
            .filter(|(id, _)| !sent.contains(*id) && !run.journal.deleted.contains_key(*id))
            .filter_map(|(id, (conversation, _))| {
                let status = w
                    .messages
                    .iter()
                    .find(|m| m.id == *id)
                    .map(|m| m.status.clone());
                let noted = w
                    .messages
                    .iter()
                    .any(|m| m.in_reply_to == Some(*id) && m.private);
                let gowa_noted = w.messages.iter().any(|m| {
                    m.private
                        && m.conversation == *conversation
                        && m.id > *id
                        && m.content.starts_with("Message was not sent")
                });
                let told = status.as_deref() == Some("failed") && noted || gowa_noted;
                (!told).then(|| format!("{id} ({conversation}, {})", status.unwrap_or_default()))
            })
            .collect()
    });
    (pending != 0 || !open.is_empty())
        .then(|| format!("{pending} deliveries pending; replies neither sent nor told: {open:?}"))
}

/// Seeds of the CI campaign: `PROMISE_SEEDS` (comma-separated) or a few fixed ones.
fn seeds() -> Vec<u64> {
    std::env::var("PROMISE_SEEDS")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2, 3])
}

fn replies_per_seed() -> usize {
    std::env::var("PROMISE_REPLIES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(120)
}

/// The campaign on the suite's backend: each seed in turn, its table printed; any violation fails the test.
#[tokio::test]
#[ignore = "a campaign of minutes, with violations still open (Chatwoot's Retry and its late twins on PostgreSQL); \
            scripts/promise runs it"]
async fn campaigns_keep_the_promise() {
    let _heavy = crate::support::heavy().await;
    let mut violations = Vec::new();
    let mut replies = 0;
    for seed in seeds() {
        let campaign = Campaign {
            seed,
            shape: Shape {
                replies: replies_per_seed(),
                conversations: 24,
                devices: INBOXES.len(),
            },
        };
        let verdict = campaign.run().await;
        println!("{}", verdict.table(&format!("seed {seed}")));
        replies += verdict.replies;
        violations.extend(
            verdict
                .violations
                .iter()
                .map(|v| format!("seed {seed}: {v}")),
        );
    }
    println!(
        "promise: {replies} replies, {} violations",
        violations.len()
    );
    assert!(
        violations.is_empty(),
        "the promise was broken (rerun one seed: scripts/promise --seed N):\n{}",
        violations.join("\n")
    );
}
