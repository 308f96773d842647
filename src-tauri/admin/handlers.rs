//! axum adapters for the admin API: map the request, call [`super::service`], map the answer.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse as _;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router, middleware};
use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use serde::de::DeserializeOwned;
use tokio_stream::wrappers::BroadcastStream;

use super::dto::{
    ChatwootBody, CheckResult, HeldAction, HeldBody, InboxAction, InboxesBody, LinkAction,
    LinkBody, LinkInput, PublicUrlInput,
};
use super::dto::{
    DeliveriesBody, DeliveryBody, DeliveryQuery, DiscardedBody, IdsInput, RetriedBody, RouteBody,
    RouteInput, RoutesBody, SetupInput, Stats, SuccessBody, TestResult, UnroutedBody,
};
use super::{auth, chatwoot, panel, service, settings};
use crate::error::{ApiError, Error, Result};
use crate::events::UiEvent;
use crate::ids::{DeliveryId, RouteId};
use crate::shutdown::Stopping;
use crate::state::AppState;

/// Everything under `/admin`, and `/metrics`, behind Basic Auth.
pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/admin", get(panel::redirect_to_panel))
        .route("/admin/", get(panel::index))
        .route("/admin/{*path}", get(panel::asset))
        .route("/admin/routes", get(list_routes).post(create_route))
        .route("/admin/routes/{id}", put(update_route).delete(delete_route))
        .route("/admin/routes/{id}/test", post(test_route))
        .route("/admin/routes/{id}/retry-dead", post(retry_dead))
        .route("/admin/deliveries", get(list_deliveries))
        .route(
            "/admin/deliveries/{id}",
            get(delivery).delete(discard_delivery),
        )
        .route("/admin/deliveries/{id}/retry", post(retry_delivery))
        .route("/admin/deliveries/retry", post(retry_deliveries))
        .route("/admin/deliveries/discard", post(discard_deliveries))
        .route("/admin/unrouted", get(list_unrouted))
        .route("/admin/stats", get(stats))
        .route("/admin/setup", post(setup))
        .route("/admin/chatwoot", get(chatwoot_status))
        .route("/admin/chatwoot/public-url", put(set_public_url))
        .route("/admin/chatwoot/links", post(link_chatwoot))
        .route(
            "/admin/chatwoot/links/{id}",
            axum::routing::delete(unlink_chatwoot),
        )
        .route("/admin/chatwoot/links/{id}/webhook", post(register_webhook))
        .route("/admin/chatwoot/links/{id}/check", post(check_reach))
        .route("/admin/chatwoot/inboxes", get(chatwoot_inboxes))
        .route(
            "/admin/chatwoot/inboxes/clear-webhook",
            post(clear_inbox_webhook),
        )
        .route("/admin/chatwoot/held", get(list_held))
        .route("/admin/chatwoot/held/{id}/send", post(send_held))
        .route(
            "/admin/chatwoot/held/{id}",
            axum::routing::delete(discard_held),
        )
        .route("/admin/events", get(events))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin,
        ))
        .layer(DefaultBodyLimit::max(MAX_ADMIN_BODY))
        .route_layer(middleware::from_fn_with_state(
            admin_timeout(state),
            within_timeout,
        ))
}

fn too_large() -> Error {
    Error::PayloadTooLarge(format!(
        "the body is larger than the admin API takes ({MAX_ADMIN_BODY} bytes)"
    ))
}

/// The largest admin request body (a route is a few hundred bytes).
pub const MAX_ADMIN_BODY: usize = 64 * 1024;

/// How long an admin request may take: a route test waits for GoWA for up to the attempt timeout (the Chatwoot
/// reachability check waits 10 s by default).
fn admin_timeout(state: &AppState) -> Duration {
    state.config.fetch_timeout + Duration::from_secs(10)
}

/// Answers `408` in the JSON error format when a request is not done in time (e.g. a body that never comes).
async fn within_timeout(
    State(limit): State<Duration>,
    request: Request,
    next: middleware::Next,
) -> axum::response::Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            "the request was not completed in time",
        )
        .into_response(),
    }
}

pub async fn list_routes(State(state): State<AppState>) -> Result<Json<RoutesBody>> {
    service::routes_body(&state).await.map(Json)
}

pub async fn create_route(
    State(state): State<AppState>,
    JsonBody(input): JsonBody<RouteInput>,
) -> Result<(StatusCode, Json<RouteBody>)> {
    let body = service::create_route(&state, input).await?;
    Ok((StatusCode::CREATED, Json(body)))
}

pub async fn update_route(
    State(state): State<AppState>,
    id: IdParam,
    JsonBody(input): JsonBody<RouteInput>,
) -> Result<Json<RouteBody>> {
    service::update_route(&state, id.route()?, input)
        .await
        .map(Json)
}

pub async fn delete_route(State(state): State<AppState>, id: IdParam) -> Result<Json<SuccessBody>> {
    service::delete_route(&state, id.route()?).await.map(Json)
}

pub async fn test_route(
    State(state): State<AppState>,
    id: IdParam,
    _: JsonAction,
) -> Result<Json<TestResult>> {
    service::test_route(&state, id.route()?).await.map(Json)
}

pub async fn retry_dead(
    State(state): State<AppState>,
    id: IdParam,
    _: JsonAction,
) -> Result<Json<RetriedBody>> {
    service::retry_dead_for_route(&state, id.route()?)
        .await
        .map(Json)
}

pub async fn list_deliveries(
    State(state): State<AppState>,
    JsonQuery(query): JsonQuery<DeliveryQuery>,
) -> Result<Json<DeliveriesBody>> {
    service::list_deliveries(&state, query).await.map(Json)
}

pub async fn delivery(State(state): State<AppState>, id: IdParam) -> Result<Json<DeliveryBody>> {
    service::delivery_detail(&state, id.delivery()?)
        .await
        .map(Json)
}

pub async fn retry_delivery(
    State(state): State<AppState>,
    id: IdParam,
    _: JsonAction,
) -> Result<(StatusCode, Json<DeliveryBody>)> {
    let body = service::retry_delivery(&state, id.delivery()?).await?;
    Ok((StatusCode::ACCEPTED, Json(body)))
}

pub async fn discard_delivery(
    State(state): State<AppState>,
    id: IdParam,
) -> Result<Json<SuccessBody>> {
    service::discard_delivery(&state, id.delivery()?)
        .await
        .map(Json)
}

/// `POST /admin/deliveries/retry` `{ids}`: the chosen dead deliveries, sent again.
pub async fn retry_deliveries(
    State(state): State<AppState>,
    JsonBody(input): JsonBody<IdsInput>,
) -> Result<(StatusCode, Json<RetriedBody>)> {
    let body = service::retry_deliveries(&state, input).await?;
    Ok((StatusCode::ACCEPTED, Json(body)))
}

/// `POST /admin/deliveries/discard` `{ids}`: the chosen deliveries, removed.
pub async fn discard_deliveries(
    State(state): State<AppState>,
    JsonBody(input): JsonBody<IdsInput>,
) -> Result<Json<DiscardedBody>> {
    service::discard_deliveries(&state, input).await.map(Json)
}

pub async fn list_unrouted(State(state): State<AppState>) -> Result<Json<UnroutedBody>> {
    service::list_unrouted(&state).await.map(Json)
}

/// `POST /admin/setup`: the first admin password, through the setup link (headless first run only).
pub async fn setup(
    State(state): State<AppState>,
    JsonBody(input): JsonBody<SetupInput>,
) -> Result<Json<SuccessBody>> {
    settings::complete_setup(&state, &input.token, &input.password)
        .await
        .map(Json)
}

pub async fn chatwoot_status(State(state): State<AppState>) -> Result<Json<ChatwootBody>> {
    chatwoot::status(&state).await.map(Json)
}

pub async fn set_public_url(
    State(state): State<AppState>,
    JsonBody(input): JsonBody<PublicUrlInput>,
) -> Result<Json<ChatwootBody>> {
    chatwoot::set_public_url(&state, input).await.map(Json)
}

pub async fn link_chatwoot(
    State(state): State<AppState>,
    JsonBody(input): JsonBody<LinkInput>,
) -> Result<(StatusCode, Json<LinkBody>)> {
    let body = chatwoot::link(&state, input).await?;
    Ok((StatusCode::CREATED, Json(body)))
}

/// `DELETE /admin/chatwoot/links/:id[?removeWebhook=true]`.
pub async fn unlink_chatwoot(
    State(state): State<AppState>,
    id: IdParam,
    JsonQuery(query): JsonQuery<LinkAction>,
) -> Result<Json<SuccessBody>> {
    let action = LinkAction {
        id: id.link()?,
        ..query
    };
    chatwoot::unlink(&state, action).await.map(Json)
}

pub async fn register_webhook(
    State(state): State<AppState>,
    id: IdParam,
    _: JsonAction,
) -> Result<Json<LinkBody>> {
    let action = LinkAction {
        id: id.link()?,
        ..LinkAction::default()
    };
    chatwoot::register(&state, action).await.map(Json)
}

/// `POST /admin/chatwoot/links/:id/check` with `{}` or `{"waitSeconds": n}`.
pub async fn check_reach(
    State(state): State<AppState>,
    id: IdParam,
    JsonBody(input): JsonBody<LinkAction>,
) -> Result<Json<CheckResult>> {
    let action = LinkAction {
        id: id.link()?,
        ..input
    };
    chatwoot::check(&state, action).await.map(Json)
}

pub async fn chatwoot_inboxes(State(state): State<AppState>) -> Result<Json<InboxesBody>> {
    chatwoot::inboxes(&state).await.map(Json)
}

pub async fn clear_inbox_webhook(
    State(state): State<AppState>,
    JsonBody(input): JsonBody<InboxAction>,
) -> Result<Json<InboxesBody>> {
    chatwoot::clear_inbox_webhook(&state, input).await.map(Json)
}

pub async fn list_held(State(state): State<AppState>) -> Result<Json<HeldBody>> {
    chatwoot::held(&state).await.map(Json)
}

pub async fn send_held(
    State(state): State<AppState>,
    id: IdParam,
    _: JsonAction,
) -> Result<Json<HeldBody>> {
    let action = HeldAction {
        id: id.parse("held reply")?,
        send: true,
    };
    chatwoot::decide_held(&state, action).await.map(Json)
}

pub async fn discard_held(State(state): State<AppState>, id: IdParam) -> Result<Json<HeldBody>> {
    let action = HeldAction {
        id: id.parse("held reply")?,
        send: false,
    };
    chatwoot::decide_held(&state, action).await.map(Json)
}

pub async fn stats(State(state): State<AppState>) -> Result<Json<Stats>> {
    service::stats(&state).await.map(Json)
}

/// `GET /metrics`: Prometheus (OpenMetrics text), behind the admin login like the rest of the admin API.
pub async fn metrics(State(state): State<AppState>) -> Result<impl axum::response::IntoResponse> {
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        service::metrics(&state).await?,
    ))
}

/// `GET /admin/events`: server-sent events, one `change` event per [`UiEvent`], until the relay or the
/// listener stops.
pub async fn events(
    State(state): State<AppState>,
    Extension(Stopping(stop)): Extension<Stopping>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = BroadcastStream::new(state.events.subscribe())
        .map(|received| {
            let event = received.unwrap_or(UiEvent::Resync);
            let data = serde_json::to_string(&event).unwrap_or_default();
            Ok(Event::default().event("change").data(data))
        })
        .take_until(stop.cancelled_owned());
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// An id from the path; anything but a positive integer (invalid UTF-8 included) is a 404 in the JSON error
/// format, as no such row can exist.
pub struct IdParam(String);

impl<S: Send + Sync> FromRequestParts<S> for IdParam {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> std::result::Result<Self, Self::Rejection> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(id)| Self(id))
            .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "not_found", "not found"))
    }
}

/// Query parameters; a malformed query is a 400 in the JSON error format.
pub struct JsonQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for JsonQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> std::result::Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(query)| Self(query))
            .map_err(|e| {
                ApiError::from(Error::Invalid {
                    field: None,
                    message: e.body_text(),
                })
            })
    }
}

impl IdParam {
    fn parse(&self, what: &'static str) -> Result<i64> {
        self.0
            .parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .ok_or(Error::NotFound {
                what,
                id: self.0.clone(),
            })
    }

    fn route(&self) -> Result<RouteId> {
        self.parse("route").map(RouteId)
    }

    fn delivery(&self) -> Result<DeliveryId> {
        self.parse("delivery").map(DeliveryId)
    }

    fn link(&self) -> Result<i64> {
        self.parse("Chatwoot link")
    }
}

/// Refuses a mutating request not sent as `application/json`: an HTML form from another site cannot produce
/// that content type, so a browser's saved Basic credentials cannot be abused to change anything.
fn require_json(headers: &HeaderMap) -> std::result::Result<(), ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if is_json {
        Ok(())
    } else {
        Err(Error::UnsupportedMediaType(
            "send the request as Content-Type: application/json".into(),
        )
        .into())
    }
}

/// A JSON body, sent as `application/json` (see [`require_json`]).
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> std::result::Result<Self, Self::Rejection> {
        require_json(req.headers())?;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        if declared.is_some_and(|n| n > MAX_ADMIN_BODY) {
            crate::relay::discard_body(req).await;
            return Err(too_large().into());
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e: BytesRejection| {
                ApiError::from(if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    too_large()
                } else {
                    Error::Invalid {
                        field: None,
                        message: e.body_text(),
                    }
                })
            })?;
        let value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::from(Error::Invalid {
                field: None,
                message: format!("body is not valid JSON: {e}"),
            })
        })?;
        Ok(Self(value))
    }
}

/// An action without parameters (retry, test): only the content type is checked, the body is ignored.
pub struct JsonAction;

impl<S: Send + Sync> FromRequestParts<S> for JsonAction {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        _: &S,
    ) -> std::result::Result<Self, Self::Rejection> {
        require_json(&parts.headers).map(|()| Self)
    }
}
