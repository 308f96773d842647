//! Headless operations: metrics, retention, the upgrade from the TypeScript version, log format, the
//! container volume check, and the Docker image's build, health check and stop signal.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;

use crate::support::{
    BIN, Gowa, Reply, Server, TestRelay, eventually, free_port, message, wait_exit,
};

#[tokio::test]
async fn metrics_count_webhooks_and_attempts_behind_the_admin_login() {
    let gowa = Gowa::start().await;
    gowa.set(|r, _| match r.json()["conversation"]["id"].as_i64() {
        Some(2) => Reply::status(500),
        _ => Reply::status(200),
    });
    let relay = TestRelay::start(|c| {
        c.retry_schedule = vec![Duration::from_secs(60)];
        c.max_age = Duration::from_secs(3600);
    })
    .await;
    relay
        .add_route(7, &gowa.url("/chatwoot/webhook"), None)
        .await;
    relay.post_webhook(message(7, 1, 1), Some("a")).await;
    relay.post_webhook(message(7, 1, 2), Some("a")).await;
    relay.post_webhook(message(8, 1, 1), None).await;
    gowa.wait_for("the first attempt", Duration::from_secs(10), |r| {
        r.len() == 1
    })
    .await;
    // After the first one, so that the route's latest attempt is the failing one.
    relay.post_webhook(message(7, 2, 1), None).await;
    let refused = relay
        .http
        .post(format!("{}/webhook", relay.base))
        .header("content-type", "application/json")
        .body("[1,2]")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    gowa.wait_for("both attempts", Duration::from_secs(10), |r| r.len() == 2)
        .await;

    let url = format!("{}/metrics", relay.base);
    assert_eq!(relay.http.get(&url).send().await.unwrap().status(), 401);
    let scrape = || async {
        let response = relay
            .admin
            .request(Method::GET, "/metrics")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/openmetrics-text")
        );
        response.text().await.unwrap()
    };
    let text = eventually(
        "both attempts recorded",
        Duration::from_secs(10),
        || async {
            // The counter moves as the attempt ends; the gauges are read from the database, where the attempt
            // is recorded a moment later.
            let text = scrape().await;
            (text.contains("chatgowa_delivery_attempts_total{outcome=\"retry\"} 1")
                && text.contains("chatgowa_route_failing{inbox_id=\"7\",name=\"test\"} 1"))
            .then_some(text)
        },
    )
    .await;
    for line in [
        "chatgowa_webhooks_received_total{decision=\"queued\"} 2",
        "chatgowa_webhooks_received_total{decision=\"duplicate\"} 1",
        "chatgowa_webhooks_received_total{decision=\"no_route\"} 1",
        "chatgowa_webhooks_received_total{decision=\"rejected\"} 1",
        "chatgowa_delivery_attempts_total{outcome=\"delivered\"} 1",
        "chatgowa_delivery_attempt_duration_seconds_count 2",
        "chatgowa_queue_depth 1",
        "chatgowa_deliveries_paused 0",
        "chatgowa_route_failing{inbox_id=\"7\",name=\"test\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing in:\n{text}");
    }
    let age = text
        .lines()
        .find_map(|l| l.strip_prefix("chatgowa_oldest_pending_age_seconds "))
        .unwrap();
    assert!(age.parse::<f64>().unwrap() >= 0.0, "{age}");
    relay.stop().await;
}

/// Steady load with a short retention: delivered deliveries disappear with their attempts, dead ones stay
/// for their own (longer) retention, and the database file stops growing once pruning keeps pace.
///
/// Each round waits until the pruner has removed the round before it, so at most two rounds are ever
/// stored however slow the machine is; the file must then reuse freed pages instead of growing.
#[tokio::test]
async fn old_deliveries_are_pruned_and_the_database_stops_growing() {
    let gowa = Gowa::start().await;
    gowa.set(|r, _| match r.json()["inbox"]["id"].as_i64() {
        Some(9) => Reply::status(400),
        _ => Reply::status(200),
    });
    let relay = TestRelay::start(|c| {
        c.retention = Duration::from_millis(300);
        c.dead_retention = Duration::from_secs(3600);
    })
    .await;
    relay
        .add_route(7, &gowa.url("/chatwoot/webhook"), None)
        .await;
    relay
        .add_route(9, &gowa.url("/chatwoot/webhook"), None)
        .await;
    relay.post_webhook(message(9, 1, 1), Some("dead-one")).await;

    let database = relay
        .state
        .config
        .database
        .sqlite_path()
        .map(ToOwned::to_owned);
    // SQLite: the file's size once the write-ahead log is folded in, its high-water mark in pages. (A
    // PostgreSQL server reuses the space of deleted rows after its autovacuum: not the relay's to measure.)
    let size = || async {
        let (chatgowa_lib::store::Db::Sqlite(pool), Some(database)) = (&relay.state.db, &database)
        else {
            return None;
        };
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(pool)
            .await
            .unwrap();
        Some(std::fs::metadata(database).unwrap().len())
    };
    let counts = |status: &'static str| {
        let db = relay.state.db.clone();
        async move {
            crate::support::scalar(
                &db,
                &format!("SELECT count(*) FROM deliveries WHERE status = '{status}'"),
            )
            .await
        }
    };
    let padding = "x".repeat(4000);
    let mut sizes = Vec::new();
    for round in 0..24 {
        for seq in 0..100 {
            let mut body: serde_json::Value =
                serde_json::from_slice(&message(7, 1 + (seq % 10) as i64, round * 100 + seq))
                    .unwrap();
            body["content"] = padding.clone().into();
            relay
                .post_webhook(serde_json::to_vec(&body).unwrap(), None)
                .await;
        }
        let expected = (round + 1) * 100 + 1;
        gowa.wait_for("the round delivered", Duration::from_secs(20), |r| {
            r.len() == expected
        })
        .await;
        sizes.push(size().await);
        eventually(
            "the rounds before this one pruned",
            Duration::from_secs(10),
            || async { (counts("delivered").await <= 100).then_some(()) },
        )
        .await;
    }
    // 24 rounds of ~400 KiB were stored: without pruning the file would pass 9 MiB. With it, the file holds
    // at most two rounds' rows, and the second half of the run reuses pages instead of adding them.
    let round_bytes = 100 * 4000;
    if let (Some(middle), Some(last)) = (sizes[11], sizes[23]) {
        assert!(
            last < 5 * round_bytes && last.saturating_sub(middle) < round_bytes,
            "file kept growing: {sizes:?} (bytes after each round)"
        );
    }

    eventually(
        "every delivered one pruned",
        Duration::from_secs(10),
        || async { (counts("delivered").await == 0).then_some(()) },
    )
    .await;
    assert_eq!(counts("dead").await, 1, "dead ones are kept longer");
    let attempts = crate::support::scalar(
        &relay.state.db,
        "SELECT count(*) FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id",
    )
    .await;
    let orphans = crate::support::scalar(
        &relay.state.db,
        "SELECT count(*) FROM delivery_attempts WHERE delivery_id NOT IN (SELECT id FROM deliveries)",
    )
    .await;
    assert_eq!(
        (attempts, orphans),
        (1, 0),
        "attempts go with their delivery"
    );
    // The dedupe key of the dead delivery is still known; pruned ones are forgotten with their rows.
    let again = relay.post_webhook(message(9, 1, 1), Some("dead-one")).await;
    assert_eq!(again["reason"], "duplicate");
    relay.stop().await;
}

/// The TypeScript version's database, built by its Prisma migration, with rows written the ways Prisma
/// writes them (the client: unix milliseconds; the column default: SQLite's `CURRENT_TIMESTAMP` text).
async fn typescript_database(path: &Path) {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    let fixtures = format!("{}/tests/fixtures/typescript", env!("CARGO_MANIFEST_DIR"));
    for file in ["prisma_migrations.sql", "migration.sql"] {
        let sql = std::fs::read_to_string(format!("{fixtures}/{file}")).unwrap();
        sqlx::raw_sql(&sql).execute(&pool).await.unwrap();
    }
    sqlx::raw_sql(
        r#"INSERT INTO "WebhookRoute" ("id", "inboxId", "webhookUrl", "name", "createdAt", "updatedAt")
           VALUES (3, 12, 'http://user:pw@gowa:3000/chatwoot/webhook/dev1', 'Sales', 1767225600123, 1767312000456);
           INSERT INTO "WebhookRoute" ("id", "inboxId", "webhookUrl", "name", "updatedAt")
           VALUES (5, 14, 'http://gowa:3000/chatwoot/webhook', NULL, '2026-02-01 08:30:00');"#,
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
}

#[tokio::test]
async fn routes_of_the_typescript_version_are_imported_once_and_its_table_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("prisma")).unwrap();
    let db = dir.path().join("prisma/dev.db");
    typescript_database(&db).await;
    let env = [
        ("DATABASE_URL", "file:./prisma/dev.db"),
        ("RUST_LOG", "info"),
    ];
    let port = free_port();
    let server = Server::spawn_logging(dir.path(), port, &env);
    server.wait_healthy().await;
    let routes = server.admin(Method::GET, "/admin/routes").await;
    let routes = routes["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 2, "{routes:?}");
    assert_eq!(routes[0]["id"], 3);
    assert_eq!(routes[0]["inboxId"], 12);
    assert_eq!(routes[0]["name"], "Sales");
    assert_eq!(routes[0]["createdAt"], "2026-01-01T00:00:00.123Z");
    assert_eq!(routes[0]["updatedAt"], "2026-01-02T00:00:00.456Z");
    assert_eq!(routes[1]["id"], 5);
    assert_eq!(routes[1]["inboxId"], 14);
    assert_eq!(routes[1]["updatedAt"], "2026-02-01T08:30:00.000Z");
    let created = routes[1]["createdAt"].as_str().unwrap();
    assert!(created.starts_with("20"), "{created}");
    let log = server.stop_and_read_log();
    assert!(
        log.contains("routes imported from the TypeScript version") && log.contains("imported=2"),
        "{log}"
    );

    // Deleted here, it does not come back on the next start: the import ran once.
    let server = Server::spawn_logging(dir.path(), port, &env);
    server.wait_healthy().await;
    server.admin(Method::DELETE, "/admin/routes/5").await;
    drop(server);
    let server = Server::spawn_logging(dir.path(), port, &env);
    server.wait_healthy().await;
    let routes = server.admin(Method::GET, "/admin/routes").await;
    assert_eq!(routes["routes"].as_array().unwrap().len(), 1);
    let log = server.stop_and_read_log();
    assert!(!log.contains("routes imported"), "{log}");

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let old: Vec<(i64, i64, String)> =
        sqlx::query_as(r#"SELECT "id", "inboxId", "webhookUrl" FROM "WebhookRoute" ORDER BY "id""#)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(old.len(), 2, "the old table is untouched: {old:?}");
    pool.close().await;
}

#[tokio::test]
async fn json_logs_when_asked_with_rust_log_respected() {
    let dir = tempfile::tempdir().unwrap();
    let gowa = Gowa::start().await;
    let env = [
        ("CHATGOWA_LOG_FORMAT", "json"),
        ("RUST_LOG", "chatgowa_lib=info,warn"),
    ];
    let server = Server::spawn_logging(dir.path(), free_port(), &env);
    server.wait_healthy().await;
    server.add_route(7, &gowa.url("/chatwoot/webhook")).await;
    server.post_webhook(message(7, 1, 1)).await;
    gowa.wait_for("the delivery", Duration::from_secs(10), |r| r.len() == 1)
        .await;
    let log = server.stop_and_read_log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let webhook = lines
        .iter()
        .find(|l| l["message"] == "webhook")
        .unwrap_or_else(|| panic!("no webhook line in {log}"));
    assert_eq!(webhook["level"], "INFO");
    assert_eq!(webhook["decision"], "queued");
    assert_eq!(webhook["inbox_id"], "7");
    assert!(lines.iter().any(|l| l["message"] == "delivery attempt"));

    // RUST_LOG decides: warnings only, so no info line at all.
    let dir = tempfile::tempdir().unwrap();
    let quiet = [("CHATGOWA_LOG_FORMAT", "json"), ("RUST_LOG", "warn")];
    let server = Server::spawn_logging(dir.path(), free_port(), &quiet);
    server.wait_healthy().await;
    server.post_webhook(message(7, 1, 1)).await;
    let log = server.stop_and_read_log();
    assert!(!log.contains("\"INFO\""), "{log}");
}

#[test]
fn a_container_database_off_a_volume_is_refused_unless_allowed() {
    // /dev/shm is memory: gone with the container, like its own filesystem.
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let run = |allow: Option<&str>| {
        let mut command = Command::new(BIN);
        command
            .args(["--server"])
            .current_dir(dir.path())
            .env_clear()
            .env("container", "docker")
            .env("PORT", free_port().to_string())
            .env("CHATGOWA_BIND", "127.0.0.1")
            .env("DATABASE_URL", "file:./queue/relay.db")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(allow) = allow {
            command.env("CHATGOWA_ALLOW_EPHEMERAL_DB", allow);
        }
        command
    };
    let refused = run(None).output().unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("deleted with the container")
            && stderr.contains("chatgowa-db:/app/prisma")
            && stderr.contains("CHATGOWA_ALLOW_EPHEMERAL_DB=true"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("queue/relay.db").exists(),
        "nothing opened"
    );

    let mut allowed = run(Some("true")).spawn().unwrap();
    let started = Instant::now();
    let db = dir.path().join("queue/relay.db");
    while !db.exists() {
        assert!(
            allowed.try_wait().unwrap().is_none(),
            "exited although allowed"
        );
        assert!(started.elapsed() < Duration::from_secs(20), "never opened");
        std::thread::sleep(Duration::from_millis(20));
    }
    allowed.kill().unwrap();
    allowed.wait().unwrap();
}

/// The parts of the Dockerfile this test relies on, read from the file itself so the two cannot drift.
struct Dockerfile {
    /// What the build stage copies into its source directory.
    build_context: Vec<String>,
    /// The build stage's cargo command, from `cargo` to the first `&&`.
    cargo: Vec<String>,
    env: Vec<(String, String)>,
    user: String,
    stop_signal: String,
    healthcheck: Vec<String>,
    command: Vec<String>,
}

impl Dockerfile {
    fn read() -> Self {
        let text = std::fs::read_to_string(format!("{}/Dockerfile", env!("CARGO_MANIFEST_DIR")))
            .unwrap()
            .replace("\\\n", " ");
        let instructions: Vec<(&str, &str)> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once(' '))
            .collect();
        let stages: Vec<usize> = instructions
            .iter()
            .enumerate()
            .filter(|(_, (op, _))| *op == "FROM")
            .map(|(i, _)| i)
            .collect();
        assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
        let (build, runtime) = instructions.split_at(stages[1]);
        let words = |s: &str| -> Vec<String> { s.split_whitespace().map(str::to_owned).collect() };
        let json = |s: &str| -> Vec<String> { serde_json::from_str(s.trim()).unwrap() };
        let one = |stage: &[(&str, &str)], op: &str| -> String {
            let found: Vec<&str> = stage
                .iter()
                .filter(|(o, _)| *o == op)
                .map(|(_, a)| *a)
                .collect();
            assert_eq!(found.len(), 1, "one {op}");
            found[0].trim().to_owned()
        };
        let build_context = build
            .iter()
            .filter(|(op, args)| *op == "COPY" && !args.starts_with("--from"))
            .flat_map(|(_, args)| {
                let mut w = words(args);
                w.pop();
                w
            })
            .collect();
        let run = build
            .iter()
            .find(|(op, args)| *op == "RUN" && args.contains("cargo build"))
            .unwrap()
            .1;
        let cargo = run[run.find("cargo build").unwrap()..]
            .split("&&")
            .next()
            .unwrap();
        let env = runtime
            .iter()
            .filter(|(op, _)| *op == "ENV")
            .flat_map(|(_, args)| words(args))
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap();
                (k.to_owned(), v.to_owned())
            })
            .collect();
        let healthcheck = one(runtime, "HEALTHCHECK");
        let mut command = json(&one(runtime, "ENTRYPOINT"));
        command.extend(json(&one(runtime, "CMD")));
        Self {
            build_context,
            cargo: words(cargo),
            env,
            user: one(runtime, "USER"),
            stop_signal: one(runtime, "STOPSIGNAL"),
            healthcheck: json(&healthcheck[healthcheck.find("CMD").unwrap() + 3..]),
            command,
        }
    }
}

/// No Docker engine here: the image's binary is built from the files the Dockerfile copies, with its cargo
/// command, then started as its ENTRYPOINT/CMD with its ENV, checked with its HEALTHCHECK and stopped with its
/// STOPSIGNAL within Docker's 10 s grace.
#[tokio::test]
async fn the_dockerfile_build_runs_answers_its_healthcheck_and_stops_on_its_signal() {
    let _heavy = crate::support::heavy().await;
    let image = Dockerfile::read();
    assert_ne!(image.user.split(':').next(), Some("0"), "not root");
    assert_ne!(image.user, "root");
    assert!(
        image.cargo.iter().any(|a| a == "--no-default-features"),
        "headless"
    );
    assert!(
        image
            .env
            .contains(&("DATABASE_URL".into(), "file:/app/prisma/dev.db".into())),
        "the TypeScript version's volume layout"
    );

    // The build stage's /src, from the repository, modification times kept so reruns reuse the build.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| manifest.join("target"));
    let work = target.join("dockerfile");
    let context = work.join("src");
    let _ = std::fs::remove_dir_all(&context);
    std::fs::create_dir_all(&context).unwrap();
    for source in &image.build_context {
        let status = Command::new("cp")
            .args(["-a", source])
            .arg(&context)
            .current_dir(manifest)
            .status()
            .unwrap();
        assert!(status.success(), "COPY {source}");
    }
    let built = Command::new(&image.cargo[0])
        .args(&image.cargo[1..])
        .current_dir(&context)
        .env("CARGO_TARGET_DIR", work.join("target"))
        .status()
        .unwrap();
    assert!(built.success(), "{:?}", image.cargo);
    let binary = work.join("target/release/chatgowa");

    let libraries = Command::new("ldd").arg(&binary).output().unwrap();
    let libraries = String::from_utf8_lossy(&libraries.stdout);
    for gui in ["gtk", "gdk", "webkit", "X11", "appindicator"] {
        assert!(!libraries.contains(gui), "{gui} linked:\n{libraries}");
    }

    let data = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let database = format!("file:{}/prisma/dev.db", data.path().display());
    let in_image = |args: &[String]| {
        assert_eq!(args[0], "/app/chatgowa");
        let mut command = Command::new(&binary);
        command
            .args(&args[1..])
            .current_dir(data.path())
            .env_clear()
            .envs(image.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            // The volume and the published port stand in for /app/prisma and 3000.
            .env("DATABASE_URL", &database)
            .env("PORT", &port)
            .env("CHATGOWA_ALLOW_EPHEMERAL_DB", "true")
            .env("BASIC_AUTH_PASS", "secret")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    };
    let mut relay = in_image(&image.command).spawn().unwrap();
    let healthy = || in_image(&image.healthcheck).status().unwrap().success();
    eventually(
        "the HEALTHCHECK to pass",
        Duration::from_secs(20),
        || async { healthy().then_some(()) },
    )
    .await;
    assert!(data.path().join("prisma/dev.db").exists());

    let signal = image.stop_signal.trim_start_matches("SIG");
    let sent = Command::new("kill")
        .args(["-s", signal, &relay.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let exit = wait_exit(
        &mut relay,
        &format!("the relay to exit after {signal} (Docker would kill it)"),
        Duration::from_secs(10),
    )
    .await;
    assert!(exit.success(), "{exit:?}");
    assert!(!healthy(), "the HEALTHCHECK fails once the relay is gone");
}

/// `npm ci` refuses a lock file that lacks a package some platform would install: the Tauri CLI's binary for
/// each platform must be in it, pinned, so that the release workflow's `npm ci` works on Linux, Windows and macOS.
#[test]
fn the_npm_lock_file_holds_the_tauri_cli_of_every_platform() {
    let read = |file: &str| -> serde_json::Value {
        let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let lock = read("package-lock.json");
    let packages = &lock["packages"];
    let cli = &packages["node_modules/@tauri-apps/cli"];
    let wanted = read("package.json")["devDependencies"]["@tauri-apps/cli"].clone();
    assert_eq!(
        packages[""]["devDependencies"]["@tauri-apps/cli"], wanted,
        "lock and package.json agree"
    );
    let platforms = cli["optionalDependencies"].as_object().unwrap();
    for platform in [
        "darwin-arm64",
        "darwin-x64",
        "linux-x64-gnu",
        "linux-arm64-gnu",
        "win32-x64-msvc",
    ] {
        assert!(
            platforms.contains_key(&format!("@tauri-apps/cli-{platform}")),
            "{platform}"
        );
    }
    for (name, version) in platforms {
        let entry = &packages[format!("node_modules/{name}").as_str()];
        assert_eq!(&entry["version"], version, "{name} in the lock file");
        assert!(
            entry["integrity"]
                .as_str()
                .is_some_and(|i| i.starts_with("sha512-")),
            "{name}"
        );
    }
}

/// The release workflow makes the Linux packages with the script CI runs and tests, and the README tells users
/// that same command.
#[test]
fn the_release_workflow_and_the_readme_build_packages_as_ci_does() {
    let read = |file: &str| {
        std::fs::read_to_string(format!("{}/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    };
    let workflow = read(".github/workflows/release.yml");
    // A job's lines: from `  name:` to the next job's key (two spaces of indent).
    let job = |name: &str| {
        let is_key = |l: &str| {
            l.len() > 3 && l.starts_with("  ") && !l.starts_with("   ") && l.ends_with(':')
        };
        let mut lines = workflow.lines().skip_while(|l| *l != format!("  {name}:"));
        let head = lines.next().unwrap_or_else(|| panic!("job {name}"));
        let body: Vec<&str> = lines.take_while(|l| !is_key(l)).collect();
        format!("{head}\n{}", body.join("\n"))
    };
    assert!(job("test-linux").contains("./scripts/test"));
    assert!(job("linux-packages").contains("./scripts/packages"));
    assert!(job("desktop").contains("releaseId: ${{ needs.release.outputs.id }}"));
    assert!(
        read("scripts/test").contains("scripts/packages"),
        "CI builds the packages"
    );
    assert!(
        read("README.md").contains("\nscripts/packages "),
        "the README's installer command"
    );
}

/// Several relays on PostgreSQL, as shipped: the compose file runs two relays on one database behind a load
/// balancer that passes a webhook to the other relay when one is stopping, gone or answers 503; the Kubernetes
/// manifests run two replicas that are ready only while their database answers, keep one up through a drain and
/// take the database URL from a Secret. (No Docker engine or cluster here: the files are read.)
#[test]
fn the_postgres_deployments_run_two_relays_behind_a_balancer_that_retries() {
    let read = |file: &str| {
        std::fs::read_to_string(format!("{}/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    };
    let compose = read("docker-compose.postgres.yml");
    for needed in [
        "image: postgres:16",
        "relay-1: &relay",
        "relay-2: *relay",
        "DATABASE_URL: postgres://chatgowa:${POSTGRES_PASSWORD}@postgres:5432/chatgowa",
        "condition: service_healthy",
        "./deploy/compose/nginx.conf:/etc/nginx/nginx.conf:ro",
        "stop_grace_period: 10s",
    ] {
        assert!(
            compose.contains(needed),
            "docker-compose.postgres.yml: {needed}"
        );
    }
    let nginx = read("deploy/compose/nginx.conf");
    for needed in [
        "server relay-1:3000",
        "server relay-2:3000",
        "proxy_next_upstream error timeout http_502 http_503 non_idempotent;",
        "proxy_buffering off;",
    ] {
        assert!(nginx.contains(needed), "nginx.conf: {needed}");
    }
    let k8s = read("deploy/kubernetes/chatgowa.yaml");
    for needed in [
        "kind: Deployment",
        "replicas: 2",
        "maxUnavailable: 0",
        "path: /healthz",
        "tcpSocket:",
        "kind: PodDisruptionBudget",
        "minAvailable: 1",
        "secretKeyRef:",
        "key: database-url",
        "preStop:",
        "runAsNonRoot: true",
    ] {
        assert!(k8s.contains(needed), "chatgowa.yaml: {needed}");
    }
    // The liveness probe is not /healthz: a database outage must not restart every relay.
    let liveness = k8s.split("livenessProbe:").nth(1).unwrap();
    let liveness = liveness.split("lifecycle:").next().unwrap();
    assert!(!liveness.contains("/healthz"), "{liveness}");
    let readme = read("README.md");
    assert!(
        readme.contains("docker-compose.postgres.yml")
            && readme.contains("deploy/kubernetes/chatgowa.yaml")
    );
}
