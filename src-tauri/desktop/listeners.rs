//! The desktop's two listeners — the webhook, and the admin API and panel on an address of their own — which
//! move to other addresses while the relay keeps running. Knows nothing of Tauri, so it is tested with real
//! sockets.
//!
//! A new listener is opened before the old one stops: asking for a busy port changes nothing, the old address
//! keeps serving and the error says which port and why. Addresses chosen in the app are kept in `settings`;
//! `PORT`/`CHATGOWA_BIND` and `CHATGOWA_ADMIN_BIND` (environment or `.env`) take precedence and lock them.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::admin::settings::{self, Listener};
use crate::error::{Error, Result};
use crate::server::conn::Limits;
use crate::server::{self, HttpServer, ListenError, Surface};
use crate::state::AppState;

/// Where the webhook and the admin API and panel listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    pub webhook: SocketAddr,
    pub admin: SocketAddr,
}

/// Which addresses the environment sets (naming its variables); the app does not change those.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Locks {
    pub webhook: Option<&'static str>,
    pub admin: Option<&'static str>,
}

impl Locks {
    /// From which of the variables were given.
    pub fn new(port_or_bind_set: bool, admin_bind_set: bool) -> Self {
        Self {
            webhook: port_or_bind_set.then_some("PORT / CHATGOWA_BIND"),
            admin: admin_bind_set.then_some("CHATGOWA_ADMIN_BIND"),
        }
    }
}

/// The addresses to start with: the environment's where it sets them, else those last chosen in the app,
/// else the configured defaults with the admin on loopback at the next port (a tunnel or port forward to the
/// webhook then exposes nothing else).
///
/// # Errors
/// The database cannot be read.
pub async fn initial(state: &AppState, locks: &Locks) -> Result<Addresses> {
    let config = &state.config;
    let configured = SocketAddr::new(config.bind, config.port);
    let webhook = match locks.webhook {
        Some(_) => configured,
        None => settings::saved_address(state, Listener::Webhook)
            .await?
            .unwrap_or(configured),
    };
    let default_admin = SocketAddr::new(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        webhook.port().saturating_add(1),
    );
    let admin = match (locks.admin, config.admin_bind) {
        (Some(_), Some(addr)) => addr,
        _ => settings::saved_address(state, Listener::Admin)
            .await?
            .unwrap_or(default_admin),
    };
    Ok(Addresses { webhook, admin })
}

/// Listen addresses as the Settings form sends them.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddressesInput {
    pub webhook_host: String,
    pub webhook_port: i64,
    pub admin_host: String,
    pub admin_port: i64,
}

impl AddressesInput {
    /// Checks the form; every error names its field.
    ///
    /// # Errors
    /// Not an IP address, a port outside 1–65535, or the admin on the webhook's port.
    pub fn parse(&self) -> Result<Addresses> {
        let ip = |field, value: &str| {
            value.trim().parse::<IpAddr>().map_err(|_| {
                Error::invalid(
                    field,
                    "expected an IP address: 0.0.0.0 for every network, 127.0.0.1 for this computer only",
                )
            })
        };
        let port = |field, value: i64| {
            u16::try_from(value)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| Error::invalid(field, "expected a port from 1 to 65535"))
        };
        let addresses = Addresses {
            webhook: SocketAddr::new(
                ip("webhookHost", &self.webhook_host)?,
                port("webhookPort", self.webhook_port)?,
            ),
            admin: SocketAddr::new(
                ip("adminHost", &self.admin_host)?,
                port("adminPort", self.admin_port)?,
            ),
        };
        let (w, a) = (addresses.webhook, addresses.admin);
        let overlap = w.ip() == a.ip() || w.ip().is_unspecified() || a.ip().is_unspecified();
        if w.port() == a.port() && overlap {
            return Err(Error::invalid(
                "adminPort",
                "the admin panel needs a port of its own, apart from the webhook's",
            ));
        }
        Ok(addresses)
    }
}

/// What is listening now, for the window and the tray.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenStatus {
    /// The addresses asked for (and listened on, unless `problem` says otherwise).
    pub wanted: Addresses,
    pub webhook_listening: bool,
    pub admin_listening: bool,
    /// Why a listener is not running, e.g. a busy port.
    pub problem: Option<String>,
}

impl ListenStatus {
    /// The webhook's URL as seen from this computer.
    pub fn webhook_url(&self) -> String {
        format!("{}/webhook", local_url(self.wanted.webhook))
    }

    /// The browser panel's URL as seen from this computer.
    pub fn admin_url(&self) -> String {
        format!("{}/admin/", local_url(self.wanted.admin))
    }
}

/// `http://host:port` for an address, with loopback for "every address".
fn local_url(addr: SocketAddr) -> String {
    let host = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(host, addr.port()))
}

/// One listener that can move.
#[derive(Debug)]
struct Slot {
    surface: Surface,
    wanted: SocketAddr,
    server: Option<HttpServer>,
    problem: Option<String>,
}

impl Slot {
    /// Listens on `addr` instead of where it listens now; on failure the old listener (if any) stays.
    async fn move_to(
        &mut self,
        state: &AppState,
        limits: &Limits,
        addr: SocketAddr,
    ) -> Result<(), ListenError> {
        if self.server.is_some() && self.wanted == addr {
            return Ok(());
        }
        let listener = match server::bind(addr).await {
            Ok(listener) => listener,
            Err(err) => match self.server.take() {
                // Same port, other IP (e.g. every network → this computer only): the old listener holds the
                // port, so it has to go first; if the new address still fails, the old one comes back.
                Some(old)
                    if err.source.kind() == io::ErrorKind::AddrInUse
                        && old.local_addr().port() == addr.port() =>
                {
                    let old_addr = old.local_addr();
                    old.stop().await;
                    match bind_released(addr).await {
                        Ok(listener) => listener,
                        Err(err) => {
                            if let Ok(listener) = server::bind(old_addr).await {
                                self.server =
                                    HttpServer::spawn(listener, state, self.surface, limits).ok();
                            }
                            self.note(&err);
                            return Err(err);
                        }
                    }
                }
                old => {
                    self.server = old;
                    self.note(&err);
                    return Err(err);
                }
            },
        };
        let server = HttpServer::spawn(listener, state, self.surface, limits)
            .map_err(|source| ListenError::new(addr, source))?;
        tracing::info!(address = %addr, surface = ?self.surface, "listening");
        if let Some(old) = self.server.replace(server) {
            old.stop().await;
        }
        self.wanted = addr;
        self.problem = None;
        Ok(())
    }

    /// Remembers why nothing listens, when nothing does.
    fn note(&mut self, err: &ListenError) {
        if self.server.is_none() {
            tracing::error!("{err}");
            self.problem = Some(err.to_string());
        }
    }
}

/// Binds `addr` on a port that a listener of ours has just closed. For a moment the port can still be held: a
/// process that another thread (WebKit starting a helper, say) forked keeps a copy of every descriptor until it
/// runs `exec`. So a busy port is tried again, for at most half a second.
async fn bind_released(
    addr: SocketAddr,
) -> std::result::Result<tokio::net::TcpListener, ListenError> {
    const TRIES: u32 = 10;
    let mut tries = 1;
    loop {
        match server::bind(addr).await {
            Err(err) if err.source.kind() == io::ErrorKind::AddrInUse && tries < TRIES => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            bound => return bound,
        }
    }
}

/// The webhook listener and the admin one.
pub struct Listeners {
    state: AppState,
    limits: Limits,
    webhook: Slot,
    admin: Slot,
}

impl Listeners {
    /// Listens on `wanted`. What cannot listen (a busy port) is reported by [`Listeners::status`] rather than
    /// failing: the relay still delivers its queue, and the user can pick another port.
    pub async fn start(state: AppState, limits: Limits, wanted: Addresses) -> Self {
        let slot = |surface, wanted| Slot {
            surface,
            wanted,
            server: None,
            problem: None,
        };
        let mut listeners = Self {
            state,
            limits,
            webhook: slot(Surface::Webhook { with_admin: false }, wanted.webhook),
            admin: slot(Surface::Admin, wanted.admin),
        };
        let _ = listeners.move_to(wanted).await;
        listeners
    }

    /// Moves the listeners to `wanted` (a listener already there stays as it is).
    ///
    /// # Errors
    /// An address cannot be listened on; the error names the form field, and that listener has not moved.
    pub async fn move_to(&mut self, wanted: Addresses) -> Result<()> {
        let webhook = self
            .webhook
            .move_to(&self.state, &self.limits, wanted.webhook)
            .await;
        let admin = self
            .admin
            .move_to(&self.state, &self.limits, wanted.admin)
            .await;
        // The panel (in a browser) shows the webhook's port, which its own address does not.
        (self.state.webhook_port).store(
            self.webhook.wanted.port(),
            std::sync::atomic::Ordering::Relaxed,
        );
        *self
            .state
            .webhook_addr
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(self.webhook.wanted);
        webhook.map_err(|e| Error::invalid("webhookPort", e.to_string()))?;
        admin.map_err(|e| Error::invalid("adminPort", e.to_string()))?;
        Ok(())
    }

    pub fn status(&self) -> ListenStatus {
        let problems: Vec<_> = [&self.webhook.problem, &self.admin.problem]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        ListenStatus {
            wanted: Addresses {
                webhook: self.webhook.wanted,
                admin: self.admin.wanted,
            },
            webhook_listening: self.webhook.server.is_some(),
            admin_listening: self.admin.server.is_some(),
            problem: (!problems.is_empty()).then(|| problems.join("; ")),
        }
    }

    /// Keeps the addresses that are listening, for the next start.
    ///
    /// # Errors
    /// The database cannot be written.
    pub async fn save(&self, locks: &Locks) -> Result<()> {
        for (slot, lock, listener) in [
            (&self.webhook, locks.webhook, Listener::Webhook),
            (&self.admin, locks.admin, Listener::Admin),
        ] {
            if slot.server.is_some() && lock.is_none() {
                settings::save_address(&self.state, listener, slot.wanted).await?;
            }
        }
        Ok(())
    }

    /// The running servers, to be awaited when the relay stops.
    pub fn into_servers(self) -> Vec<HttpServer> {
        [self.webhook.server, self.admin.server]
            .into_iter()
            .flatten()
            .collect()
    }
}
