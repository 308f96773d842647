//! Delivery against a GoWA stand-in on loopback: retries, dead letters, ordering, dedupe, headers, bytes.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use chatgowa_lib::config::Config;
use chatgowa_lib::ids::DeliveryId;
use chatgowa_lib::store::deliveries::DeliveryStatus;
use chatgowa_lib::store::{attempts, deliveries};

use crate::support::{Gowa, Received, Reply, TestRelay, eventually, fixture, free_port, message};

const WAIT: Duration = Duration::from_secs(10);

async fn wait_status(
    relay: &TestRelay,
    id: DeliveryId,
    status: DeliveryStatus,
) -> deliveries::Delivery {
    eventually(&format!("delivery {id} to be {status:?}"), WAIT, || async {
        deliveries::find(&relay.state.db, id)
            .await
            .unwrap()
            .filter(|d| d.status == status)
    })
    .await
}

fn delivery_id(answer: &serde_json::Value) -> DeliveryId {
    DeliveryId(answer["deliveryId"].as_i64().unwrap())
}

/// A GoWA stand-in answering as `behaviour` says, and a relay that routes inbox 7 to it.
async fn relay_to_gowa(
    behaviour: impl Fn(&Received, &[Received]) -> Reply + Send + Sync + 'static,
    configure: impl FnOnce(&mut Config),
) -> (Gowa, TestRelay) {
    let gowa = Gowa::start().await;
    gowa.set(behaviour);
    let relay = TestRelay::start(configure).await;
    relay
        .add_route(7, &gowa.url("/chatwoot/webhook"), None)
        .await;
    (gowa, relay)
}

/// Posts the agent-reply fixture (inbox 7) as a reply of its own (a new message id, so that it is no twin of
/// the last one) and returns its delivery id.
async fn queue_reply(relay: &TestRelay) -> DeliveryId {
    static NEXT_MESSAGE: AtomicI64 = AtomicI64::new(1_000);
    let mut reply: serde_json::Value =
        serde_json::from_slice(&fixture("message_created.outgoing_text.json")).unwrap();
    reply["id"] = NEXT_MESSAGE.fetch_add(1, Ordering::SeqCst).into();
    let body = serde_json::to_vec(&reply).unwrap();
    delivery_id(&relay.post_webhook(body, None).await)
}

#[tokio::test]
async fn retries_until_gowa_recovers() {
    let (gowa, relay) = relay_to_gowa(
        |_, before| Reply::status(if before.len() < 2 { 503 } else { 200 }),
        |_| {},
    )
    .await;
    let id = queue_reply(&relay).await;

    let done = wait_status(&relay, id, DeliveryStatus::Delivered).await;
    assert_eq!(done.attempts, 3);
    let log = attempts::list_for_delivery(&relay.state.db, id)
        .await
        .unwrap();
    let codes: Vec<_> = log.iter().map(|a| a.status_code).collect();
    assert_eq!(codes, [Some(503), Some(503), Some(200)]);
    assert_eq!(log[0].error.as_deref(), Some("HTTP 503"));
    assert_eq!(log[2].response_snippet.as_deref(), Some("OK"));
    let numbers: Vec<_> = gowa
        .received()
        .iter()
        .map(|r| r.header("x-chatgowa-attempt").unwrap().to_owned())
        .collect();
    assert_eq!(numbers, ["1", "2", "3"]);
    relay.stop().await;
}

#[tokio::test]
async fn connection_errors_are_retried() {
    // Reserve a port, start the relay against it while nothing listens, then bring GoWA up there.
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let relay = TestRelay::start(|_| {}).await;
    relay
        .add_route(7, &format!("http://{addr}/chatwoot/webhook"), None)
        .await;
    let id = queue_reply(&relay).await;
    eventually("a failed connection attempt", WAIT, || async {
        let log = attempts::list_for_delivery(&relay.state.db, id)
            .await
            .unwrap();
        log.first()
            .filter(|a| a.status_code.is_none() && a.error.is_some())
            .cloned()
    })
    .await;
    let gowa = Gowa::start_on(tokio::net::TcpListener::bind(addr).await.unwrap());
    wait_status(&relay, id, DeliveryStatus::Delivered).await;
    assert_eq!(gowa.received().len(), 1);
    relay.stop().await;
}

#[tokio::test]
async fn permanent_client_errors_go_dead_at_once() {
    let (_gowa, relay) = relay_to_gowa(|_, _| Reply::status(401), |_| {}).await;
    let id = queue_reply(&relay).await;
    let dead = wait_status(&relay, id, DeliveryStatus::Dead).await;
    assert_eq!((dead.attempts, dead.last_status_code), (1, Some(401)));
    relay.stop().await;
}

#[tokio::test]
async fn gives_up_after_the_maximum_age() {
    let (_gowa, relay) = relay_to_gowa(
        |_, _| Reply::status(500),
        |c| c.max_age = Duration::from_millis(300),
    )
    .await;
    let id = queue_reply(&relay).await;
    let dead = wait_status(&relay, id, DeliveryStatus::Dead).await;
    assert!(
        dead.attempts > 1,
        "retried before giving up: {}",
        dead.attempts
    );
    assert!(
        dead.next_attempt_at <= dead.received_at + 300,
        "no retry was scheduled past the maximum age"
    );
    relay.stop().await;
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let step = Duration::from_millis(150);
    let once_429 = |_: &Received, before: &[Received]| match before.len() {
        0 => Reply {
            retry_after: Some("1"),
            ..Reply::status(429)
        },
        _ => Reply::status(200),
    };
    let (_gowa, relay) = relay_to_gowa(once_429, |c| c.retry_schedule = vec![step]).await;
    let id = queue_reply(&relay).await;
    wait_status(&relay, id, DeliveryStatus::Delivered).await;
    let log = attempts::list_for_delivery(&relay.state.db, id)
        .await
        .unwrap();
    let gap = log[1].started_at - log[0].started_at;
    // Retry-After: 1 s, clamped to twice the 150 ms step; the step alone would be at most 180 ms.
    assert!(gap >= 300, "second attempt after {gap} ms");
    relay.stop().await;
}

#[tokio::test]
async fn a_conversation_waits_for_its_head_while_others_proceed() {
    // Conversation 1's first message fails until all of conversation 2 has arrived (at least three times):
    // if conversation 2 had to wait behind it, neither would ever finish.
    let head_fails_thrice = |req: &Received, before: &[Received]| {
        let is_head_of_1 =
            |r: &Received| r.json()["conversation"]["id"] == 1 && r.json()["id"] == 0;
        let failures = before.iter().filter(|r| is_head_of_1(r)).count();
        let done_2 = before
            .iter()
            .filter(|r| r.json()["conversation"]["id"] == 2 && r.status == 200)
            .count();
        Reply::status(if is_head_of_1(req) && (failures < 3 || done_2 < 5) {
            500
        } else {
            200
        })
    };
    let (gowa, relay) = relay_to_gowa(head_fails_thrice, |c| {
        c.retry_schedule = vec![Duration::from_millis(50)]
    })
    .await;
    for seq in 0..5 {
        relay.post_webhook(message(7, 1, seq), None).await;
        relay.post_webhook(message(7, 2, seq), None).await;
    }
    let got = gowa
        .wait_for("all ten messages delivered", WAIT, |r| {
            r.iter().filter(|r| r.status == 200).count() == 10
        })
        .await;
    let order = |conversation: i64| -> Vec<(u64, u16)> {
        got.iter()
            .filter(|r| r.json()["conversation"]["id"] == conversation)
            .map(|r| (r.json()["id"].as_u64().unwrap(), r.status))
            .collect()
    };
    // Conversation 1: its head failed (at least three times), then all five went out in order.
    let first = order(1);
    let failures = first.iter().take_while(|m| **m == (0, 500)).count();
    assert!(failures >= 3, "{first:?}");
    assert_eq!(
        first[failures..],
        [(0, 200), (1, 200), (2, 200), (3, 200), (4, 200)]
    );
    assert_eq!(order(2), [(0, 200), (1, 200), (2, 200), (3, 200), (4, 200)]);
    relay.stop().await;
}

#[tokio::test]
async fn a_slow_route_does_not_delay_another_route() {
    let slow = Gowa::start().await;
    slow.set(|_, _| Reply {
        delay: Duration::from_secs(3),
        ..Reply::status(200)
    });
    let fast = Gowa::start().await;
    let relay = TestRelay::start(|_| {}).await;
    relay
        .add_route(7, &slow.url("/chatwoot/webhook"), None)
        .await;
    relay
        .add_route(8, &fast.url("/chatwoot/webhook"), None)
        .await;
    for conversation in 0..40 {
        relay.post_webhook(message(7, conversation, 0), None).await;
    }
    eventually("the slow route to fill its slots", WAIT, || async {
        (slow.arrivals() >= 32).then_some(())
    })
    .await;
    relay.post_webhook(message(8, 1, 0), None).await;
    fast.wait_for("the fast route's delivery", WAIT, |r| r.len() == 1)
        .await;
    assert!(
        slow.received().is_empty(),
        "the fast route was served while every slow attempt was still waiting for its answer"
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_repeated_chatwoot_delivery_is_sent_once() {
    let (gowa, relay) = relay_to_gowa(|_, _| Reply::status(200), |_| {}).await;
    let first = relay
        .post_webhook(message(7, 1, 0), Some("3b1f6c1e-uuid"))
        .await;
    let again = relay
        .post_webhook(message(7, 1, 0), Some("3b1f6c1e-uuid"))
        .await;
    assert_eq!(first["queued"], true);
    assert_eq!(
        (again["queued"].as_bool(), again["reason"].as_str()),
        (Some(false), Some("duplicate"))
    );
    assert_eq!(again["deliveryId"], first["deliveryId"]);
    // A later message of the same conversation arrives after anything queued before it.
    relay
        .post_webhook(message(7, 1, 1), Some("other-uuid"))
        .await;
    let got = gowa
        .wait_for("the later message", WAIT, |r| {
            r.iter().any(|r| r.json()["id"] == 1)
        })
        .await;
    assert_eq!(got.len(), 2, "the duplicate was not sent");
    relay.stop().await;
}

#[tokio::test]
async fn sends_the_exact_bytes_and_the_expected_headers() {
    let gowa = Gowa::start().await;
    let relay = TestRelay::start(|_| {}).await;
    relay
        .add_route(
            9,
            &gowa.url("/chatwoot/webhook/device-1"),
            Some("gowa-shared-secret"),
        )
        .await;
    relay
        .add_route(
            7,
            &format!(
                "http://relay%40shop:pa%20ss@{}/chatwoot/webhook",
                gowa.addr()
            ),
            None,
        )
        .await;

    let emoji = fixture("message_created.unicode_emoji.json");
    let large = fixture("message_created.large_text.json");
    assert_eq!(large.len(), 382_010);
    let client = crate::support::http_client();
    let response = client
        .post(format!("{}/webhook", relay.base))
        .header("content-type", "application/json")
        .header("x-chatwoot-delivery", "d-1")
        .header("x-chatwoot-timestamp", "1781964310")
        .header(
            "x-chatwoot-signature",
            "sha256=7b522d6052446175fc3076b9f47236002d6dd7beef4af12d98622a1332b49737",
        )
        .body(emoji.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    relay.post_webhook(large.clone(), None).await;

    let got = gowa.wait_for("both fixtures", WAIT, |r| r.len() == 2).await;
    let emoji_req = got
        .iter()
        .find(|r| r.path == "/chatwoot/webhook/device-1")
        .unwrap();
    let large_req = got.iter().find(|r| r.path == "/chatwoot/webhook").unwrap();
    assert_eq!(emoji_req.body.as_ref(), emoji.as_slice(), "byte for byte");
    assert_eq!(large_req.body.as_ref(), large.as_slice(), "byte for byte");

    assert_eq!(
        emoji_req.header("x-hub-signature-256"),
        Some("sha256=76d0c72122571dd9e2079cfe004919eaf142ddf236283b48a50f22a518d01f15")
    );
    assert_eq!(emoji_req.header("content-type"), Some("application/json"));
    assert_eq!(
        emoji_req.header("user-agent"),
        Some(concat!("chatgowa/", env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(emoji_req.header("x-chatwoot-delivery"), Some("d-1"));
    assert_eq!(emoji_req.header("x-chatwoot-timestamp"), Some("1781964310"));
    assert_eq!(
        emoji_req.header("x-chatwoot-signature"),
        Some("sha256=7b522d6052446175fc3076b9f47236002d6dd7beef4af12d98622a1332b49737")
    );
    assert!(
        emoji_req
            .header("x-chatgowa-delivery")
            .unwrap()
            .parse::<i64>()
            .is_ok()
    );
    assert_eq!(emoji_req.header("x-chatgowa-attempt"), Some("1"));
    assert_eq!(emoji_req.header("authorization"), None);

    let expected = base64::engine::general_purpose::STANDARD.encode("relay@shop:pa ss");
    assert_eq!(
        large_req.header("authorization"),
        Some(format!("Basic {expected}").as_str())
    );
    assert_eq!(large_req.header("x-hub-signature-256"), None);
    assert_eq!(large_req.header("x-chatwoot-delivery"), None);
    relay.stop().await;
}

#[tokio::test]
async fn a_paused_route_queues_every_reply_and_sends_them_in_order_when_resumed() {
    let first_fails = |_: &Received, before: &[Received]| {
        Reply::status(if before.is_empty() { 503 } else { 200 })
    };
    let (gowa, relay) = relay_to_gowa(first_fails, |c| {
        c.retry_schedule = vec![Duration::from_millis(200)]
    })
    .await;
    let route_id = chatgowa_lib::store::routes::list(&relay.state.db)
        .await
        .unwrap()[0]
        .id;
    let id = delivery_id(&relay.post_webhook(message(7, 1, 0), None).await);
    gowa.wait_for("the first (failing) attempt", WAIT, |r| r.len() == 1)
        .await;

    let path = format!("/admin/routes/{route_id}");
    let set_enabled = |enabled: bool| {
        relay
            .admin
            .put_json(&path, serde_json::json!({"enabled": enabled}))
    };
    assert_eq!(set_enabled(false).await.0, 200);
    // Replies written while the route is paused are queued, not lost.
    for seq in 1..=5 {
        let answer = relay.post_webhook(message(7, 1, seq), None).await;
        assert_eq!(answer["queued"], true, "{answer}");
    }
    // The pending one is held: its retry time passes without an attempt.
    eventually("the retry time to pass", WAIT, || async {
        let d = deliveries::find(&relay.state.db, id)
            .await
            .unwrap()
            .unwrap();
        (chatgowa_lib::store::now_ms() > d.next_attempt_at + 300).then_some(())
    })
    .await;
    assert_eq!(gowa.received().len(), 1);
    // The panel's route shows how many wait.
    let (_, routes) = relay.admin.get("/admin/routes").await;
    assert_eq!(routes["routes"][0]["enabled"], false);
    assert_eq!(routes["routes"][0]["pending"], 6, "{routes}");

    assert_eq!(set_enabled(true).await.0, 200);
    let got = gowa
        .wait_for("every reply after the resume", WAIT, |r| r.len() == 7)
        .await;
    let sent: Vec<i64> = got[1..]
        .iter()
        .map(|r| r.json()["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        sent,
        [0, 1, 2, 3, 4, 5],
        "the held one first, then the rest in order"
    );
    wait_status(&relay, id, DeliveryStatus::Delivered).await;
    relay.stop().await;
}

#[tokio::test]
async fn a_delivery_discarded_while_waiting_in_its_lane_is_never_sent() {
    let (gowa, relay) = relay_to_gowa(|_, _| Reply::status(200), |_| {}).await;
    relay.state.dispatcher.set_paused(true);
    // One conversation: the second and third wait behind the first, as the writer stored them.
    let first = queue_reply(&relay).await;
    let second = queue_reply(&relay).await;
    let third = queue_reply(&relay).await;
    let (discarded, _) = relay
        .admin
        .delete(&format!("/admin/deliveries/{second}"))
        .await;
    assert_eq!(discarded, 200);
    relay.state.dispatcher.set_paused(false);
    wait_status(&relay, third, DeliveryStatus::Delivered).await;
    let sent: Vec<String> = gowa
        .received()
        .iter()
        .map(|r| r.header("x-chatgowa-delivery").unwrap().to_owned())
        .collect();
    assert_eq!(sent, [first.to_string(), third.to_string()]);
    relay.stop().await;
}
