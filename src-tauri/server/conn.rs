//! Serving one listener's connections so that no cheap client can close the door: HTTP/1.1 only (no h2c, so
//! one TCP connection carries one request at a time), a header-read timeout that also ends idle keep-alive
//! connections, small header buffers, a limit on how long an answer may wait for its reader, and caps on open
//! connections, in all and per address (the admin's own listener has caps of its own).
//!
//! Behind a proxy or tunnel every peer is the proxy. Connections from `CHATGOWA_TRUSTED_PROXIES` are therefore not
//! capped per address, and each request's client (what handlers find as `ConnectInfo`: the login throttle, the
//! logs) is read from `X-Forwarded-For` (else `Forwarded`) from the right, through trusted hops only: the first
//! address a trusted hop added that is not itself trusted. Forwarding headers from any other peer are ignored.
//! Must not: know routes or state; it serves whatever router it is given.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tower_service::Service as _;

use super::write_limit::WriteLimit;
use crate::logging::Sparse;
use crate::metrics::Metrics;

/// A client must send a request's whole header within this, and an idle keep-alive connection is closed
/// after it. Chatwoot sends at once (and gives up itself after 5 s).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request header accepted (431 above); Chatwoot's are under 2 KiB.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Connections one address (an IPv6 /64) may hold open at once. Chatwoot sends from a few addresses, each
/// with at most as many webhooks at once as its Sidekiq has threads.
pub const CONNECTIONS_PER_ADDRESS: usize = 128;
/// The most connections open at once when the file-descriptor limit allows more: beyond, a new connection
/// waits in the kernel's backlog until one closes.
const MAX_CONNECTIONS: usize = 4096;
/// Connections the admin's own listener takes at once (the panel opens a few per browser).
pub const ADMIN_CONNECTIONS: usize = 256;
/// How long a listener that stops waits for its connections' requests to end before it drops them: a request's
/// own time limit, and a second.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(6);
/// Warnings about limits being hit are written at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// What the listeners of one relay share: the caps, and when each warning was last written.
#[derive(Clone)]
pub struct Limits {
    metrics: Metrics,
    /// `CHATGOWA_TRUSTED_PROXIES`.
    trusted: Arc<Vec<ipnet::IpNet>>,
    connections: Arc<Semaphore>,
    per_address: Arc<Mutex<HashMap<IpAddr, usize>>>,
    warnings: Sparse,
}

impl Limits {
    /// Caps open connections at half of what the file-descriptor limit leaves (the database, the log and the
    /// connections to GoWA need the rest), and at most [`MAX_CONNECTIONS`].
    pub fn new(fd_limit: u64, metrics: Metrics, trusted: &[ipnet::IpNet]) -> Self {
        let half = usize::try_from(fd_limit / 2).unwrap_or(usize::MAX);
        let max = half.clamp(16, MAX_CONNECTIONS);
        tracing::info!(
            open_files = fd_limit,
            max_connections = max,
            per_address = CONNECTIONS_PER_ADDRESS,
            "connection limits"
        );
        Self {
            metrics,
            trusted: Arc::new(trusted.to_vec()),
            connections: Arc::new(Semaphore::new(max)),
            per_address: Arc::default(),
            warnings: Sparse::every(WARN_EVERY),
        }
    }

    /// Limits of their own, for another listener: `max` connections in all, the same share per address.
    pub fn separate(&self, max: usize) -> Self {
        Self {
            connections: Arc::new(Semaphore::new(max)),
            per_address: Arc::default(),
            ..self.clone()
        }
    }

    /// Counts a connection of `peer`; `None` when that address holds its share already. A trusted proxy's
    /// connections are not counted (its clients are many).
    fn admit(&self, peer: IpAddr) -> Option<Option<AddressSlot>> {
        if self.is_trusted(peer) {
            return Some(None);
        }
        let key = crate::login::client_key(peer);
        let mut open = self
            .per_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(key).or_insert(0);
        if *count >= CONNECTIONS_PER_ADDRESS {
            return None;
        }
        *count += 1;
        Some(Some(AddressSlot {
            key,
            open: self.per_address.clone(),
        }))
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request that came from `peer`: `peer` itself, unless it is a trusted proxy (see the
    /// module's documentation).
    pub fn client(&self, peer: IpAddr, headers: &hyper::HeaderMap) -> IpAddr {
        if !self.is_trusted(peer) {
            return peer;
        }
        let mut client = peer;
        for hop in forwarded_for(headers).into_iter().rev() {
            let Some(hop) = hop else {
                // Not an address: what stands left of it was written by nobody the relay trusts.
                return client;
            };
            client = hop;
            if !self.is_trusted(hop) {
                return client;
            }
        }
        client
    }

    /// Counts that the limit `kind` was hit, and writes `message` at WARN, at most once per [`WARN_EVERY`] for
    /// each kind.
    fn warn(&self, kind: &'static str, message: &str) {
        self.metrics.connection_limit(kind);
        self.warnings.warn(kind, message);
    }
}

/// An address's count of open connections, given back when the connection ends.
struct AddressSlot {
    key: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// The addresses a request was forwarded for, left (the first client) to right (the last proxy's peer), from
/// every `X-Forwarded-For` header, else from `Forwarded`'s `for=`; `None` for an entry that is not an address
/// (`unknown`, an obfuscated name, junk).
fn forwarded_for(headers: &hyper::HeaderMap) -> Vec<Option<IpAddr>> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    };
    let xff = values("x-forwarded-for");
    if !xff.is_empty() {
        return xff
            .iter()
            .flat_map(|v| v.split(','))
            .map(|entry| hop_address(entry.trim()))
            .collect();
    }
    values("forwarded")
        .iter()
        .flat_map(|v| v.split(','))
        .map(|element| {
            let node = element.split(';').find_map(|pair| {
                let (key, value) = pair.split_once('=')?;
                key.trim().eq_ignore_ascii_case("for").then(|| value.trim())
            });
            node.and_then(|n| hop_address(n.trim_matches('"')))
        })
        .collect()
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]:4711`.
fn hop_address(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            text.strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse().ok())
        })
        .map(|ip: IpAddr| ip.to_canonical())
}

/// Accepts and serves connections until `stop`, then lets the requests in progress end.
///
/// # Errors
/// None so far: a failed accept (e.g. out of file descriptors) is logged and retried.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    stop: CancellationToken,
    limits: Limits,
) -> io::Result<()> {
    let http = http1();
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, peer, permit) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = next_connection(&listener, &limits) => accepted,
        };
        let tcp = TokioIo::new(WriteLimit::new(nodelay(tcp)));
        let Some(slot) = limits.admit(peer.ip()) else {
            limits.warn(
                "connections_per_address",
                &format!(
                    "an address holds {CONNECTIONS_PER_ADDRESS} connections already; its new ones are answered 503"
                ),
            );
            // Answered `503` + `Retry-After` and closed: the sender learns to come back rather than seeing a reset.
            let service = hyper::service::service_fn(|request: hyper::Request<Incoming>| async {
                crate::relay::discard_body(request.map(axum::body::Body::new)).await;
                Ok::<_, std::convert::Infallible>(refusal())
            });
            let refused = graceful.watch(http.serve_connection(tcp, service));
            tokio::spawn(async move {
                let _ = refused.await;
                drop(permit);
            });
            continue;
        };
        // The router for this connection, with the client's address where handlers look for it.
        let app = app.clone();
        let limits = limits.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            let client = limits.client(peer.ip(), request.headers());
            request
                .extensions_mut()
                .insert(ConnectInfo(std::net::SocketAddr::new(client, peer.port())));
            let mut app = app.clone();
            async move { app.call(request.map(axum::body::Body::new)).await }
        });
        let connection = graceful.watch(http.serve_connection(tcp, service));
        tokio::spawn(async move {
            // A connection that ends with an error (reset, header timeout) needs no more than that.
            let _ = connection.await;
            drop((slot, permit));
        });
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("closing connections whose requests did not end in time");
    }
    Ok(())
}

/// HTTP/1.1 with the limits above.
fn http1() -> hyper::server::conn::http1::Builder {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES.max(8192))
        // A sender that hangs up right after its request still has it handled (and stored, logged, counted).
        .half_close(true)
        .keep_alive(true);
    http
}

/// The next connection, with its slot among all connections. A failed accept (out of file descriptors, say)
/// is logged and tried again shortly.
async fn next_connection(
    listener: &TcpListener,
    limits: &Limits,
) -> (TcpStream, std::net::SocketAddr, OwnedSemaphorePermit) {
    loop {
        let permit = take_slot(limits).await;
        match listener.accept().await {
            Ok((tcp, peer)) => return (tcp, peer, permit),
            Err(err) => {
                limits.warn("accept", &format!("cannot accept a connection: {err}"));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A slot among all connections; says so (rate-limited) when they are all taken.
async fn take_slot(limits: &Limits) -> OwnedSemaphorePermit {
    if let Ok(permit) = limits.connections.clone().try_acquire_owned() {
        return permit;
    }
    limits.warn(
        "connections",
        "all connection slots are taken: new connections wait until one closes",
    );
    match limits.connections.clone().acquire_owned().await {
        Ok(permit) => permit,
        Err(_) => unreachable!("the connection semaphore is never closed"),
    }
}

/// The answer to a request over its address's share of connections.
fn refusal() -> axum::response::Response {
    let refused = crate::error::Error::Overloaded(
        "too many connections from this address at once; retry shortly".into(),
    );
    let mut response = axum::response::IntoResponse::into_response(refused);
    response.headers_mut().insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    response
}

/// Answers go out at once instead of waiting for the ACK of the previous segment (Nagle).
fn nodelay(tcp: TcpStream) -> TcpStream {
    if let Err(err) = tcp.set_nodelay(true) {
        tracing::debug!(error = %err, "TCP_NODELAY could not be set");
    }
    tcp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(trusted: &str) -> Limits {
        let trusted: Vec<ipnet::IpNet> = trusted
            .split(',')
            .filter(|t| !t.is_empty())
            .map(|t| t.parse().unwrap())
            .collect();
        Limits::new(1024, Metrics::default(), &trusted)
    }

    fn headers(pairs: &[(&str, &str)]) -> hyper::HeaderMap {
        let mut map = hyper::HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                hyper::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_client_is_read_through_trusted_hops_only() {
        let tunnel = limits("127.0.0.1/32,10.0.0.0/8");
        let local = ip("127.0.0.1");
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "127.0.0.1"),
            (&[("x-forwarded-for", "203.0.113.7")], "203.0.113.7"),
            // A stranger's own header is left of what the proxy added.
            (
                &[("x-forwarded-for", "1.2.3.4, 203.0.113.7")],
                "203.0.113.7",
            ),
            // Through a second trusted hop.
            (
                &[("x-forwarded-for", "203.0.113.7, 10.1.2.3")],
                "203.0.113.7",
            ),
            (
                &[
                    ("x-forwarded-for", "203.0.113.7"),
                    ("x-forwarded-for", "10.1.2.3"),
                ],
                "203.0.113.7",
            ),
            (
                &[("x-forwarded-for", "junk, 203.0.113.7:4711")],
                "203.0.113.7",
            ),
            (&[("x-forwarded-for", "203.0.113.7, junk")], "127.0.0.1"),
            (&[("x-forwarded-for", "[2001:db8::1]:80")], "2001:db8::1"),
            (
                &[(
                    "forwarded",
                    "for=198.51.100.9;proto=https, for=\"[2001:db8::2]:4711\"",
                )],
                "2001:db8::2",
            ),
            (
                &[("forwarded", "for=198.51.100.9;proto=https")],
                "198.51.100.9",
            ),
            (&[("forwarded", "for=unknown")], "127.0.0.1"),
        ];
        for (pairs, client) in cases {
            assert_eq!(
                tunnel.client(local, &headers(pairs)),
                ip(client),
                "{pairs:?}"
            );
        }
        // An untrusted peer's headers are ignored.
        let stranger = ip("198.51.100.1");
        let forged = headers(&[("x-forwarded-for", "203.0.113.7")]);
        assert_eq!(tunnel.client(stranger, &forged), stranger);
        // Nothing trusted: every peer is the client.
        assert_eq!(limits("").client(local, &forged), local);
    }

    #[test]
    fn the_admins_listener_is_not_filled_by_the_webhook_listeners_connections() {
        let webhook = Limits::new(32, Metrics::default(), &[]);
        let admin = webhook.separate(4);
        let all: Vec<_> =
            std::iter::from_fn(|| webhook.connections.clone().try_acquire_owned().ok()).collect();
        assert_eq!(all.len(), 16, "the webhook listener's slots are all taken");
        let per_address: Vec<_> = (0..CONNECTIONS_PER_ADDRESS)
            .map(|_| webhook.admit(ip("192.0.2.1")).unwrap())
            .collect();
        assert!(webhook.admit(ip("192.0.2.1")).is_none());
        assert!(admin.connections.clone().try_acquire_owned().is_ok());
        assert!(admin.admit(ip("192.0.2.1")).is_some());
        drop((all, per_address));
    }

    #[test]
    fn a_trusted_proxy_is_not_capped_per_address() {
        let tunnel = limits("127.0.0.1/32");
        let held: Vec<_> = (0..CONNECTIONS_PER_ADDRESS * 2)
            .map(|_| {
                tunnel
                    .admit(ip("127.0.0.1"))
                    .expect("a trusted proxy is never refused")
            })
            .collect();
        assert!(held.iter().all(Option::is_none));
        let others: Vec<_> = (0..CONNECTIONS_PER_ADDRESS)
            .map(|_| tunnel.admit(ip("192.0.2.1")).unwrap())
            .collect();
        assert!(tunnel.admit(ip("192.0.2.1")).is_none(), "others still are");
        drop(others);
    }
}
