//! Test helpers: a relay on a temporary database, a GoWA stand-in on `127.0.0.1:0`, polling with a deadline.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chatgowa_lib::app::App;
use chatgowa_lib::config::{self, AdminCredentials, Config};
use chatgowa_lib::store::Db;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PASS: &str = "correct horse battery staple";

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/chatwoot/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

pub fn basic_auth(user: &str, pass: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

/// The admin API over HTTP, logged in: the `Authorization: Basic` header is built once, and every call answers
/// with its status and its JSON body (`Null` when the body is not JSON).
#[derive(Clone)]
pub struct Admin {
    http: reqwest::Client,
    base: String,
    auth: String,
}

impl Admin {
    /// As [`ADMIN_USER`] with [`ADMIN_PASS`], at `base` (`http://host:port`).
    pub fn new(base: impl Into<String>) -> Self {
        Self::login(base, ADMIN_USER, ADMIN_PASS)
    }

    /// As `user` with `pass`, at `base`.
    pub fn login(base: impl Into<String>, user: &str, pass: &str) -> Self {
        Self {
            http: http_client(),
            base: base.into(),
            auth: basic_auth(user, pass),
        }
    }

    /// The same login, sent through `http` (its timeouts, redirect policy, connection pool).
    pub fn with_client(self, http: reqwest::Client) -> Self {
        Self { http, ..self }
    }

    /// A logged-in request to `path`, for what the calls below do not cover: other headers, raw bodies,
    /// streams, the answer's headers.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("authorization", &self.auth)
    }

    /// A logged-in request, `body` sent as JSON; the status and the JSON answer.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (StatusCode, serde_json::Value) {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let bytes = response.bytes().await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    /// `/metrics` as text (asserting 200).
    pub async fn metrics(&self) -> String {
        let response = self
            .request(reqwest::Method::GET, "/metrics")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.unwrap()
    }

    pub async fn get(&self, path: &str) -> (StatusCode, serde_json::Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    /// `GET path`, asserting 200; the JSON answer.
    pub async fn get_ok(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    pub async fn post_json(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> (StatusCode, serde_json::Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn put_json(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> (StatusCode, serde_json::Value) {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, serde_json::Value) {
        self.send(reqwest::Method::DELETE, path, None).await
    }
}

/// Held by tests that load the machine (the fault tests, the release build of the Dockerfile test), so that
/// none of them measures while another one takes the CPU.
pub async fn heavy() -> tokio::sync::MutexGuard<'static, ()> {
    static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    HEAVY.lock().await
}

/// An HTTP client that behaves towards the relay as Chatwoot and browsers do: a connection idle for a second is
/// not used again, well inside the relay's own idle limit, so no request races the relay closing the
/// connection it would have gone out on.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(1))
        .build()
        .unwrap()
}

/// Polls `check` until it returns `Some`, failing the test after `timeout`.
/// A `GET` without a login, and its JSON answer.
pub async fn get_json(url: &str) -> serde_json::Value {
    http_client()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `child` has exited, failing the test after `timeout`; its exit status.
pub async fn wait_exit(child: &mut Child, what: &str, timeout: Duration) -> ExitStatus {
    eventually(what, timeout, || {
        let exited = child.try_wait().unwrap();
        async move { exited }
    })
    .await
}

pub fn test_config(database_path: PathBuf) -> Config {
    Config {
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: 0,
        admin_bind: None,
        database: config::Database::Sqlite(database_path),
        admin: Some(AdminCredentials::new(ADMIN_USER, ADMIN_PASS)),
        admin_origins: Vec::new(),
        trusted_proxies: Vec::new(),
        fetch_timeout: Duration::from_secs(2),
        // The least the 2 s attempt timeout allows.
        lane_lease: Duration::from_secs(7),
        retry_schedule: vec![Duration::from_millis(20)],
        // Tests of the reorder window set their own.
        reorder_window: Duration::ZERO,
        max_age: Duration::from_secs(60),
        max_body: 1024 * 1024,
        retention: config::DEFAULT_RETENTION,
        dead_retention: config::DEFAULT_DEAD_RETENTION,
        log_format: config::LogFormat::Human,
        allow_ephemeral_db: false,
        chatwoot_secrets: Vec::new(),
        public_url: None,
        chatwoot_link: None,
        upkeep: config::Upkeep::default(),
    }
}

/// A relay serving on an ephemeral loopback port, with a temporary database.
pub struct TestRelay {
    pub base: String,
    pub state: chatgowa_lib::state::AppState,
    pub http: reqwest::Client,
    /// The admin API, logged in as the admin, through `http`.
    pub admin: Admin,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl TestRelay {
    pub async fn start(configure: impl FnOnce(&mut Config)) -> Self {
        // The relay's log, when asked for: TEST_RELAY_LOG=info (off by default).
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(std::env::var("TEST_RELAY_LOG").unwrap_or_else(|_| "off".into()))
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path().join("relay.db"));
        if on_postgres() {
            config.database =
                config::Database::Postgres(config::Secret::new(database_url(dir.path())));
        }
        configure(&mut config);
        // As the configuration requires: the lease outlasts an attempt.
        config.lane_lease = config
            .lane_lease
            .max(config.fetch_timeout + config::LEASE_MARGIN);
        let shutdown = CancellationToken::new();
        let relay = App::start(config, shutdown.clone()).await.unwrap();
        let state = relay.state().clone();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(relay.serve(listener, None));
        let http = http_client();
        Self {
            admin: Admin::new(&base).with_client(http.clone()),
            base,
            state,
            http,
            shutdown,
            task,
            _dir: dir,
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }

    /// Rows in `table` of the relay's database.
    pub async fn count(&self, table: &str) -> i64 {
        scalar(&self.state.db, &format!("SELECT count(*) FROM {table}")).await
    }

    pub async fn add_route(
        &self,
        inbox: i64,
        url: &str,
        secret: Option<&str>,
    ) -> serde_json::Value {
        let (status, created) = self
            .admin
            .post_json(
                "/admin/routes",
                serde_json::json!({"inboxId": inbox, "webhookUrl": url, "name": "test", "secret": secret}),
            )
            .await;
        assert_eq!(status, 201);
        created
    }

    /// Posts a webhook and returns the relay's JSON answer (asserting 200).
    pub async fn post_webhook(
        &self,
        body: Vec<u8>,
        delivery_id: Option<&str>,
    ) -> serde_json::Value {
        let mut request = self
            .http
            .post(format!("{}/webhook", self.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(id) = delivery_id {
            request = request.header("x-chatwoot-delivery", id);
        }
        Self::answer(request).await
    }

    /// Posts a webhook signed with `secret` as Chatwoot signs it, now; the relay's JSON answer (asserting 200).
    pub async fn post_signed_webhook(&self, body: Vec<u8>, secret: &str) -> serde_json::Value {
        Self::answer(signed_webhook(&self.http, &self.base, body, secret)).await
    }

    async fn answer(request: reqwest::RequestBuilder) -> serde_json::Value {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }
}

/// A webhook to the relay at `base`, signed with `secret` as Chatwoot signs it, now.
pub fn signed_webhook(
    http: &reqwest::Client,
    base: &str,
    body: Vec<u8>,
    secret: &str,
) -> reqwest::RequestBuilder {
    let ts = chrono::Utc::now().timestamp().to_string();
    let signature = chatgowa_lib::relay::signature::sign(secret, &ts, &body);
    http.post(format!("{base}/webhook"))
        .header("content-type", "application/json")
        .header("x-chatwoot-timestamp", ts)
        .header("x-chatwoot-signature", signature)
        .body(body)
}

/// A request the GoWA stand-in received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub status: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// What the stand-in answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub delay: Duration,
    pub retry_after: Option<&'static str>,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            delay: Duration::ZERO,
            retry_after: None,
        }
    }
}

type Behaviour = Box<dyn Fn(&Received, &[Received]) -> Reply + Send + Sync>;

struct GowaState {
    /// Requests that have started, answered or not.
    arrivals: AtomicUsize,
    /// Every request as it arrived, before its answer (which the sender may never see).
    arrived: Mutex<Vec<Received>>,
    received: Mutex<Vec<Received>>,
    behaviour: Mutex<Behaviour>,
}

/// A GoWA stand-in on `127.0.0.1:0` that records every request and answers as told.
#[derive(Clone)]
pub struct Gowa {
    pub base: String,
    state: Arc<GowaState>,
}

impl Gowa {
    pub async fn start() -> Self {
        Self::start_on(TcpListener::bind("127.0.0.1:0").await.unwrap())
    }

    pub fn start_on(listener: TcpListener) -> Self {
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(GowaState {
            arrivals: AtomicUsize::new(0),
            arrived: Mutex::default(),
            received: Mutex::default(),
            behaviour: Mutex::new(Box::new(|_, _| Reply::status(200))),
        });
        // GoWA's body limit is 100 MB (its maximum video size).
        let app = Router::new()
            .fallback(receive)
            .layer(axum::extract::DefaultBodyLimit::max(100 * 1024 * 1024))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn addr(&self) -> SocketAddr {
        self.base.trim_start_matches("http://").parse().unwrap()
    }

    /// Decides each answer from the request and everything received before it.
    pub fn set(&self, behaviour: impl Fn(&Received, &[Received]) -> Reply + Send + Sync + 'static) {
        *self.state.behaviour.lock().unwrap() = Box::new(behaviour);
    }

    /// Requests that have started, including those still waiting for their answer.
    pub fn arrivals(&self) -> usize {
        self.state.arrivals.load(Ordering::SeqCst)
    }

    /// Every request in the order it arrived, including those whose sender died before the answer.
    pub fn arrived(&self) -> Vec<Received> {
        self.state.arrived.lock().unwrap().clone()
    }

    /// Requests answered so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Waits until `done` holds for what was received.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        eventually(what, timeout, || async {
            let got = self.received();
            done(&got).then_some(got)
        })
        .await
    }
}

async fn receive(
    State(state): State<Arc<GowaState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.arrivals.fetch_add(1, Ordering::SeqCst);
    let mut request = Received {
        path: uri.to_string(),
        headers,
        body,
        status: 0,
    };
    state.arrived.lock().unwrap().push(request.clone());
    let reply = {
        let received = state.received.lock().unwrap();
        (state.behaviour.lock().unwrap())(&request, &received)
    };
    request.status = reply.status;
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    state.received.lock().unwrap().push(request);
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), "OK").into_response();
    if let Some(ra) = reply.retry_after {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from_static(ra));
    }
    response
}

/// A Chatwoot-shaped `message_created` body for conversation `conversation` with a sequence number.
pub fn message(inbox: i64, conversation: i64, seq: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "event": "message_created",
        "id": seq,
        "message_type": "outgoing",
        "content": format!("message {seq}"),
        "inbox": {"id": inbox, "name": "WhatsApp"},
        "conversation": {"id": conversation, "inbox_id": inbox},
    }))
    .unwrap()
}

pub const BIN: &str = env!("CARGO_BIN_EXE_chatgowa");

/// A port nothing listens on, on any address, taken just below the range the system hands out to outgoing
/// connections: a port from that range can be taken by another test's connection between this call and the
/// bind (or while a listener moves from one address to another on the same port).
pub fn free_port() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(usize::MAX);
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<usize>().ok())
        .unwrap_or(32_768);
    let span = ephemeral.saturating_sub(1_024).min(8_192);
    assert!(span > 0, "no ports below the ephemeral range ({ephemeral})");
    // Test processes running side by side start at different places.
    let start = std::process::id() as usize % span;
    let _ = NEXT.compare_exchange(usize::MAX, start, Ordering::Relaxed, Ordering::Relaxed);
    for _ in 0..span {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % span;
        let port = u16::try_from(ephemeral - span + offset).unwrap();
        if std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below {ephemeral}");
}

/// `libfaketime` (Debian's `libfaketime`): a process started with it in `LD_PRELOAD` reads a clock shifted by
/// `FAKETIME`, as on a machine whose clock is off.
const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The environment of a relay whose clock is `shift` off (`FAKETIME`'s notation: `+10m`, `-5m`); timers (the
/// monotonic clock) are left as they are, only the time of day is off.
pub fn clock_off(shift: &str) -> [(&'static str, &str); 3] {
    assert!(Path::new(FAKETIME).exists(), "libfaketime is needed");
    [
        ("LD_PRELOAD", FAKETIME),
        ("FAKETIME", shift),
        ("DONT_FAKE_MONOTONIC", "1"),
    ]
}

/// The real `chatgowa --server` in a directory of its own, on a loopback port.
pub struct Server {
    pub child: Child,
    pub port: u16,
    /// Where its standard error goes, when captured.
    log: Option<PathBuf>,
}

impl Server {
    pub fn spawn(dir: &Path, port: u16, env: &[(&str, &str)]) -> Self {
        Self::start(Command::new(BIN), dir, port, env, None)
    }

    /// As [`Server::spawn`], with standard error captured for [`Server::stop_and_read_log`].
    pub fn spawn_logging(dir: &Path, port: u16, env: &[(&str, &str)]) -> Self {
        Self::start(
            Command::new(BIN),
            dir,
            port,
            env,
            Some(dir.join(format!("stderr-{port}.log"))),
        )
    }

    /// As [`Server::spawn_logging`], started through `sh -c "<prelude>; exec chatgowa --server"` (the relay
    /// keeps the shell's pid and inherits what the prelude set, such as ignored signals).
    pub fn spawn_after(dir: &Path, port: u16, env: &[(&str, &str)], prelude: &str) -> Self {
        let mut command = Command::new("/bin/sh");
        command.args(["-c", &format!("{prelude}; exec \"$0\" \"$@\""), BIN]);
        Self::start(
            command,
            dir,
            port,
            env,
            Some(dir.join(format!("stderr-{port}.log"))),
        )
    }

    fn start(
        mut command: Command,
        dir: &Path,
        port: u16,
        env: &[(&str, &str)],
        log: Option<PathBuf>,
    ) -> Self {
        let stderr = match &log {
            Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
            None => Stdio::inherit(),
        };
        let child = command
            .arg("--server")
            .current_dir(dir)
            .env_clear()
            .env("PORT", port.to_string())
            .env("CHATGOWA_BIND", "127.0.0.1")
            .env("DATABASE_URL", database_url(dir))
            .env("BASIC_AUTH_PASS", ADMIN_PASS)
            .env("CHATGOWA_RETRY_SCHEDULE", "30ms,60ms")
            .env("FETCH_TIMEOUT_MS", "2000")
            // Tests of the reorder window set their own.
            .env("CHATGOWA_REORDER_WINDOW", "0")
            // Test databases are throw-away by design, wherever the machine keeps its temporary files.
            .env("CHATGOWA_ALLOW_EPHEMERAL_DB", "true")
            .env(
                "RUST_LOG",
                std::env::var("TEST_RELAY_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(stderr)
            .envs(env.iter().copied())
            .spawn()
            .unwrap();
        Self { child, port, log }
    }

    /// What the relay has written to standard error so far (started with `spawn_logging`).
    pub fn log_so_far(&self) -> String {
        std::fs::read_to_string(self.log.as_ref().expect("started with spawn_logging"))
            .unwrap_or_default()
    }

    /// Stops the relay with SIGTERM, waits for it, and returns what it wrote to standard error.
    pub fn stop_and_read_log(mut self) -> String {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        assert!(self.child.wait().unwrap().success());
        std::fs::read_to_string(self.log.as_ref().expect("started with spawn_logging")).unwrap()
    }

    /// A request to the admin API, as the admin; the JSON answer (asserting 200).
    pub async fn admin(&self, method: reqwest::Method, path: &str) -> serde_json::Value {
        let (status, body) = Admin::new(self.base()).send(method, path, None).await;
        assert_eq!(status, 200);
        body
    }

    pub fn healthcheck(&self) -> bool {
        Command::new(BIN)
            .arg("healthcheck")
            .env_clear()
            .env("PORT", self.port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }

    pub async fn wait_healthy(&self) {
        eventually(
            "the relay to answer its health check",
            Duration::from_secs(20),
            || async { self.healthcheck().then_some(()) },
        )
        .await;
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub async fn add_route(&self, inbox: i64, url: &str) {
        let (status, _) = Admin::new(self.base())
            .post_json(
                "/admin/routes",
                serde_json::json!({"inboxId": inbox, "webhookUrl": url}),
            )
            .await;
        assert_eq!(status, 201);
    }

    /// Posts a webhook and returns the relay's answer (asserting 200).
    pub async fn post_webhook(&self, body: Vec<u8>) -> serde_json::Value {
        let response = http_client()
            .post(format!("{}/webhook", self.base()))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A number the relay's database answers `sql` with, on either backend.
pub async fn scalar(db: &Db, sql: &str) -> i64 {
    on_db!(db, |pool| sqlx::query_scalar(sql).fetch_one(pool).await).unwrap()
}

/// Runs `sql` on the relay's database, on either backend.
pub async fn execute(db: &Db, sql: &str) {
    on_db!(db, |pool| sqlx::raw_sql(sql)
        .execute(pool)
        .await
        .map(|_| ()))
    .unwrap();
}

/// The database of the relays that ran in `dir` (with [`Server`]), opened as it is, for a look at the rows.
pub async fn open_database(dir: &Path) -> Db {
    if on_postgres() {
        Db::Postgres(sqlx::PgPool::connect(&database_url(dir)).await.unwrap())
    } else {
        let url = format!("sqlite://{}", dir.join("data/relay.db").display());
        Db::Sqlite(sqlx::SqlitePool::connect(&url).await.unwrap())
    }
}

/// Whether the suite runs on PostgreSQL (`CHATGOWA_TEST_DATABASE=postgres`; `scripts/test` runs it on both).
pub fn on_postgres() -> bool {
    std::env::var("CHATGOWA_TEST_DATABASE").is_ok_and(|v| v == "postgres")
}

/// A database in `dir` for relays started one after another, or side by side on PostgreSQL: set it as a
/// [`TestRelay`]'s `database`.
pub fn shared_database(dir: &Path) -> config::Database {
    if on_postgres() {
        config::Database::Postgres(config::Secret::new(database_url(dir)))
    } else {
        config::Database::Sqlite(dir.join("relay.db"))
    }
}

/// `DATABASE_URL` for a relay of the test in `dir`: a SQLite file in it, or a PostgreSQL database of its own.
pub fn database_url(dir: &Path) -> String {
    if on_postgres() {
        crate::postgres::cluster().database_of(dir)
    } else {
        "file:./data/relay.db".into()
    }
}
