//! Closing the loop with a linked Chatwoot, against the Chatwoot API stand-in and the GoWA stand-in: a reply given
//! up on is marked failed with one note under it (API inbox) or gets the note only (other inboxes); Chatwoot's
//! Retry sends the stored original again and the mark goes back to sent; replies delayed in many conversations get
//! one note per conversation per outage, and one when they go out; a Chatwoot that is down delays what it is
//! told, and relaying goes on.

use std::time::Duration;

use crate::chatwoot_api::{ChatwootApi, Mode, link_account};
use crate::support::{Gowa, Reply, TestRelay, eventually};

const WAIT: Duration = Duration::from_secs(60);

/// A relay linked to account 1 of `chatwoot`, its webhook registered, inboxes 7 (API) and 8 (website) routed to
/// `gowa`.
async fn linked_relay(chatwoot: &ChatwootApi, gowa: &Gowa, delayed_after: Duration) -> TestRelay {
    let relay = TestRelay::start(|c| {
        c.retry_schedule = vec![Duration::from_millis(50)];
        c.max_age = Duration::from_secs(60);
        c.upkeep.delayed_after = delayed_after;
    })
    .await;
    link_account(&relay, chatwoot).await;
    relay
        .add_route(7, &gowa.url("/chatwoot/webhook"), None)
        .await;
    relay
        .add_route(8, &gowa.url("/chatwoot/webhook"), None)
        .await;
    relay
}

/// GoWA's answer: 401 (a permanent failure) to the agents' replies while `failing`, 200 to everything else.
fn replies_fail(gowa: &Gowa, status: u16) {
    gowa.set(move |r, _| {
        let v = r.json();
        let reply = v["event"] == "message_created" && v["private"] == false;
        Reply::status(if reply { status } else { 200 })
    });
}

/// The GoWA requests for message `id` (`message_created`, not private).
fn replies_to(gowa: &Gowa, id: i64) -> Vec<bytes::Bytes> {
    gowa.received()
        .into_iter()
        .filter(|r| {
            let v = r.json();
            v["event"] == "message_created" && v["id"] == id
        })
        .map(|r| r.body)
        .collect()
}

#[tokio::test]
async fn a_reply_deleted_in_chatwoot_while_it_waited_is_not_sent_afterwards() {
    let chatwoot = ChatwootApi::start().await;
    let gowa = Gowa::start().await;
    // GoWA is down: the reply waits, retried.
    replies_fail(&gowa, 503);
    let relay = linked_relay(&chatwoot, &gowa, Duration::from_secs(600)).await;
    let message = chatwoot.with(|w| w.agent_replies(1, 41, "Maaf, salah kirim"));
    gowa.wait_for("the reply tried", WAIT, |_| {
        !replies_to(&gowa, message).is_empty()
    })
    .await;
    // The agent deletes it meanwhile.
    chatwoot.with(|w| w.delete_message(message));
    let dead = eventually("the reply cancelled", WAIT, || async {
        let list = relay.admin.get_ok("/admin/deliveries?status=dead").await;
        list["deliveries"]
            .as_array()?
            .iter()
            .find(|d| d["messageId"] == message && d["event"] == "message_created")
            .cloned()
    })
    .await;
    assert!(
        dead["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("deleted in Chatwoot")),
        "{dead}"
    );
    let tried = replies_to(&gowa, message).len();
    // GoWA is back: the next reply of the conversation goes out, the deleted one does not.
    replies_fail(&gowa, 200);
    let next = chatwoot.with(|w| w.agent_replies(1, 41, "Balasan yang benar"));
    gowa.wait_for("the next reply", WAIT, |_| {
        replies_to(&gowa, next).len() == 1
    })
    .await;
    assert_eq!(replies_to(&gowa, message).len(), tried);
    assert!(
        chatwoot.with(|w| w.notes_under(message)).is_empty(),
        "nothing told about a message the agent deleted"
    );
    assert_ne!(chatwoot.with(|w| w.message(message)).status, "failed");
    relay.stop().await;
}

#[tokio::test]
async fn chatwoots_retry_pressed_a_second_time_sends_the_reply_again() {
    let chatwoot = ChatwootApi::start().await;
    let gowa = Gowa::start().await;
    replies_fail(&gowa, 401);
    let relay = linked_relay(&chatwoot, &gowa, Duration::from_secs(600)).await;
    let message = chatwoot.with(|w| w.agent_replies(1, 41, "Resi pengiriman: JNE 0123"));
    let marked_failed = |sends: usize| {
        let (chatwoot, gowa) = (chatwoot.clone(), gowa.clone());
        async move {
            eventually("the reply marked failed", WAIT, || async {
                let m = chatwoot.with(|w| w.message(message));
                (m.status == "failed" && replies_to(&gowa, message).len() == sends).then_some(())
            })
            .await;
        }
    };
    marked_failed(1).await;
    // Retry while GoWA still refuses: sent again, and marked failed again.
    chatwoot.with(|w| w.press_retry(message));
    marked_failed(2).await;
    // GoWA works again; Retry a second time: the same Retry as before, and still a new request of the agent.
    replies_fail(&gowa, 200);
    chatwoot.with(|w| w.press_retry(message));
    gowa.wait_for("the reply sent a third time", WAIT, |_| {
        replies_to(&gowa, message).len() == 3
    })
    .await;
    eventually("the mark back to sent", WAIT, || async {
        (chatwoot.with(|w| w.message(message)).status == "sent").then_some(())
    })
    .await;
    relay.stop().await;
}

#[tokio::test]
async fn a_reply_given_up_on_is_marked_failed_and_chatwoots_retry_sends_it_again() {
    let chatwoot = ChatwootApi::start().await;
    let gowa = Gowa::start().await;
    replies_fail(&gowa, 401);
    let relay = linked_relay(&chatwoot, &gowa, Duration::from_secs(600)).await;
    let message = chatwoot.with(|w| w.agent_replies(1, 41, "Pesanan Ibu sudah dikirim"));

    let failed = eventually(
        "the reply marked failed, with one note under it",
        WAIT,
        || async {
            let m = chatwoot.with(|w| w.message(message));
            let notes = chatwoot.with(|w| w.notes_under(message));
            (m.status == "failed" && notes.len() == 1).then_some((m, notes))
        },
    )
    .await;
    assert_eq!(
        failed.0.external_error,
        "Not sent to WhatsApp: GoWA answered 401"
    );
    assert!(
        failed.1[0].content.contains("NOT delivered"),
        "{:?}",
        failed.1
    );
    assert_eq!(replies_to(&gowa, message).len(), 1);

    // GoWA works again; the agent presses Retry in Chatwoot: the stored original goes out again, once.
    replies_fail(&gowa, 200);
    chatwoot.with(|w| w.press_retry(message));
    gowa.wait_for("the reply sent again", WAIT, |_| {
        replies_to(&gowa, message).len() == 2
    })
    .await;
    let bodies = replies_to(&gowa, message);
    assert_eq!(bodies[0], bodies[1], "the same bytes");
    eventually("the mark back to sent", WAIT, || async {
        let m = chatwoot.with(|w| w.message(message));
        let delivery = relay
            .admin
            .get_ok("/admin/deliveries?status=delivered")
            .await;
        let id = delivery["deliveries"]
            .as_array()?
            .iter()
            .find(|d| d["messageId"] == message && d["event"] == "message_created")?["id"]
            .as_i64()?;
        let detail = relay.admin.get_ok(&format!("/admin/deliveries/{id}")).await;
        let told: Vec<(String, String)> = detail["delivery"]["chatwoot"]
            .as_array()?
            .iter()
            .map(|f| {
                (
                    f["kind"].as_str().unwrap().to_owned(),
                    f["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let expected = ["mark_failed", "note_dead", "resent", "mark_sent"];
        (m.status == "sent"
            && told.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>() == expected
            && told.iter().all(|(_, s)| s == "done"))
        .then_some(())
    })
    .await;
    assert_eq!(
        chatwoot.with(|w| w.notes_under(message)).len(),
        1,
        "no second note"
    );
    assert_eq!(replies_to(&gowa, message).len(), 2);

    // A reply given up on and retried from the panel is set back to sent too.
    replies_fail(&gowa, 401);
    let second = chatwoot.with(|w| w.agent_replies(1, 41, "Balasan kedua"));
    eventually("the second reply marked failed", WAIT, || async {
        (chatwoot.with(|w| w.message(second)).status == "failed").then_some(())
    })
    .await;
    replies_fail(&gowa, 200);
    let dead = relay.admin.get_ok("/admin/deliveries?status=dead").await;
    let id = dead["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["messageId"] == second)
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let (status, _) = relay
        .admin
        .post_json(
            &format!("/admin/deliveries/{id}/retry"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 202);
    eventually("the second reply sent again", WAIT, || async {
        (chatwoot.with(|w| w.message(second)).status == "sent").then_some(())
    })
    .await;
    relay.stop().await;
}

#[tokio::test]
async fn a_reply_in_another_kind_of_inbox_gets_the_note_and_a_chatwoot_that_is_down_gets_it_later()
{
    let chatwoot = ChatwootApi::start().await;
    let gowa = Gowa::start().await;
    replies_fail(&gowa, 401);
    let relay = linked_relay(&chatwoot, &gowa, Duration::from_secs(600)).await;
    chatwoot.with(|w| w.add_conversation(1, 42, 8));
    // Chatwoot's API goes down just before the reply is given up on (its webhooks still go out).
    chatwoot.with(|w| w.mode = Mode::Broken);
    let message = chatwoot.with(|w| w.agent_replies(1, 42, "Halo dari website"));
    let pending = eventually("the note waiting for Chatwoot", WAIT, || async {
        let list = relay.admin.get_ok("/admin/deliveries?status=dead").await;
        let id = list["deliveries"].as_array()?.first()?["id"].as_i64()?;
        let detail = relay.admin.get_ok(&format!("/admin/deliveries/{id}")).await;
        let told = detail["delivery"]["chatwoot"].as_array()?.clone();
        (told.len() == 1 && told[0]["status"] == "pending" && told[0]["lastError"].is_string())
            .then_some(told)
    })
    .await;
    assert_eq!(
        pending[0]["kind"], "note_dead",
        "a website inbox's message cannot be marked failed"
    );
    // Relaying goes on meanwhile.
    replies_fail(&gowa, 200);
    let other = relay
        .post_signed_webhook(
            crate::support::message(7, 5, 1),
            &chatwoot.hooks()[0].secret,
        )
        .await;
    assert_eq!(other["queued"], true);
    gowa.wait_for("another reply delivered", WAIT, |r| {
        r.iter().any(|r| r.json()["id"] == 1)
    })
    .await;
    chatwoot.with(|w| w.mode = Mode::Normal);
    // The retry is 30 s away; a new outcome wakes the feedback task too, but it waits for the due time.
    let note = eventually(
        "the note once Chatwoot is back",
        Duration::from_secs(45),
        || async {
            let notes = chatwoot.with(|w| w.notes_under(message));
            (notes.len() == 1).then_some(notes)
        },
    )
    .await;
    assert!(
        note[0].content.contains("Chatgowa's message log"),
        "{:?}",
        note[0]
    );
    assert_eq!(
        chatwoot.with(|w| w.message(message)).status,
        "sent",
        "not marked: not an API inbox"
    );
    relay.stop().await;
}

#[tokio::test]
async fn delayed_replies_get_one_note_per_conversation_and_one_when_they_go_out() {
    // Fifty lanes retrying every 50 ms load the machine: not beside the desktop app's tests.
    let _heavy = crate::support::heavy().await;
    let chatwoot = ChatwootApi::start().await;
    let gowa = Gowa::start().await;
    // GoWA is down (503, retried) for the replies.
    replies_fail(&gowa, 503);
    let relay = linked_relay(&chatwoot, &gowa, Duration::from_millis(500)).await;
    let conversations: Vec<i64> = (100..150).collect();
    let mut messages = Vec::new();
    for &c in &conversations {
        chatwoot.with(|w| w.add_conversation(1, c, 7));
        messages.push(chatwoot.with(|w| w.agent_replies(1, c, "Balasan")));
    }
    let delayed = |w: &mut crate::chatwoot_api::World| {
        w.messages
            .iter()
            .filter(|m| m.private && m.content.contains("delayed"))
            .count()
    };
    eventually("one delay note per conversation", WAIT, || async {
        (chatwoot.with(delayed) == conversations.len()).then_some(())
    })
    .await;
    // Many more failed attempts later, still one note each.
    let attempts_then = gowa.arrivals();
    eventually("more retries", WAIT, || async {
        (gowa.arrivals() > attempts_then + 100).then_some(())
    })
    .await;
    assert_eq!(chatwoot.with(delayed), conversations.len());

    replies_fail(&gowa, 200);
    let delivered = |w: &mut crate::chatwoot_api::World| {
        w.messages
            .iter()
            .filter(|m| m.private && m.content.contains("have now been delivered"))
            .count()
    };
    eventually(
        "one note per conversation when the replies went out",
        WAIT,
        || async { (chatwoot.with(delivered) == conversations.len()).then_some(()) },
    )
    .await;
    let received = gowa.received();
    for m in messages {
        let delivered = received
            .iter()
            .filter(|r| r.status == 200 && r.json()["id"] == m && r.json()["private"] == false)
            .count();
        assert_eq!(delivered, 1, "reply {m} delivered once");
    }
    relay.stop().await;
}

#[tokio::test]
async fn an_outage_ends_when_its_last_waiting_message_goes_out_at_its_first_attempt() {
    let chatwoot = ChatwootApi::start().await;
    let gowa = Gowa::start().await;
    replies_fail(&gowa, 503);
    let relay = linked_relay(&chatwoot, &gowa, Duration::from_millis(300)).await;
    chatwoot.with(|w| w.add_conversation(1, 100, 7));
    let reply = chatwoot.with(|w| w.agent_replies(1, 100, "Balasan"));
    let notes = |needle: &'static str| {
        move |w: &mut crate::chatwoot_api::World| {
            w.messages
                .iter()
                .filter(|m| m.private && m.content.contains(needle))
                .count()
        }
    };
    // The delay note is told; Chatwoot's webhook of that note waits in the conversation's lane, behind the
    // failing reply, without an attempt of its own.
    eventually("the delay note and its webhook", WAIT, || async {
        let pending = relay.admin.get_ok("/admin/stats").await["totals"]["pending"].clone();
        (chatwoot.with(notes("delayed")) == 1 && pending == 2).then_some(())
    })
    .await;
    // GoWA answers again, the note's webhook slowly: the look that the reply's delivery (a retry) brings about
    // still sees the note's webhook waiting, which then goes out at its first attempt and ends the outage.
    gowa.set(|r, _| {
        let note = r.json()["private"] == true;
        Reply {
            delay: Duration::from_millis(if note { 1_000 } else { 0 }),
            ..Reply::status(200)
        }
    });
    eventually("the note that the replies went out", WAIT, || async {
        (chatwoot.with(notes("have now been delivered")) == 1).then_some(())
    })
    .await;
    let sent = gowa
        .received()
        .into_iter()
        .filter(|r| r.status == 200 && r.json()["id"] == reply)
        .count();
    assert_eq!(sent, 1, "the reply sent once");
    relay.stop().await;
}
