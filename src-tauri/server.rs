//! The HTTP surface: `POST /webhook`, `GET /healthz`, and the admin API when credentials are configured.

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::admin::handlers;
use crate::error::ApiError;
use crate::relay;
use crate::state::AppState;
use crate::store::deliveries;

/// A webhook or health request still running after this is answered 408, so it cannot hold up shutdown.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The webhook and `/healthz`, plus the admin API and panel unless they have an address of their own.
pub fn build_router(state: AppState) -> Router {
    let mut router = Router::new()
        .route(
            "/webhook",
            post(relay::webhook).layer(DefaultBodyLimit::max(state.config.max_body)),
        )
        .route("/healthz", get(healthz))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ));
    if state.config.admin.is_some() && state.config.admin_bind.is_none() {
        router = router.merge(handlers::router(&state));
    }
    finish(router, state)
}

/// The admin API and panel on their own address (see `CHATGOWA_ADMIN_BIND`), with `/healthz`.
pub fn build_admin_router(state: AppState) -> Router {
    let router = Router::new()
        .route("/healthz", get(healthz))
        .merge(handlers::router(&state));
    finish(router, state)
}

fn finish(router: Router<AppState>, state: AppState) -> Router {
    router
        .fallback(not_found)
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let path = req
                .extensions()
                .get::<MatchedPath>()
                .map(MatchedPath::as_str);
            tracing::debug_span!("http", method = %req.method(), path)
        }))
        .with_state(state)
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    pub status: &'static str,
    pub version: &'static str,
    /// Deliveries waiting to be sent (queue depth); absent when the database does not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<i64>,
}

/// `GET /healthz`, unauthenticated: 200 when the database answers, 503 otherwise.
async fn healthz(State(state): State<AppState>) -> Response {
    let version = env!("CARGO_PKG_VERSION");
    match deliveries::count_pending(&state.pool).await {
        Ok(pending) => Json(Health {
            status: "ok",
            version,
            pending: Some(pending),
        })
        .into_response(),
        Err(err) => {
            tracing::error!(error = %err, "health check: database unavailable");
            let body = Health {
                status: "unavailable",
                version,
                pending: None,
            };
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "not found")
}
