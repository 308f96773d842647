//! The native window (WebKitGTK under Xvfb), driven by `tauri-driver` + `WebKitWebDriver`, against the real
//! desktop binary: the window's screens work over Tauri IPC on the same store as the HTTP API, live updates
//! arrive as Tauri events, closing the window leaves the relay running, a second launch brings the window back.
//! Needs a display and a session bus: `scripts/test` runs the tests under `xvfb-run` and `dbus-run-session`.

#![cfg(feature = "desktop")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use serde_json::json;

use chatgowa_lib::store::settings;

use crate::chatwoot_api::{ADMIN_TOKEN, ChatwootApi};
use crate::panel;
use crate::support::{
    Admin, BIN, Gowa, basic_auth, eventually, free_port, message, signed_webhook,
};
use crate::webdriver::{
    click, eval, present, resubmit_url, run_scenario, screenshot, set_value, show, submit_route,
    text_of, value_of,
};

const WAIT: Duration = Duration::from_secs(30);

/// The app's own HOME (app data, logs, autostart entry).
fn home_env(home: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("HOME", home.display().to_string()),
        ("XDG_DATA_HOME", home.join("data").display().to_string()),
        ("XDG_CONFIG_HOME", home.join("config").display().to_string()),
        ("CHATGOWA_RETRY_SCHEDULE", "20ms".into()),
        // WebKitWebDriver's screenshots and scripts stall when WebKit renders without GL (the app's lighter
        // default on Linux): the window is driven with GTK's and WebKit's own defaults.
        ("GDK_GL", String::new()),
        ("WEBKIT_DISABLE_DMABUF_RENDERER", "0".into()),
    ]
}

/// The environment the app runs with: its own HOME, and the ports set as a power user would.
pub(crate) fn app_env(home: &Path, port: u16, admin_port: u16) -> Vec<(&'static str, String)> {
    let mut env = home_env(home);
    env.extend([
        ("CHATGOWA_ADMIN_BIND", format!("127.0.0.1:{admin_port}")),
        ("PORT", port.to_string()),
        ("CHATGOWA_BIND", "127.0.0.1".into()),
    ]);
    env
}

/// Waits for the display and for any other app to be gone; gives a fresh home (a user's home has ~/.config,
/// where the autostart entry goes).
pub(crate) async fn prepare() -> (tokio::sync::MutexGuard<'static, ()>, tempfile::TempDir) {
    assert!(
        std::env::var_os("DISPLAY").is_some(),
        "the desktop test needs a display: run it under xvfb-run (scripts/test does)"
    );
    // One app at a time, and none beside the tests that load the machine: WebKit under load can take longer
    // to start and stop than the waits here allow.
    let one = crate::support::heavy().await;
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".config")).unwrap();
    (one, home)
}

/// tauri-driver on free ports; stopped with SIGTERM so that it also stops WebKitWebDriver. What it and the app
/// print goes to a file, shown when no session comes.
pub(crate) struct TauriDriver {
    child: Child,
    port: u16,
    log: tempfile::NamedTempFile,
}

impl TauriDriver {
    fn start(env: &[(&'static str, String)]) -> Self {
        let (port, native) = (free_port(), free_port());
        let driver = std::env::var("TAURI_DRIVER")
            .map(PathBuf::from)
            .unwrap_or_else(|_| {
                let home = std::env::var("CARGO_HOME")
                    .map(PathBuf::from)
                    .unwrap_or_else(|_| {
                        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo")
                    });
                home.join("bin/tauri-driver")
            });
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(&driver)
            .args([
                "--port",
                &port.to_string(),
                "--native-port",
                &native.to_string(),
            ])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{} not found ({e}): `cargo install tauri-driver --locked`",
                    driver.display()
                )
            });
        Self { child, port, log }
    }

    /// Starts tauri-driver and a WebDriver session with the app at `application`. WebKitWebDriver under load
    /// now and then never answers a new session: after a while that attempt's driver and app are ended and
    /// another is made, with what they printed shown.
    pub(crate) async fn launch(
        env: &[(&'static str, String)],
        application: &str,
    ) -> (Self, Client) {
        for attempt in 1..=3 {
            let driver = Self::start(env);
            if let Some(c) = driver.session(application).await {
                return (driver, c);
            }
            let printed = std::fs::read_to_string(driver.log.path()).unwrap_or_default();
            eprintln!(
                "no WebDriver session at attempt {attempt}; the driver and the app printed:\n{printed}"
            );
        }
        panic!("no WebDriver session with {application} in 3 attempts");
    }

    async fn session(&self, application: &str) -> Option<Client> {
        let caps = json!({"tauri:options": {"application": application, "args": []}});
        let serde_json::Value::Object(caps) = caps else {
            unreachable!()
        };
        let deadline = std::time::Instant::now() + WAIT;
        while std::time::Instant::now() < deadline {
            let mut builder =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
            let url = format!("http://127.0.0.1:{}", self.port);
            let connect = builder.capabilities(caps.clone()).connect(&url);
            if let Ok(Ok(c)) = tokio::time::timeout_at(deadline.into(), connect).await {
                return Some(c);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

impl Drop for TauriDriver {
    /// SIGTERM, which also ends WebKitWebDriver and the app; whatever of them is left after a while is killed, so
    /// that no app of this test is still running (and holding the single-instance name) when the next one starts.
    fn drop(&mut self) {
        let tree = descendants(self.child.id());
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while self.child.try_wait().ok().flatten().is_none() && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        for pid in tree {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let _ = self.child.wait();
    }
}

/// The processes started by `pid`, and theirs (from /proc).
fn descendants(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let child = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // "pid (name) state ppid …": the name may hold spaces and parentheses.
            let parent = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((child, parent))
        })
        .collect();
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        i += 1;
    }
    found.split_off(1)
}

/// The X windows titled "Chatgowa" (asked of the X server itself, as a window manager would).
pub(crate) fn chatgowa_windows(conn: &impl x11rb::connection::Connection, root: u32) -> Vec<u32> {
    use x11rb::protocol::xproto::{AtomEnum, ConnectionExt as _};
    let mut found = Vec::new();
    let mut todo = vec![root];
    while let Some(window) = todo.pop() {
        let Ok(Ok(tree)) = conn.query_tree(window).map(|c| c.reply()) else {
            continue;
        };
        todo.extend(tree.children);
        let name = conn
            .get_property(false, window, AtomEnum::WM_NAME, AtomEnum::STRING, 0, 64)
            .ok()
            .and_then(|c| c.reply().ok())
            .map(|p| p.value)
            .unwrap_or_default();
        if name == b"Chatgowa" {
            found.push(window);
        }
    }
    found
}

/// Clicks the window's close button, in effect: sends WM_DELETE_WINDOW, the request a window manager sends.
fn close_chatgowa_windows(conn: &impl x11rb::connection::Connection, root: u32) {
    use x11rb::protocol::xproto::{ClientMessageEvent, ConnectionExt as _, EventMask};
    let atom = |name: &[u8]| conn.intern_atom(false, name).unwrap().reply().unwrap().atom;
    let (protocols, delete) = (atom(b"WM_PROTOCOLS"), atom(b"WM_DELETE_WINDOW"));
    for window in chatgowa_windows(conn, root) {
        let event = ClientMessageEvent::new(
            32,
            window,
            protocols,
            [delete, x11rb::CURRENT_TIME, 0, 0, 0],
        );
        conn.send_event(false, window, EventMask::NO_EVENT, event)
            .unwrap();
    }
    x11rb::connection::Connection::flush(conn).unwrap();
}

#[tokio::test]
async fn the_native_window() {
    let (_one, home) = prepare().await;
    let gowa = Gowa::start().await;
    let chatwoot = ChatwootApi::start().await;
    let (port, admin_port) = (free_port(), free_port());
    let env = app_env(home.path(), port, admin_port);
    let (driver, c) = TauriDriver::launch(&env, BIN).await;
    let scenario = scenario(&c, &gowa, &chatwoot, port, admin_port, &env, home.path());
    let outcome = run_scenario(&c, "desktop", scenario).await;
    finish(driver, outcome, &[port, admin_port]).await;
}

/// Ends the app (waiting until its ports have closed, so the next app can start), then reports the scenario's
/// failure, if any, with what the app printed.
pub(crate) async fn finish(driver: TauriDriver, outcome: std::thread::Result<()>, ports: &[u16]) {
    let printed = std::fs::read_to_string(driver.log.path()).unwrap_or_default();
    drop(driver);
    eventually("the app to exit", WAIT, || async {
        ports
            .iter()
            .all(|port| std::net::TcpStream::connect(("127.0.0.1", *port)).is_err())
            .then_some(())
    })
    .await;
    if let Err(panic) = outcome {
        eprintln!("the driver and the app printed:\n{printed}");
        std::panic::resume_unwind(panic);
    }
}

/// The HTTP status of `GET url`, or `None` when nothing listens there.
async fn status_of(http: &reqwest::Client, url: &str, auth: &str) -> Option<u16> {
    let response = http
        .get(url)
        .header("authorization", auth)
        .send()
        .await
        .ok()?;
    Some(response.status().as_u16())
}

#[tokio::test]
async fn the_settings_screen_moves_the_listeners() {
    let (_one, home) = prepare().await;
    // The addresses chosen last time: the webhook's port is now taken by another program.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let admin_port = free_port();
    let db = home.path().join("relay.db");
    let pool = chatgowa_lib::store::Db::Sqlite(chatgowa_lib::store::connect(&db).await.unwrap());
    for (key, port) in [
        (settings::WEBHOOK_ADDRESS, busy_port),
        (settings::ADMIN_ADDRESS, admin_port),
    ] {
        settings::upsert(&pool, key, &format!("127.0.0.1:{port}"))
            .await
            .unwrap();
    }
    pool.close().await;
    let mut env = home_env(home.path());
    env.push(("DATABASE_URL", format!("file:{}", db.display())));
    let (driver, c) = TauriDriver::launch(&env, BIN).await;
    let moved_admin = free_port();
    let scenario = settings_scenario(&c, &db, busy_port, admin_port, moved_admin);
    let outcome = run_scenario(&c, "desktop-settings", scenario).await;
    drop(busy);
    finish(driver, outcome, &[admin_port, moved_admin]).await;
}

async fn settings_scenario(
    c: &Client,
    db: &Path,
    busy_port: u16,
    admin_port: u16,
    moved_admin: u16,
) {
    let http = crate::support::http_client();
    let admin = format!("http://127.0.0.1:{admin_port}");

    // The busy port is a clear message in the window, not a crash; the admin panel listens anyway.
    text_of(c, "#listen-problem", &format!("127.0.0.1:{busy_port}")).await;
    assert_eq!(
        status_of(&http, &format!("{admin}/healthz"), "").await,
        Some(200)
    );
    show(c, "#/settings", "#settings-webhookPort").await;
    text_of(c, "#settings-listen-problem", "another program").await;
    value_of(c, "#settings-webhookPort", &busy_port.to_string()).await;
    let first_password = eval(c, "document.querySelector('#admin-password').value")
        .await
        .unwrap();
    let first_password = first_password.as_str().unwrap().to_owned();

    // Bad input is answered next to its field and changes nothing.
    set_value(c, "#settings-webhookPort", "70000").await;
    click(c, "#settings-save-addresses").await;
    text_of(c, "#settings-webhookPort-error", "1 to 65535").await;

    // Another port: the relay listens there at once, without a restart.
    let port = free_port();
    set_value(c, "#settings-webhookPort", &port.to_string()).await;
    click(c, "#settings-save-addresses").await;
    value_of(
        c,
        "#settings-webhook-url",
        &format!("http://127.0.0.1:{port}/webhook"),
    )
    .await;
    present(c, "#settings-addresses").await;
    eventually("the problem to be gone", WAIT, || async {
        (eval(
            c,
            "document.querySelector('#settings-listen-problem') === null",
        )
        .await?
            == serde_json::Value::Bool(true))
        .then_some(())
    })
    .await;
    let answer = http
        .post(format!("http://127.0.0.1:{port}/webhook"))
        .header("content-type", "application/json")
        .body(message(7, 1, 0))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);

    // The admin panel moves too: the new port answers, the old one is closed.
    set_value(c, "#settings-adminPort", &moved_admin.to_string()).await;
    click(c, "#settings-save-addresses").await;
    let moved = format!("http://127.0.0.1:{moved_admin}");
    value_of(c, "#settings-admin-url", &format!("{moved}/admin/")).await;
    assert_eq!(
        status_of(&http, &format!("{moved}/healthz"), "").await,
        Some(200)
    );
    assert_eq!(
        status_of(&http, &format!("{admin}/healthz"), "").await,
        None
    );

    // A new browser-panel password works at once; the first one no longer does.
    let routes = format!("{moved}/admin/routes");
    let old_auth = basic_auth("admin", &first_password);
    assert_eq!(status_of(&http, &routes, &old_auth).await, Some(200));
    eval(c, "(window.confirm = () => true, true)").await;
    click(c, "#settings-new-password").await;
    let new_password = eventually("a new password", WAIT, || async {
        let value = eval(c, "document.querySelector('#admin-password')?.value ?? ''").await?;
        let value = value.as_str()?.to_owned();
        (value.len() == 20 && value != first_password).then_some(value)
    })
    .await;
    assert_eq!(
        status_of(&http, &routes, &basic_auth("admin", &new_password)).await,
        Some(200)
    );
    assert_eq!(status_of(&http, &routes, &old_auth).await, Some(401));
    eval(c, "document.getElementById('toast').replaceChildren()").await;
    screenshot(c, "desktop-settings-en.png").await;

    // The new addresses are kept for the next start.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let kept: Vec<(String, String)> = sqlx::query_as(
        "SELECT key, value FROM settings WHERE key IN ('webhook_address', 'admin_address') ORDER BY key",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    assert_eq!(
        kept,
        [
            (
                "admin_address".to_owned(),
                format!("127.0.0.1:{moved_admin}")
            ),
            ("webhook_address".to_owned(), format!("127.0.0.1:{port}")),
        ]
    );
}

async fn scenario(
    c: &Client,
    gowa: &Gowa,
    chatwoot: &ChatwootApi,
    port: u16,
    admin_port: u16,
    env: &[(&'static str, String)],
    home: &Path,
) {
    let base = format!("http://127.0.0.1:{port}");
    let admin = format!("http://127.0.0.1:{admin_port}");
    let http = crate::support::http_client();

    // With no route and no Chatwoot account yet, the window opens at the Chatwoot step, which knows where the
    // relay listens; the whole link is made in the window.
    text_of(c, "#nav", "Routes").await;
    value_of(c, "#public-url", &format!("{base}/webhook")).await;
    click(c, "#public-url-save").await;
    text_of(c, "#public-url-note", "SAFE_FETCH_ALLOW_PRIVATE_NETWORK").await;
    set_value(c, "#link-url", &chatwoot.base).await;
    set_value(c, "#link-accountId", "1").await;
    set_value(c, "#link-token", ADMIN_TOKEN).await;
    click(c, "#link-save").await;
    text_of(c, ".link-card h3", "Toko Bandung").await;
    // Linking also catches up with Chatwoot, and the card is drawn again with what that found: a click before
    // then could land where the button was a moment ago.
    text_of(c, ".link-card .catch-up", "Caught up").await;
    click(c, ".link-card .register").await;
    text_of(
        c,
        ".link-card .webhook-state.ok",
        &format!("{base}/webhook"),
    )
    .await;
    click(c, ".link-card .check").await;
    text_of(
        c,
        ".link-card .check-result.ok",
        "Chatwoot reached this relay",
    )
    .await;
    eval(c, "document.getElementById('toast').replaceChildren()").await;
    screenshot(c, "desktop-chatwoot-en.png").await;
    show(c, "#/", "#webhook-url").await;
    value_of(c, "#webhook-url", &format!("{base}/webhook")).await;

    // First run without BASIC_AUTH_PASS: Settings shows a generated browser-panel password, once.
    show(c, "#/settings", "#admin-password").await;
    let password = eval(c, "document.querySelector('#admin-password').value")
        .await
        .unwrap();
    let password = password.as_str().unwrap().to_owned();
    assert_eq!(password.len(), 20);
    value_of(c, "#settings-admin-url", &format!("{admin}/admin/")).await;
    let admin_api = Admin::login(&admin, "admin", &password).with_client(http.clone());
    let wrong = http
        .get(format!("{admin}/admin/routes"))
        .header("authorization", basic_auth("admin", "x"))
        .send();
    assert_eq!(wrong.await.unwrap().status(), 401);
    screenshot(c, "desktop-settings-env-en.png").await;

    // Start at login writes the autostart entry (which starts the app in the tray).
    click(c, "#start-at-login").await;
    let entry = home.join(".config/autostart/Chatgowa.desktop");
    // The file may be seen half written: wait for the whole entry, which starts the app in the tray.
    eventually("the autostart entry", WAIT, || async {
        let text = std::fs::read_to_string(&entry).ok()?;
        (text.contains("Exec=") && text.contains("--minimized")).then_some(())
    })
    .await;

    // Notifications can be turned off, and the choice is kept (the screen re-reads it from the app).
    click(c, "#notifications").await;
    eventually("notifications to stay off", WAIT, || async {
        // Leave the screen and come back: it is drawn again from what the app reports.
        show(c, "#/", "#webhook-url").await;
        show(c, "#/settings", "#notifications").await;
        let checked = eval(c, "document.querySelector('#notifications').checked").await?;
        (checked == serde_json::Value::Bool(false)).then_some(())
    })
    .await;

    // A route added in the window is there for the HTTP admin API.
    show(c, "#/routes", "#add-route").await;
    click(c, "#add-route").await;
    submit_route(c, "7", "Kasir", "ftp://nope").await;
    text_of(c, "#route-webhookUrl-error", "http://").await;
    resubmit_url(c, &gowa.url("/chatwoot/webhook")).await;
    present(c, "tr[data-inbox-id='7']").await;
    let (_, routes) = admin_api.get("/admin/routes").await;
    assert_eq!(
        (
            routes["routes"][0]["inboxId"].as_i64(),
            routes["routes"][0]["name"].as_str()
        ),
        (Some(7), Some("Kasir"))
    );

    // A webhook shows up in the window's delivery list without a reload (Tauri events). The account is linked,
    // so it is signed as Chatwoot signs it.
    show(c, "#/deliveries", "#deliveries-list").await;
    let secret = chatwoot.hooks()[0].secret.clone();
    let answer: serde_json::Value = signed_webhook(&http, &base, message(7, 1, 0), &secret)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = answer["deliveryId"].as_i64().unwrap();
    present(
        c,
        &format!("tr[data-delivery-id='{id}'] [data-status='delivered']"),
    )
    .await;

    for (name, hash, ready) in [
        ("overview", "#/", "#webhook-url"),
        ("routes", "#/routes", "tr[data-inbox-id='7']"),
        ("deliveries", "#/deliveries", "tr[data-delivery-id]"),
    ] {
        show(c, hash, ready).await;
        eval(c, "document.getElementById('toast').replaceChildren()").await;
        screenshot(c, &format!("desktop-{name}-en.png")).await;
    }

    // The office admin's flows (panel.rs), once in the window: what needs attention and its link, search by
    // phone, typing hidden until asked for, a bulk retry; wrong fields in Indonesian below.
    let seeded = panel::seed(&base, &admin_api, gowa, Some(&secret)).await;
    panel::attention_leads_to_the_failed_messages(c, &seeded, "en").await;
    panel::search_finds_a_phone_number(c).await;
    panel::typing_is_hidden_until_asked_for(c, &seeded, "en").await;
    panel::bulk_retry_sends_the_failed_replies(c, &seeded, gowa, &admin_api, false).await;

    // Bahasa Indonesia in the window too.
    click(c, "#lang option[value='id']").await;
    text_of(c, "#nav", "Log pesan").await;
    panel::wrong_fields_are_named_in_indonesian(c, gowa).await;
    show(c, "#/deliveries", "#deliveries-list").await;
    // …and the tray follows: the choice reaches the app (kept in its settings).
    let db = home.join("data/id.chatgowa.relay/chatgowa-dev.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    eventually("the language setting", WAIT, || async {
        let value: Option<String> =
            sqlx::query_scalar("SELECT value FROM settings WHERE key = 'language'")
                .fetch_optional(&pool)
                .await
                .ok()?;
        (value.as_deref() == Some("id")).then_some(())
    })
    .await;
    pool.close().await;
    eval(c, "document.getElementById('toast').replaceChildren()").await;
    screenshot(c, "desktop-deliveries-id.png").await;

    // Closing the window leaves the app in the tray, still relaying.
    let (x, screen) = x11rb::connect(None).expect("an X display");
    let root = x11rb::connection::Connection::setup(&x).roots[screen].root;
    let open_windows = chatgowa_windows(&x, root).len();
    assert!(open_windows > 0, "the window is on the X screen");
    close_chatgowa_windows(&x, root);
    eventually("the window to close", WAIT, || async {
        chatgowa_windows(&x, root).is_empty().then_some(())
    })
    .await;
    signed_webhook(&http, &base, message(7, 1, 1), &secret)
        .send()
        .await
        .unwrap();
    gowa.wait_for("a delivery with the window closed", WAIT, |r| {
        r.iter().any(|r| r.json()["id"] == 1)
    })
    .await;

    // Launching Chatgowa again brings the window back instead of starting a second relay.
    let second = Command::new(BIN)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(second.success());
    eventually("the window to reopen", WAIT, || async {
        (chatgowa_windows(&x, root).len() == open_windows).then_some(())
    })
    .await;
}
