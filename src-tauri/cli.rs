//! Command line: the modes and subcommands (`healthcheck`, `hash-password`), parsed with clap.
//!
//! Every setting can come from a flag or from its environment variable (the TypeScript version's names are kept);
//! a `.env` file in the working directory fills in variables that are not already set. The settings themselves
//! are defined, and validated, in [`crate::config`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{Config, Settings};
use crate::login;

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
pub fn hash_password() -> anyhow::Result<()> {
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprint!("Password (it will be shown as you type): ");
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(!password.is_empty(), "the password is empty");
    println!("{}", login::hash_password(password));
    Ok(())
}
