//! The panel as an office admin uses it: what needs attention and its link to that route's failed messages,
//! search by phone, typing indicators hidden until asked for, wrong fields named under them in Bahasa
//! Indonesia, a bulk retry, nothing with a status or an action off a phone's screen, and contrast measured
//! from the rendered styles. Chromium runs them at 1280 and 390 px in English and Indonesian (and takes the
//! screenshots of every screen); the native window runs them once (`desktop.rs`).

use fantoccini::Client;
use serde_json::json;

use crate::support::{Admin, Gowa, Reply, eventually};
use crate::webdriver::{STEP, click, eval, present, set_value, show, text_of};

/// The inbox whose GoWA refuses every message, and the one that works.
pub const FAILING_INBOX: i64 = 71;
pub const HEALTHY_INBOX: i64 = 72;

/// The customer whose phone the search looks for, written as an Indonesian admin types it.
const MARIA_PHONE: &str = "+6281234567890";
const MARIA_TYPED: &str = "0812-3456-7890";

/// An agent's reply to a customer, as Chatwoot posts it.
pub fn reply_to(
    inbox: i64,
    conversation: i64,
    id: i64,
    (name, phone): (&str, &str),
    text: &str,
) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "event": "message_created",
        "id": id,
        "message_type": "outgoing",
        "private": false,
        "content": text,
        "inbox": {"id": inbox, "name": "WhatsApp"},
        "sender": {"id": 3, "name": "Yohanes", "type": "user"},
        "conversation": {"id": conversation, "inbox_id": inbox,
            "meta": {"sender": {"name": name, "phone_number": phone, "type": "contact"}}},
    }))
    .unwrap()
}

/// The routes the flows use.
pub struct Seeded {
    pub failing: i64,
    pub healthy: i64,
}

/// Two routes — "Toko Bandung", whose GoWA refuses the password, with three replies not sent, and "Klinik
/// Sehat" with one reply sent and a typing indicator —, relayed by the relay at `webhooks`.
pub async fn seed(webhooks: &str, admin: &Admin, gowa: &Gowa, secret: Option<&str>) -> Seeded {
    gowa.set(|r, _| {
        Reply::status(if r.path.ends_with("/bandung") {
            401
        } else {
            200
        })
    });
    let mut ids = Vec::new();
    for (inbox, name, path) in [
        (FAILING_INBOX, "Toko Bandung", "/chatwoot/webhook/bandung"),
        (HEALTHY_INBOX, "Klinik Sehat", "/chatwoot/webhook/klinik"),
    ] {
        let (status, body) = admin
            .post_json(
                "/admin/routes",
                json!({"inboxId": inbox, "name": name, "webhookUrl": gowa.url(path)}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        ids.push(body["route"]["id"].as_i64().unwrap());
    }
    let seeded = Seeded {
        failing: ids[0],
        healthy: ids[1],
    };
    let http = crate::support::http_client();
    // Signed as Chatwoot signs them when the relay knows the secret (a linked account).
    let post = |body: Vec<u8>| match secret {
        Some(secret) => crate::support::signed_webhook(&http, webhooks, body, secret).send(),
        None => http
            .post(format!("{webhooks}/webhook"))
            .header("content-type", "application/json")
            .body(body)
            .send(),
    };
    for (conversation, customer, text) in [
        (
            501,
            ("Ibu Maria", MARIA_PHONE),
            "Pesanan Ibu sudah kami kirim hari ini.",
        ),
        (
            502,
            ("Budi Santoso", "+6281398765432"),
            "Terima kasih, Pak Budi!",
        ),
        (503, ("Sari", "+6285611112222"), "Stok ukuran M tersedia."),
    ] {
        let body = reply_to(
            FAILING_INBOX,
            conversation,
            conversation * 10,
            customer,
            text,
        );
        assert_eq!(post(body).await.unwrap().status(), 200);
    }
    let dewi = ("Dewi", "+6287700001111");
    let sent = reply_to(HEALTHY_INBOX, 601, 6010, dewi, "Sampai jumpa besok.");
    assert_eq!(post(sent).await.unwrap().status(), 200);
    let typing = json!({"event": "conversation_typing_on", "is_private": false,
        "user": {"id": 3, "name": "Ana", "type": "user"},
        "conversation": {"id": 601, "inbox_id": HEALTHY_INBOX,
            "meta": {"sender": {"name": dewi.0, "phone_number": dewi.1, "type": "contact"}}}});
    assert_eq!(
        post(serde_json::to_vec(&typing).unwrap())
            .await
            .unwrap()
            .status(),
        200
    );
    for (route, status, count) in [
        (seeded.failing, "dead", 3),
        (seeded.healthy, "delivered", 2),
    ] {
        eventually(
            &format!("{count} {status} on route {route}"),
            STEP,
            || async {
                let path = format!("/admin/deliveries?routeId={route}&status={status}");
                let (_, body) = admin.send(reqwest::Method::GET, &path, None).await;
                (body["deliveries"].as_array()?.len() == count).then_some(())
            },
        )
        .await;
    }
    seeded
}

async fn rows(c: &Client, selector: &str) -> usize {
    let all = format!("#deliveries-list tr[data-delivery-id]{selector}");
    let count = format!("document.querySelectorAll({all:?}).length");
    eval(c, &count).await.and_then(|v| v.as_u64()).unwrap_or(0) as usize
}

/// Waits until the log shows `count` rows, and `matching` of them match `selector`.
async fn log_shows(c: &Client, count: usize, selector: &str, matching: usize) {
    eventually(
        &format!("{count} rows, {matching} of them {selector}"),
        STEP,
        || async {
            (rows(c, "").await == count && rows(c, selector).await == matching).then_some(())
        },
    )
    .await;
}

/// The overview names the failing route in a sentence; its link lands on that route's failed messages, which
/// say what went wrong in plain words and link back to the route.
pub async fn attention_leads_to_the_failed_messages(c: &Client, s: &Seeded, lang: &str) {
    let (sentence, why) = match lang {
        "id" => (
            "Toko Bandung: 3 balasan tidak terkirim",
            "GoWA menolak nama pengguna",
        ),
        _ => (
            "Toko Bandung: 3 replies not sent",
            "GoWA refused the user, password or secret",
        ),
    };
    let item = format!("#attention li[data-route-id='{}']", s.failing);
    show(c, "#/", "#attention").await;
    text_of(c, &item, sentence).await;
    text_of(c, &item, why).await;
    click(c, &format!("{item} a.fix")).await;
    let landed = format!("#/deliveries?routeId={}&status=dead", s.failing);
    eventually(&format!("the link to land on {landed}"), STEP, || async {
        (eval(c, "location.hash").await?.as_str()? == landed).then_some(())
    })
    .await;
    log_shows(c, 3, " [data-status='dead']", 3).await;
    let heading = "document.activeElement === document.querySelector('h1')";
    assert_eq!(
        eval(c, heading).await,
        Some(json!(true)),
        "focus moves to the new screen's heading"
    );
    text_of(c, "#deliveries-list", why).await;
    text_of(c, "#route-head", "Toko Bandung").await;
    click(c, "#to-route").await;
    present(c, &format!("tr.highlight[data-route-id='{}']", s.failing)).await;
}

/// The phone number as an admin types it finds the customer's message.
pub async fn search_finds_a_phone_number(c: &Client) {
    show(c, "#/deliveries", "#search").await;
    set_value(c, "#search", MARIA_TYPED).await;
    click(c, ".search-row button").await;
    log_shows(c, 1, "", 1).await;
    text_of(c, "#deliveries-list", "Ibu Maria").await;
    text_of(c, "#deliveries-list", MARIA_PHONE).await;
    text_of(c, "#deliveries-list", "Pesanan Ibu sudah kami kirim").await;
}

/// Typing indicators are kept out of the log until the admin asks for them.
pub async fn typing_is_hidden_until_asked_for(c: &Client, s: &Seeded, lang: &str) {
    show(
        c,
        &format!("#/deliveries?routeId={}", s.healthy),
        "#show-ignored",
    )
    .await;
    log_shows(c, 1, "", 1).await;
    click(c, "#show-ignored").await;
    log_shows(c, 2, "", 2).await;
    text_of(
        c,
        "#deliveries-list",
        if lang == "id" {
            "Mulai mengetik"
        } else {
            "Typing started"
        },
    )
    .await;
}

/// Saving an empty route names every wrong field under it, in Indonesian; a taken inbox is an error under the
/// inbox field.
pub async fn wrong_fields_are_named_in_indonesian(c: &Client, gowa: &Gowa) {
    show(c, "#/routes", "#add-route").await;
    click(c, "#add-route").await;
    click(c, "#route-save").await;
    text_of(
        c,
        "#route-inboxId-error",
        "ID kotak masuk Chatwoot: wajib diisi",
    )
    .await;
    text_of(
        c,
        "#route-webhookUrl-error",
        "URL webhook GoWA: wajib diisi",
    )
    .await;
    let marked = "[...document.querySelectorAll('#route-form-area [aria-invalid=true]')].map(e => e.id).join(' ')";
    assert_eq!(
        eval(c, marked).await.unwrap(),
        "route-inboxId route-webhookUrl"
    );
    let described = "document.querySelector('#route-inboxId').getAttribute('aria-describedby')";
    assert_eq!(eval(c, described).await.unwrap(), "route-inboxId-error");
    set_value(c, "#route-inboxId", &FAILING_INBOX.to_string()).await;
    set_value(c, "#route-webhookUrl", &gowa.url("/chatwoot/webhook")).await;
    click(c, "#route-save").await;
    text_of(c, "#route-inboxId-error", "sudah punya rute").await;
    let url_error = "document.querySelector('#route-webhookUrl-error').textContent";
    assert_eq!(eval(c, url_error).await.unwrap(), "");
}

/// The three failed replies, chosen together and sent again, reach GoWA; the overview has nothing left to say
/// about the route. `confirm`: answer the browser's own confirmation (else the page's `confirm` says yes).
pub async fn bulk_retry_sends_the_failed_replies(
    c: &Client,
    s: &Seeded,
    gowa: &Gowa,
    admin: &Admin,
    confirm: bool,
) {
    gowa.set(|_, _| Reply::status(200));
    show(
        c,
        &format!("#/deliveries?routeId={}&status=dead", s.failing),
        "#pick-all",
    )
    .await;
    log_shows(c, 3, " [data-status='dead']", 3).await;
    click(c, "#pick-all").await;
    text_of(c, "#bulk-count", "3").await;
    let before = gowa.arrivals();
    if !confirm {
        eval(c, "(window.confirm = () => true, true)").await;
    }
    click(c, "#bulk-retry").await;
    if confirm {
        let question = eventually("the confirmation", STEP, || async {
            c.get_alert_text().await.ok()
        })
        .await;
        assert!(question.contains('3'), "{question}");
        c.accept_alert().await.unwrap();
    }
    eventually("three replies sent again", STEP, || async {
        let path = format!("/admin/deliveries?routeId={}&status=delivered", s.failing);
        let (_, body) = admin.send(reqwest::Method::GET, &path, None).await;
        (body["deliveries"].as_array()?.len() == 3 && gowa.arrivals() >= before + 3).then_some(())
    })
    .await;
    show(c, "#/", "#route-list").await;
    let gone = format!(
        "document.querySelector(\"#attention li[data-route-id='{}']\") === null",
        s.failing
    );
    eventually("the route to need no attention", STEP, || async {
        (eval(c, &gone).await? == serde_json::Value::Bool(true)).then_some(())
    })
    .await;
}

/// Every element that shows a status or is an action lies within the viewport's width (measured).
pub async fn nothing_is_off_screen(c: &Client, screen: &str) {
    let offside = eval(
        c,
        "(() => { const w = document.documentElement.clientWidth; \
         return [...document.querySelectorAll('[data-status], [data-health], .badge, button, a.button, a.fix, \
           td.actions a, td.pick input, #pick-all, #menu, #lang, #search, .open')] \
           .filter(e => e.getClientRects().length > 0) \
           .filter(e => { const r = e.getBoundingClientRect(); return r.left < -0.5 || r.right > w + 0.5; }) \
           .map(e => `${e.tagName}.${e.className} ${Math.round(e.getBoundingClientRect().right)} > ${w}`); })()",
    )
    .await
    .unwrap();
    assert_eq!(offside, json!([]), "{screen}: outside the viewport");
    let statuses = eval(
        c,
        "document.querySelectorAll('[data-status], [data-health]').length",
    )
    .await;
    assert!(
        !matches!(screen, "deliveries" | "routes") || statuses.and_then(|v| v.as_u64()) > Some(0),
        "{screen}: no status was measured"
    );
}

/// Text against its background at least 4.5:1 (3:1 when large), borders of fields, buttons, tables and cards
/// at least 3:1, computed from the rendered styles.
pub async fn contrast_holds(c: &Client, screen: &str) {
    let found = eval(c, CONTRAST).await.unwrap();
    assert!(found["text"].as_u64() > Some(10), "{screen}: {found}");
    assert!(found["borders"].as_u64() > Some(3), "{screen}: {found}");
    assert_eq!(found["low"], json!([]), "{screen}: contrast too low");
}

const CONTRAST: &str = r#"(() => {
  const rgb = (s) => { const p = s.match(/[\d.]+/g).map(Number); return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 }; };
  const lum = (c) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b); };
  const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
  const background = (el) => { for (let e = el; e; e = e.parentElement) { const c = rgb(getComputedStyle(e).backgroundColor);
    if (c.a > 0.5) return c; } return { r: 255, g: 255, b: 255, a: 1 }; };
  const shown = (e) => e.getClientRects().length > 0 && e.getBoundingClientRect().width > 1 && getComputedStyle(e).visibility !== "hidden";
  const low = []; let text = 0; let borders = 0;
  for (const e of document.querySelectorAll("body *")) {
    if (!shown(e) || e.closest(":disabled, option, #toast, .visually-hidden")) continue;
    if (![...e.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
    const s = getComputedStyle(e); const size = parseFloat(s.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(s.fontWeight) >= 700);
    const r = ratio(rgb(s.color), background(e)); text++;
    if (r < (large ? 3 : 4.5)) low.push(`text ${e.tagName}.${e.className} "${e.textContent.trim().slice(0, 30)}" ${r.toFixed(2)}`);
  }
  for (const e of document.querySelectorAll("input:not([type=checkbox]), select, button:not(:disabled), a.button, .table-wrap, td, tr, .card")) {
    if (!shown(e)) continue;
    const s = getComputedStyle(e);
    for (const side of ["Top", "Right", "Bottom", "Left"]) {
      if (parseFloat(s[`border${side}Width`]) === 0 || s[`border${side}Style`] === "none") continue;
      const r = ratio(rgb(s[`border${side}Color`]), background(e.parentElement)); borders++;
      if (r < 3) low.push(`border ${side} ${e.tagName}.${e.className} ${r.toFixed(2)}`);
    }
  }
  return { text, borders, low: [...new Set(low)].slice(0, 20) };
})()"#;
