//! One WhatsApp message per agent reply, in the order the agent wrote them: twins Chatwoot fires with new
//! delivery ids are dropped, replies Sidekiq sent out of order are put back in order, a slow GoWA does not get a
//! reply twice, and no legal Chatwoot payload is refused.

use std::time::{Duration, Instant};

use chatgowa_lib::config;
use chatgowa_lib::ids::DeliveryId;
use chatgowa_lib::store::deliveries::{self, DeliveryStatus};
use serde_json::{Value, json};

use crate::support::{Gowa, Reply, Server, TestRelay, eventually, fixture, free_port};

const WAIT: Duration = Duration::from_secs(10);

/// A GoWA stand-in answering 200, and a relay that routes inbox 7 to it.
async fn relay_to_gowa(configure: impl FnOnce(&mut config::Config)) -> (Gowa, TestRelay) {
    let gowa = Gowa::start().await;
    let relay = TestRelay::start(configure).await;
    relay
        .add_route(7, &gowa.url("/chatwoot/webhook"), None)
        .await;
    (gowa, relay)
}

fn json_of(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

/// The agent's reply (account 1, inbox 7, conversation 42) as message `id`.
fn reply(id: i64) -> Value {
    let mut v = json_of("message_created.outgoing_text.json");
    v["id"] = id.into();
    v
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

fn id_of(answer: &Value) -> DeliveryId {
    DeliveryId(answer["deliveryId"].as_i64().unwrap())
}

#[tokio::test]
async fn a_twin_with_a_new_delivery_id_is_one_message_and_a_real_change_is_not() {
    let (gowa, relay) = relay_to_gowa(|_| {}).await;
    let first = relay
        .post_webhook(bytes(&reply(9100)), Some("uuid-a"))
        .await;
    assert_eq!(first["queued"], true);
    let twin = relay
        .post_webhook(bytes(&reply(9100)), Some("uuid-b"))
        .await;
    assert_eq!(
        (
            twin["queued"].clone(),
            twin["reason"].clone(),
            twin["deliveryId"].clone()
        ),
        (
            json!(false),
            json!("duplicate"),
            first["deliveryId"].clone()
        )
    );
    let next = relay
        .post_webhook(bytes(&reply(9101)), Some("uuid-c"))
        .await;
    assert_eq!(next["queued"], true, "another message is another reply");

    let deleted = json_of("message_updated.deleted.json");
    let mut edited = deleted.clone();
    edited["content"] = "Your order shipped today".into();
    edited["content_attributes"]["deleted"] = false.into();
    let edit = relay.post_webhook(bytes(&edited), Some("uuid-d")).await;
    assert_eq!(edit["queued"], true);
    let edit_again = relay.post_webhook(bytes(&edited), Some("uuid-e")).await;
    assert_eq!(
        edit_again["reason"], "duplicate",
        "an exact repeat of an update"
    );
    let deletion = relay.post_webhook(bytes(&deleted), Some("uuid-f")).await;
    assert_eq!(
        deletion["queued"], true,
        "the deletion after the edit is news"
    );

    let got = gowa
        .wait_for("four deliveries", WAIT, |r| r.len() == 4)
        .await;
    let sent: Vec<(String, i64)> = got
        .iter()
        .map(|r| {
            let v = r.json();
            (
                v["event"].as_str().unwrap().to_owned(),
                v["id"].as_i64().unwrap(),
            )
        })
        .collect();
    let updated = deleted["id"].as_i64().unwrap();
    // Whether the older message's updates go before reply 9101 depends on whether 9101 had started when they
    // arrived (see `delivery::lane`): the count of each is what this is about.
    let mut sent = sent;
    sent.sort();
    assert_eq!(
        sent,
        [
            ("message_created".to_owned(), 9100),
            ("message_created".to_owned(), 9101),
            ("message_updated".to_owned(), updated),
            ("message_updated".to_owned(), updated),
        ]
    );
    // The log and the stats count what was dropped.
    let detail = relay
        .admin
        .get_ok(&format!("/admin/deliveries/{}", id_of(&first)))
        .await;
    assert_eq!(detail["delivery"]["duplicates"], 1, "{detail}");
    let stats = relay.admin.get_ok("/admin/stats").await;
    assert_eq!(stats["duplicatesDropped"], 2);
    let text = relay.admin.metrics().await;
    assert!(
        text.contains("chatgowa_webhooks_received_total{decision=\"duplicate\"} 2"),
        "{text}"
    );
    assert_eq!(gowa.arrivals(), 4, "nothing more went out");
    relay.stop().await;
}

#[tokio::test]
async fn a_twin_after_a_restart_is_still_a_twin() {
    let gowa = Gowa::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = Server::spawn_logging(dir.path(), port, &[]);
    server.wait_healthy().await;
    server.add_route(7, &gowa.url("/chatwoot/webhook")).await;
    let first = server.post_webhook(bytes(&reply(9200))).await;
    assert_eq!(first["queued"], true);
    gowa.wait_for("the reply", WAIT, |r| r.len() == 1).await;
    server.stop_and_read_log();

    let server = Server::spawn(dir.path(), port, &[]);
    server.wait_healthy().await;
    let twin = server.post_webhook(bytes(&reply(9200))).await;
    assert_eq!(twin["reason"], "duplicate", "{twin}");
    assert_eq!(twin["deliveryId"], first["deliveryId"]);
    let other = server.post_webhook(bytes(&reply(9201))).await;
    assert_eq!(other["queued"], true);
    gowa.wait_for("the other reply", WAIT, |r| r.len() == 2)
        .await;
    assert_eq!(gowa.arrivals(), 2);
}

#[tokio::test]
async fn a_slow_gowa_gets_each_reply_once_with_the_default_timeout() {
    let (gowa, relay) = relay_to_gowa(|c| {
        c.fetch_timeout = Duration::from_millis(config::DEFAULT_FETCH_TIMEOUT_MS);
    })
    .await;
    // GoWA downloads and sends a video before it answers.
    gowa.set(|_, _| Reply {
        delay: Duration::from_secs(15),
        ..Reply::status(200)
    });
    let answer = relay.post_webhook(bytes(&reply(9300)), None).await;
    let id = id_of(&answer);
    eventually(
        "the slow reply to be delivered",
        Duration::from_secs(40),
        || async {
            let d = deliveries::find(&relay.state.db, id).await.unwrap()?;
            (d.status == DeliveryStatus::Delivered).then_some(())
        },
    )
    .await;
    assert_eq!(gowa.arrivals(), 1, "sent once");
    relay.stop().await;
}

#[tokio::test]
async fn a_timeout_after_the_request_was_sent_is_ambiguous_and_retried() {
    let (gowa, relay) = relay_to_gowa(|c| c.fetch_timeout = Duration::from_millis(300)).await;
    // The first request is answered only after the relay gave up on it.
    let arrivals = std::sync::atomic::AtomicUsize::new(0);
    gowa.set(move |_, _| Reply {
        delay: if arrivals.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            Duration::from_secs(1)
        } else {
            Duration::ZERO
        },
        ..Reply::status(200)
    });
    let id = id_of(&relay.post_webhook(bytes(&reply(9400)), None).await);
    eventually("the retry to deliver it", WAIT, || async {
        let d = deliveries::find(&relay.state.db, id).await.unwrap()?;
        (d.status == DeliveryStatus::Delivered).then_some(())
    })
    .await;
    let detail = relay.admin.get_ok(&format!("/admin/deliveries/{id}")).await;
    let log = &detail["delivery"]["attemptLog"];
    assert_eq!(log[0]["ambiguous"], true, "{log}");
    assert!(
        log[0]["error"]
            .as_str()
            .unwrap()
            .contains("GoWA may have sent the message"),
        "{log}"
    );
    assert_eq!(
        (log[1]["ambiguous"].clone(), log[1]["statusCode"].clone()),
        (json!(false), json!(200))
    );
    assert_eq!(gowa.arrivals(), 2);
    let text = relay.admin.metrics().await;
    assert!(
        text.contains("chatgowa_delivery_attempts_ambiguous_total 1"),
        "{text}"
    );
    relay.stop().await;
}

/// What Chatwoot can send at most: content at its cap of 150 000 characters, three times over, every one
/// of them `<`, which Rails writes as the six bytes `\u003c`.
fn worst_case_payload() -> Vec<u8> {
    let mut v = json_of("message_created.large_text.json");
    let original = v["content"].as_str().unwrap().to_owned();
    let worst = "<".repeat(150_000);
    fn replace(v: &mut Value, from: &str, to: &str, count: &mut usize) {
        match v {
            Value::String(s) if s == from => {
                *s = to.to_owned();
                *count += 1;
            }
            Value::Array(items) => items.iter_mut().for_each(|i| replace(i, from, to, count)),
            Value::Object(map) => map.values_mut().for_each(|i| replace(i, from, to, count)),
            _ => {}
        }
    }
    let mut count = 0;
    replace(&mut v, &original, &worst, &mut count);
    assert_eq!(
        count, 3,
        "content, messages[0].content, processed_message_content"
    );
    serde_json::to_string(&v)
        .unwrap()
        .replace('<', "\\u003c")
        .into_bytes()
}

#[tokio::test]
async fn the_largest_payload_chatwoot_can_send_is_taken_and_forwarded_byte_for_byte() {
    let (gowa, relay) = relay_to_gowa(|c| c.max_body = config::DEFAULT_MAX_BODY).await;
    let body = worst_case_payload();
    assert!(body.len() > 2_700_000, "{} bytes", body.len());
    let answer = relay.post_webhook(body.clone(), None).await;
    assert_eq!(answer["queued"], true, "{answer}");
    let stored = deliveries::find(&relay.state.db, id_of(&answer))
        .await
        .unwrap()
        .unwrap();
    assert!(stored.body == body, "stored as sent");
    let got = gowa
        .wait_for("the large reply", WAIT, |r| r.len() == 1)
        .await;
    assert!(got[0].body == body, "forwarded byte for byte");
    relay.stop().await;
}

/// A conversation's reply as Chatwoot sends it: message `id` in conversation `conversation` of inbox 7.
fn reply_in(conversation: i64, id: i64) -> Vec<u8> {
    let mut v = reply(id);
    v["conversation"]["id"] = conversation.into();
    bytes(&v)
}

/// What GoWA got, as (conversation, message id); a conversation event counts as message 0.
fn sent(gowa: &Gowa) -> Vec<(i64, i64)> {
    gowa.received()
        .iter()
        .map(|r| {
            let v = r.json();
            let conversation = v["conversation"]["id"]
                .as_i64()
                .or(v["id"].as_i64())
                .unwrap();
            let message = if v["event"] == "message_created" {
                v["id"].as_i64().unwrap()
            } else {
                0
            };
            (conversation, message)
        })
        .collect()
}

#[tokio::test]
async fn replies_go_in_the_order_the_agent_wrote_them() {
    let gowa = Gowa::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::spawn_logging(
        dir.path(),
        free_port(),
        &[("CHATGOWA_REORDER_WINDOW", "3s")],
    );
    server.wait_healthy().await;
    server.add_route(7, &gowa.url("/chatwoot/webhook")).await;
    let posted = Instant::now();
    // Sidekiq sent the second reply's webhook first.
    server.post_webhook(reply_in(1, 101)).await;
    // Another conversation is not held up by it.
    let mut resolved = json_of("conversation_status_changed.resolved.json");
    resolved["id"] = 2.into();
    server.post_webhook(bytes(&resolved)).await;
    server.post_webhook(reply_in(1, 100)).await;
    gowa.wait_for("all three", WAIT, |r| r.len() == 3).await;
    assert_eq!(sent(&gowa), [(2, 0), (1, 100), (1, 101)]);
    assert!(
        posted.elapsed() >= Duration::from_secs(3),
        "the replies waited for the window"
    );

    // After the window a late reply goes in arrival order, and the log says so.
    server.post_webhook(reply_in(1, 99)).await;
    gowa.wait_for("the late one", WAIT, |r| r.len() == 4).await;
    assert_eq!(sent(&gowa)[3], (1, 99));
    let log = server.stop_and_read_log();
    assert!(
        log.contains("reply arrived after a later reply of its conversation was sent"),
        "{log}"
    );
}

#[tokio::test]
async fn replies_held_in_the_window_survive_kill_9_and_go_in_order() {
    let gowa = Gowa::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // On PostgreSQL the restarted relay takes the lane over once the killed one's lease ends.
    let lease: &[(&str, &str)] = if crate::support::on_postgres() {
        &[("CHATGOWA_LANE_LEASE", "7s")]
    } else {
        &[]
    };
    let mut server = Server::spawn(
        dir.path(),
        port,
        &[lease, &[("CHATGOWA_REORDER_WINDOW", "60s")]].concat(),
    );
    server.wait_healthy().await;
    server.add_route(7, &gowa.url("/chatwoot/webhook")).await;
    server.post_webhook(reply_in(1, 101)).await;
    server.post_webhook(reply_in(1, 100)).await;
    assert_eq!(gowa.arrivals(), 0, "both held by the window");
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();

    let server = Server::spawn(dir.path(), port, lease);
    server.wait_healthy().await;
    gowa.wait_for("both replies", WAIT, |r| r.len() == 2).await;
    assert_eq!(sent(&gowa), [(1, 100), (1, 101)]);
    drop(server);
}

#[tokio::test]
async fn two_chatwoot_servers_with_the_same_message_ids_are_both_relayed() {
    use crate::chatwoot_api::{ChatwootApi, Inbox};
    // Two Chatwoot servers (a shop's and a clinic's), one relay: both have an account 1 and give out the same
    // message ids; their inboxes differ.
    let (gowa, relay) = relay_to_gowa(|_| {}).await;
    relay
        .add_route(12, &gowa.url("/chatwoot/webhook"), None)
        .await;
    let shop = ChatwootApi::start().await;
    let clinic = ChatwootApi::start().await;
    clinic.with(|w| {
        w.inboxes.push(Inbox {
            account: 1,
            id: 12,
            name: "WhatsApp Klinik".into(),
            channel_type: "Channel::Api".into(),
            webhook_url: String::new(),
        });
        w.remove_conversations();
        w.add_conversation(1, 41, 12);
    });
    let hook = format!("{}/webhook", relay.base);
    for chatwoot in [&shop, &clinic] {
        chatwoot.add_hook(1, &hook, &["message_created"]);
    }
    let from_shop = shop.with(|w| w.agent_replies(1, 41, "Pesanan sudah dikirim"));
    gowa.wait_for("the shop's reply", WAIT, |r| r.len() == 1)
        .await;
    let from_clinic = clinic.with(|w| w.agent_replies(1, 41, "Jadwal dokter besok"));
    assert_eq!(from_shop, from_clinic, "the same message id");
    let received = gowa
        .wait_for("the clinic's reply too", WAIT, |r| r.len() == 2)
        .await;
    let inboxes: Vec<Value> = received
        .iter()
        .map(|r| r.json()["inbox"]["id"].clone())
        .collect();
    assert_eq!(inboxes, [json!(7), json!(12)]);
    relay.stop().await;
}
