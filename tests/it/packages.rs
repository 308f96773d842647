//! The Linux packages as users get them: `scripts/packages` builds them, and `scripts/test` runs these tests as
//! root under Xvfb (they install and remove packages on the machine, so a plain `cargo test` leaves them out).
//! The server package: installed with apt-get, its unit's command run as its user with its settings (no systemd
//! as PID 1 here), a webhook relayed, SIGTERM ends it cleanly, that user can write nothing but its state
//! directory, remove and purge. The desktop package: installed, started with its window and its tray icon,
//! relaying, "Start at login" pointing at the installed binary, and removal ending the running app.

#![cfg(feature = "desktop")]

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use x11rb::connection::Connection as _;
use x11rb::protocol::Event;
use x11rb::protocol::xproto::{
    ClientMessageEvent, ConnectionExt as _, CreateWindowAux, EventMask, WindowClass,
};
use x11rb::rust_connection::RustConnection;

use crate::desktop;
use crate::support::{ADMIN_PASS, Admin, Gowa, eventually, free_port, heavy, message};
use crate::webdriver::{click, run_scenario, show};

const WAIT: Duration = Duration::from_secs(30);

/// A package `scripts/packages` built: `$CHATGOWA_DIST`, else `<target>/packages`.
fn package(prefix: &str) -> PathBuf {
    let dist = std::env::var_os("CHATGOWA_DIST").map_or_else(
        || Path::new(env!("CARGO_TARGET_TMPDIR")).join("../packages"),
        PathBuf::from,
    );
    std::fs::read_dir(&dist)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/packages)", dist.display()))
        .map(|entry| entry.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix}*.deb in {}", dist.display()))
}

/// Runs a command, asserting that it succeeds; its standard output.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn apt(args: &[&str]) {
    let mut all = vec!["-y", "-qq", "--no-install-recommends"];
    all.extend(args);
    run("apt-get", &all);
}

/// `getent passwd name` as (uid, gid, home, shell), `None` when there is no such user.
fn user(name: &str) -> Option<(u32, u32, String, String)> {
    let out = Command::new("getent")
        .args(["passwd", name])
        .output()
        .ok()?;
    let line = String::from_utf8(out.stdout).ok()?;
    let fields: Vec<&str> = line.trim().split(':').collect();
    (fields.len() == 7).then(|| {
        (
            fields[2].parse().unwrap(),
            fields[3].parse().unwrap(),
            fields[5].to_owned(),
            fields[6].to_owned(),
        )
    })
}

/// Libraries of a desktop that a headless server must not need.
const GUI: [&str; 7] = [
    "gtk",
    "webkit",
    "appindicator",
    "libx11",
    "rsvg",
    "soup",
    "gdk",
];

#[tokio::test]
#[ignore = "installs packages: scripts/test runs it as root after scripts/packages"]
async fn the_server_package_runs_as_a_service_of_its_own() {
    let _heavy = heavy().await;
    // From nothing: whatever an earlier run left (its settings, its user) goes first.
    run("dpkg", &["--purge", "chatgowa-server"]);
    apt(&["install", package("chatgowa-server_").to_str().unwrap()]);

    // What a server's admin gets: the binary, the unit, settings readable by the service only, a system user.
    let (uid, gid, home, shell) = user("chatgowa").expect("the chatgowa system user");
    assert!(
        uid < 1000 && home == "/var/lib/chatgowa" && shell.ends_with("nologin"),
        "{uid} {home} {shell}"
    );
    let state = std::fs::metadata("/var/lib/chatgowa").unwrap();
    assert_eq!((state.uid(), state.mode() & 0o777), (uid, 0o750));
    let settings = Path::new("/etc/chatgowa/chatgowa.env");
    let meta = std::fs::metadata(settings).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (0, gid, 0o640)
    );
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example")).unwrap();
    let installed = std::fs::read_to_string(settings).unwrap();
    for key in example.lines().filter_map(setting_key) {
        assert!(
            installed.lines().any(|l| setting_key(l) == Some(key)),
            "{key} in chatgowa.env"
        );
    }
    assert!(installed.contains("\nDATABASE_URL=/var/lib/chatgowa/chatgowa.db\n"));
    let depends = run("dpkg-query", &["-W", "-f=${Depends}", "chatgowa-server"]);
    let linked = run("ldd", &["/usr/bin/chatgowa-server"]);
    for gui in GUI {
        assert!(
            !depends.contains(gui) && !linked.contains(gui),
            "{gui}: {depends} {linked}"
        );
    }

    // The unit: its own user, its settings, logs to the journal, and writes nothing but its state directory.
    let unit = std::fs::read_to_string("/lib/systemd/system/chatgowa.service").unwrap();
    let directive = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} in the unit"))
    };
    for (key, value) in [
        ("User", "chatgowa"),
        ("Group", "chatgowa"),
        ("EnvironmentFile", "/etc/chatgowa/chatgowa.env"),
        ("WorkingDirectory", "/var/lib/chatgowa"),
        ("ProtectSystem", "strict"),
        ("ReadWritePaths", "/var/lib/chatgowa"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("KillSignal", "SIGTERM"),
    ] {
        assert_eq!(directive(key), value, "{key}");
    }
    assert!(
        !unit.contains("StandardOutput") && !unit.contains("StandardError"),
        "logs go to the journal"
    );

    // Configured as an admin would, then started as systemd would start it.
    let port = free_port();
    let configured = installed
        .replace("\nPORT=3000\n", &format!("\nPORT={port}\n"))
        .replace(
            "\nBASIC_AUTH_PASS=yourpassword\n",
            &format!("\nBASIC_AUTH_PASS={ADMIN_PASS}\n"),
        )
        .replace("\nCHATGOWA_BIND=0.0.0.0\n", "\nCHATGOWA_BIND=127.0.0.1\n");
    std::fs::write(settings, configured).unwrap();
    let log = tempfile::NamedTempFile::new().unwrap();
    let exec: Vec<&str> = directive("ExecStart").split_whitespace().collect();
    let mut service = as_service_user(&exec)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .envs(environment_file(
            &std::fs::read_to_string(settings).unwrap(),
        ))
        // A CI container's root is an overlay the relay would rightly refuse for its database.
        .env("CHATGOWA_ALLOW_EPHEMERAL_DB", "true")
        .current_dir(directive("WorkingDirectory"))
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    eventually("the service's /healthz", WAIT, || async {
        let r = reqwest::get(format!("{base}/healthz")).await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    relays_a_webhook(&base, &Admin::new(&base)).await;
    assert_eq!(
        std::fs::metadata("/var/lib/chatgowa/chatgowa.db")
            .unwrap()
            .uid(),
        uid
    );

    // The service's user can write its state directory and nothing else.
    let writes = |path: &str| {
        as_service_user(&["touch", path])
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    assert!(writes("/var/lib/chatgowa/probe"));
    for outside in [
        "/etc/chatgowa/probe",
        "/usr/bin/probe",
        "/var/lib/probe",
        "/lib/systemd/system/probe",
        "/root/probe",
    ] {
        assert!(
            !writes(outside),
            "{outside} is writable by the service's user"
        );
    }

    // `systemctl stop`: SIGTERM, a drain, exit 0.
    run("kill", &["-TERM", &service.id().to_string()]);
    assert!(service.wait().unwrap().success(), "a clean exit on SIGTERM");
    let written = std::fs::read_to_string(log.path()).unwrap();
    assert!(!written.contains(ADMIN_PASS), "the log holds the password");

    // Removed, the settings stay (a conffile); purged, nothing of it is left.
    apt(&["remove", "chatgowa-server"]);
    assert!(!Path::new("/usr/bin/chatgowa-server").exists() && settings.exists());
    apt(&["purge", "chatgowa-server"]);
    assert!(!Path::new("/etc/chatgowa").exists() && !Path::new("/var/lib/chatgowa").exists());
    assert!(
        user("chatgowa").is_none(),
        "the system user is gone with the purge"
    );
}

/// A route to a GoWA stand-in, added through the admin API, and a webhook posted to `webhooks` that reaches it.
async fn relays_a_webhook(webhooks: &str, admin: &Admin) {
    let gowa = Gowa::start().await;
    let (status, _) = admin
        .post_json(
            "/admin/routes",
            json!({"inboxId": 7, "webhookUrl": gowa.url("/chatwoot/webhook")}),
        )
        .await;
    assert_eq!(status, 201);
    let answer = crate::support::http_client()
        .post(format!("{webhooks}/webhook"))
        .header("content-type", "application/json")
        .body(message(7, 1, 0))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    gowa.wait_for("the relayed webhook", WAIT, |r| r.len() == 1)
        .await;
}

/// `KEY` of a `KEY=value` line, or of a commented-out `# KEY=value` one.
fn setting_key(line: &str) -> Option<&str> {
    let line = line.trim_start_matches(['#', ' ']);
    let (key, _) = line.split_once('=')?;
    (!key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'))
    .then_some(key)
}

/// The variables of an `EnvironmentFile`, as systemd reads it (comments and blank lines skipped).
fn environment_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// `command` as the service's user and group, as systemd's `User=`/`Group=` would run it.
fn as_service_user(command: &[&str]) -> Command {
    let mut setpriv = Command::new("setpriv");
    setpriv
        .args([
            "--reuid=chatgowa",
            "--regid=chatgowa",
            "--init-groups",
            "--",
        ])
        .args(command);
    setpriv
}

#[tokio::test]
#[ignore = "installs packages: scripts/test runs it as root, under Xvfb, after scripts/packages"]
async fn the_desktop_package_starts_in_the_tray_and_goes_away_whole() {
    let (_one, home) = desktop::prepare().await;
    run("dpkg", &["--purge", "chatgowa"]);
    apt(&["install", package("chatgowa_").to_str().unwrap()]);

    // What a user gets: the command, the menu entry, the icons.
    let version = run("/usr/bin/chatgowa", &["--version"]);
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    let entry = std::fs::read_to_string("/usr/share/applications/Chatgowa.desktop").unwrap();
    for line in [
        "Exec=chatgowa",
        "Icon=chatgowa",
        "Name=Chatgowa",
        "Type=Application",
    ] {
        assert!(
            entry.lines().any(|l| l == line),
            "{line} in the menu entry:\n{entry}"
        );
    }
    for size in ["32x32", "128x128", "256x256@2"] {
        let icon = format!("/usr/share/icons/hicolor/{size}/apps/chatgowa.png");
        assert!(Path::new(&icon).exists(), "{icon}");
    }

    // Started (by the WebDriver, as from the menu), with a tray to dock into.
    let tray = XembedTray::start();
    let (port, admin_port) = (free_port(), free_port());
    let mut env = desktop::app_env(home.path(), port, admin_port);
    env.push(("BASIC_AUTH_PASS", ADMIN_PASS.to_owned()));
    let (driver, c) = desktop::TauriDriver::launch(&env, "/usr/bin/chatgowa").await;
    let scenario = async {
        let (x, screen) = x11rb::connect(None).expect("an X display");
        let root = x.setup().roots[screen].root;
        eventually("the window", WAIT, || async {
            (!desktop::chatgowa_windows(&x, root).is_empty()).then_some(())
        })
        .await;
        eventually("the tray icon", WAIT, || async {
            tray.docked().then_some(())
        })
        .await;

        let admin = Admin::new(format!("http://127.0.0.1:{admin_port}"));
        relays_a_webhook(&format!("http://127.0.0.1:{port}"), &admin).await;

        show(&c, "#/settings", "#start-at-login").await;
        click(&c, "#start-at-login").await;
        let autostart = home.path().join(".config/autostart/Chatgowa.desktop");
        let written = eventually("the autostart entry", WAIT, || async {
            let text = std::fs::read_to_string(&autostart).ok()?;
            text.contains("--minimized").then_some(text)
        })
        .await;
        let exec = written.lines().find(|l| l.starts_with("Exec=")).unwrap();
        assert!(
            exec.contains("/usr/bin/chatgowa") && exec.ends_with("--minimized"),
            "{exec}"
        );

        // Removed while it runs: the app quits, nothing of it keeps running.
        apt(&["remove", "chatgowa"]);
        assert!(!Path::new("/usr/bin/chatgowa").exists());
        eventually("every copy of the app to be gone", WAIT, || async {
            installed_app_running().is_empty().then_some(())
        })
        .await;
    };
    let outcome = run_scenario(&c, "package-desktop", scenario).await;
    desktop::finish(driver, outcome, &[port, admin_port]).await;
}

/// Processes whose program is (or was, before removal) `/usr/bin/chatgowa`.
fn installed_app_running() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
            exe.to_string_lossy()
                .starts_with("/usr/bin/chatgowa")
                .then_some(pid)
        })
        .collect()
}

/// A system tray on the X screen (the XEmbed protocol a desktop panel speaks): owns the tray selection and notes
/// when an icon asks to dock.
struct XembedTray {
    conn: RustConnection,
    opcode: u32,
}

impl XembedTray {
    fn start() -> Self {
        let (conn, screen) = x11rb::connect(None).expect("an X display");
        let root = conn.setup().roots[screen].root;
        let atom = |name: &str| {
            conn.intern_atom(false, name.as_bytes())
                .unwrap()
                .reply()
                .unwrap()
                .atom
        };
        let selection = atom(&format!("_NET_SYSTEM_TRAY_S{screen}"));
        let (manager, opcode) = (atom("MANAGER"), atom("_NET_SYSTEM_TRAY_OPCODE"));
        let window = conn.generate_id().unwrap();
        conn.create_window(
            0,
            window,
            root,
            0,
            0,
            1,
            1,
            0,
            WindowClass::INPUT_OUTPUT,
            0,
            &CreateWindowAux::new(),
        )
        .unwrap();
        conn.set_selection_owner(window, selection, x11rb::CURRENT_TIME)
            .unwrap();
        let announce = ClientMessageEvent::new(
            32,
            root,
            manager,
            [x11rb::CURRENT_TIME, selection, window, 0, 0],
        );
        conn.send_event(false, root, EventMask::STRUCTURE_NOTIFY, announce)
            .unwrap();
        conn.flush().unwrap();
        Self { conn, opcode }
    }

    /// Whether an icon has asked to dock (`SYSTEM_TRAY_REQUEST_DOCK`) since the tray started.
    fn docked(&self) -> bool {
        while let Ok(Some(event)) = self.conn.poll_for_event() {
            if let Event::ClientMessage(m) = event
                && m.type_ == self.opcode
                && m.data.as_data32()[1] == 0
            {
                return true;
            }
        }
        false
    }
}
