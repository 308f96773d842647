//! Catching up with a linked Chatwoot: replies written while Chatwoot could not reach the relay reach GoWA after
//! all, in order, once, marked recovered; an old one waits for a decision; a Chatwoot that is down or refuses the
//! token is reported and relaying goes on. The real binary where a restart is involved.

use std::time::Duration;

use serde_json::{Value, json};

use crate::chatwoot_api::{
    ADMIN_TOKEN, ChatwootApi, Message, Mode, link_account, linked_hours_ago,
};
use crate::support::{
    ADMIN_PASS, ADMIN_USER, Admin, Gowa, Server, TestRelay, eventually, free_port,
};

const WAIT: Duration = Duration::from_secs(20);

fn message(conversation: i64, content: &str) -> Message {
    Message::reply(conversation, content)
}

/// The GoWA requests for `message_created` of message `id`.
fn arrivals_of(gowa: &Gowa, id: i64) -> Vec<Value> {
    gowa.received()
        .iter()
        .map(crate::support::Received::json)
        .filter(|v| v["event"] == "message_created" && v["id"] == id)
        .collect()
}

/// Writes, while the relay cannot be reached, a text reply, a reply with an image, a private note and a message
/// GoWA mirrored from the business phone; returns the two replies' ids.
fn written_meanwhile(chatwoot: &ChatwootApi) -> (i64, i64) {
    chatwoot.with(|w| {
        let text = w.add_message(message(41, "Pesanan sudah dikirim"));
        let mut image = message(41, "Ini fotonya");
        image.attachments = vec![json!({"id": 3, "file_type": "image", "extension": "jpg",
            "data_url": "https://chat.example.com/rails/active_storage/blobs/3/foto.jpg",
            "thumb_url": "https://chat.example.com/rails/active_storage/blobs/3/thumb.jpg",
            "message_id": 0, "file_size": 2048})];
        let image = w.add_message(image);
        let mut note = message(41, "catatan internal");
        note.private = true;
        w.add_message(note);
        let mut echo = message(41, "dikirim dari HP");
        echo.source_id = Some("WAID:3EB0ABC".into());
        w.add_message(echo);
        (text, image)
    })
}

#[tokio::test]
async fn replies_written_while_the_relay_was_down_are_sent_after_the_restart_once_and_in_order() {
    // Two restarts of the real binary: not beside the desktop app's tests.
    let _heavy = crate::support::heavy().await;
    let chatwoot = ChatwootApi::start().await;
    let gowa = Gowa::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}/webhook");
    let env = [
        ("CHATGOWA_PUBLIC_URL", public.as_str()),
        ("CHATGOWA_CHATWOOT_URL", chatwoot.base.as_str()),
        ("CHATGOWA_CHATWOOT_ACCOUNT_ID", "1"),
        ("CHATGOWA_CHATWOOT_TOKEN", ADMIN_TOKEN),
        ("CHATGOWA_CATCHUP_INTERVAL", "1h"),
    ];
    let mut server = Server::spawn_logging(dir.path(), port, &env);
    server.wait_healthy().await;
    let admin = Admin::login(server.base(), ADMIN_USER, ADMIN_PASS);
    eventually(
        "the account linked and its webhook registered",
        WAIT,
        || async {
            let status = admin.get_ok("/admin/chatwoot").await;
            (status["links"][0]["webhook"]["verified"] == true).then_some(())
        },
    )
    .await;
    server.add_route(7, &gowa.url("/chatwoot/webhook")).await;
    let first = chatwoot.with(|w| w.agent_replies(1, 41, "Halo"));
    gowa.wait_for("the first reply", WAIT, |_| {
        arrivals_of(&gowa, first).len() == 1
    })
    .await;

    for kill_9 in [false, true] {
        if kill_9 {
            server.child.kill().unwrap();
            server.child.wait().unwrap();
        } else {
            let _ = server.stop_and_read_log();
        }
        // Chatwoot's webhooks for these find nobody, and are never sent again.
        chatwoot.with(|w| w.deliver = false);
        let (text, image) = written_meanwhile(&chatwoot);
        server = Server::spawn_logging(dir.path(), port, &env);
        server.wait_healthy().await;
        chatwoot.with(|w| w.deliver = true);
        let caught = eventually("both replies caught up", WAIT, || async {
            (arrivals_of(&gowa, text).len() == 1 && arrivals_of(&gowa, image).len() == 1)
                .then_some(())
        });
        if tokio::time::timeout(WAIT - Duration::from_secs(1), caught)
            .await
            .is_err()
        {
            panic!("not caught up; the relay's log:\n{}", server.log_so_far());
        }
        let order: Vec<i64> = gowa
            .received()
            .iter()
            .map(|r| r.json())
            .filter(|v| v["event"] == "message_created")
            .map(|v| v["id"].as_i64().unwrap())
            .filter(|id| [text, image].contains(id))
            .collect();
        assert_eq!(order, [text, image], "in message-id order");
        let sent = &arrivals_of(&gowa, image)[0];
        assert_eq!(
            sent["message_type"], "outgoing",
            "a string, as GoWA binds it"
        );
        assert!(
            sent["id"].is_i64()
                && sent["account"]["id"].is_i64()
                && sent["conversation"]["id"].is_i64()
        );
        assert_eq!(
            sent["conversation"]["meta"]["sender"]["phone_number"],
            "+6281234567890"
        );
        assert_eq!(sent["attachments"][0]["file_type"], "image");
        assert!(
            sent["attachments"][0]["data_url"]
                .as_str()
                .unwrap()
                .ends_with("foto.jpg")
        );

        // The real webhook arriving late is a duplicate.
        let admin = Admin::login(server.base(), ADMIN_USER, ADMIN_PASS);
        chatwoot.with(|w| {
            let m = w.message(text);
            w.fire_again("message_created", &m);
        });
        let dropped = eventually("the late webhook dropped", WAIT, || async {
            let list = admin.get_ok("/admin/deliveries").await;
            let d = list["deliveries"]
                .as_array()?
                .iter()
                .find(|d| d["messageId"] == text)?
                .clone();
            (d["duplicates"] == 1).then_some(d)
        })
        .await;
        assert_eq!(dropped["recovered"], true, "{dropped}");
        assert_eq!(arrivals_of(&gowa, text).len(), 1, "once");
    }
    let text = admin.metrics().await;
    assert!(
        text.contains("chatgowa_replies_recovered_total{state=\"queued\"}"),
        "{text}"
    );
    let log = server.stop_and_read_log();
    assert!(!log.contains(ADMIN_TOKEN));
}

/// A relay in-process, linked to account 1 with its webhook registered and inbox 7 routed to `gowa`.
async fn linked(
    chatwoot: &ChatwootApi,
    gowa: &Gowa,
    configure: impl FnOnce(&mut chatgowa_lib::config::Config),
) -> (TestRelay, i64) {
    let relay = TestRelay::start(configure).await;
    // The route first: catching up looks at routed inboxes only.
    relay
        .add_route(7, &gowa.url("/chatwoot/webhook"), None)
        .await;
    let link = link_account(&relay, chatwoot).await;
    (relay, link)
}

/// Waits for the account's first catch-up.
async fn caught_up_once(relay: &TestRelay) {
    eventually("the first catch-up", WAIT, || async {
        let status = relay.admin.get_ok("/admin/chatwoot").await;
        status["links"][0]["caughtUp"]["at"]
            .is_string()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_lost_reply_is_caught_up_even_once_a_newer_reply_of_its_conversation_arrived() {
    let chatwoot = ChatwootApi::start().await;
    let gowa = Gowa::start().await;
    let (relay, _) = linked(&chatwoot, &gowa, |c| {
        c.upkeep.catchup_interval = Duration::from_millis(500)
    })
    .await;
    caught_up_once(&relay).await;
    // Reply A's webhook is lost (a tunnel blip); reply B, written right after, arrives.
    let lost = chatwoot.with(|w| {
        w.deliver = false;
        let lost = w.agent_replies(1, 41, "Pesanan Anda sudah kami terima");
        w.deliver = true;
        lost
    });
    let newer = chatwoot.with(|w| w.agent_replies(1, 41, "Akan dikirim besok"));
    gowa.wait_for("the newer reply", WAIT, |_| {
        arrivals_of(&gowa, newer).len() == 1
    })
    .await;
    gowa.wait_for("the lost reply caught up", WAIT, |_| {
        arrivals_of(&gowa, lost).len() == 1
    })
    .await;
    // More rounds send nothing again.
    for _ in 0..2 {
        let before =
            relay.admin.get_ok("/admin/chatwoot").await["links"][0]["caughtUp"]["at"].clone();
        eventually("another catch-up", WAIT, || async {
            let now =
                relay.admin.get_ok("/admin/chatwoot").await["links"][0]["caughtUp"]["at"].clone();
            (now != before).then_some(())
        })
        .await;
    }
    assert_eq!(arrivals_of(&gowa, lost).len(), 1);
    assert_eq!(arrivals_of(&gowa, newer).len(), 1);
    relay.stop().await;
}

#[tokio::test]
async fn the_first_catch_up_after_linking_does_not_resend_what_was_written_before() {
    let chatwoot = ChatwootApi::start().await;
    let gowa = Gowa::start().await;
    // Replies of the last hours that GoWA sent by another way, before the relay was linked.
    let (before_one, before_two) =
        chatwoot.with(|w| w.replies_two_hours_ago(41, ["Sudah dikirim", "Juga sudah"]));
    let recent = chatwoot.with(|w| {
        w.deliver = false;
        let mut reply = message(41, "Sepuluh menit lalu");
        reply.created_at -= 600;
        let id = w.add_message(reply);
        w.deliver = true;
        id
    });
    let (relay, _) = linked(&chatwoot, &gowa, |c| {
        c.upkeep.catchup_interval = Duration::from_millis(300)
    })
    .await;
    caught_up_once(&relay).await;
    relay.state.catch_up.now();
    let caught_then =
        relay.admin.get_ok("/admin/chatwoot").await["links"][0]["caughtUp"]["at"].clone();
    eventually("another catch-up", WAIT, || async {
        let now = relay.admin.get_ok("/admin/chatwoot").await["links"][0]["caughtUp"]["at"].clone();
        (now != caught_then).then_some(())
    })
    .await;
    for id in [before_one, before_two, recent] {
        assert!(
            arrivals_of(&gowa, id).is_empty(),
            "{id} was written before the link"
        );
    }
    assert_eq!(
        relay.admin.get_ok("/admin/chatwoot/held").await["held"],
        json!([])
    );
    assert!(
        chatwoot.with(|w| w.notes_under(before_one).is_empty()),
        "no false note"
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_tunnel_outage_is_caught_up_within_one_interval() {
    let chatwoot = ChatwootApi::start().await;
    let gowa = Gowa::start().await;
    let (relay, _) = linked(&chatwoot, &gowa, |c| {
        c.upkeep.catchup_interval = Duration::from_millis(500)
    })
    .await;
    chatwoot.with(|w| w.deliver = false);
    let lost = chatwoot.with(|w| w.agent_replies(1, 41, "Terkirim lewat catch-up"));
    gowa.wait_for("the reply caught up", WAIT, |_| {
        arrivals_of(&gowa, lost).len() == 1
    })
    .await;
    // The round that found it ends, and says when.
    caught_up_once(&relay).await;
    relay.stop().await;
}

#[tokio::test]
async fn an_old_recovered_reply_waits_for_send_now_or_discard() {
    let chatwoot = ChatwootApi::start().await;
    let gowa = Gowa::start().await;
    let (relay, _) = linked(&chatwoot, &gowa, |c| {
        c.upkeep.catchup_interval = Duration::from_secs(3600)
    })
    .await;
    caught_up_once(&relay).await;
    // Linked long ago, last current three hours ago (the office PC was off since).
    linked_hours_ago(&relay.state.db, 3).await;
    let (old_one, old_two) =
        chatwoot.with(|w| w.replies_two_hours_ago(41, ["Balasan lama satu", "Balasan lama dua"]));
    relay.state.catch_up.now();
    let held = eventually("both held", WAIT, || async {
        let body = relay.admin.get_ok("/admin/chatwoot/held").await;
        (body["held"].as_array()?.len() == 2).then_some(body)
    })
    .await;
    assert_eq!(held["held"][0]["content"], "Balasan lama satu");
    assert!(arrivals_of(&gowa, old_one).is_empty(), "not sent by itself");
    let notes = eventually("a note under each held reply", WAIT, || async {
        let notes = chatwoot.with(|w| (w.notes_under(old_one), w.notes_under(old_two)));
        (notes.0.len() == 1 && notes.1.len() == 1).then_some(notes.0)
    })
    .await;
    assert!(notes[0].content.contains("NOT been sent"), "{:?}", notes[0]);
    let first = held["held"][0]["id"].as_i64().unwrap();
    let second = held["held"][1]["id"].as_i64().unwrap();
    let (status, body) = relay
        .admin
        .post_json(&format!("/admin/chatwoot/held/{first}/send"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["held"].as_array().unwrap().len(), 1);
    gowa.wait_for("the one sent now", WAIT, |_| {
        arrivals_of(&gowa, old_one).len() == 1
    })
    .await;
    let (status, body) = relay
        .admin
        .delete(&format!("/admin/chatwoot/held/{second}"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["held"], json!([]));
    let (status, _) = relay
        .admin
        .post_json(&format!("/admin/chatwoot/held/{second}/send"), json!({}))
        .await;
    assert_eq!(status, 404, "a decided reply is not held any more");
    // Later catch-ups do not bring the discarded one back.
    let caught_then =
        relay.admin.get_ok("/admin/chatwoot").await["links"][0]["caughtUp"]["at"].clone();
    relay.state.catch_up.now();
    eventually("another catch-up", WAIT, || async {
        let now = relay.admin.get_ok("/admin/chatwoot").await["links"][0]["caughtUp"]["at"].clone();
        (now != caught_then).then_some(())
    })
    .await;
    assert!(arrivals_of(&gowa, old_two).is_empty());
    assert_eq!(
        relay.admin.get_ok("/admin/chatwoot/held").await["held"],
        json!([])
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_chatwoot_that_is_down_or_refuses_the_token_is_reported_and_relaying_goes_on() {
    let chatwoot = ChatwootApi::start().await;
    let gowa = Gowa::start().await;
    let (relay, _) = linked(&chatwoot, &gowa, |c| {
        c.upkeep.catchup_interval = Duration::from_millis(300)
    })
    .await;
    chatwoot.with(|w| w.mode = Mode::Broken);
    eventually("the failure reported", WAIT, || async {
        let status = relay.admin.get_ok("/admin/chatwoot").await;
        status["links"][0]["caughtUp"]["error"]
            .as_str()?
            .contains("500")
            .then_some(())
    })
    .await;
    let answer = relay
        .post_signed_webhook(
            crate::support::message(7, 9, 1),
            &chatwoot.hooks()[0].secret,
        )
        .await;
    assert_eq!(answer["queued"], true);
    gowa.wait_for("relaying goes on", WAIT, |r| {
        r.iter().any(|r| r.json()["id"] == 1)
    })
    .await;
    chatwoot.with(|w| {
        w.mode = Mode::Normal;
        w.revoke(ADMIN_TOKEN);
    });
    eventually("the refused token reported", WAIT, || async {
        let status = relay.admin.get_ok("/admin/chatwoot").await;
        status["links"][0]["caughtUp"]["error"]
            .as_str()?
            .contains("access token")
            .then_some(())
    })
    .await;
    relay.stop().await;
}
