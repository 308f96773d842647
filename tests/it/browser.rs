//! The admin panel in a real headless Chromium (Debian `chromium` + `chromium-driver`) against the real binary:
//! log in, add a route, watch deliveries arrive live, retry a dead one, send a delivered one again (only after
//! confirming), pause a route and see what waits, turn an unrouted inbox into a route, switch to Bahasa
//! Indonesia; an office admin's flows at 1280 and 390 px in both languages (`panel.rs`); a first run; replies
//! found late. Screenshots of every screen (EN and ID, 1280 and 390 px) are written to
//! `<target>/tmp/screenshots/`, or to `docs/screenshots/` with `CHATGOWA_UPDATE_SCREENSHOTS=1`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::chatwoot_api::{ADMIN_TOKEN, ChatwootApi};
use crate::panel;
use crate::setup::setup_token;
use crate::support::{
    ADMIN_PASS, ADMIN_USER, Admin, Gowa, Reply, Server, eventually, free_port, heavy, message,
};
use crate::webdriver::{click, css, resubmit_url, screenshot, show, submit_route, text_of};

const WAIT: Duration = Duration::from_secs(15);

/// chromedriver on a free port, stopped on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    async fn start() -> Self {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver not found: install Debian's chromium and chromium-driver (scripts/test does)");
        let driver = Self { child, port };
        let status = format!("http://127.0.0.1:{port}/status");
        eventually("chromedriver to start", WAIT, || async {
            reqwest::get(&status)
                .await
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ())
        })
        .await;
        driver
    }

    async fn browser(&self, profile: &std::path::Path) -> Client {
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--no-first-run", "--disable-quic", "--window-size=1280,800",
                         format!("--user-data-dir={}", profile.display())],
            }
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!()
        };
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a WebDriver session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a scenario in the browser `c`, closes the browser even when a step fails, then reports the failure with
/// what the page showed.
async fn in_browser(c: &Client, name: &str, scenario: impl std::future::Future<Output = ()>) {
    if let Err(panic) = crate::webdriver::run_scenario(c, name, scenario).await {
        std::panic::resume_unwind(panic);
    }
}

async fn go(c: &Client, base: &str, hash: &str, ready: &str) {
    c.goto(&format!("{base}/admin/{hash}")).await.unwrap();
    css(c, ready).await;
}

#[tokio::test]
async fn the_admin_panel_in_a_real_browser() {
    let gowa = Gowa::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::spawn(
        dir.path(),
        free_port(),
        &[("CHATGOWA_RETRY_SCHEDULE", "20ms")],
    );
    server.wait_healthy().await;
    let driver = Driver::start().await;
    let c = driver.browser(&dir.path().join("profile")).await;
    in_browser(&c, "browser", scenario(&c, &server, &gowa)).await;
}

async fn scenario(c: &Client, server: &Server, gowa: &Gowa) {
    let base = format!(
        "http://{ADMIN_USER}:{}@127.0.0.1:{}",
        ADMIN_PASS.replace(' ', "%20"),
        server.port
    );
    let plain = server.base();

    // Log in (Basic Auth) and open the overview, in English.
    c.goto(&format!("{base}/admin/#/")).await.unwrap();
    text_of(c, "#nav", "Routes").await;
    // Found again on each look: the overview redraws when its live updates connect.
    let url = eventually("the webhook URL", WAIT, || async {
        let field = c.find(Locator::Css("#webhook-url")).await.ok()?;
        field.prop("value").await.ok()?.filter(|v| !v.is_empty())
    })
    .await;
    assert!(url.ends_with(&format!(":{}/webhook", server.port)), "{url}");

    // Add a route: the server's validation message appears under the field first.
    go(c, &plain, "#/routes", "#add-route").await;
    click(c, "#add-route").await;
    submit_route(c, "7", "Toko Sejahtera", "gowa:3000/chatwoot/webhook").await;
    text_of(
        c,
        "#route-webhookUrl-error",
        "Enter a full address starting with http://",
    )
    .await;
    resubmit_url(c, &gowa.url("/chatwoot/webhook")).await;
    css(c, "tr[data-inbox-id='7']").await;

    // A webhook appears in the delivery list without a reload.
    go(c, &plain, "#/deliveries", "#deliveries-list").await;
    let first = server.post_webhook(message(7, 1, 0)).await["deliveryId"]
        .as_i64()
        .unwrap_or_default();
    css(
        c,
        &format!("tr[data-delivery-id='{first}'] [data-status='delivered']"),
    )
    .await;

    // A dead delivery, retried from its page, turns delivered.
    gowa.set(|_, _| Reply::status(401));
    let dead = server.post_webhook(message(7, 2, 1)).await["deliveryId"]
        .as_i64()
        .unwrap_or_default();
    css(
        c,
        &format!("tr[data-delivery-id='{dead}'] [data-status='dead']"),
    )
    .await;
    click(c, &format!("tr[data-delivery-id='{dead}'] a")).await;
    css(c, "#delivery-status [data-status='dead']").await;
    gowa.set(|_, _| Reply::status(200));
    click(c, "#retry").await;
    css(c, "#delivery-status [data-status='delivered']").await;
    text_of(c, "#attempts", "manual").await;

    // Sending a delivered reply again asks first: the customer would get it twice. Cancelling sends nothing.
    let sent = gowa.arrivals();
    click(c, "#send-again").await;
    let question = eventually("the confirmation", WAIT, || async {
        c.get_alert_text().await.ok()
    })
    .await;
    assert!(question.contains("twice"), "{question}");
    c.dismiss_alert().await.unwrap();
    css(c, "#delivery-status [data-status='delivered']").await;
    assert_eq!(gowa.arrivals(), sent, "cancelled: nothing sent");
    assert!(
        c.find(Locator::Css("#retry")).await.is_err(),
        "no one-click resend of a delivered reply"
    );
    click(c, "#send-again").await;
    eventually("the confirmation", WAIT, || async {
        c.get_alert_text().await.ok()
    })
    .await;
    c.accept_alert().await.unwrap();
    eventually("the second sending", WAIT, || async {
        (gowa.arrivals() == sent + 1).then_some(())
    })
    .await;

    // A paused route keeps what arrives and shows it waiting; resumed, it sends it.
    go(
        c,
        &plain,
        "#/routes",
        "tr[data-inbox-id='7'] .enabled-toggle",
    )
    .await;
    click(c, "tr[data-inbox-id='7'] .enabled-toggle").await;
    text_of(c, "tr[data-inbox-id='7']", "Paused · 0 waiting").await;
    let held = server.post_webhook(message(7, 4, 3)).await;
    assert_eq!(held["queued"], true, "{held}");
    text_of(c, "tr[data-inbox-id='7']", "Paused · 1 waiting").await;
    let sent = gowa.arrivals();
    click(c, "tr[data-inbox-id='7'] .enabled-toggle").await;
    eventually("the held reply to go out", WAIT, || async {
        (gowa.arrivals() > sent).then_some(())
    })
    .await;

    // An unrouted inbox becomes a route in one click.
    server.post_webhook(message(55, 9, 2)).await["deliveryId"]
        .as_i64()
        .unwrap_or_default();
    go(c, &plain, "#/unrouted", "tr[data-inbox-id='55']").await;
    click(c, "tr[data-inbox-id='55'] .add-route").await;
    let inbox = css(c, "#route-inboxId")
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(inbox, "55");
    css(c, "#route-webhookUrl")
        .await
        .send_keys(&gowa.url("/chatwoot/webhook/55"))
        .await
        .unwrap();
    click(c, "#route-save").await;
    css(c, "tr[data-inbox-id='55']").await;

    // Bahasa Indonesia: labels change, and the choice is remembered.
    go(c, &plain, "#/routes", "#lang").await;
    click(c, "#lang option[value='id']").await;
    text_of(c, "#nav", "Log pesan").await;
    text_of(c, "h1", "Rute").await;
    c.refresh().await.unwrap();
    text_of(c, "#nav", "Kotak masuk tanpa rute").await;
}

/// The panel as an office admin uses it (`panel.rs`), in Chromium at 1280 and 390 px, in English and Bahasa
/// Indonesia, with a screenshot of every screen in each.
#[tokio::test]
async fn the_panel_for_an_office_admin() {
    let _heavy = heavy().await;
    let gowa = Gowa::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::spawn(dir.path(), free_port(), &[]);
    server.wait_healthy().await;
    let admin = Admin::new(server.base());
    let seeded = panel::seed(&server.base(), &admin, &gowa, None).await;
    // An inbox without a route, for its screen.
    server.post_webhook(message(99, 9, 1)).await;
    let driver = Driver::start().await;
    let c = driver.browser(&dir.path().join("profile")).await;
    in_browser(
        &c,
        "panel",
        office_admin(&c, &server, &gowa, &admin, &seeded),
    )
    .await;
}

async fn office_admin(
    c: &Client,
    server: &Server,
    gowa: &Gowa,
    admin: &Admin,
    seeded: &panel::Seeded,
) {
    let base = format!(
        "http://{ADMIN_USER}:{}@127.0.0.1:{}",
        ADMIN_PASS.replace(' ', "%20"),
        server.port
    );
    go(c, &base, "#/", "#attention").await;
    for lang in ["en", "id"] {
        click(c, &format!("#lang option[value='{lang}']")).await;
        for (width, height, size) in [(1280, 900, "wide"), (390, 844, "phone")] {
            c.set_window_size(width, height).await.unwrap();
            panel::attention_leads_to_the_failed_messages(c, seeded, lang).await;
            panel::search_finds_a_phone_number(c).await;
            panel::typing_is_hidden_until_asked_for(c, seeded, lang).await;
            if lang == "id" {
                panel::wrong_fields_are_named_in_indonesian(c, gowa).await;
                shoot(c, &format!("route-form-{lang}-{size}.png")).await;
            }
            every_screen(c, seeded, lang, size).await;
        }
    }
    panel::bulk_retry_sends_the_failed_replies(c, seeded, gowa, admin, true).await;
    c.set_window_size(1280, 800).await.unwrap();
}

/// Every screen: measured (contrast; at 390 px, nothing off screen) and photographed.
async fn every_screen(c: &Client, seeded: &panel::Seeded, lang: &str, size: &str) {
    let dead = format!("#/deliveries?routeId={}&status=dead", seeded.failing);
    let first_dead = "#deliveries-list tr[data-delivery-id] a.open";
    for (name, hash, ready) in [
        ("overview", "#/".to_owned(), "#attention"),
        ("routes", "#/routes".to_owned(), "tr[data-route-id]"),
        (
            "deliveries",
            "#/deliveries".to_owned(),
            "tr[data-delivery-id]",
        ),
        ("delivery", dead, first_dead),
        (
            "unrouted",
            "#/unrouted".to_owned(),
            "tr[data-inbox-id='99']",
        ),
        ("chatwoot-start", "#/chatwoot".to_owned(), "#public-url"),
    ] {
        show(c, &hash, ready).await;
        if name == "delivery" {
            click(c, first_dead).await;
            css(c, "#delivery-problem").await;
        }
        panel::contrast_holds(c, name).await;
        if size == "phone" {
            panel::nothing_is_off_screen(c, name).await;
        }
        shoot(c, &format!("{name}-{lang}-{size}.png")).await;
    }
}

async fn shoot(c: &Client, name: &str) {
    c.execute(
        "document.getElementById('toast').replaceChildren(); window.scrollTo(0, 0)",
        vec![],
    )
    .await
    .unwrap();
    screenshot(c, name).await;
}

/// A newcomer's first run, headless: the setup link from the log → the password → the Chatwoot step (public URL,
/// an account connected after a wrong token, the webhook registered, the connection checked, the inbox that
/// would send twice fixed). Screenshots of the setup and Chatwoot screens in both languages.
#[tokio::test]
async fn a_first_run_from_the_setup_link_to_a_checked_chatwoot_connection() {
    // The reachability check waits 10 s for Chatwoot's webhook: not beside the native window's tests.
    let _heavy = heavy().await;
    let chatwoot = ChatwootApi::start().await;
    let gowa = Gowa::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::spawn_logging(dir.path(), free_port(), &[("BASIC_AUTH_PASS", "")]);
    server.wait_healthy().await;
    let token = eventually("the setup link in the log", WAIT, || async {
        setup_token(&server.log_so_far())
    })
    .await;
    let driver = Driver::start().await;
    let c = driver.browser(&dir.path().join("profile")).await;
    in_browser(
        &c,
        "first-run",
        first_run(&c, &server, &chatwoot, &gowa, &token),
    )
    .await;
    let log = server.stop_and_read_log();
    for secret in [ADMIN_TOKEN, "cw-generated-secret", CHOSEN] {
        assert!(!log.contains(secret), "the log holds a secret");
    }
}

const CHOSEN: &str = "a long enough password";

async fn first_run(c: &Client, server: &Server, chatwoot: &ChatwootApi, gowa: &Gowa, token: &str) {
    c.goto(&format!("{}/admin/#/setup?token={token}", server.base()))
        .await
        .unwrap();
    css(c, "#setup-password").await;
    shoot(c, "setup-en-wide.png").await;
    click(c, "#lang option[value='id']").await;
    text_of(c, "h1", "Buat kata sandi admin").await;
    shoot(c, "setup-id-wide.png").await;
    click(c, "#lang option[value='en']").await;
    css(c, "#setup-password")
        .await
        .send_keys(CHOSEN)
        .await
        .unwrap();
    css(c, "#setup-confirm")
        .await
        .send_keys(CHOSEN)
        .await
        .unwrap();
    click(c, "#setup-save").await;
    css(c, "#setup-next").await;

    // Logged in with the chosen password, a relay without routes opens at the Chatwoot step.
    let base = format!(
        "http://{ADMIN_USER}:{}@127.0.0.1:{}",
        CHOSEN.replace(' ', "%20"),
        server.port
    );
    c.goto(&format!("{base}/admin/")).await.unwrap();
    css(c, "#public-url").await;
    let public = format!("{}/webhook", server.base());

    // Another admin saves the public address while this one types Chatwoot's: the page shows the change, and
    // the field being typed in keeps its focus, caret and text, so the next keys land in it.
    let (typed, rest) = chatwoot.base.split_at(chatwoot.base.len() / 2);
    css(c, "#link-url").await.send_keys(typed).await.unwrap();
    let admin = crate::support::Admin::login(server.base(), ADMIN_USER, CHOSEN);
    let (status, _) = admin
        .put_json("/admin/chatwoot/public-url", json!({"url": public}))
        .await;
    assert_eq!(status, 200);
    text_of(c, "#public-url-hint", "press Register webhook again").await;
    let focus = c
        .execute(
            "const f = document.activeElement; return [f.id, f.value, f.selectionStart]",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(focus, json!(["link-url", typed, typed.len()]));
    c.active_element()
        .await
        .unwrap()
        .send_keys(rest)
        .await
        .unwrap();

    let field = css(c, "#public-url").await;
    field.clear().await.unwrap();
    field.send_keys(&public).await.unwrap();
    // A redraw of the page (its live updates connecting) must not have put the suggestion back meanwhile.
    assert_eq!(
        field.prop("value").await.unwrap().as_deref(),
        Some(public.as_str())
    );
    click(c, "#public-url-save").await;
    text_of(c, "#public-url-note", "SAFE_FETCH_ALLOW_PRIVATE_NETWORK").await;

    // A wrong token is named under its field; the right one connects.
    assert_eq!(
        css(c, "#link-url").await.prop("value").await.unwrap(),
        Some(chatwoot.base.clone())
    );
    css(c, "#link-accountId")
        .await
        .send_keys("1")
        .await
        .unwrap();
    css(c, "#link-token")
        .await
        .send_keys("wrong-token")
        .await
        .unwrap();
    click(c, "#link-save").await;
    text_of(c, "#link-token-error", "Access Token").await;
    let token_field = css(c, "#link-token").await;
    token_field.clear().await.unwrap();
    token_field.send_keys(ADMIN_TOKEN).await.unwrap();
    click(c, "#link-save").await;
    text_of(c, ".link-card h3", "Toko Bandung").await;
    // Linking also catches up with Chatwoot, and the card is drawn again with what that found: a click before
    // then could land where the button was a moment ago.
    text_of(c, ".link-card .catch-up", "Caught up").await;

    // Inbox 7 still posts straight to the GoWA that a route delivers to.
    chatwoot.with(|w| {
        w.inboxes
            .iter_mut()
            .find(|i| i.id == 7)
            .unwrap()
            .webhook_url = gowa.url("/chatwoot/webhook")
    });
    let (status, _) = admin
        .post_json(
            "/admin/routes",
            json!({"inboxId": 7, "webhookUrl": gowa.url("/chatwoot/webhook")}),
        )
        .await;
    assert_eq!(status, 201);

    click(c, ".link-card .register").await;
    text_of(c, ".link-card .webhook-state.ok", &public).await;
    click(c, ".link-card .check").await;
    text_of(
        c,
        ".link-card .check-result.ok",
        "Chatwoot reached this relay",
    )
    .await;
    css(c, "li[data-inbox-id='7'] .double-delivery").await;
    c.set_window_size(1280, 1500).await.unwrap();
    shoot(c, "chatwoot-en-wide.png").await;
    click(c, "#lang option[value='id']").await;
    text_of(c, "h1", "Hubungkan Chatwoot").await;
    shoot(c, "chatwoot-id-wide.png").await;
    c.set_window_size(390, 1500).await.unwrap();
    let overflow = c
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        overflow.as_i64().unwrap_or(0) <= 1,
        "the Chatwoot page overflows by {overflow}"
    );
    shoot(c, "chatwoot-id-phone.png").await;
    c.set_window_size(1280, 800).await.unwrap();

    // The fix, after a confirmation.
    click(c, "li[data-inbox-id='7'] .fix-double").await;
    eventually("the confirmation", WAIT, || async {
        c.get_alert_text().await.ok()
    })
    .await;
    c.accept_alert().await.unwrap();
    eventually("the warning to go", WAIT, || async {
        c.find(Locator::Css("li[data-inbox-id='7'] .double-delivery"))
            .await
            .is_err()
            .then_some(())
    })
    .await;
    let cleared = chatwoot.with(|w| {
        w.inboxes
            .iter()
            .find(|i| i.id == 7)
            .unwrap()
            .webhook_url
            .clone()
    });
    assert_eq!(cleared, "");

    // The route form offers the inbox by name.
    go(c, &base, "#/routes", "tr[data-inbox-id='7']").await;
    text_of(c, "tr[data-inbox-id='7']", "WhatsApp Toko").await;
    click(c, "#add-route").await;
    text_of(c, "#route-inboxPick", "Website · WebWidget · ID 8").await;
}

/// Replies found late by catching up wait at the top of the Chatwoot page: one sent now, one discarded.
#[tokio::test]
async fn replies_found_late_are_sent_or_discarded_from_the_panel() {
    let chatwoot = ChatwootApi::start().await;
    let gowa = Gowa::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::spawn(dir.path(), free_port(), &[]);
    server.wait_healthy().await;
    server.add_route(7, &gowa.url("/chatwoot/webhook")).await;
    let admin = crate::support::Admin::login(server.base(), ADMIN_USER, ADMIN_PASS);
    let link = json!({"url": chatwoot.base, "accountId": 1, "token": ADMIN_TOKEN});
    let (status, body) = admin.post_json("/admin/chatwoot/links", link.clone()).await;
    assert_eq!(status, 201, "{body}");
    eventually("the first catch-up", WAIT, || async {
        let status = admin.get_ok("/admin/chatwoot").await;
        status["links"][0]["caughtUp"]["at"]
            .is_string()
            .then_some(())
    })
    .await;
    // Linked long ago; the office PC was off for the last three hours, while agents replied.
    crate::chatwoot_api::linked_hours_ago(&crate::support::open_database(dir.path()).await, 3)
        .await;
    let (late, later) = chatwoot.with(|w| {
        w.replies_two_hours_ago(41, ["Maaf, pesanan Ibu tertunda", "Sudah kami kirim ulang"])
    });
    // Linking again (as after a restart) catches up at once.
    let (status, body) = admin.post_json("/admin/chatwoot/links", link).await;
    assert!(status.is_success(), "{body}");
    let driver = Driver::start().await;
    let c = driver.browser(&dir.path().join("profile")).await;
    in_browser(&c, "held", async {
        let base = format!(
            "http://{ADMIN_USER}:{}@127.0.0.1:{}",
            ADMIN_PASS.replace(' ', "%20"),
            server.port
        );
        go(&c, &base, "#/chatwoot", "#held-panel").await;
        text_of(&c, "#held-panel h2", "Replies found late: 2").await;
        screenshot(&c, "held-en-wide.png").await;
        click(&c, "#held-panel li:first-child .send-held").await;
        eventually("the confirmation", WAIT, || async {
            c.get_alert_text().await.ok()
        })
        .await;
        c.accept_alert().await.unwrap();
        text_of(&c, "#held-panel h2", "Replies found late: 1").await;
        click(&c, "#held-panel .discard-held").await;
        eventually("the panel to empty", WAIT, || async {
            c.find(Locator::Css("#held-panel"))
                .await
                .is_err()
                .then_some(())
        })
        .await;
        // The reply sent now is in the log as recovered, and says why it went out late.
        let id = eventually("the recovered delivery", WAIT, || async {
            let list = admin.get_ok("/admin/deliveries").await;
            let found = list["deliveries"]
                .as_array()?
                .iter()
                .find(|d| d["messageId"] == late)?
                .clone();
            (found["recovered"] == true)
                .then(|| found["id"].as_i64())
                .flatten()
        })
        .await;
        go(&c, &base, &format!("#/deliveries/{id}"), "#recovered-note").await;
    })
    .await;
    gowa.wait_for("the reply sent now", WAIT, |r| {
        r.iter().any(|r| r.json()["id"] == late)
    })
    .await;
    assert!(
        !gowa.received().iter().any(|r| r.json()["id"] == later),
        "the discarded one is not sent"
    );
}
