//! The HTTP surface: `POST /webhook`, `GET /healthz`, and the admin API when credentials are configured, and
//! [`HttpServer`], one listener serving them that can be stopped on its own (the desktop moves its listeners
//! to another port while the relay keeps running); [`conn`] serves its connections within limits.

pub mod conn;
mod write_limit;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router, middleware};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::admin::{auth, handlers, service};
use crate::error::ApiError;
use crate::relay;
use crate::shutdown::Stopping;
use crate::state::AppState;

/// A webhook or health request still running after this is answered 408, so it cannot hold up shutdown.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Which requests a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// `/webhook` and `/healthz`, plus the admin API and panel when `with_admin`.
    Webhook { with_admin: bool },
    /// The admin API and panel (and `/healthz`) on an address of their own (see `CHATGOWA_ADMIN_BIND`).
    Admin,
}

/// The webhook and `/healthz`, plus the admin API and panel unless they have an address of their own.
pub fn build_router(state: AppState) -> Router {
    let with_admin = state.config.admin_bind.is_none();
    let stop = state.shutdown.child_token();
    router(state, Surface::Webhook { with_admin }, stop)
}

fn router(state: AppState, surface: Surface, stop: CancellationToken) -> Router {
    // The admin's detail only where the admin API is served: a webhook port apart from it takes no login.
    let health = |admin: bool| {
        Router::new().route(
            "/healthz",
            if admin {
                get(healthz_for_admin)
            } else {
                get(healthz)
            },
        )
    };
    let router = match surface {
        Surface::Webhook { with_admin } => {
            let webhook = Router::new()
                .route(
                    "/webhook",
                    post(relay::webhook)
                        .layer(DefaultBodyLimit::max(state.intake.max_body()))
                        .layer(middleware::from_fn_with_state(
                            state.intake.clone(),
                            relay::admit,
                        )),
                )
                .merge(health(with_admin))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    REQUEST_TIMEOUT,
                ));
            if with_admin {
                webhook.merge(handlers::router(&state))
            } else {
                webhook
            }
        }
        Surface::Admin => health(true).merge(handlers::router(&state)),
    };
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(Extension(Stopping(stop)))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let path = req
                        .extensions()
                        .get::<MatchedPath>()
                        .map(MatchedPath::as_str);
                    tracing::debug_span!("http", method = %req.method(), path)
                })
                // Failures that matter are logged where they happen, with their cause; a burst of shed
                // requests must not flood the log.
                .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        )
        .with_state(state)
}

/// A listener that cannot be opened; the message says which address and what to check.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source} ({hint})")]
pub struct ListenError {
    pub addr: SocketAddr,
    pub source: io::Error,
    hint: String,
}

/// Opens a listener on `addr`.
///
/// # Errors
/// The port is taken, the address is not one of this computer's, or the port needs privileges.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ListenError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError::new(addr, source))
}

impl ListenError {
    pub fn new(addr: SocketAddr, source: io::Error) -> Self {
        let hint = match source.kind() {
            io::ErrorKind::AddrInUse => {
                format!("is another program using port {}?", addr.port())
            }
            io::ErrorKind::AddrNotAvailable => {
                format!("is {} an address of this computer?", addr.ip())
            }
            io::ErrorKind::PermissionDenied => {
                "ports below 1024 need administrator rights; pick a higher one".to_owned()
            }
            _ => "pick another address or port".to_owned(),
        };
        Self { addr, source, hint }
    }
}

/// One listener serving a [`Surface`] until the relay shuts down or [`HttpServer::stop`] is called.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<io::Result<()>>,
}

impl HttpServer {
    /// Serves `surface` on `listener`; stops with the relay (its shutdown token is the parent of this one).
    ///
    /// # Errors
    /// The listener has no local address (it is closed).
    pub fn spawn(
        listener: TcpListener,
        state: &AppState,
        surface: Surface,
        limits: &conn::Limits,
    ) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        let stop = state.shutdown.child_token();
        let app = router(state.clone(), surface, stop.clone());
        // The admin's door has its own connection caps: a flood at the webhook door cannot keep the admin out.
        let limits = match surface {
            Surface::Admin => limits.separate(conn::ADMIN_CONNECTIONS),
            Surface::Webhook { .. } => limits.clone(),
        };
        let task = tokio::spawn(conn::serve(listener, app, stop.clone(), limits));
        Ok(Self { addr, stop, task })
    }

    /// The address actually listened on (the port is known even when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits until the listener has stopped and the requests it accepted have ended.
    ///
    /// # Errors
    /// The server failed.
    pub async fn finished(self) -> io::Result<()> {
        self.task.await.unwrap_or_else(|e| Err(io::Error::other(e)))
    }

    /// Stops accepting at once, lets requests in progress end, and gives up on those still running after
    /// the request timeout.
    pub async fn stop(mut self) {
        self.stop.cancel();
        let grace = REQUEST_TIMEOUT + Duration::from_secs(1);
        if tokio::time::timeout(grace, &mut self.task).await.is_err() {
            tracing::warn!(address = %self.addr, "closing connections still open on the old address");
            self.task.abort();
        }
    }
}

/// What `/healthz` tells anyone who can reach the port: whether the relay works, and nothing else (its version
/// and queue are in `/admin/stats` and `/metrics`, behind the login). Asked with the admin's login, it also says
/// whether webhooks must be signed, and what to do when they need not.
#[derive(Debug, Serialize)]
pub struct Health {
    pub status: &'static str,
    /// `signed` or `unsigned` (for the admin only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhooks: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<&'static str>,
    /// For the admin: this computer's clock is off from Chatwoot's (over 30 s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock: Option<String>,
}

/// `GET /healthz`, unauthenticated: 200 when the database answers, 503 otherwise.
async fn healthz(State(state): State<AppState>) -> Response {
    health(&state, false).await
}

/// `GET /healthz` where the admin API is served: with the admin's login, also whether webhooks must be signed.
async fn healthz_for_admin(State(state): State<AppState>, request: Request) -> Response {
    let (given, peer) = auth::login_of(&request);
    drop(request);
    let admin = auth::carries_admin_login(&state, given, peer).await;
    health(&state, admin).await
}

async fn health(state: &AppState, admin: bool) -> Response {
    let signed = state.intake.signatures_required();
    let (webhooks, warning) = match (admin, signed) {
        (false, _) => (None, None),
        (true, true) => (Some("signed"), None),
        (true, false) => (
            Some("unsigned"),
            Some(
                "webhooks are accepted unsigned: anyone who can reach the webhook port can send WhatsApp \
                 messages in the business's name; link the Chatwoot account and register its webhook, or set \
                 CHATGOWA_CHATWOOT_SECRET",
            ),
        ),
    };
    let clock = admin
        .then(|| state.intake.linked().clock().told())
        .flatten()
        .map(|told| {
            let side = if told.seconds < 0 {
                "ahead of"
            } else {
                "behind"
            };
            let then = if told.reckoned {
                "until then the relay reckons with Chatwoot's time"
            } else {
                "signed webhooks are refused once the clocks are more than 5 minutes apart"
            };
            format!(
                "this computer's clock is {} s {side} Chatwoot's: set it right; {then}",
                told.seconds.abs()
            )
        });
    match service::count_pending(state).await {
        Ok(_) => Json(Health {
            status: "ok",
            webhooks,
            warning,
            clock,
        })
        .into_response(),
        Err(err) => {
            tracing::error!(error = %err, "health check: database unavailable");
            let body = Health {
                status: "unavailable",
                webhooks,
                warning,
                clock,
            };
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "not found")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this method is not allowed here",
    )
}
