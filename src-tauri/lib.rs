//! Chatgowa: a durable relay from Chatwoot webhooks to GoWA (go-whatsapp-web-multidevice) instances.
//!
//! A webhook is stored in SQLite before it is acknowledged, then delivered by per-conversation lanes with
//! retries, byte for byte, to the GoWA URL that serves its inbox.
//!
//! # Layout
//! - [`cli`], [`config`]: flags, environment and `.env`, validated once at startup.
//! - [`relay`]: `POST /webhook` — parse the routing fields, store, answer.
//! - [`store`]: all SQL; the group-commit [`store::Writer`].
//! - [`delivery`]: lanes, the GoWA client and the retry rules.
//! - [`admin`]: the route-management API (service layer, HTTP adapters, Basic Auth).
//! - [`server`]: the router; [`state`]: what handlers share; [`shutdown`]: signals.

pub mod admin;
pub mod cli;
pub mod config;
pub mod container;
pub mod delivery;
#[cfg(feature = "desktop")]
mod desktop;
pub mod error;
pub mod events;
pub mod ids;
pub mod listeners;
pub mod metrics;
pub mod relay;
pub mod retention;
pub mod server;
pub mod shutdown;
pub mod state;
pub mod status;
pub mod store;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cli::Settings;
use crate::config::Config;
use crate::delivery::{DeliveryConfig, Dispatcher};
use crate::events::{Events, UiEvent};
use crate::server::{HttpServer, Surface};
use crate::state::AppState;
use crate::store::Writer;

/// How long attempts in flight may take to finish once shutdown starts; then they are abandoned (and
/// recorded as interrupted). Together with the rest of the shutdown this stays under Docker's 10 s grace.
const ATTEMPT_GRACE: Duration = Duration::from_secs(5);
/// Time left after abandoning attempts to record them.
const RECORD_GRACE: Duration = Duration::from_secs(2);

/// A started relay: database open, writer and lanes running, not yet serving HTTP.
pub struct Relay {
    state: AppState,
    _lock: store::DatabaseLock,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    abort: CancellationToken,
    writer: store::writer::WriterThread,
}

impl Relay {
    /// Opens the database, starts the writer and puts every pending delivery back in its lane.
    /// Cancelling `shutdown` stops the relay (see [`Relay::serve`]).
    ///
    /// # Errors
    /// Another relay uses the database, it cannot be opened or migrated, or the HTTP client cannot be built.
    pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let lock = store::lock_database(&config.database_path)?;
        let pool = store::connect(&config.database_path)
            .await
            .with_context(|| {
                format!("opening the database at {}", config.database_path.display())
            })?;
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
        let client =
            delivery::http_client(config.fetch_timeout).context("building the HTTP client")?;
        let (writer, writer_inbox) = Writer::channel();
        let tracker = TaskTracker::new();
        let abort = CancellationToken::new();
        let metrics = metrics::Metrics::default();
        let dispatcher = Dispatcher::new(
            pool.clone(),
            writer.clone(),
            client,
            DeliveryConfig {
                retry_schedule: config.retry_schedule.clone(),
                max_age: config.max_age,
            },
            delivery::Lifecycle {
                tracker: tracker.clone(),
                shutdown: shutdown.clone(),
                abort: abort.clone(),
            },
            metrics.clone(),
        );
        let events = Events::default();
        let pruner = retention::Waker::default();
        let writer_thread = writer_inbox
            .spawn(&config.database_path, {
                let (lanes, events, pruner) = (dispatcher.clone(), events.clone(), pruner.clone());
                move |commit| {
                    lanes.enqueue_committed(commit.queued, commit.at);
                    if commit.deliveries_changed {
                        events.send(UiEvent::Deliveries);
                        pruner.wake();
                    }
                    if commit.unrouted_changed {
                        events.send(UiEvent::Unrouted);
                    }
                }
            })
            .context("starting the database writer")?;
        dispatcher.reload_routes().await.context("loading routes")?;
        let pending = dispatcher
            .load_pending()
            .await
            .context("loading pending deliveries")?;
        tracker.spawn(
            retention::Retention {
                pool: pool.clone(),
                writer: writer.clone(),
                delivered: config.retention,
                dead: config.dead_retention,
                events: events.clone(),
                waker: pruner,
            }
            .run(shutdown.clone()),
        );
        tracing::info!(pending, database = %config.database_path.display(), "relay started");
        let admission = relay::Admission::new(config.max_body);
        let state = AppState::new(state::Shared {
            admin: std::sync::RwLock::new(config.admin.clone()),
            config,
            pool,
            writer,
            dispatcher,
            events,
            metrics,
            admission,
            logins: admin::auth::Throttle::default(),
            shutdown: shutdown.clone(),
        });
        Ok(Self {
            state,
            _lock: lock,
            tracker,
            shutdown,
            abort,
            writer: writer_thread,
        })
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves HTTP on `listener` (and the admin API on `admin` when it has its own) until shutdown, then
    /// stops everything in order; see [`Relay::run`].
    ///
    /// # Errors
    /// A listener is closed, or a server fails.
    pub async fn serve(
        self,
        listener: TcpListener,
        admin: Option<TcpListener>,
    ) -> anyhow::Result<()> {
        let with_admin = admin.is_none() && self.state.config.admin.is_some();
        let mut servers = vec![HttpServer::spawn(
            listener,
            &self.state,
            Surface::Webhook { with_admin },
        )?];
        if let Some(admin) = admin {
            servers.push(HttpServer::spawn(admin, &self.state, Surface::Admin)?);
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

    /// Writes what is queued for the writer and closes the database.
    async fn close(self) {
        self.writer.stop().await;
        self.state.pool.close().await;
        tracing::info!("relay stopped");
    }
}

/// Runs the relay headless until SIGINT/SIGTERM (`--server`).
///
/// # Errors
/// Invalid configuration, the database, or the port cannot be bound.
pub fn run_headless(settings: &Settings) -> anyhow::Result<()> {
    let config = Config::from_settings(settings, IpAddr::V4(Ipv4Addr::UNSPECIFIED))?;
    init_logging(config.log_format, None);
    for warning in config.warnings(std::env::vars().map(|(k, _)| k)) {
        tracing::warn!("{warning}");
    }
    container::check_database_volume(&config.database_path, config.allow_ephemeral_db)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let addr = SocketAddr::new(config.bind, config.port);
        let listener = server::bind(addr).await?;
        let admin = match config.admin_bind.filter(|_| config.admin.is_some()) {
            Some(addr) => Some(server::bind(addr).await.context("CHATGOWA_ADMIN_BIND")?),
            None => None,
        };
        let relay = Relay::start(config, shutdown.clone()).await?;
        tracing::info!(address = %listener.local_addr()?, "listening");
        if let Some(admin) = &admin {
            tracing::info!(address = %admin.local_addr()?, "admin API and panel listening");
        }
        tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                shutdown::signal().await;
                shutdown.cancel();
            }
        });
        relay.serve(listener, admin).await
    })
}

/// What `chatgowa` without `--server` runs: the desktop app (tray and window) when this build has it, else the
/// headless relay. `minimized` starts in the tray without a window (autostart uses it).
///
/// # Errors
/// As [`run_headless`], or the desktop app cannot start.
pub fn run_default(settings: &Settings, minimized: bool) -> anyhow::Result<()> {
    #[cfg(feature = "desktop")]
    return desktop::run(settings, minimized);
    #[cfg(not(feature = "desktop"))]
    {
        let _ = minimized;
        run_headless(settings)
    }
}

/// `chatgowa healthcheck`: asks the relay on the configured port for `/healthz`.
///
/// # Errors
/// The relay does not answer 200.
pub fn healthcheck(settings: &Settings) -> anyhow::Result<()> {
    let config = Config::from_settings(settings, IpAddr::V4(Ipv4Addr::LOCALHOST))?;
    let host = match config.bind {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let url = format!("http://{}/healthz", SocketAddr::new(host, config.port));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .no_proxy()
            .build()?;
        let response = client
            .get(&url)
            .send()
            .await
            .with_context(|| format!("no answer from {url}"))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        anyhow::ensure!(status.is_success(), "{url} answered {status}: {body}");
        println!("{body}");
        Ok(())
    })
}

/// `chatgowa hash-password`: the first line of standard input, hashed with Argon2id, on standard output.
///
/// # Errors
/// Standard input cannot be read, or the password is empty.
pub fn hash_password_command() -> anyhow::Result<()> {
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprint!("Password (it will be shown as you type): ");
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(!password.is_empty(), "the password is empty");
    println!("{}", admin::auth::hash_password(password));
    Ok(())
}

/// `RUST_LOG` if set, else info for Chatgowa and warnings for its libraries; to stderr in `format`, and also
/// to a daily rolling file in `log_dir` when given (the desktop app's log folder).
pub(crate) fn init_logging(format: config::LogFormat, log_dir: Option<&std::path::Path>) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    type Boxed = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("chatgowa_lib=info,chatgowa=info,warn")
    });
    let stderr = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let mut layers: Vec<Boxed> = vec![match format {
        config::LogFormat::Json => stderr.json().flatten_event(true).boxed(),
        config::LogFormat::Human => stderr
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
    }];
    if let Some(dir) = log_dir {
        let file = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(tracing_appender::rolling::daily(dir, "chatgowa.log"));
        layers.push(match format {
            config::LogFormat::Json => file.json().flatten_event(true).boxed(),
            config::LogFormat::Human => file.boxed(),
        });
    }
    let _ = tracing_subscriber::registry()
        .with(layers.with_filter(filter))
        .try_init();
}
