//! Command line: flags, environment variables and the `.env` file, in one clap definition.
//!
//! Every setting can come from a flag or from its environment variable (the TypeScript version's names are kept);
//! a `.env` file in the working directory fills in variables that are not already set. Values are raw strings
//! here: [`crate::config`] validates them so that errors can name the variable.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

/// Durable Chatwoot → GoWA (WhatsApp) webhook relay.
#[derive(Debug, Parser)]
#[command(name = "chatgowa", version, about)]
pub struct Cli {
    /// Run the headless relay (no window, no tray): the mode for servers and Docker.
    #[arg(long, global = true)]
    pub server: bool,

    /// Start the desktop app in the tray, without opening its window (used when starting at login).
    #[arg(long)]
    pub minimized: bool,

    #[command(flatten)]
    pub settings: Settings,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Exit 0 if a relay answers on the configured port and its database is reachable, 1 otherwise.
    Healthcheck,
    /// Read a password on standard input and print its Argon2 hash, for BASIC_AUTH_PASS.
    HashPassword,
}

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
    /// SQLite database: `file:./path.db`, `sqlite://path.db` or a plain path.
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
    /// Chatwoot's webhook secret(s), comma-separated (several during a rotation): webhooks must then carry a
    /// valid `X-Chatwoot-Signature`.
    #[arg(
        long,
        env = "CHATGOWA_CHATWOOT_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub chatwoot_secret: Option<String>,
}

/// Loads `.env` (without overriding variables already set) and parses the command line.
///
/// # Errors
/// A `.env` file that exists but cannot be read or parsed.
pub fn parse() -> anyhow::Result<Cli> {
    match dotenvy::dotenv() {
        Ok(_) => {}
        Err(err) if err.not_found() => {}
        Err(err) => return Err(err).context("reading .env in the working directory"),
    }
    Ok(Cli::parse())
}

/// Prints an error chain to stderr and returns the failure exit code.
pub fn exit_with(err: &anyhow::Error) -> std::process::ExitCode {
    eprintln!("chatgowa: {err:#}");
    std::process::ExitCode::FAILURE
}
