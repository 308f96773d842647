//! Closing the loop with a linked Chatwoot, against the Chatwoot API stand-in and the GoWA stand-in: a reply given
//! up on is marked failed with one note under it (API inbox) or gets the note only (other inboxes); Chatwoot's
//! Retry sends the stored original again and the mark goes back to sent; replies delayed in many conversations get
//! one note per conversation per outage, and one when they go out; a Chatwoot that is down delays what it is
//! told, and relaying goes on.

use std::time::Duration;

use crate::chatwoot_api::{ChatwootApi, Message, Mode, World, link_account, link_account_number};
use crate::support::{ADMIN_PASS, ADMIN_USER, Admin, Gowa, Reply, Server, TestRelay, eventually};

const WAIT: Duration = Duration::from_secs(60);

/// A relay linked to account 1 of `chatwoot`, its webhook registered, inboxes 7 (API) and 8 (website) routed to
/// `gowa`.
async fn linked_relay(chatwoot: &ChatwootApi, gowa: &Gowa, delayed_after: Duration) -> TestRelay {
    linked_relay_aged(chatwoot, gowa, delayed_after, Duration::from_secs(60)).await
}

/// [`linked_relay`] whose deliveries are given up `max_age` after they arrived.
async fn linked_relay_aged(
    chatwoot: &ChatwootApi,
    gowa: &Gowa,
    delayed_after: Duration,
    max_age: Duration,
) -> TestRelay {
    let relay = TestRelay::start(|c| {
        c.retry_schedule = vec![Duration::from_millis(50)];
        c.max_age = max_age;
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

/// A linked relay (delay notes after 10 minutes) and a GoWA that answers `status` to the agents' replies.
async fn replies_refused(status: u16) -> (ChatwootApi, Gowa, TestRelay) {
    let chatwoot = ChatwootApi::start().await;
    let gowa = Gowa::start().await;
    replies_fail(&gowa, status);
    let relay = linked_relay(&chatwoot, &gowa, Duration::from_secs(600)).await;
    (chatwoot, gowa, relay)
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
    // GoWA is down: the reply waits, retried.
    let (chatwoot, gowa, relay) = replies_refused(503).await;
    deleted_while_waiting(&chatwoot, &gowa, &relay).await;
    relay.stop().await;
}

#[tokio::test]
async fn without_a_linked_account_a_reply_deleted_while_it_waited_is_not_sent_either() {
    let chatwoot = ChatwootApi::start().await;
    let gowa = Gowa::start().await;
    replies_fail(&gowa, 503);
    let relay = TestRelay::start(|c| {
        c.retry_schedule = vec![Duration::from_millis(50)];
    })
    .await;
    relay
        .add_route(7, &gowa.url("/chatwoot/webhook"), None)
        .await;
    // Chatwoot's webhook made by hand; the relay knows no account.
    chatwoot.add_hook(
        1,
        &format!("{}/webhook", relay.base),
        &["message_created", "message_updated"],
    );
    deleted_while_waiting(&chatwoot, &gowa, &relay).await;
    relay.stop().await;
}

/// A reply waits behind GoWA's outage while the relay is busy telling a slow Chatwoot of another reply's failure;
/// its agent deletes it, and GoWA is back a moment later: the deletion stopped the reply as it was stored (the
/// relay answered its webhook), not once Chatwoot had answered the calls ahead of it.
#[tokio::test]
async fn a_reply_deleted_while_chatwoot_is_slow_is_not_sent_when_gowa_comes_back() {
    let chatwoot = ChatwootApi::start().await;
    let gowa = Gowa::start().await;
    // Conversation 41's replies wait (GoWA answers 503), conversation 42's are refused for good.
    let outage = |r: &crate::support::Received, _: &[crate::support::Received]| {
        let v = r.json();
        let reply = v["event"] == "message_created" && v["private"] == false;
        let refused = v["conversation"]["id"] == 42;
        Reply::status(match (reply, refused) {
            (false, _) => 200,
            (true, true) => 401,
            (true, false) => 503,
        })
    };
    gowa.set(outage);
    let relay = linked_relay(&chatwoot, &gowa, Duration::from_secs(600)).await;
    let message = chatwoot.with(|w| w.agent_replies(1, 41, "Maaf, salah kirim"));
    gowa.wait_for("the reply tried", WAIT, |_| {
        !replies_to(&gowa, message).is_empty()
    })
    .await;
    chatwoot.with(|w| {
        w.add_conversation(1, 42, 7);
        w.answer_after = Duration::from_secs(8);
    });
    let calls_before = chatwoot.with(|w| w.calls.len());
    let refused = chatwoot.with(|w| w.agent_replies(1, 42, "Nomor resi salah"));
    gowa.wait_for("the other reply refused", WAIT, |_| {
        !replies_to(&gowa, refused).is_empty()
    })
    .await;
    eventually("the relay telling Chatwoot of it", WAIT, || async {
        chatwoot
            .with(|w| {
                w.calls[calls_before..]
                    .iter()
                    .any(|c| c.contains("/conversations/42/"))
            })
            .then_some(())
    })
    .await;
    chatwoot.with(|w| w.delete_message(message));
    deletion_stored(&relay, message).await;
    let tried = replies_to(&gowa, message).len();
    replies_fail(&gowa, 200);
    let next = chatwoot.with(|w| w.agent_replies(1, 41, "Balasan yang benar"));
    gowa.wait_for("the next reply", WAIT, |_| {
        replies_to(&gowa, next).len() == 1
    })
    .await;
    assert_eq!(
        replies_to(&gowa, message).len(),
        tried,
        "the deleted reply went out after its deletion was taken"
    );
    chatwoot.with(|w| w.answer_after = Duration::ZERO);
    cancelled(&relay, message).await;
    relay.stop().await;
}

/// Chatwoot's Sidekiq posts a reply's deletion before the reply itself (both queued within the same moment, or
/// the reply's webhook retried by a proxy): the reply that comes after its deletion is stored dead, never sent,
/// and nothing is told of it.
#[tokio::test]
async fn a_deletion_that_overtakes_its_replys_webhook_keeps_the_reply_from_going_out() {
    let chatwoot = ChatwootApi::start().await;
    let gowa = Gowa::start().await;
    let relay = linked_relay(&chatwoot, &gowa, Duration::from_secs(600)).await;
    let (message, written) = chatwoot.with(|w| {
        let id = w.unposted(|w| w.agent_replies(1, 41, "Maaf, salah kirim"));
        (id, w.message(id))
    });
    chatwoot.with(|w| w.delete_message(message));
    deletion_stored(&relay, message).await;
    // The reply's own webhook, late.
    chatwoot.with(|w| w.fire_again("message_created", &written));
    cancelled(&relay, message).await;
    // The conversation goes on; the deleted reply never reaches GoWA, and nothing is told of it.
    let next = chatwoot.with(|w| w.agent_replies(1, 41, "Balasan yang benar"));
    gowa.wait_for("the next reply", WAIT, |_| {
        replies_to(&gowa, next).len() == 1
    })
    .await;
    assert!(replies_to(&gowa, message).is_empty());
    assert!(chatwoot.with(|w| w.notes_under(message)).is_empty());
    relay.stop().await;
}

/// Chatwoot posts a reply's webhook after a later reply of the conversation had already gone (its queue does not
/// keep order, and the reorder window was over): it goes out in arrival order, and its agent is told, once, that
/// the customer reads it below the later one.
#[tokio::test]
async fn a_reply_posted_after_a_later_one_had_gone_is_noted_under_it() {
    let chatwoot = ChatwootApi::start().await;
    let gowa = Gowa::start().await;
    let relay = linked_relay(&chatwoot, &gowa, Duration::from_secs(600)).await;
    let (early, written, later) = later_reply_gone_first(&chatwoot, &gowa).await;
    chatwoot.with(|w| w.fire_again("message_created", &written));
    noted_late_once(&chatwoot, &gowa, early).await;
    // Nothing under the later reply.
    assert!(chatwoot.with(|w| w.notes_under(later)).is_empty());
    relay.stop().await;
}

/// An agent writes two replies; Chatwoot posts the webhook of the second only, and it goes out. The first's id,
/// its message as Chatwoot shows it (to post its webhook late), and the second's id. Chatwoot's API refuses calls
/// from here on (until [`noted_late_once`]), so that no round of catching up finds the first reply before its
/// webhook comes (that would be a reply found by catching up, told in other words).
async fn later_reply_gone_first(chatwoot: &ChatwootApi, gowa: &Gowa) -> (i64, Message, i64) {
    let (early, written) = chatwoot.with(|w| {
        w.mode = Mode::Refusing(503);
        let id = w.unposted(|w| w.agent_replies(1, 41, "Pesanan sudah kami terima"));
        (id, w.message(id))
    });
    let later = chatwoot.with(|w| w.agent_replies(1, 41, "Akan dikirim besok"));
    gowa.wait_for("the later reply", WAIT, |_| {
        replies_to(gowa, later).len() == 1
    })
    .await;
    (early, written, later)
}

/// A relay on the database in `dir`, which the relays a test starts one after another share (delay notes after
/// 10 minutes).
async fn relay_on(dir: &std::path::Path) -> TestRelay {
    TestRelay::start(|c| {
        c.database = crate::support::shared_database(dir);
        c.retry_schedule = vec![Duration::from_millis(50)];
        c.upkeep.delayed_after = Duration::from_secs(600);
    })
    .await
}

/// [`later_reply_gone_first`] through a linked relay on the database in `dir`: the relay, the early reply's id and
/// its message.
async fn later_reply_gone_through_a_relay(
    dir: &std::path::Path,
    chatwoot: &ChatwootApi,
    gowa: &Gowa,
) -> (TestRelay, i64, Message) {
    let relay = relay_on(dir).await;
    link_account(&relay, chatwoot).await;
    relay
        .add_route(7, &gowa.url("/chatwoot/webhook"), None)
        .await;
    let (early, written, _) = later_reply_gone_first(chatwoot, gowa).await;
    (relay, early, written)
}

/// The reply `early`, posted late, goes out and its agent is told once (Chatwoot's API answering again) that the
/// customer reads it below the later one.
async fn noted_late_once(chatwoot: &ChatwootApi, gowa: &Gowa, early: i64) {
    gowa.wait_for("the early reply, late", WAIT, |_| {
        replies_to(gowa, early).len() == 1
    })
    .await;
    chatwoot.with(|w| w.mode = Mode::Normal);
    let note = eventually("the note under it", WAIT, || async {
        chatwoot.with(|w| w.notes_under(early)).into_iter().next()
    })
    .await;
    assert!(
        note.content.contains("after later replies")
            && note.content.contains("posted its webhook after"),
        "{}",
        note.content
    );
    // Once.
    let next = chatwoot.with(|w| w.agent_replies(1, 41, "Terima kasih"));
    gowa.wait_for("the next reply", WAIT, |_| {
        replies_to(gowa, next).len() == 1
    })
    .await;
    assert_eq!(chatwoot.with(|w| w.notes_under(early)).len(), 1);
}

/// Chatwoot posts a reply's webhook late, after a later reply had gone out through a relay that is gone since
/// (restarted; on PostgreSQL, another relay of the group): the relay that sends it learns from the store, not
/// from its own memory, that the later reply went first, and its agent is told so once.
#[tokio::test]
async fn a_reply_posted_late_is_noted_though_the_later_one_went_out_through_another_relay() {
    posted_late_after_another_relay(false).await;
}

/// The same, the relay that sent the later reply with its clock three minutes ahead (its attempt stored so): the
/// order of the two attempts is the store's, not the relays' clocks'.
#[tokio::test]
async fn a_reply_posted_late_is_noted_though_the_later_one_went_out_through_a_relay_whose_clock_was_ahead()
 {
    posted_late_after_another_relay(true).await;
}

async fn posted_late_after_another_relay(clock_ahead: bool) {
    let chatwoot = ChatwootApi::start().await;
    let gowa = Gowa::start().await;
    let shared = tempfile::tempdir().unwrap();
    let (first, early, written) =
        later_reply_gone_through_a_relay(shared.path(), &chatwoot, &gowa).await;
    if clock_ahead {
        crate::support::execute(
            &first.state.db,
            "UPDATE delivery_attempts SET started_at = started_at + 180000",
        )
        .await;
    }
    first.stop().await;
    let second = relay_on(shared.path()).await;
    chatwoot.with(|w| {
        for hook in &mut w.hooks {
            hook.url = format!("{}/webhook", second.base);
        }
        w.fire_again("message_created", &written);
    });
    noted_late_once(&chatwoot, &gowa, early).await;
    second.stop().await;
}

/// Chatwoot posts a reply's webhook late and it goes out while the relay's feedback waits on a slow Chatwoot (a
/// failure being marked); the relay is gone before its feedback could mark the late reply. The relay started after
/// it learns from the store that the reply came late, and its agent is told so once.
#[tokio::test]
async fn a_reply_posted_late_is_noted_though_its_relay_was_gone_before_it_could_say_so() {
    let chatwoot = ChatwootApi::start().await;
    let gowa = Gowa::start().await;
    let shared = tempfile::tempdir().unwrap();
    let (first, early, written) =
        later_reply_gone_through_a_relay(shared.path(), &chatwoot, &gowa).await;
    // Another conversation's reply is refused for good, and marking it failed takes Chatwoot 5 s: the first relay's
    // feedback is held in that call while the late reply comes and goes.
    gowa.set(|r, _| {
        Reply::status(if r.json()["conversation"]["id"] == 43 {
            401
        } else {
            200
        })
    });
    let calls = chatwoot.with(|w| {
        w.add_conversation(1, 43, 7);
        w.answer_after = Duration::from_secs(5);
        w.agent_replies(1, 43, "Stok habis");
        w.calls.len()
    });
    eventually("the feedback in a call to Chatwoot", WAIT, || async {
        (chatwoot.with(|w| w.calls.len()) > calls).then_some(())
    })
    .await;
    chatwoot.with(|w| w.fire_again("message_created", &written));
    gowa.wait_for("the early reply, late", WAIT, |_| {
        replies_to(&gowa, early).len() == 1
    })
    .await;
    first.stop().await;
    let second = relay_on(shared.path()).await;
    chatwoot.with(|w| {
        w.answer_after = Duration::ZERO;
        for hook in &mut w.hooks {
            hook.url = format!("{}/webhook", second.base);
        }
    });
    noted_late_once(&chatwoot, &gowa, early).await;
    second.stop().await;
}

/// A reply went out; its agent deletes it, but GoWA refuses the deletion (its credentials changed): the customer
/// still has it, and the agent is told so under it.
#[tokio::test]
async fn a_deletion_gowa_refused_of_a_reply_that_went_out_is_told() {
    let chatwoot = ChatwootApi::start().await;
    let gowa = Gowa::start().await;
    let relay = linked_relay(&chatwoot, &gowa, Duration::from_secs(600)).await;
    let message = chatwoot.with(|w| w.agent_replies(1, 41, "Harga salah"));
    gowa.wait_for("the reply", WAIT, |_| replies_to(&gowa, message).len() == 1)
        .await;
    let note = deleted_with_gowa_refusing(&chatwoot, &gowa, message).await;
    assert!(
        note.contains("NOT taken back on WhatsApp") && note.contains("GoWA answered 401"),
        "{note}"
    );
    // Not marked failed: it did go out.
    assert_ne!(chatwoot.with(|w| w.message(message)).status, "failed");
    relay.stop().await;
}

/// On PostgreSQL an id that never went in (a twin's, a write rolled back) is a gap the feedback waits for a while,
/// since another relay may still commit it. Meanwhile the reading goes on past everything stored after the gap: a
/// reply deleted behind more webhooks than one reading takes is cancelled at once, not after the gap's wait.
#[tokio::test]
async fn a_gap_in_the_ids_does_not_hold_up_reading_what_was_stored_after_it() {
    if !crate::support::on_postgres() {
        return;
    }
    let (chatwoot, gowa, relay) = replies_refused(503).await;
    let db = &relay.state.db;
    crate::support::execute(
        db,
        "SELECT nextval(pg_get_serial_sequence('deliveries', 'id'))",
    )
    .await;
    crate::support::execute(
        db,
        "INSERT INTO deliveries (id, inbox_id, event, status, next_attempt_at, received_at, updated_at)
         SELECT nextval(pg_get_serial_sequence('deliveries', 'id')), 999, 'conversation_typing_on', 'delivered',
                chatgowa_clock_ms(), chatgowa_clock_ms(), chatgowa_clock_ms()
         FROM generate_series(1, 12000)",
    )
    .await;
    // Well within the 30 s a gap is waited for.
    let within = Duration::from_secs(15);
    tokio::time::timeout(within, deleted_while_waiting(&chatwoot, &gowa, &relay))
        .await
        .expect("the deletion was read only once the gap had been waited for");
    relay.stop().await;
}

/// Waits for the deletion of message `message` to be stored.
async fn deletion_stored(relay: &TestRelay, message: i64) {
    eventually("the deletion stored", WAIT, || async {
        let list = relay
            .admin
            .get_ok("/admin/deliveries?event=message_updated")
            .await;
        list["deliveries"]
            .as_array()?
            .iter()
            .any(|d| d["messageId"] == message)
            .then_some(())
    })
    .await;
}

/// Waits for reply `message` to be dead as deleted in Chatwoot before it was sent.
pub async fn cancelled(relay: &TestRelay, message: i64) {
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
}

/// A reply waits behind GoWA's outage and is deleted by its agent meanwhile: it is cancelled (dead, saying why),
/// never sent once GoWA is back, and nothing is told about it in Chatwoot.
async fn deleted_while_waiting(chatwoot: &ChatwootApi, gowa: &Gowa, relay: &TestRelay) {
    let message = chatwoot.with(|w| w.agent_replies(1, 41, "Maaf, salah kirim"));
    gowa.wait_for("the reply tried", WAIT, |_| {
        !replies_to(gowa, message).is_empty()
    })
    .await;
    // The agent deletes it meanwhile.
    chatwoot.with(|w| w.delete_message(message));
    cancelled(relay, message).await;
    let tried = replies_to(gowa, message).len();
    // GoWA is back: the next reply of the conversation goes out, the deleted one does not.
    replies_fail(gowa, 200);
    let next = chatwoot.with(|w| w.agent_replies(1, 41, "Balasan yang benar"));
    gowa.wait_for("the next reply", WAIT, |_| {
        replies_to(gowa, next).len() == 1
    })
    .await;
    assert_eq!(replies_to(gowa, message).len(), tried);
    assert!(
        chatwoot.with(|w| w.notes_under(message)).is_empty(),
        "nothing told about a message the agent deleted"
    );
    assert_ne!(chatwoot.with(|w| w.message(message)).status, "failed");
}

#[tokio::test]
async fn chatwoots_retry_pressed_a_second_time_sends_the_reply_again() {
    let (chatwoot, gowa, relay) = replies_refused(401).await;
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
    let pressed = chatwoot.with(|w| w.message(message));
    marked_failed(2).await;
    eventually("the new mark's own webhook stored", WAIT, || async {
        (updates_of(&relay, message).await.len() >= 3).then_some(())
    })
    .await;
    // A twin of that press's webhook, late (after the relay's new mark's own webhook): Chatwoot shows the reply
    // failed, so it is the press already acted on, not a second one.
    chatwoot.with(|w| w.fire_again("message_updated", &pressed));
    late_update_read(&relay, message, 4).await;
    assert_eq!(
        presses(&relay, message).await,
        1,
        "the late twin was taken for a press"
    );
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
    assert_eq!(replies_to(&gowa, message).len(), 3, "the twin sent nothing");
    relay.stop().await;
}

/// The ids of reply `message`'s stored `message_updated` webhooks.
async fn updates_of(relay: &TestRelay, message: i64) -> Vec<i64> {
    let list = relay
        .admin
        .get_ok("/admin/deliveries?event=message_updated&limit=100")
        .await;
    list["deliveries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["messageId"] == message)
        .filter_map(|d| d["id"].as_i64())
        .collect()
}

/// Waits until reply `message` has `count` stored `message_updated` webhooks, the last of which the feedback read.
async fn late_update_read(relay: &TestRelay, message: i64, count: usize) {
    let late = eventually("the late webhook stored", WAIT, || async {
        let ids = updates_of(relay, message).await;
        (ids.len() >= count).then(|| ids.into_iter().max())?
    })
    .await;
    eventually("the late webhook read by the feedback", WAIT, || async {
        let read = crate::support::scalar(
            &relay.state.db,
            "SELECT coalesce(max(CAST(value AS BIGINT)), 0) FROM settings WHERE key = 'feedback_updates_seen'",
        )
        .await;
        (read >= late).then_some(())
    })
    .await;
}

/// How many presses of Retry on reply `message` the relay acted on.
async fn presses(relay: &TestRelay, message: i64) -> i64 {
    let sql = format!(
        "SELECT count(*) FROM chatwoot_feedback WHERE kind = 'resent' AND message_id = {message}"
    );
    crate::support::scalar(&relay.state.db, &sql).await
}

/// A `message_updated` saying `sent` comes after the relay marked the reply failed (an edit made before the mark,
/// posted late) while Chatwoot's API cannot be asked what it shows: no Retry is taken from it. A press made later
/// is acted on all the same (its webhook, alike, is not taken for a twin).
#[tokio::test]
async fn a_late_webhook_saying_sent_is_no_retry_while_chatwoot_cannot_be_asked() {
    let (chatwoot, gowa, relay) = replies_refused(401).await;
    let (message, before) = chatwoot.with(|w| {
        let id = w.agent_replies(1, 41, "Stok kosong");
        (id, w.message(id))
    });
    eventually("the mark's own webhook stored", WAIT, || async {
        let failed = chatwoot.with(|w| w.message(message)).status == "failed";
        (failed && !updates_of(&relay, message).await.is_empty()).then_some(())
    })
    .await;
    chatwoot.with(|w| {
        w.mode = Mode::Refusing(503);
        w.fire_again("message_updated", &before);
    });
    late_update_read(&relay, message, 2).await;
    assert_eq!(presses(&relay, message).await, 0, "taken for a press");
    assert_eq!(replies_to(&gowa, message).len(), 1);
    // Chatwoot answers again, GoWA works again, and the agent presses Retry: sent.
    chatwoot.with(|w| w.mode = Mode::Normal);
    replies_fail(&gowa, 200);
    chatwoot.with(|w| w.press_retry(message));
    gowa.wait_for("the reply sent again", WAIT, |_| {
        replies_to(&gowa, message).len() == 2
    })
    .await;
    relay.stop().await;
}

#[tokio::test]
async fn a_reply_given_up_on_is_marked_failed_and_chatwoots_retry_sends_it_again() {
    let (chatwoot, gowa, relay) = replies_refused(401).await;
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
async fn two_replies_whose_notes_say_the_same_words_each_get_theirs_after_chatwoot_was_down() {
    let (chatwoot, _gowa, relay) = replies_refused(401).await;
    // Chatwoot's API is down while both replies are given up on (for the same reason: the same words).
    chatwoot.with(|w| w.mode = Mode::Refusing(503));
    let first = chatwoot.with(|w| w.agent_replies(1, 41, "Pesanan sudah dikirim"));
    let second = chatwoot.with(|w| w.agent_replies(1, 41, "Resi menyusul"));
    eventually("both notes tried once", WAIT, || async {
        let tried = crate::support::scalar(
            &relay.state.db,
            "SELECT count(*) FROM chatwoot_feedback WHERE kind = 'note_dead' AND attempts = 1",
        )
        .await;
        (tried == 2).then_some(())
    })
    .await;
    chatwoot.with(|w| w.mode = Mode::Normal);
    // Tried again 30 s later: the one written first must not pass for the other's.
    eventually(
        "a note under each reply",
        Duration::from_secs(50),
        || async {
            let under = |id| chatwoot.with(|w| w.notes_under(id)).len();
            (under(first) == 1 && under(second) == 1).then_some(())
        },
    )
    .await;
    relay.stop().await;
}

#[tokio::test]
async fn a_chatwoot_that_throttles_the_relay_gets_the_note_later() {
    let (chatwoot, _gowa, relay) = replies_refused(401).await;
    // Chatwoot's API throttles (Rack::Attack answers 429 in plain text); its webhooks still go out.
    chatwoot.with(|w| w.mode = Mode::Refusing(429));
    chatwoot.with(|w| w.agent_replies(1, 41, "Sudah kami proses"));
    let told = eventually("the mark tried once", WAIT, || async {
        let list = relay.admin.get_ok("/admin/deliveries?status=dead").await;
        let id = list["deliveries"].as_array()?.first()?["id"].as_i64()?;
        let detail = relay.admin.get_ok(&format!("/admin/deliveries/{id}")).await;
        let told = detail["delivery"]["chatwoot"].as_array()?.clone();
        (!told.is_empty() && told.iter().all(|t| t["lastError"].is_string())).then_some(told)
    })
    .await;
    for t in &told {
        assert_eq!(t["status"], "pending", "tried again later: {t}");
        assert!(t["lastError"].as_str().unwrap().contains("429"), "{t}");
    }
    relay.stop().await;
}

#[tokio::test]
async fn a_reply_in_another_kind_of_inbox_gets_the_note_and_a_chatwoot_that_is_down_gets_it_later()
{
    let (chatwoot, gowa, relay) = replies_refused(401).await;
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

/// GoWA refuses the agents' replies for now (503, retried) and a reply waits in conversation 100 of account 1, on
/// a relay that notes a delay after 300 ms.
async fn a_reply_waits() -> (ChatwootApi, Gowa, TestRelay, i64) {
    let chatwoot = ChatwootApi::start().await;
    let gowa = Gowa::start().await;
    replies_fail(&gowa, 503);
    let relay = linked_relay(&chatwoot, &gowa, Duration::from_millis(300)).await;
    chatwoot.with(|w| w.add_conversation(1, 100, 7));
    let reply = chatwoot.with(|w| w.agent_replies(1, 100, "Balasan"));
    (chatwoot, gowa, relay, reply)
}

#[tokio::test]
async fn an_outage_ends_when_its_last_waiting_message_goes_out_at_its_first_attempt() {
    let (chatwoot, gowa, relay, reply) = a_reply_waits().await;
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

/// How many times GoWA took message `id` (answered 200).
fn delivered(gowa: &Gowa, id: i64) -> usize {
    gowa.received()
        .iter()
        .filter(|r| {
            r.status == 200 && r.json()["event"] == "message_created" && r.json()["id"] == id
        })
        .count()
}

/// The private notes of a conversation of `account` that contain `needle`.
fn notes_in(w: &World, account: i64, conversation: i64, needle: &str) -> Vec<String> {
    w.messages
        .iter()
        .filter(|m| m.private && m.account == account && m.conversation == conversation)
        .filter(|m| m.content.contains(needle))
        .map(|m| m.content.clone())
        .collect()
}

/// Waits until a conversation of `account` has a note containing `needle`, and returns it.
async fn note_comes(
    chatwoot: &ChatwootApi,
    account: i64,
    conversation: i64,
    needle: &str,
) -> String {
    let what =
        format!("a note with {needle:?} in conversation {conversation} of account {account}");
    eventually(&what, WAIT, || async {
        chatwoot.with(|w| notes_in(w, account, conversation, needle).pop())
    })
    .await
}

#[tokio::test]
async fn replies_held_up_by_a_failing_note_or_a_switched_off_route_get_their_delayed_note() {
    let chatwoot = ChatwootApi::start().await;
    let gowa = Gowa::start().await;
    // GoWA refuses private notes for now (503, retried), and takes everything else.
    gowa.set(|r, _| {
        Reply::status(if r.json()["private"] == true {
            503
        } else {
            200
        })
    });
    let relay = linked_relay(&chatwoot, &gowa, Duration::from_millis(300)).await;
    let website = chatgowa_lib::store::routes::list(&relay.state.db)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.inbox_id.0 == 8)
        .unwrap();
    let (status, _) = relay
        .admin
        .put_json(
            &format!("/admin/routes/{}", website.id),
            serde_json::json!({"enabled": false}),
        )
        .await;
    assert_eq!(status, 200);
    chatwoot.with(|w| {
        w.add_conversation(1, 100, 7);
        w.add_conversation(1, 200, 8);
    });
    // Conversation 100: an agent's private note heads the lane and keeps failing; the reply behind it has no
    // attempt of its own. Conversation 200: its route is switched off, so nothing is tried at all.
    let reply = chatwoot.with(|w| {
        w.add_message(Message {
            private: true,
            ..Message::reply(100, "Catatan: pelanggan minta dikirim besok")
        });
        w.agent_replies(1, 100, "Pesanan Ibu dikirim besok pagi")
    });
    let held = chatwoot.with(|w| w.agent_replies(1, 200, "Terima kasih, kami cek dulu"));
    let note = note_comes(&chatwoot, 1, 100, "are delayed").await;
    assert!(note.contains("GoWA answered 503"), "{note}");
    let note = note_comes(&chatwoot, 1, 200, "are delayed").await;
    assert!(note.contains("switched off"), "{note}");
    assert!(replies_to(&gowa, reply).is_empty() && replies_to(&gowa, held).is_empty());

    // GoWA takes the notes again: the reply goes out once, and its conversation is told.
    gowa.set(|_, _| Reply::status(200));
    note_comes(&chatwoot, 1, 100, "have now been delivered").await;
    assert_eq!(delivered(&gowa, reply), 1);
    relay.stop().await;
}

#[tokio::test]
async fn a_pause_is_told_and_a_reply_held_past_the_maximum_age_is_not_sent_but_marked_failed() {
    let chatwoot = ChatwootApi::start().await;
    let gowa = Gowa::start().await;
    let max_age = Duration::from_secs(3);
    let relay = linked_relay_aged(&chatwoot, &gowa, Duration::from_millis(300), max_age).await;
    chatgowa_lib::admin::settings::set_paused(&relay.state, true);
    chatwoot.with(|w| w.add_conversation(1, 100, 7));
    let written = std::time::Instant::now();
    let reply = chatwoot.with(|w| w.agent_replies(1, 100, "Harga sudah termasuk ongkir"));
    let note = note_comes(&chatwoot, 1, 100, "are delayed").await;
    assert!(note.contains("paused"), "{note}");
    // Resumed only once the reply is older than the maximum age: it is not sent days late, and the agent knows.
    eventually("the reply to outlive its maximum age", WAIT, || async {
        (written.elapsed() > max_age + Duration::from_millis(200)).then_some(())
    })
    .await;
    chatgowa_lib::admin::settings::set_paused(&relay.state, false);
    eventually(
        "the reply marked failed, with a note that says why",
        WAIT,
        || async {
            let failed = chatwoot.with(|w| w.message(reply)).status == "failed";
            let notes = chatwoot.with(|w| w.notes_under(reply));
            (failed
                && notes.iter().any(|n| {
                    n.content.contains("NOT delivered") && n.content.contains("maximum age")
                }))
            .then_some(())
        },
    )
    .await;
    assert!(replies_to(&gowa, reply).is_empty(), "never sent");
    nothing_left_to_tell(&relay).await;
    assert!(
        chatwoot
            .with(|w| notes_in(w, 1, 100, "have now been delivered"))
            .is_empty()
    );
    relay.stop().await;
}

#[tokio::test]
async fn conversations_with_the_same_number_in_two_accounts_are_told_apart() {
    let chatwoot = ChatwootApi::start().await;
    let gowa = Gowa::start().await;
    replies_fail(&gowa, 503);
    let relay = linked_relay(&chatwoot, &gowa, Duration::from_millis(300)).await;
    link_account_number(&relay, &chatwoot, 2).await;
    relay
        .add_route(9, &gowa.url("/chatwoot/webhook"), None)
        .await;
    // Conversation numbers are per account: both accounts have a conversation 100.
    chatwoot.with(|w| {
        w.add_conversation(1, 100, 7);
        w.add_conversation(2, 100, 9);
    });
    let toko = chatwoot.with(|w| w.agent_replies(1, 100, "Pesanan sudah dikirim"));
    note_comes(&chatwoot, 1, 100, "are delayed").await;
    // The other account's conversation 100 is delayed too, while the first one's outage is open.
    let klinik = chatwoot.with(|w| w.agent_replies(2, 100, "Jadwal dokter besok jam 9"));
    note_comes(&chatwoot, 2, 100, "are delayed").await;
    replies_fail(&gowa, 200);
    note_comes(&chatwoot, 1, 100, "have now been delivered").await;
    note_comes(&chatwoot, 2, 100, "have now been delivered").await;
    assert_eq!(delivered(&gowa, toko), 1);
    assert_eq!(delivered(&gowa, klinik), 1);
    for account in [1, 2] {
        assert_eq!(
            chatwoot
                .with(|w| notes_in(w, account, 100, "are delayed"))
                .len(),
            1
        );
    }
    relay.stop().await;
}

#[tokio::test]
async fn an_outage_whose_reply_was_given_up_is_not_told_delivered() {
    let (chatwoot, gowa, relay, reply) = a_reply_waits().await;
    note_comes(&chatwoot, 1, 100, "are delayed").await;
    // GoWA now refuses the reply for good: it dies; the delay note's own webhook, behind it, then goes out. That
    // delivery is the relay's note, not a reply: the conversation is not told its replies went out.
    replies_fail(&gowa, 401);
    eventually("the reply marked failed", WAIT, || async {
        (chatwoot.with(|w| w.message(reply)).status == "failed").then_some(())
    })
    .await;
    nothing_left_to_tell(&relay).await;
    assert!(
        chatwoot
            .with(|w| notes_in(w, 1, 100, "have now been delivered"))
            .is_empty()
    );
    relay.stop().await;
}

/// Waits until no message waits to go out, no outage is open and nothing is left to tell Chatwoot: whatever the
/// relay would tell has been told.
async fn nothing_left_to_tell(relay: &TestRelay) {
    let db = &relay.state.db;
    eventually("nothing left to tell", WAIT, || async {
        let waiting = crate::support::scalar(
            db,
            "SELECT count(*) FROM deliveries WHERE status = 'pending'",
        )
        .await;
        let open = relay.count("chatwoot_outages").await;
        let untold = crate::support::scalar(
            db,
            "SELECT count(*) FROM chatwoot_feedback WHERE status = 'pending'",
        )
        .await;
        (waiting + open + untold == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn chatwoots_retry_stored_under_a_lower_id_than_one_read_already_is_still_read() {
    // PostgreSQL gives ids out before their rows commit, so another relay's write can become visible under a lower
    // id than one read already; SQLite's one writer commits in id order.
    if !crate::support::on_postgres() {
        return;
    }
    let (chatwoot, gowa, relay) = replies_refused(401).await;
    let (first, second) = chatwoot.with(|w| {
        (
            w.agent_replies(1, 41, "Pesanan Ibu sudah dikirim"),
            w.agent_replies(1, 41, "Nomor resinya menyusul"),
        )
    });
    eventually("both replies marked failed", WAIT, || async {
        let failed = |id| chatwoot.with(|w| w.message(id)).status == "failed";
        (failed(first) && failed(second)).then_some(())
    })
    .await;
    nothing_left_to_tell(&relay).await;
    replies_fail(&gowa, 200);
    // A Retry stored under a high id (another relay's write that committed first) is read and acted on...
    // Chatwoot's webhooks of the marks and notes may still come in meanwhile: the ids after `next + 500` are
    // theirs, and those from `next + 250` are free for the lower one below.
    let db = &relay.state.db;
    let next = crate::support::scalar(db, "SELECT coalesce(max(id), 0) FROM deliveries").await;
    let sequence = "pg_get_serial_sequence('deliveries', 'id')";
    crate::support::execute(db, &format!("SELECT setval({sequence}, {})", next + 500)).await;
    chatwoot.with(|w| w.press_retry(second));
    gowa.wait_for("the second reply sent again", WAIT, |_| {
        delivered(&gowa, second) == 1
    })
    .await;
    // ...and then one stored under a lower id, by a write that committed later.
    crate::support::execute(db, &format!("SELECT setval({sequence}, {})", next + 250)).await;
    chatwoot.with(|w| w.press_retry(first));
    gowa.wait_for("the first reply sent again", WAIT, |_| {
        delivered(&gowa, first) == 1
    })
    .await;
    relay.stop().await;
}

#[tokio::test]
async fn a_note_whose_answer_was_lost_is_not_written_twice() {
    let (chatwoot, _gowa, relay) = replies_refused(401).await;
    // Chatwoot writes the note, but its answer is lost on the way back (a proxy's 504): the relay tries again
    // (30 s later), and finds the note there.
    chatwoot.with(|w| w.lose_note_answers = 1);
    let message = chatwoot.with(|w| w.agent_replies(1, 41, "Stok habis, maaf"));
    eventually("the note told, at its second try", WAIT, || async {
        let told = crate::support::scalar(
            &relay.state.db,
            "SELECT count(*) FROM chatwoot_feedback WHERE kind = 'note_dead' AND status = 'done' \
             AND attempts = 2",
        )
        .await;
        (told == 1).then_some(())
    })
    .await;
    let notes = chatwoot.with(|w| w.notes_under(message));
    assert_eq!(notes.len(), 1, "{notes:?}");
    relay.stop().await;
}

#[tokio::test]
async fn a_note_written_just_before_the_relay_is_killed_is_not_written_again() {
    // A restart of the real binary: not beside the desktop app's tests.
    let _heavy = crate::support::heavy().await;
    let chatwoot = ChatwootApi::start().await;
    let gowa = Gowa::start().await;
    replies_fail(&gowa, 401);
    let dir = tempfile::tempdir().unwrap();
    let port = crate::support::free_port();
    let public = format!("http://127.0.0.1:{port}/webhook");
    let env = [
        ("CHATGOWA_PUBLIC_URL", public.as_str()),
        ("CHATGOWA_CHATWOOT_URL", chatwoot.base.as_str()),
        ("CHATGOWA_CHATWOOT_ACCOUNT_ID", "1"),
        ("CHATGOWA_CHATWOOT_TOKEN", crate::chatwoot_api::ADMIN_TOKEN),
        ("CHATGOWA_CATCHUP_INTERVAL", "1h"),
    ];
    let mut server = Server::spawn_logging(dir.path(), port, &env);
    server.wait_healthy().await;
    let admin = Admin::login(server.base(), ADMIN_USER, ADMIN_PASS);
    eventually("the account linked", WAIT, || async {
        let status = admin.get_ok("/admin/chatwoot").await;
        (status["links"][0]["webhook"]["verified"] == true).then_some(())
    })
    .await;
    server.add_route(7, &gowa.url("/chatwoot/webhook")).await;
    // Chatwoot writes what it is asked at once and answers late: the relay is killed with the note written and
    // its answer on the way.
    chatwoot.with(|w| w.answer_after = Duration::from_secs(8));
    let message = chatwoot.with(|w| w.agent_replies(1, 41, "Pesanan dikirim besok"));
    eventually("the note written", WAIT, || async {
        (chatwoot.with(|w| w.notes_under(message).len()) == 1).then_some(())
    })
    .await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    chatwoot.with(|w| w.answer_after = Duration::ZERO);
    let server = Server::spawn_logging(dir.path(), port, &env);
    server.wait_healthy().await;
    let admin = Admin::login(server.base(), ADMIN_USER, ADMIN_PASS);
    eventually("the note told", WAIT, || async {
        let list = admin.get_ok("/admin/deliveries?status=dead").await;
        let id = list["deliveries"].as_array()?.first()?["id"].as_i64()?;
        let detail = admin.get_ok(&format!("/admin/deliveries/{id}")).await;
        let told = detail["delivery"]["chatwoot"].as_array()?.clone();
        told.iter()
            .any(|t| t["kind"] == "note_dead" && t["status"] == "done")
            .then_some(())
    })
    .await;
    let notes = chatwoot.with(|w| w.notes_under(message));
    assert_eq!(notes.len(), 1, "{notes:?}");
    let log = server.stop_and_read_log();
    assert!(!log.contains(crate::chatwoot_api::ADMIN_TOKEN));
}

/// The agent deletes a reply while its attempt is on its way to GoWA, which sends it (200, a second later) and then
/// refuses the deletion: the reply the deletion stopped went out all the same, and the agent is told it was not
/// taken back.
#[tokio::test]
async fn a_deletion_gowa_refused_of_a_reply_deleted_as_it_went_is_told() {
    let chatwoot = ChatwootApi::start().await;
    let gowa = Gowa::start().await;
    let relay = linked_relay(&chatwoot, &gowa, Duration::from_secs(600)).await;
    gowa.set(|r, _| {
        if r.json()["event"] == "message_created" {
            Reply {
                delay: Duration::from_millis(1_000),
                ..Reply::status(200)
            }
        } else {
            Reply::status(401)
        }
    });
    let message = chatwoot.with(|w| w.agent_replies(1, 41, "Harga salah"));
    eventually("the reply on its way", WAIT, || async {
        (gowa.arrivals() > 0).then_some(())
    })
    .await;
    chatwoot.with(|w| w.delete_message(message));
    let note = eventually("the note under it", WAIT, || async {
        chatwoot.with(|w| w.notes_under(message)).into_iter().next()
    })
    .await;
    assert!(
        note.content.contains("NOT taken back on WhatsApp"),
        "{}",
        note.content
    );
    assert_eq!(replies_to(&gowa, message).len(), 1);
    relay.stop().await;
}

/// GoWA sent a reply but answered after the relay gave up waiting; its agent deletes it before it is tried again,
/// and GoWA refuses the deletion: the customer may have it, and the agent is told so under it.
#[tokio::test]
async fn a_deletion_gowa_refused_of_a_reply_whose_send_was_unclear_is_told() {
    let first = Reply {
        delay: Duration::from_millis(1_500),
        ..Reply::status(200)
    };
    let note = deleted_after_its_first_attempt(first, |attempt| attempt["ambiguous"] == true).await;
    assert!(note.contains("NOT taken back on WhatsApp"), "{note}");
}

/// The same when GoWA's proxy answered the reply 408 (GoWA may have sent it before the proxy gave up on it).
#[tokio::test]
async fn a_deletion_gowa_refused_of_a_reply_answered_408_is_told() {
    let note =
        deleted_after_its_first_attempt(Reply::status(408), |attempt| attempt["statusCode"] == 408)
            .await;
    assert!(note.contains("NOT taken back on WhatsApp"), "{note}");
}

/// A linked relay whose attempts wait 300 ms and are tried again after 30 s; GoWA answers a reply `first`, and once
/// its attempt is logged as `seen` says, the agent deletes it and GoWA refuses the deletion: the note under it.
async fn deleted_after_its_first_attempt(
    first: Reply,
    seen: impl Fn(&serde_json::Value) -> bool,
) -> String {
    let chatwoot = ChatwootApi::start().await;
    let gowa = Gowa::start().await;
    gowa.set(move |_, _| first.clone());
    let relay = TestRelay::start(|c| {
        c.fetch_timeout = Duration::from_millis(300);
        c.retry_schedule = vec![Duration::from_secs(30)];
        c.upkeep.delayed_after = Duration::from_secs(600);
    })
    .await;
    link_account(&relay, &chatwoot).await;
    relay
        .add_route(7, &gowa.url("/chatwoot/webhook"), None)
        .await;
    let message = chatwoot.with(|w| w.agent_replies(1, 41, "Diskon 50%"));
    eventually("the first attempt", WAIT, || async {
        let list = relay.admin.get_ok("/admin/deliveries").await;
        let d = list["deliveries"]
            .as_array()?
            .iter()
            .find(|d| d["messageId"] == message)?
            .clone();
        let detail = relay
            .admin
            .get_ok(&format!("/admin/deliveries/{}", d["id"]))
            .await;
        seen(&detail["delivery"]["attemptLog"][0]).then_some(())
    })
    .await;
    let note = deleted_with_gowa_refusing(&chatwoot, &gowa, message).await;
    relay.stop().await;
    note
}

/// GoWA refuses everything from now on (its credentials changed) and the agent deletes `message`: the note the
/// agent then reads under it.
async fn deleted_with_gowa_refusing(chatwoot: &ChatwootApi, gowa: &Gowa, message: i64) -> String {
    gowa.set(|_, _| Reply::status(401));
    chatwoot.with(|w| w.delete_message(message));
    eventually("the note under it", WAIT, || async {
        chatwoot.with(|w| w.notes_under(message)).into_iter().next()
    })
    .await
    .content
}
