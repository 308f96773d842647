//! The admin panel in a real headless Chromium (Debian `chromium` + `chromium-driver`) against the real binary:
//! log in, add a route, watch deliveries arrive live, retry a dead one, send a delivered one again (only after
//! confirming), pause a route and see what waits, turn an unrouted inbox into a route, switch to Bahasa
//! Indonesia. Screenshots of every screen (EN and ID, wide and 360 px) are written to
//! `<target>/tmp/screenshots/`, or to `docs/screenshots/` with `CHATGOWA_UPDATE_SCREENSHOTS=1`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::FutureExt as _;
use serde_json::json;

use crate::support::{ADMIN_PASS, ADMIN_USER, Gowa, Reply, Server, eventually, free_port, message};
use crate::webdriver::{click, css, resubmit_url, screenshot_dir, submit_route};

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

/// Waits until the element's text contains `needle`.
async fn text_of(c: &Client, selector: &str, needle: &str) -> String {
    eventually(&format!("{selector} to show {needle:?}"), WAIT, || async {
        let text = c
            .find(Locator::Css(selector))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.contains(needle).then_some(text)
    })
    .await
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
    // Close the browser even when a step fails, then report the failure.
    let outcome = std::panic::AssertUnwindSafe(scenario(&c, &server, &gowa))
        .catch_unwind()
        .await;
    if outcome.is_err() {
        crate::webdriver::record_failure(&c, "browser").await;
    }
    let _ = c.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn scenario(c: &Client, server: &Server, gowa: &Gowa) {
    let base = format!(
        "http://{ADMIN_USER}:{}@127.0.0.1:{}",
        ADMIN_PASS.replace(' ', "%20"),
        server.port
    );
    let plain = server.base();

    // Log in (Basic Auth) and land on the overview, in English.
    c.goto(&format!("{base}/admin/")).await.unwrap();
    text_of(c, "#nav", "Routes").await;
    let url = css(c, "#webhook-url")
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(url, format!("{plain}/webhook"));

    // Add a route: the server's validation message appears under the field first.
    go(c, &plain, "#/routes", "#add-route").await;
    click(c, "#add-route").await;
    submit_route(c, "7", "Toko Sejahtera", "gowa:3000/chatwoot/webhook").await;
    text_of(
        c,
        "#route-webhookUrl-error",
        "webhookUrl must be an absolute",
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
    text_of(c, "main table", "manual").await;

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

    shoot_every_screen(c, &plain, dead, "en").await;

    // Bahasa Indonesia: labels change, and the choice is remembered.
    go(c, &plain, "#/routes", "#lang").await;
    click(c, "#lang option[value='id']").await;
    text_of(c, "#nav", "Pengiriman").await;
    text_of(c, "h1", "Rute").await;
    c.refresh().await.unwrap();
    text_of(c, "#nav", "Inbox tanpa rute").await;
    shoot_every_screen(c, &plain, dead, "id").await;
}

async fn shoot_every_screen(c: &Client, plain: &str, delivery: i64, lang: &str) {
    let dir = screenshot_dir();
    let screens = [
        ("overview", "#/".to_owned(), "#webhook-url"),
        ("routes", "#/routes".to_owned(), "tr[data-inbox-id='7']"),
        (
            "deliveries",
            "#/deliveries".to_owned(),
            "tr[data-delivery-id]",
        ),
        (
            "delivery",
            format!("#/deliveries/{delivery}"),
            "#delivery-status",
        ),
        ("unrouted", "#/unrouted".to_owned(), "p.empty"),
    ];
    for (width, height, size) in [(1280, 900, "wide"), (360, 800, "narrow")] {
        c.set_window_size(width, height).await.unwrap();
        for (name, hash, ready) in &screens {
            go(c, plain, hash, ready).await;
            // The page must not scroll sideways as a whole at this width (tables scroll inside their box).
            let overflow = c
                .execute("return document.documentElement.scrollWidth - document.documentElement.clientWidth", vec![])
                .await
                .unwrap();
            assert!(
                overflow.as_i64().unwrap_or(0) <= 1,
                "{name} at {width}px overflows by {overflow}"
            );
            c.execute("document.getElementById('toast').replaceChildren()", vec![])
                .await
                .unwrap();
            let png = c.screenshot().await.unwrap();
            std::fs::write(dir.join(format!("{name}-{lang}-{size}.png")), png).unwrap();
        }
    }
    c.set_window_size(1280, 800).await.unwrap();
}

#[tokio::test]
async fn the_first_admin_password_is_chosen_through_the_setup_link() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::spawn_logging(dir.path(), free_port(), &[("BASIC_AUTH_PASS", "")]);
    server.wait_healthy().await;
    let token = eventually("the setup link in the log", WAIT, || async {
        let log = server.log_so_far();
        let at = log.find("#/setup?token=")? + "#/setup?token=".len();
        Some(
            log[at..]
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect::<String>(),
        )
    })
    .await;
    let driver = Driver::start().await;
    let c = driver.browser(&dir.path().join("profile")).await;
    let outcome = std::panic::AssertUnwindSafe(async {
        let link = format!("{}/admin/#/setup?token={token}", server.base());
        c.goto(&link).await.unwrap();
        css(&c, "#setup-password").await;
        let shots = screenshot_dir();
        std::fs::write(
            shots.join("setup-en-wide.png"),
            c.screenshot().await.unwrap(),
        )
        .unwrap();
        click(&c, "#lang option[value='id']").await;
        text_of(&c, "h1", "Pilih kata sandi admin").await;
        std::fs::write(
            shots.join("setup-id-wide.png"),
            c.screenshot().await.unwrap(),
        )
        .unwrap();
        css(&c, "#setup-password")
            .await
            .send_keys("a long enough password")
            .await
            .unwrap();
        css(&c, "#setup-confirm")
            .await
            .send_keys("a long enough password")
            .await
            .unwrap();
        click(&c, "#setup-save").await;
        css(&c, "#setup-done").await;
    })
    .catch_unwind()
    .await;
    if outcome.is_err() {
        crate::webdriver::record_failure(&c, "setup").await;
    }
    let _ = c.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    let admin = crate::support::Admin::login(server.base(), ADMIN_USER, "a long enough password");
    assert_eq!(admin.get("/admin/stats").await.0, 200);
}
