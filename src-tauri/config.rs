//! Settings as given (flags, environment, `.env`: one clap definition, [`Settings`]) and the validated
//! [`Config`] built from them once at startup.
//!
//! Every error names the variable, the value's problem and what is allowed, so a misconfigured relay stops
//! with one readable line instead of misbehaving later. Secrets are wrapped in [`Secret`].

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::time::Duration;

use clap::Args;

pub const DEFAULT_PORT: u16 = 3000;
pub const DEFAULT_DATABASE_URL: &str = "file:./chatgowa.db";
pub const DEFAULT_ADMIN_USER: &str = "admin";
/// Above GoWA's own 45 s: GoWA answers only after it has sent (attachments downloaded first), so giving up
/// sooner and retrying can send a reply twice. Chatwoot is answered at once either way.
pub const DEFAULT_FETCH_TIMEOUT_MS: u64 = 60_000;
pub const DEFAULT_RETRY_SCHEDULE: &str = "1s,5s,30s,2m,10m,30m,1h,2h,4h,8h";
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Fits the largest webhook Chatwoot can send, with room to spare: content is capped at 150 000 characters and
/// a `message_created` carries it three times; Rails escapes `<`, `>` and `&` as six bytes each, so the worst
/// case is about 2.7 MB.
pub const DEFAULT_MAX_BODY: usize = 4 * 1024 * 1024;
/// How long a new reply waits for an earlier one of its conversation that Chatwoot sent late. Sidekiq swaps
/// two webhooks only when both jobs wait at once, i.e. within a second or so of each other; two seconds
/// covers that under load, and WhatsApp's own delivery takes longer than that anyway.
pub const DEFAULT_REORDER_WINDOW: Duration = Duration::from_secs(2);
/// Lease a lane keeps over its attempt's timeout (several relays on PostgreSQL); the default lease is the
/// timeout plus three of these.
pub const LEASE_MARGIN: Duration = Duration::from_secs(5);
pub const DEFAULT_DELAYED_AFTER: Duration = Duration::from_secs(5 * 60);
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
pub const DEFAULT_DEAD_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// The password placeholder of `.env.example`; treated as "no password".
pub const PLACEHOLDER_PASSWORD: &str = "yourpassword";

/// Raw settings as given; see `.env.example` for what each one means.
#[derive(Debug, Clone, Default, Args)]
pub struct Settings {
    /// TCP port of the relay (webhook, admin API, health).
    #[arg(long, env = "PORT", global = true)]
    pub port: Option<String>,
    /// Address to listen on.
    #[arg(long, env = "CHATGOWA_BIND", global = true)]
    pub bind: Option<String>,
    /// Serve the admin API and panel on this address:port instead of the webhook's (e.g. 127.0.0.1:3001).
    #[arg(long, env = "CHATGOWA_ADMIN_BIND", global = true)]
    pub admin_bind: Option<String>,
    /// SQLite database (`file:./path.db`, `sqlite://path.db` or a plain path), or PostgreSQL
    /// (`postgres://user:password@host/database`) for several relays on one database.
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// User name for the admin API.
    #[arg(long, env = "BASIC_AUTH_USER", global = true)]
    pub basic_auth_user: Option<String>,
    /// Password for the admin API; without one the admin API is not served.
    #[arg(long, env = "BASIC_AUTH_PASS", hide_env_values = true, global = true)]
    pub basic_auth_pass: Option<String>,
    /// Timeout of one delivery attempt, in milliseconds.
    #[arg(long, env = "FETCH_TIMEOUT_MS", global = true)]
    pub fetch_timeout_ms: Option<String>,
    /// Delays between delivery attempts, comma-separated (`1s,5s,30s,…`).
    #[arg(long, env = "CHATGOWA_RETRY_SCHEDULE", global = true)]
    pub retry_schedule: Option<String>,
    /// How long a delivery keeps being retried before it is dead.
    #[arg(long, env = "CHATGOWA_MAX_AGE", global = true)]
    pub max_age: Option<String>,
    /// Largest accepted webhook body (`1MiB`, `512KiB`, or bytes).
    #[arg(long, env = "CHATGOWA_MAX_BODY", global = true)]
    pub max_body: Option<String>,
    /// How long delivered webhooks (payload and attempts) are kept.
    #[arg(long, env = "CHATGOWA_RETENTION", global = true)]
    pub retention: Option<String>,
    /// How long dead deliveries are kept (so they can still be retried by hand).
    #[arg(long, env = "CHATGOWA_DEAD_RETENTION", global = true)]
    pub dead_retention: Option<String>,
    /// Log format on standard error: `human` or `json`.
    #[arg(long, env = "CHATGOWA_LOG_FORMAT", global = true)]
    pub log_format: Option<String>,
    /// Start even when, in a container, the database is not on a mounted volume (its queue then dies with
    /// the container).
    #[arg(long, env = "CHATGOWA_ALLOW_EPHEMERAL_DB", global = true)]
    pub allow_ephemeral_db: Option<String>,
    /// Addresses the admin panel is opened by under a name (`https://relay.example.com`, comma-separated):
    /// changes are accepted from pages there too, besides IP addresses and localhost.
    #[arg(long, env = "CHATGOWA_ADMIN_ORIGINS", global = true)]
    pub admin_origins: Option<String>,
    /// How long a new reply waits for an earlier one that Chatwoot sent late (`2s`; `0` sends at once).
    #[arg(long, env = "CHATGOWA_REORDER_WINDOW", global = true)]
    pub reorder_window: Option<String>,
    /// Several relays on PostgreSQL: how long a relay holds a conversation's lane without renewing it; the lanes
    /// of a relay that died are taken over after this. At least the attempt timeout plus 5 s.
    #[arg(long, env = "CHATGOWA_LANE_LEASE", global = true)]
    pub lane_lease: Option<String>,
    /// Proxies and tunnels in front of the relay (CIDRs or addresses, comma-separated): their connections are
    /// not capped per address, and the client is read from `X-Forwarded-For` / `Forwarded` through them.
    #[arg(long, env = "CHATGOWA_TRUSTED_PROXIES", global = true)]
    pub trusted_proxies: Option<String>,
    /// Chatwoot's webhook secret(s), comma-separated (several during a rotation): webhooks must then carry a
    /// valid `X-Chatwoot-Signature`.
    #[arg(
        long,
        env = "CHATGOWA_CHATWOOT_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub chatwoot_secret: Option<String>,
    /// How long a reply may keep failing before its conversation in a linked Chatwoot gets a note that replies are
    /// delayed (`5m`).
    #[arg(long, env = "CHATGOWA_DELAYED_AFTER", global = true)]
    pub delayed_after: Option<String>,
    /// How often a linked Chatwoot is asked for replies the relay never received (`5m`).
    #[arg(long, env = "CHATGOWA_CATCHUP_INTERVAL", global = true)]
    pub catchup_interval: Option<String>,
    /// How far back catching up looks at most (`24h`).
    #[arg(long, env = "CHATGOWA_CATCHUP_MAX", global = true)]
    pub catchup_max: Option<String>,
    /// A recovered reply older than this waits in the panel for "send now" or "discard" (`1h`).
    #[arg(long, env = "CHATGOWA_CATCHUP_SEND_WITHIN", global = true)]
    pub catchup_send_within: Option<String>,
    /// The address Chatwoot must post webhooks to (`https://relay.example.com/webhook`): what the relay registers
    /// in linked Chatwoot accounts.
    #[arg(long, env = "CHATGOWA_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,
    /// Link a Chatwoot at start: its address (`https://chat.example.com`), with the two below.
    #[arg(long, env = "CHATGOWA_CHATWOOT_URL", global = true)]
    pub chatwoot_url: Option<String>,
    /// The Chatwoot account(s) to link, comma-separated (one token's user must administer each).
    #[arg(long, env = "CHATGOWA_CHATWOOT_ACCOUNT_ID", global = true)]
    pub chatwoot_account_id: Option<String>,
    /// An administrator's access token (Chatwoot: Profile settings → Access Token).
    #[arg(
        long,
        env = "CHATGOWA_CHATWOOT_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub chatwoot_token: Option<String>,
}

/// Where the relay keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// The SQLite file (created if missing): one relay.
    Sqlite(PathBuf),
    /// A PostgreSQL URL, password included: several relays on one database.
    Postgres(Secret<String>),
}

impl Database {
    /// For logs and messages: the file, or the URL without its password.
    pub fn shown(&self) -> String {
        match self {
            Self::Sqlite(path) => path.display().to_string(),
            Self::Postgres(url) => without_password(url.expose()),
        }
    }

    /// The SQLite file, if that is the backend.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Self::Sqlite(path) => Some(path),
            Self::Postgres(_) => None,
        }
    }
}

/// A value that must never be printed: `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Clone)]
pub struct AdminCredentials {
    pub user: String,
    /// The password, or an Argon2 hash of it in PHC form (`$argon2id$…`, see `chatgowa hash-password`).
    pub password: Secret<String>,
    /// Argon2 is slow on purpose and the panel makes many requests: the SHA-256 digest of the password once it
    /// has verified against the hash, for constant-time comparison afterwards.
    pub(crate) verified: std::sync::Arc<std::sync::OnceLock<[u8; 32]>>,
}

impl AdminCredentials {
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            password: Secret::new(password.into()),
            verified: Default::default(),
        }
    }

    /// Whether the password is stored as an Argon2 PHC string rather than in plain text.
    pub fn is_hashed(&self) -> bool {
        self.password.expose().starts_with("$argon2")
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub bind: IpAddr,
    pub port: u16,
    /// Where the admin API and panel listen when apart from the webhook (e.g. loopback only, so that a tunnel
    /// to the webhook port exposes nothing else). `None`: on the webhook's address and port.
    pub admin_bind: Option<SocketAddr>,
    /// Where the relay keeps its state.
    pub database: Database,
    /// `None`: the admin API is not served at all.
    pub admin: Option<AdminCredentials>,
    /// Origins (`scheme://host[:port]`) besides IP addresses and localhost whose pages may change things
    /// through the admin API: the names the panel is opened by. A name not listed could be an attacker's
    /// that resolves to this machine (DNS rebinding).
    pub admin_origins: Vec<String>,
    /// Proxies and tunnels in front of the relay: the client is the address they forwarded for (see
    /// `server::conn`). Empty: every peer is the client, forwarding headers are ignored.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub fetch_timeout: Duration,
    /// Delay before attempt n+1 is `retry_schedule[n-1]`; the last step repeats until `max_age`.
    pub retry_schedule: Vec<Duration>,
    /// How long a new message event waits for a lower message id of its conversation; zero: not at all.
    pub reorder_window: Duration,
    /// PostgreSQL: how long a relay holds a lane without renewing it (see `delivery::leases`).
    pub lane_lease: Duration,
    pub max_age: Duration,
    pub max_body: usize,
    /// Delivered deliveries (payload, attempts, dedupe key) are deleted this long after they finished.
    pub retention: Duration,
    /// Dead deliveries are deleted this long after they died.
    pub dead_retention: Duration,
    pub log_format: LogFormat,
    /// Start in a container even though the database is not on a mounted volume.
    pub allow_ephemeral_db: bool,
    /// Chatwoot webhook secrets; when any is set (here or on the webhook's route), webhooks must be signed.
    pub chatwoot_secrets: Vec<Secret<String>>,
    /// Where Chatwoot must post webhooks (`CHATGOWA_PUBLIC_URL`); a setting of the panel otherwise.
    pub public_url: Option<url::Url>,
    /// Chatwoot accounts to link at every start (`CHATGOWA_CHATWOOT_URL`, `…_ACCOUNT_ID`, `…_TOKEN`).
    pub chatwoot_link: Option<ChatwootLink>,
    /// How the relay keeps a linked Chatwoot in step.
    pub upkeep: Upkeep,
}

/// How the relay keeps a linked Chatwoot in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upkeep {
    /// A reply failing this long gets its conversation a note that replies are delayed.
    pub delayed_after: Duration,
    /// How often Chatwoot is asked for replies the relay never received.
    pub catchup_interval: Duration,
    /// How far back that looks at most.
    pub catchup_max: Duration,
    /// A recovered reply older than this is not sent without a decision.
    pub send_within: Duration,
}

impl Default for Upkeep {
    fn default() -> Self {
        Self {
            delayed_after: DEFAULT_DELAYED_AFTER,
            catchup_interval: Duration::from_secs(5 * 60),
            catchup_max: Duration::from_secs(24 * 3600),
            send_within: Duration::from_secs(3600),
        }
    }
}

/// Chatwoot accounts linked from the environment.
#[derive(Debug, Clone)]
pub struct ChatwootLink {
    pub url: url::Url,
    pub accounts: Vec<i64>,
    pub token: Secret<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid {var} {value:?}: {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub value: String,
    pub problem: String,
}

impl Config {
    /// Validates raw settings; `default_bind` differs between the headless and the desktop mode.
    ///
    /// # Errors
    /// The first invalid setting, naming its variable.
    // Long on purpose: one field per setting, each parsed next to the variable that names it.
    pub fn from_settings(s: &Settings, default_bind: IpAddr) -> Result<Self, ConfigError> {
        let admin = admin_credentials(s)?;
        let (bind, port, admin_bind) = listen_addresses(s, default_bind)?;
        let database = database_setting(s)?;
        let (fetch_timeout, retry_schedule, reorder_window) = attempt_timing(s)?;
        let (public_url, chatwoot_link, upkeep) = chatwoot_settings(s)?;
        Ok(Self {
            bind,
            port,
            admin_bind,
            database,
            admin,
            admin_origins: parse_or(
                &s.admin_origins,
                "CHATGOWA_ADMIN_ORIGINS",
                Vec::new(),
                parse_origins,
            )?,
            trusted_proxies: parse_or(
                &s.trusted_proxies,
                "CHATGOWA_TRUSTED_PROXIES",
                Vec::new(),
                parse_networks,
            )?,
            lane_lease: lane_lease(s, fetch_timeout)?,
            fetch_timeout,
            retry_schedule,
            reorder_window,
            max_age: parse_or(
                &s.max_age,
                "CHATGOWA_MAX_AGE",
                DEFAULT_MAX_AGE,
                parse_duration,
            )?,
            max_body: parse_or(
                &s.max_body,
                "CHATGOWA_MAX_BODY",
                DEFAULT_MAX_BODY,
                parse_size,
            )?,
            retention: parse_or(
                &s.retention,
                "CHATGOWA_RETENTION",
                DEFAULT_RETENTION,
                parse_duration,
            )?,
            dead_retention: parse_or(
                &s.dead_retention,
                "CHATGOWA_DEAD_RETENTION",
                DEFAULT_DEAD_RETENTION,
                parse_duration,
            )?,
            log_format: parse_or(
                &s.log_format,
                "CHATGOWA_LOG_FORMAT",
                LogFormat::Human,
                parse_log_format,
            )?,
            allow_ephemeral_db: parse_or(
                &s.allow_ephemeral_db,
                "CHATGOWA_ALLOW_EPHEMERAL_DB",
                false,
                parse_bool,
            )?,
            chatwoot_secrets: secrets(s.chatwoot_secret.as_deref().unwrap_or_default()),
            public_url,
            chatwoot_link,
            upkeep,
        })
    }

    /// Settings that are valid but probably not what the user meant, to be logged once logging is up.
    pub fn warnings(&self, env: impl IntoIterator<Item = String>) -> Vec<String> {
        let known = known_variables();
        let mut out: Vec<String> = env
            .into_iter()
            .filter(|k| k.starts_with("CHATGOWA_") && !known.contains(k))
            .map(|k| format!("unknown environment variable {k} is ignored (misspelt?)"))
            .collect();
        if self.admin.as_ref().is_some_and(|a| !a.is_hashed()) {
            out.push(
                "BASIC_AUTH_PASS is plain text; store an Argon2 hash instead (`chatgowa hash-password` makes one)"
                    .into(),
            );
        }
        out
    }
}

/// Every environment variable that [`Settings`] reads, from its clap definition.
pub fn known_variables() -> Vec<String> {
    Settings::augment_args(clap::Command::new("chatgowa"))
        .get_arguments()
        .filter_map(clap::Arg::get_env)
        .map(|name| name.to_string_lossy().into_owned())
        .collect()
}

/// The admin login, if a password is set: a plain one, or an Argon2 hash that must be well-formed.
fn admin_credentials(s: &Settings) -> Result<Option<AdminCredentials>, ConfigError> {
    let password = s
        .basic_auth_pass
        .as_deref()
        .map(str::trim)
        .unwrap_or_default();
    if password.is_empty() || password == PLACEHOLDER_PASSWORD {
        return Ok(None);
    }
    let user = s
        .basic_auth_user
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .unwrap_or(DEFAULT_ADMIN_USER);
    let admin = AdminCredentials::new(user, password);
    if admin.is_hashed() {
        argon2::PasswordHash::new(password)
            .map_err(|e| e.to_string())
            .and_then(|h| match (h.salt, h.hash) {
                (Some(_), Some(_)) => Ok(()),
                _ => Err("salt or hash missing".to_owned()),
            })
            .map_err(|e| ConfigError {
                var: "BASIC_AUTH_PASS",
                value: "$argon2…".into(),
                problem: format!(
                    "not a valid Argon2 hash ({e}); make one with `chatgowa hash-password`"
                ),
            })?;
    }
    Ok(Some(admin))
}

/// `CHATGOWA_LANE_LEASE`, which must outlast an attempt: a lane passes to another relay only once no request of
/// its holder can still be in flight.
fn lane_lease(s: &Settings, fetch_timeout: Duration) -> Result<Duration, ConfigError> {
    let least = fetch_timeout + LEASE_MARGIN;
    parse_or(
        &s.lane_lease,
        "CHATGOWA_LANE_LEASE",
        least + LEASE_MARGIN * 2,
        |v| match parse_duration(v)? {
            lease if lease >= least => Ok(lease),
            _ => Err(format!(
                "must be at least the attempt timeout (FETCH_TIMEOUT_MS) plus 5s: {}",
                humantime::format_duration(least)
            )),
        },
    )
}

/// How long one delivery attempt may take, the delays between attempts, and the reorder window.
fn attempt_timing(s: &Settings) -> Result<(Duration, Vec<Duration>, Duration), ConfigError> {
    let fetch_timeout = parse_or(
        &s.fetch_timeout_ms,
        "FETCH_TIMEOUT_MS",
        Duration::from_millis(DEFAULT_FETCH_TIMEOUT_MS),
        parse_millis,
    )?;
    let retry_schedule = parse_or(
        &s.retry_schedule,
        "CHATGOWA_RETRY_SCHEDULE",
        Vec::new(),
        parse_schedule,
    )
    .map(|v| if v.is_empty() { default_schedule() } else { v })?;
    let reorder_window = parse_or(
        &s.reorder_window,
        "CHATGOWA_REORDER_WINDOW",
        DEFAULT_REORDER_WINDOW,
        parse_window,
    )?;
    Ok((fetch_timeout, retry_schedule, reorder_window))
}

/// `DATABASE_URL`: a PostgreSQL URL, else a SQLite file.
fn database_setting(s: &Settings) -> Result<Database, ConfigError> {
    let url = s.database_url.as_deref().unwrap_or(DEFAULT_DATABASE_URL);
    let trimmed = url.trim();
    let parsed = if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        let url = with_socket_host(trimmed);
        postgres_url(&url).map(|()| Database::Postgres(Secret::new(url)))
    } else {
        database_path(url).map(Database::Sqlite)
    };
    parsed.map_err(|problem| ConfigError {
        var: "DATABASE_URL",
        value: without_password(s.database_url.as_deref().unwrap_or_default()),
        problem,
    })
}

/// The webhook's address and port, and the admin API's own address if it has one.
fn listen_addresses(
    s: &Settings,
    default_bind: IpAddr,
) -> Result<(IpAddr, u16, Option<SocketAddr>), ConfigError> {
    let bind = parse_or(&s.bind, "CHATGOWA_BIND", default_bind, |v| {
        v.parse::<IpAddr>()
            .map_err(|_| "expected an IP address such as 0.0.0.0, 127.0.0.1 or ::".into())
    })?;
    let port = parse_or(&s.port, "PORT", DEFAULT_PORT, |v| {
        v.parse::<u16>()
            .map_err(|_| "expected a TCP port number from 0 to 65535".into())
    })?;
    let admin_bind = parse_or(&s.admin_bind, "CHATGOWA_ADMIN_BIND", None, |v| {
        v.parse::<SocketAddr>()
            .map(Some)
            .map_err(|_| "expected an address and port such as 127.0.0.1:3001".into())
    })?;
    Ok((bind, port, admin_bind))
}

fn parse_or<T>(
    raw: &Option<String>,
    var: &'static str,
    default: T,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(default),
        Some(v) => parse(v).map_err(|problem| ConfigError {
            var,
            value: without_password(v),
            problem,
        }),
    }
}

/// A setting's value as an error may show it: a URL's password (`postgres://user:secret@db/…`) replaced by
/// `***`, so that a refused setting does not put a secret in the log.
fn without_password(value: &str) -> String {
    let Ok(mut url) = url::Url::parse(value) else {
        return without_password_by_hand(value);
    };
    if url.password().is_some() {
        // Infallible: a URL that has a password can have another one.
        let _ = url.set_password(Some("***"));
    }
    // libpq's form: `?password=…`.
    if url.query_pairs().any(|(k, _)| k == "password") {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "password" {
                    "***".into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.into()
}

/// [`without_password`] for a value that is not a URL the parser accepts (a wrong port, a stray character): the
/// text between `user:` and `@`, and after `password=`, is masked all the same.
fn without_password_by_hand(value: &str) -> String {
    let mut shown = value.to_owned();
    if let Some(scheme_end) = shown.find("://").map(|i| i + 3) {
        let authority_end = shown[scheme_end..]
            .find(['/', '?'])
            .map_or(shown.len(), |i| scheme_end + i);
        if let Some(at) = shown[scheme_end..authority_end]
            .rfind('@')
            .map(|i| scheme_end + i)
            && let Some(colon) = shown[scheme_end..at].find(':').map(|i| scheme_end + i)
        {
            shown.replace_range(colon + 1..at, "***");
        }
    }
    if let Some(start) = shown.find("password=").map(|i| i + "password=".len()) {
        let end = shown[start..].find('&').map_or(shown.len(), |i| start + i);
        shown.replace_range(start..end, "***");
    }
    shown
}

/// Checks a PostgreSQL URL the way the relay will use it (host, database, options), without connecting.
/// PostgreSQL's documented form for a Unix socket leaves the host empty and names the socket's directory in
/// `?host=` (`postgres://user@/db?host=/var/run/postgresql`); the URL parser refuses an empty host after a
/// user, so a placeholder stands there (the `host` parameter then decides where to connect).
fn with_socket_host(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let has_host_parameter = tail
        .split_once('?')
        .is_some_and(|(_, query)| query.split('&').any(|p| p.starts_with("host=")));
    if !host_port.is_empty() || !has_host_parameter {
        return url.to_owned();
    }
    format!("{scheme}://{authority}localhost{tail}")
}

fn postgres_url(url: &str) -> Result<(), String> {
    sqlx::postgres::PgConnectOptions::from_str(url)
        .map(|_| ())
        .map_err(|e| {
            format!(
                "is not a PostgreSQL URL the relay can use: {}",
                without_password(&e.to_string())
            )
        })
}

fn default_schedule() -> Vec<Duration> {
    parse_schedule(DEFAULT_RETRY_SCHEDULE).unwrap_or_default()
}

fn parse_duration(v: &str) -> Result<Duration, String> {
    match humantime::parse_duration(v) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be greater than zero".into()),
        Err(e) => Err(format!(
            "{e}; expected a duration such as 500ms, 30s, 5m, 2h or 1d"
        )),
    }
}

/// A comma-separated list of secrets (old and new during a rotation); blanks are ignored.
pub fn secrets(v: &str) -> Vec<Secret<String>> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| Secret::new(s.to_owned()))
        .collect()
}

/// `CHATGOWA_PUBLIC_URL`, the Chatwoot link of the environment and how it is kept in step.
fn chatwoot_settings(
    s: &Settings,
) -> Result<(Option<url::Url>, Option<ChatwootLink>, Upkeep), ConfigError> {
    let public_url = parse_or(&s.public_url, "CHATGOWA_PUBLIC_URL", None, |v| {
        parse_public_url(v).map(Some)
    })?;
    let d = Upkeep::default();
    let upkeep = Upkeep {
        delayed_after: parse_or(
            &s.delayed_after,
            "CHATGOWA_DELAYED_AFTER",
            d.delayed_after,
            parse_duration,
        )?,
        catchup_interval: parse_or(
            &s.catchup_interval,
            "CHATGOWA_CATCHUP_INTERVAL",
            d.catchup_interval,
            parse_duration,
        )?,
        catchup_max: parse_or(
            &s.catchup_max,
            "CHATGOWA_CATCHUP_MAX",
            d.catchup_max,
            parse_duration,
        )?,
        send_within: parse_or(
            &s.catchup_send_within,
            "CHATGOWA_CATCHUP_SEND_WITHIN",
            d.send_within,
            parse_duration,
        )?,
    };
    Ok((public_url, chatwoot_link(s)?, upkeep))
}

/// The three `CHATGOWA_CHATWOOT_*` settings, all or none.
fn chatwoot_link(s: &Settings) -> Result<Option<ChatwootLink>, ConfigError> {
    let given = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let (url, accounts, token) = (
        given(&s.chatwoot_url),
        given(&s.chatwoot_account_id),
        given(&s.chatwoot_token),
    );
    let missing = |var: &'static str| {
        ConfigError {
        var,
        value: String::new(),
        problem: "CHATGOWA_CHATWOOT_URL, CHATGOWA_CHATWOOT_ACCOUNT_ID and CHATGOWA_CHATWOOT_TOKEN go together"
            .into(),
    }
    };
    match (url, accounts, token) {
        (None, None, None) => Ok(None),
        (Some(url), Some(accounts), Some(token)) => Ok(Some(ChatwootLink {
            url: parse_or(&Some(url), "CHATGOWA_CHATWOOT_URL", None, |v| {
                parse_chatwoot_url(v).map(Some)
            })?
            .unwrap_or_else(|| unreachable!("given")),
            accounts: parse_or(
                &Some(accounts),
                "CHATGOWA_CHATWOOT_ACCOUNT_ID",
                Vec::new(),
                parse_account_ids,
            )?,
            token: Secret::new(token),
        })),
        (None, _, _) => Err(missing("CHATGOWA_CHATWOOT_URL")),
        (_, None, _) => Err(missing("CHATGOWA_CHATWOOT_ACCOUNT_ID")),
        (_, _, None) => Err(missing("CHATGOWA_CHATWOOT_TOKEN")),
    }
}

fn parse_account_ids(v: &str) -> Result<Vec<i64>, String> {
    let mut ids = Vec::new();
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.parse::<i64>() {
            Ok(id) if id > 0 && !ids.contains(&id) => ids.push(id),
            Ok(id) if id > 0 => {}
            _ => return Err(format!("{part:?} is not an account id (a positive number)")),
        }
    }
    Ok(ids)
}

/// A Chatwoot address as given: `https://chat.example.com` (a path prefix is kept, anything from `/app` on is
/// dropped; credentials, a query or a fragment are refused). No trailing slash.
///
/// # Errors
/// Not an absolute http(s) URL with a host, or with a part Chatwoot's address cannot have.
pub fn parse_chatwoot_url(raw: &str) -> Result<url::Url, String> {
    let mut url = absolute_http(raw)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must be the address Chatwoot opens at, without ?… or #…".into());
    }
    let path = url.path().trim_end_matches('/').to_owned();
    let kept = path
        .find("/app")
        .map_or(path.as_str(), |at| &path[..at])
        .to_owned();
    url.set_path(&kept);
    Ok(url)
}

/// The URL Chatwoot must post to: an absolute http(s) URL; a bare address gets the `/webhook` path.
///
/// # Errors
/// Not such a URL, or one with credentials, a query or a fragment.
pub fn parse_public_url(raw: &str) -> Result<url::Url, String> {
    let mut url = absolute_http(raw)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(
            "must not have ?… or #… (Chatwoot signs its webhooks; no secret belongs in the URL)"
                .into(),
        );
    }
    if matches!(url.path(), "" | "/") {
        url.set_path("/webhook");
    }
    Ok(url)
}

fn absolute_http(raw: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(raw.trim()).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err("must be an http:// or https:// address with a host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not hold a user name or password".into());
    }
    Ok(url)
}

/// A comma-separated list of `http(s)://host[:port]`, each as browsers send it in `Origin`.
fn parse_origins(v: &str) -> Result<Vec<String>, String> {
    v.split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|o| {
            let url = url::Url::parse(o).map_err(|e| format!("{o:?}: {e}"))?;
            let bare = matches!(url.path(), "" | "/") && url.query().is_none();
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() || !bare {
                return Err(format!(
                    "{o:?}: expected an address such as https://relay.example.com or http://office-pc:3001"
                ));
            }
            Ok(url.origin().ascii_serialization())
        })
        .collect()
}

/// This machine's own addresses (`127.0.0.0/8`, `::1`): the desktop app's trusted proxies, since a tunnel on the
/// same PC connects from there.
pub fn loopback_networks() -> Vec<ipnet::IpNet> {
    parse_networks("127.0.0.0/8,::1").unwrap_or_default()
}

/// CIDRs (`10.0.0.0/8`, `fd00::/8`) or single addresses, comma-separated.
fn parse_networks(v: &str) -> Result<Vec<ipnet::IpNet>, String> {
    v.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| {
            n.parse::<ipnet::IpNet>()
                .or_else(|_| n.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map(|net| net.trunc())
                .map_err(|_| {
                    format!("{n:?}: expected an address or a CIDR such as 127.0.0.1, 10.0.0.0/8 or fd00::/8")
                })
        })
        .collect()
}

fn parse_window(v: &str) -> Result<Duration, String> {
    if matches!(v, "0" | "off") {
        return Ok(Duration::ZERO);
    }
    parse_duration(v).map_err(|e| format!("{e}; or 0 to send at once"))
}

fn parse_millis(v: &str) -> Result<Duration, String> {
    match v.parse::<u64>() {
        Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
        _ => Err("expected a whole number of milliseconds greater than 0".into()),
    }
}

fn parse_log_format(v: &str) -> Result<LogFormat, String> {
    match v.to_ascii_lowercase().as_str() {
        "human" | "text" => Ok(LogFormat::Human),
        "json" => Ok(LogFormat::Json),
        _ => Err("expected human or json".into()),
    }
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

fn parse_schedule(v: &str) -> Result<Vec<Duration>, String> {
    v.split(',')
        .map(|step| {
            parse_duration(step.trim())
                .map_err(|e| format!("step {:?}: {e} (list example: 1s,5s,30s,2m)", step.trim()))
        })
        .collect()
}

fn parse_size(v: &str) -> Result<usize, String> {
    const HINT: &str = "expected a size such as 1048576, 512KiB, 1MiB or 2MB";
    let digits_end = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (number, unit) = v.split_at(digits_end);
    let number: usize = number.parse().map_err(|_| HINT.to_owned())?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" | "k" => 1024,
        "mb" => 1000 * 1000,
        "mib" | "m" => 1024 * 1024,
        _ => return Err(HINT.to_owned()),
    };
    match number.checked_mul(factor) {
        Some(n) if n >= 1024 => Ok(n),
        _ => Err(format!("must be at least 1KiB; {HINT}")),
    }
}

/// Accepts Prisma-style `file:` URLs, `sqlite:` URLs and plain paths; relative paths are relative to the
/// working directory.
fn database_path(url: &str) -> Result<PathBuf, String> {
    let url = url.trim();
    let path = if let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        rest
    } else if let Some(rest) = url
        .strip_prefix("file://")
        .or_else(|| url.strip_prefix("file:"))
    {
        rest
    } else if url.contains("://") {
        return Err(
            "use a PostgreSQL URL (postgres://user:password@host/database) or a SQLite file \
             (file:./path.db, sqlite://path.db or a plain path)"
                .into(),
        );
    } else {
        url
    };
    // Connection parameters (`?mode=rwc`, `?connection_limit=1` from Prisma) do not belong to the path.
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Err("needs a file path; an in-memory database would lose queued messages".into());
    }
    Ok(PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_url_setting_does_not_show_its_password() {
        let s = Settings {
            database_url: Some("postgres://chatgowa:hunter2-secret@db:99999/chatgowa".into()),
            ..Settings::default()
        };
        let err = Config::from_settings(&s, IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)).unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.contains("DATABASE_URL") && shown.contains("chatgowa:***@db"),
            "{shown}"
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        let s = Settings {
            public_url: Some("ftp://relay:hunter2-secret@example.com/webhook".into()),
            ..Settings::default()
        };
        let shown = Config::from_settings(&s, IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
            .unwrap_err()
            .to_string();
        assert!(
            shown.contains("CHATGOWA_PUBLIC_URL") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn chatwoot_and_public_addresses_are_read_as_meant() {
        let public = |raw| parse_public_url(raw).map(String::from);
        assert_eq!(
            public("https://relay.example.com").unwrap(),
            "https://relay.example.com/webhook"
        );
        assert_eq!(
            public(" https://relay.example.com/chatgowa/webhook ").unwrap(),
            "https://relay.example.com/chatgowa/webhook"
        );
        assert!(public("relay.example.com").is_err());
        assert!(public("ftp://relay.example.com").is_err());
        assert!(public("https://u:p@relay.example.com/webhook").is_err());
        assert!(public("https://relay.example.com/webhook?secret=x").is_err());
        let chatwoot = |raw| parse_chatwoot_url(raw).map(String::from);
        assert_eq!(
            chatwoot("https://chat.example.com/").unwrap(),
            "https://chat.example.com/"
        );
        assert_eq!(
            chatwoot("https://chat.example.com/app/accounts/3/dashboard").unwrap(),
            "https://chat.example.com/"
        );
        assert_eq!(
            chatwoot("https://example.com/support").unwrap(),
            "https://example.com/support"
        );
        assert!(chatwoot("https://token@chat.example.com").is_err());
        assert_eq!(parse_account_ids("3, 5,3").unwrap(), vec![3, 5]);
        assert!(parse_account_ids("3,x").is_err());
        assert!(parse_account_ids("0").is_err());
    }

    #[test]
    fn the_chatwoot_link_settings_go_together() {
        let mut s = Settings {
            chatwoot_url: Some("https://chat.example.com".into()),
            chatwoot_account_id: Some("3".into()),
            ..Settings::default()
        };
        let err = chatwoot_link(&s).unwrap_err();
        assert_eq!(err.var, "CHATGOWA_CHATWOOT_TOKEN");
        s.chatwoot_token = Some("secret-token".into());
        let link = chatwoot_link(&s).unwrap().unwrap();
        assert_eq!(link.accounts, vec![3]);
        assert!(!format!("{link:?}").contains("secret-token"));
    }

    fn load(f: impl FnOnce(&mut Settings)) -> Result<Config, ConfigError> {
        let mut s = Settings::default();
        f(&mut s);
        Config::from_settings(&s, IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn defaults() {
        let c = load(|_| {}).unwrap();
        assert_eq!(c.port, 3000);
        assert_eq!(
            c.fetch_timeout,
            Duration::from_secs(60),
            "above GoWA's 45 s"
        );
        assert_eq!(c.max_body, 4 * 1024 * 1024);
        assert_eq!(c.reorder_window, Duration::from_secs(2));
        assert_eq!(c.max_age, Duration::from_secs(86_400));
        assert_eq!(c.retry_schedule.len(), 10);
        assert_eq!(c.retry_schedule[0], Duration::from_secs(1));
        assert_eq!(c.database, Database::Sqlite(PathBuf::from("./chatgowa.db")));
        assert!(c.admin.is_none());
        assert_eq!(c.retention, Duration::from_secs(7 * 86_400));
        assert_eq!(c.dead_retention, Duration::from_secs(30 * 86_400));
        assert_eq!(c.log_format, LogFormat::Human);
        assert!(!c.allow_ephemeral_db);
    }

    #[test]
    fn database_urls_in_every_accepted_form() {
        for (url, path) in [
            ("file:./prisma/dev.db", "./prisma/dev.db"),
            ("file:/app/prisma/dev.db", "/app/prisma/dev.db"),
            ("sqlite://data/relay.db", "data/relay.db"),
            ("sqlite:relay.db?mode=rwc", "relay.db"),
            ("/var/lib/chatgowa.db", "/var/lib/chatgowa.db"),
        ] {
            let c = load(|s| s.database_url = Some(url.into())).unwrap();
            assert_eq!(c.database, Database::Sqlite(PathBuf::from(path)), "{url}");
        }
        for url in [
            "postgres://chatgowa:s3cret@db:5432/chatgowa",
            "postgresql://chatgowa@localhost/chatgowa?host=/run/postgresql&password=s3cret",
        ] {
            let c = load(|s| s.database_url = Some(url.into())).unwrap();
            assert_eq!(c.database, Database::Postgres(Secret::new(url.into())));
            assert!(
                !c.database.shown().contains("s3cret"),
                "{}",
                c.database.shown()
            );
            assert!(!format!("{c:?}").contains("s3cret"));
        }
        // A Unix socket with the host left empty, as PostgreSQL documents it.
        for (url, used) in [
            (
                "postgres://chatgowa@/chatgowa?host=/var/run/postgresql",
                "postgres://chatgowa@localhost/chatgowa?host=/var/run/postgresql",
            ),
            (
                "postgresql:///chatgowa?host=/run/postgresql",
                "postgresql://localhost/chatgowa?host=/run/postgresql",
            ),
        ] {
            let c = load(|s| s.database_url = Some(url.into())).unwrap();
            assert_eq!(
                c.database,
                Database::Postgres(Secret::new(used.into())),
                "{url}"
            );
        }
        for url in [
            "mysql://x/y",
            "sqlite::memory:",
            "file:",
            "postgres://db:99999/x",
        ] {
            let err = load(|s| s.database_url = Some(url.into())).unwrap_err();
            assert_eq!(err.var, "DATABASE_URL", "{url}");
        }
    }

    #[test]
    fn errors_name_the_variable_and_what_is_allowed() {
        type Case = (fn(&mut Settings), &'static str, &'static str);
        let cases: [Case; 13] = [
            (|s| s.port = Some("http".into()), "PORT", "0 to 65535"),
            (|s| s.port = Some("70000".into()), "PORT", "0 to 65535"),
            (
                |s| s.bind = Some("localhost:3000".into()),
                "CHATGOWA_BIND",
                "IP address",
            ),
            (
                |s| s.admin_bind = Some("127.0.0.1".into()),
                "CHATGOWA_ADMIN_BIND",
                "127.0.0.1:3001",
            ),
            (
                |s| s.fetch_timeout_ms = Some("0".into()),
                "FETCH_TIMEOUT_MS",
                "milliseconds",
            ),
            (
                |s| s.retry_schedule = Some("1s,,5s".into()),
                "CHATGOWA_RETRY_SCHEDULE",
                "1s,5s",
            ),
            (
                |s| s.retry_schedule = Some("1s,0s".into()),
                "CHATGOWA_RETRY_SCHEDULE",
                "greater than zero",
            ),
            (
                |s| s.max_age = Some("forever".into()),
                "CHATGOWA_MAX_AGE",
                "30s",
            ),
            (
                |s| s.max_body = Some("1GB!".into()),
                "CHATGOWA_MAX_BODY",
                "1MiB",
            ),
            (
                |s| s.retention = Some("a week".into()),
                "CHATGOWA_RETENTION",
                "1d",
            ),
            (
                |s| s.dead_retention = Some("0s".into()),
                "CHATGOWA_DEAD_RETENTION",
                "greater than zero",
            ),
            (
                |s| s.log_format = Some("xml".into()),
                "CHATGOWA_LOG_FORMAT",
                "human or json",
            ),
            (
                |s| s.allow_ephemeral_db = Some("sure".into()),
                "CHATGOWA_ALLOW_EPHEMERAL_DB",
                "true or false",
            ),
        ];
        for (set, var, hint) in cases {
            let err = load(set).unwrap_err();
            assert_eq!(err.var, var);
            let text = err.to_string();
            assert!(text.contains(var) && text.contains(hint), "{text}");
        }
    }

    #[test]
    fn millisecond_schedules_and_sizes() {
        let c = load(|s| {
            s.retry_schedule = Some(" 10ms, 20ms ,1s ".into());
            s.max_body = Some("512KiB".into());
            s.max_age = Some("2s".into());
        })
        .unwrap();
        assert_eq!(
            c.retry_schedule,
            [10, 20, 1000].map(Duration::from_millis).to_vec()
        );
        assert_eq!(c.max_body, 512 * 1024);
        assert_eq!(c.max_age, Duration::from_secs(2));
    }

    #[test]
    fn placeholder_or_empty_password_disables_admin() {
        for pass in ["", "  ", PLACEHOLDER_PASSWORD] {
            let c = load(|s| s.basic_auth_pass = Some(pass.into())).unwrap();
            assert!(c.admin.is_none());
        }
        let c = load(|s| s.basic_auth_pass = Some("s3cret-pass".into())).unwrap();
        let admin = c.admin.unwrap();
        assert_eq!(admin.user, "admin");
        assert!(!format!("{admin:?}").contains("s3cret"));
    }

    #[test]
    fn argon2_hashes_are_accepted_and_checked() {
        let hash = crate::login::hash_password("s3cret-pass");
        let c = load(|s| s.basic_auth_pass = Some(hash.clone())).unwrap();
        assert!(c.admin.as_ref().unwrap().is_hashed());
        assert!(!c.warnings([]).iter().any(|w| w.contains("plain text")));
        let plain = load(|s| s.basic_auth_pass = Some("s3cret-pass".into())).unwrap();
        assert!(plain.warnings([]).iter().any(|w| w.contains("plain text")));
        let err = load(|s| s.basic_auth_pass = Some("$argon2id$broken".into())).unwrap_err();
        assert!(
            err.to_string().contains("hash-password") && !err.to_string().contains("broken"),
            "{err}"
        );
    }

    #[test]
    fn unknown_prefixed_variables_are_reported() {
        let c = load(|s| s.basic_auth_pass = Some("pw-123456".into())).unwrap();
        let w = c.warnings([
            "CHATGOWA_BINDD".to_owned(),
            "CHATGOWA_BIND".to_owned(),
            "HOME".to_owned(),
        ]);
        let w: Vec<_> = w
            .into_iter()
            .filter(|w| w.contains("environment variable"))
            .collect();
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("CHATGOWA_BINDD"));
    }

    #[test]
    fn every_variable_is_documented_in_the_env_example() {
        let example = include_str!("../.env.example");
        let documented: std::collections::BTreeSet<&str> = example
            .lines()
            .map(|l| l.trim_start_matches(['#', ' ']))
            .filter_map(|l| l.split_once('=').map(|(name, _)| name))
            .filter(|name| {
                !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_')
            })
            .filter(|name| *name != "RUST_LOG")
            .collect();
        let known = known_variables();
        let known: std::collections::BTreeSet<&str> = known.iter().map(String::as_str).collect();
        assert_eq!(documented, known);
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// Values as people type them: numbers, units, separators, junk.
        fn typed() -> impl Strategy<Value = Option<String>> {
            prop::option::of(prop_oneof![
                "[0-9]{0,12}",
                "[0-9]{1,6}(ms|s|m|h|d|KiB|MiB|kb|b| |,)?",
                "(file:|sqlite://)?[./a-z]{0,12}",
                "[ -~]{0,16}",
                "\\PC{0,8}",
            ])
        }

        proptest! {
            #[test]
            fn any_settings_give_a_config_or_an_error_naming_a_known_variable(
                fields in prop::collection::vec(typed(), 27)
            ) {
                let mut f = fields.into_iter();
                let mut next = || f.next().flatten();
                let s = Settings {
                    port: next(),
                    bind: next(),
                    admin_bind: next(),
                    database_url: next(),
                    basic_auth_user: next(),
                    basic_auth_pass: next(),
                    fetch_timeout_ms: next(),
                    retry_schedule: next(),
                    max_age: next(),
                    max_body: next(),
                    retention: next(),
                    dead_retention: next(),
                    log_format: next(),
                    allow_ephemeral_db: next(),
                    reorder_window: next(),
                    admin_origins: next(),
                    chatwoot_secret: next(),
                    public_url: next(),
                    chatwoot_url: next(),
                    chatwoot_account_id: next(),
                    chatwoot_token: next(),
                    delayed_after: next(),
                    catchup_interval: next(),
                    catchup_max: next(),
                    catchup_send_within: next(),
                    lane_lease: next(),
                    trusted_proxies: next(),
                };
                match Config::from_settings(&s, IpAddr::from([127, 0, 0, 1])) {
                    Ok(c) => {
                        prop_assert!(!c.retry_schedule.is_empty());
                        prop_assert!(c.max_body >= 1024 && !c.fetch_timeout.is_zero());
                    }
                    Err(e) => {
                        prop_assert!(known_variables().iter().any(|k| k == e.var), "{}", e.var);
                        prop_assert!(!e.problem.is_empty());
                    }
                }
            }

            #[test]
            fn durations_sizes_and_schedules_read_back_exactly(
                steps in prop::collection::vec(1u64..10_000_000, 1..10),
                size in 1usize..4_000_000,
            ) {
                let list = steps.iter().map(|ms| format!("{ms}ms")).collect::<Vec<_>>().join(", ");
                let expected: Vec<Duration> = steps.iter().map(|ms| Duration::from_millis(*ms)).collect();
                prop_assert_eq!(parse_schedule(&list), Ok(expected));
                prop_assert_eq!(parse_size(&format!("{size}KiB")), Ok(size * 1024));
                prop_assert_eq!(parse_size(&size.to_string()), if size >= 1024 { Ok(size) } else { Err("must be at least 1KiB; expected a size such as 1048576, 512KiB, 1MiB or 2MB".to_owned()) });
            }

            #[test]
            fn secrets_are_split_on_commas_and_trimmed(parts in prop::collection::vec("[A-Za-z0-9_-]{0,12}", 0..5)) {
                let joined = parts.iter().map(|p| format!(" {p} ")).collect::<Vec<_>>().join(",");
                let got: Vec<String> = secrets(&joined).into_iter().map(|s| s.expose().clone()).collect();
                let expected: Vec<String> = parts.into_iter().filter(|p| !p.is_empty()).collect();
                prop_assert_eq!(got, expected);
            }
        }
    }
}
