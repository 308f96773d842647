//! The composition root: opens the database, starts the writer, the delivery lanes and retention, builds the
//! shared [`AppState`], serves HTTP, and stops it all in order. Both modes start the relay here: the headless
//! runner below, and the desktop app.
//! Must not: hold use-cases (they are in [`crate::admin`]) or name Tauri.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::settings;
use crate::config::{Config, Database, Settings};
use crate::delivery::{self, DeliveryConfig, Dispatcher};
use crate::events::{Events, UiEvent};
use crate::login::Throttle;
use crate::metrics::Metrics;
use crate::relay::Intake;
use crate::server::conn::Limits;
use crate::server::{self, HttpServer, Surface};
use crate::state::{AppState, Shared};
use crate::store::writer::{Committed, WriterThread};
use crate::store::{self, Db, Writer};
use crate::{container, feedback, logging, retention, shutdown};

/// How long attempts in flight may take to finish once shutdown starts; then they are abandoned (and
/// recorded as interrupted). Together with the rest of the shutdown this stays under Docker's 10 s grace.
const ATTEMPT_GRACE: Duration = Duration::from_secs(5);
/// Time left after abandoning attempts to record them.
const RECORD_GRACE: Duration = Duration::from_secs(2);

/// A started relay: database open, writer and lanes running, not yet serving HTTP.
pub struct App {
    state: AppState,
    /// SQLite: held until the relay stops, so that no second relay opens the same file. (Relays on PostgreSQL
    /// share the database.)
    _lock: Option<store::DatabaseLock>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    abort: CancellationToken,
    writer: WriterThread,
    /// What the HTTP listeners may hold open.
    limits: Limits,
}

impl App {
    /// Opens the database, starts the writer and puts every pending delivery back in its lane.
    /// Cancelling `shutdown` stops the relay (see [`App::serve`]).
    ///
    /// # Errors
    /// Another relay uses the database, it cannot be opened or migrated, or the HTTP client cannot be built.
    pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let (db, lock) = open_database(&config).await?;
        let (writer, writer_inbox) = Writer::channel();
        let lifecycle = delivery::Lifecycle {
            tracker: TaskTracker::new(),
            shutdown: shutdown.clone(),
            abort: CancellationToken::new(),
        };
        let metrics = Metrics::default();
        let limits = Limits::new(open_files_limit(), metrics.clone(), &config.trusted_proxies);
        let dispatcher = lanes(&config, &db, &writer, lifecycle.clone(), &metrics)?;
        let events = Events::default();
        let pruner = retention::Waker::default();
        let told = feedback::Waker::default();
        let after = after_commit(&dispatcher, &events, &pruner, &told);
        let writer_thread = writer_inbox
            .spawn(&db, after)
            .context("starting the database writer")?;
        let pending = resume_lanes(&dispatcher).await?;
        let retention = retention::Retention {
            db: db.clone(),
            writer: writer.clone(),
            delivered: config.retention,
            dead: config.dead_retention,
            events: events.clone(),
            waker: pruner,
        };
        upkeep(&lifecycle.tracker, retention, &shutdown);
        let relay = dispatcher.leases().map(|l| l.owner().to_owned());
        tracing::info!(pending, database = %config.database.shown(), relay, "relay started");
        let state = shared(
            config,
            db,
            writer,
            dispatcher,
            events,
            metrics,
            shutdown.clone(),
        )?;
        crate::admin::chatwoot::start(&state, &lifecycle.tracker, told).await?;
        if let Some(leases) = state.dispatcher.leases() {
            let heard = leases.heard.subscribe();
            lifecycle
                .tracker
                .spawn(follow_other_relays(state.clone(), heard, shutdown.clone()));
        }
        Ok(Self {
            state,
            _lock: lock,
            tracker: lifecycle.tracker,
            shutdown,
            abort: lifecycle.abort,
            writer: writer_thread,
            limits,
        })
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Serves HTTP on `listener` (and the admin API on `admin` when it has its own) until shutdown, then
    /// stops everything in order; see [`App::run`].
    ///
    /// # Errors
    /// A listener is closed, or a server fails.
    pub async fn serve(
        self,
        listener: TcpListener,
        admin: Option<TcpListener>,
    ) -> anyhow::Result<()> {
        let with_admin = admin.is_none();
        *self
            .state
            .webhook_addr
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(listener.local_addr()?);
        if !with_admin {
            let port = listener.local_addr()?.port();
            (self.state.webhook_port).store(port, std::sync::atomic::Ordering::Relaxed);
        }
        let mut servers = vec![HttpServer::spawn(
            listener,
            &self.state,
            Surface::Webhook { with_admin },
            &self.limits,
        )?];
        if let Some(admin) = admin {
            servers.push(HttpServer::spawn(
                admin,
                &self.state,
                Surface::Admin,
                &self.limits,
            )?);
        }
        self.run(servers).await
    }

    /// Waits for shutdown, then stops: requests in progress on `servers` and delivery attempts in flight wind
    /// down side by side, so the whole stop stays within Docker's grace; then the database is closed.
    ///
    /// # Errors
    /// A server fails.
    pub async fn run(self, servers: Vec<HttpServer>) -> anyhow::Result<()> {
        let http = futures_util::future::join_all(servers.into_iter().map(HttpServer::finished));
        let attempts = async {
            self.shutdown.cancelled().await;
            self.drain_attempts().await;
        };
        let (served, ()) = tokio::join!(http, attempts);
        self.close().await;
        served
            .into_iter()
            .collect::<std::io::Result<()>>()
            .context("serving HTTP")
    }

    /// Stops a relay that serves no HTTP: attempts in flight finish and are recorded, the database closes.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        // Without servers nothing can fail.
        let _ = self.run(Vec::new()).await;
    }

    /// Lets attempts in flight finish and be recorded; abandons (and records) those that take too long.
    async fn drain_attempts(&self) {
        self.tracker.close();
        if tokio::time::timeout(ATTEMPT_GRACE, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("abandoning delivery attempts still in flight");
            self.abort.cancel();
            let _ = tokio::time::timeout(RECORD_GRACE, self.tracker.wait()).await;
        }
    }

    /// Hands its lanes to the other relays (PostgreSQL), writes what is queued for the writer and closes the
    /// database.
    async fn close(self) {
        self.state.dispatcher.hand_over().await;
        self.writer.stop().await;
        self.state.db.close().await;
        tracing::info!("relay stopped");
    }
}

/// Several relays on PostgreSQL: when another one says routes or Chatwoot links changed (or may have: this
/// relay's listener reconnected), this one reads them again and its open screens refresh.
async fn follow_other_relays(
    state: AppState,
    mut heard: tokio::sync::watch::Receiver<u64>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            changed = heard.changed() => if changed.is_err() { return },
            () = stop.cancelled() => return,
        }
        if let Err(e) = state.dispatcher.reload_routes().await {
            tracing::warn!(error = %e, "cannot read the routes another relay changed");
        }
        if let Err(e) = crate::admin::chatwoot::links_changed(&state).await {
            tracing::warn!(error = %e, "cannot read the Chatwoot links another relay changed");
        }
        state.events.send(crate::events::UiEvent::Resync);
    }
}

/// Raises this process's limit of open files to what the system allows (a service manager often starts it at
/// 1 024, and every connection is a file); returns the limit in force.
fn open_files_limit() -> u64 {
    #[cfg(unix)]
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(err) => {
            tracing::warn!(error = %err, "cannot read or raise the limit of open files");
            1024
        }
    }
    #[cfg(not(unix))]
    8192
}

/// `host:port` a browser on this machine reaches `addr` by.
fn panel_host(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    }
}

/// Starts the tasks that keep the store: retention, and on PostgreSQL following the database's clock.
fn upkeep(tracker: &TaskTracker, retention: retention::Retention, shutdown: &CancellationToken) {
    if let Db::Postgres(pool) = &retention.db {
        tracker.spawn(store::clock::keep_following(pool.clone(), shutdown.clone()));
    }
    tracker.spawn(retention.run(shutdown.clone()));
}

/// Takes the database for this relay, opens (creating and migrating) it, and on SQLite takes over the TypeScript
/// version's routes once.
async fn open_database(config: &Config) -> anyhow::Result<(Db, Option<store::DatabaseLock>)> {
    let context = || format!("opening the database at {}", config.database.shown());
    let path = match &config.database {
        Database::Sqlite(path) => path,
        Database::Postgres(url) => {
            let pool = store::connect_postgres(url.expose())
                .await
                .with_context(context)?;
            return Ok((Db::Postgres(pool), None));
        }
    };
    let lock = store::lock_database(path)?;
    let pool = store::connect(path).await.with_context(context)?;
    if let Some(imported) = store::prisma::import_routes(&pool)
        .await
        .context("importing the TypeScript version's routes")?
    {
        tracing::info!(
            imported = imported.routes,
            skipped = imported.skipped,
            "routes imported from the TypeScript version's WebhookRoute table (left unchanged)"
        );
    }
    Ok((Db::Sqlite(pool), Some(lock)))
}

/// What handlers, commands and tasks share, with `POST /webhook`'s part of it.
fn shared(
    config: Config,
    db: Db,
    writer: Writer,
    dispatcher: Dispatcher,
    events: Events,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> anyhow::Result<AppState> {
    let chatwoot_http = crate::chatwoot::http_client().context("building the Chatwoot client")?;
    let intake = Intake::new(
        writer.clone(),
        dispatcher.clone(),
        metrics.clone(),
        config.max_body,
        config.chatwoot_secrets.clone(),
    );
    Ok(AppState::new(Shared {
        admin: std::sync::RwLock::new(config.admin.clone()),
        config,
        db,
        writer,
        dispatcher,
        events,
        metrics,
        intake,
        logins: Throttle::default(),
        setup_token: std::sync::RwLock::new(None),
        webhook_port: std::sync::atomic::AtomicU16::new(0),
        webhook_addr: std::sync::RwLock::new(None),
        chatwoot_http,
        inbox_names: std::sync::RwLock::default(),
        catch_up: crate::feedback::catchup::CatchUp::default(),
        shutdown,
    }))
}

/// The delivery lanes (not started until deliveries are put in them), with their own HTTP client.
fn lanes(
    config: &Config,
    db: &Db,
    writer: &Writer,
    lifecycle: delivery::Lifecycle,
    metrics: &Metrics,
) -> anyhow::Result<Dispatcher> {
    let client = delivery::http_client(config.fetch_timeout).context("building the HTTP client")?;
    let schedule = DeliveryConfig {
        retry_schedule: config.retry_schedule.clone(),
        max_age: config.max_age,
        reorder_window: config.reorder_window,
        lease: config.lane_lease,
        fetch_timeout: config.fetch_timeout,
    };
    Ok(Dispatcher::new(
        db.clone(),
        writer.clone(),
        client,
        schedule,
        lifecycle,
        metrics.clone(),
    ))
}

/// Loads the routes and puts every pending delivery back in its lane; returns how many.
async fn resume_lanes(dispatcher: &Dispatcher) -> anyhow::Result<usize> {
    dispatcher.reload_routes().await.context("loading routes")?;
    dispatcher
        .load_pending()
        .await
        .context("loading pending deliveries")
}

/// What follows each commit of the writer, on its thread: new deliveries go to their lanes, and open screens
/// and the pruner hear that deliveries changed.
fn after_commit(
    lanes: &Dispatcher,
    events: &Events,
    pruner: &retention::Waker,
    feedback: &feedback::Waker,
) -> impl FnMut(&Committed) + Send + 'static {
    let (lanes, events, pruner, feedback) = (
        lanes.clone(),
        events.clone(),
        pruner.clone(),
        feedback.clone(),
    );
    move |commit| {
        lanes.cancel(commit.cancelled);
        lanes.enqueue_committed(commit.queued, commit.at);
        // Chatwoot's Retry on a reply marked failed arrives as a `message_updated`.
        if commit
            .queued
            .iter()
            .any(|(_, d)| d.event == "message_updated")
        {
            feedback.wake();
        }
        if commit.deliveries_changed {
            events.send(UiEvent::Deliveries);
            pruner.wake();
        }
        if commit.unrouted_changed {
            events.send(UiEvent::Unrouted);
        }
    }
}

/// Runs the relay headless until SIGINT/SIGTERM (`--server`).
///
/// # Errors
/// Invalid configuration, the database, or the port cannot be bound.
pub fn run_headless(settings: &Settings) -> anyhow::Result<()> {
    let config = Config::from_settings(settings, IpAddr::V4(Ipv4Addr::UNSPECIFIED))?;
    logging::init(config.log_format, None);
    for warning in config.warnings(std::env::vars().map(|(k, _)| k)) {
        tracing::warn!("{warning}");
    }
    if let Some(path) = config.database.sqlite_path() {
        container::check_database_volume(path, config.allow_ephemeral_db)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve_until_signal(config))
}

/// Binds the configured addresses, starts the relay and serves until SIGINT/SIGTERM.
async fn serve_until_signal(config: Config) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let addr = SocketAddr::new(config.bind, config.port);
    let listener = server::bind(addr).await?;
    let admin = match config.admin_bind {
        Some(addr) => Some(server::bind(addr).await.context("CHATGOWA_ADMIN_BIND")?),
        None => None,
    };
    let app = App::start(config, stop.clone()).await?;
    tracing::info!(address = %listener.local_addr()?, "listening");
    if let Some(admin) = &admin {
        tracing::info!(address = %admin.local_addr()?, "admin API and panel listening");
    }
    let panel = admin.as_ref().unwrap_or(&listener).local_addr()?;
    if let Some(token) = settings::open_setup(app.state()).await? {
        // The one secret that may be logged: once, and useless once used or after a restart.
        tracing::warn!(
            "no admin password yet: open http://{}/admin/#/setup?token={token} to choose one (the link works once, \
             until the relay restarts; or set BASIC_AUTH_PASS)",
            panel_host(panel)
        );
    }
    tokio::spawn(async move {
        shutdown::signal().await;
        stop.cancel();
    });
    app.serve(listener, admin).await
}
