//! Admin use-cases, one function each, called by the HTTP handlers, the Tauri commands and the tray alike.
//! They validate input, talk to the store and tell the delivery lanes when routes change; they know nothing
//! of transports. Where both transports answer with the same body, the use-case returns that body.

use serde_json::Value;

use super::dto::{self, DeliveryQuery, HealthState, RouteInput};
use crate::delivery::gowa::{self, Target, unmask_password};
use crate::error::{Error, Result};
use crate::events::UiEvent;
use crate::ids::{DeliveryId, InboxId, RouteId};
use crate::metrics::{Gauges, RouteGauge};
use crate::state::AppState;
use crate::store::deliveries::{self, DeliveryStatus, Filter, PendingRef};
use crate::store::routes::{self, Route, RouteFields};
use crate::store::{attempts, chatwoot_feedback, chatwoot_recovered, now_ms, unrouted_inboxes};

pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_URL_CHARS: usize = 2048;
pub const MAX_SECRET_CHARS: usize = 256;

pub const DEFAULT_PAGE: i64 = 50;
pub const MAX_PAGE: i64 = 500;

pub async fn routes_body(state: &AppState) -> Result<dto::RoutesBody> {
    Ok(dto::RoutesBody {
        routes: list_routes(state).await?,
    })
}

pub async fn list_routes(state: &AppState) -> Result<Vec<dto::Route>> {
    let mut views = Vec::new();
    for route in routes::list(&state.pool).await? {
        views.push(route_view(state, route).await?);
    }
    Ok(views)
}

/// A route with its queue and health.
async fn route_view(state: &AppState, route: Route) -> Result<dto::Route> {
    let pending =
        deliveries::count_for_inbox(&state.pool, route.inbox_id, DeliveryStatus::Pending).await?;
    let dead =
        deliveries::count_for_inbox(&state.pool, route.inbox_id, DeliveryStatus::Dead).await?;
    let last = deliveries::last_attempted_for_inbox(&state.pool, route.inbox_id).await?;
    let mut view = dto::Route::new(route, pending, dead, last);
    view.inbox_name = state.inbox_name(view.inbox_id);
    Ok(view)
}

async fn route_body(state: &AppState, route: Route) -> Result<dto::RouteBody> {
    Ok(dto::RouteBody {
        route: route_view(state, route).await?,
    })
}

async fn find_route(state: &AppState, id: RouteId) -> Result<Route> {
    routes::find(&state.pool, id)
        .await?
        .ok_or_else(|| not_found(id))
}

/// Routes changed: the relay takes the new ones, paused lanes look again, screens refresh.
async fn routes_changed(state: &AppState) -> Result<()> {
    state.dispatcher.reload_routes().await?;
    state.events.send(UiEvent::Routes);
    Ok(())
}

pub async fn create_route(state: &AppState, input: RouteInput) -> Result<dto::RouteBody> {
    let fields = validate(input, None)?;
    refuse_own_address(state, &fields.webhook_url)?;
    let route = routes::insert(&state.pool, &fields)
        .await
        .map_err(|e| conflict(e, fields.inbox_id))?;
    tracing::info!(route_id = %route.id, inbox_id = %route.inbox_id, "route created");
    routes_changed(state).await?;
    route_body(state, route).await
}

pub async fn update_route(
    state: &AppState,
    id: RouteId,
    input: RouteInput,
) -> Result<dto::RouteBody> {
    let current = find_route(state, id).await?;
    let fields = validate(input, Some(current.into()))?;
    refuse_own_address(state, &fields.webhook_url)?;
    let route = routes::update(&state.pool, id, &fields)
        .await
        .map_err(|e| conflict(e, fields.inbox_id))?
        .ok_or_else(|| not_found(id))?;
    tracing::info!(route_id = %route.id, inbox_id = %route.inbox_id, "route updated");
    routes_changed(state).await?;
    route_body(state, route).await
}

pub async fn delete_route(state: &AppState, id: RouteId) -> Result<dto::SuccessBody> {
    if !routes::delete(&state.pool, id).await? {
        return Err(not_found(id));
    }
    tracing::info!(route_id = %id, "route deleted");
    routes_changed(state).await?;
    Ok(dto::SuccessBody { success: true })
}

/// Sends a harmless `chatgowa_test` event to the route's GoWA (which answers 200 to events it does not act
/// on, and 401 to a wrong secret) and reports what came back.
pub async fn test_route(state: &AppState, id: RouteId) -> Result<dto::TestResult> {
    let route = find_route(state, id).await?;
    let target = Target::parse(&route.webhook_url).map_err(|e| Error::invalid("webhookUrl", e))?;
    let body = serde_json::json!({
        "event": "chatgowa_test",
        "message": "Test from Chatgowa: this event changes nothing.",
        "inbox": {"id": route.inbox_id},
        "sent_at": crate::store::to_rfc3339(now_ms()),
    });
    let request = gowa::Request {
        body: body.to_string().into_bytes(),
        headers: Vec::new(),
    };
    let result = gowa::send(
        &state.dispatcher.client(),
        &target,
        route.secret.as_deref(),
        request,
    )
    .await;
    tracing::info!(route_id = %id, status = result.status, "route tested");
    Ok(dto::TestResult {
        ok: result.status.is_some_and(|s| (200..300).contains(&s)),
        status_code: result.status,
        latency_ms: u64::try_from(result.duration.as_millis()).unwrap_or(u64::MAX),
        error: result.error,
        response_snippet: result.snippet,
        internal_target: is_internal(&target),
    })
}

pub async fn stats(state: &AppState) -> Result<dto::Stats> {
    let totals = deliveries::totals(&state.pool).await?;
    let oldest = deliveries::oldest_pending_received_at(&state.pool).await?;
    Ok(dto::Stats {
        version: env!("CARGO_PKG_VERSION").into(),
        totals,
        queue_depth: totals.pending,
        oldest_pending_age_ms: oldest.map(|at| (now_ms() - at).max(0)),
        duplicates_dropped: deliveries::count_duplicates(&state.pool).await?,
        routes: routes::list(&state.pool).await?.len(),
        unrouted_inboxes: unrouted_inboxes::list(&state.pool).await?.len(),
        webhook_path: "/webhook".into(),
        webhook_port: match state
            .webhook_port
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            0 => None,
            port => Some(port),
        },
    })
}

pub async fn list_unrouted(state: &AppState) -> Result<dto::UnroutedBody> {
    Ok(dto::UnroutedBody {
        unrouted: unrouted_inboxes::list(&state.pool)
            .await?
            .into_iter()
            .map(|inbox| dto::Unrouted {
                inbox_name: state.inbox_name(inbox.inbox_id),
                ..inbox.into()
            })
            .collect(),
    })
}

/// Deliveries waiting to be sent (the health check's figure).
pub async fn count_pending(state: &AppState) -> Result<i64> {
    Ok(deliveries::count_pending(&state.pool).await?)
}

/// Deliveries delivered since `since_ms` (the tray's "today").
pub async fn count_delivered_since(state: &AppState, since_ms: i64) -> Result<i64> {
    Ok(deliveries::count_delivered_since(&state.pool, since_ms).await?)
}

/// `/metrics`: the counters, and the gauges read now.
pub async fn metrics(state: &AppState) -> Result<String> {
    let stats = stats(state).await?;
    let routes = list_routes(state)
        .await?
        .into_iter()
        .map(|route| RouteGauge {
            inbox_id: route.inbox_id.0,
            name: route.name.unwrap_or_default(),
            failing: route.health.is_some_and(|h| h.state != HealthState::Ok),
        })
        .collect();
    Ok(state.metrics.encode(&Gauges {
        queue_depth: stats.queue_depth,
        oldest_pending_seconds: stats.oldest_pending_age_ms.unwrap_or(0) as f64 / 1000.0,
        dead: stats.totals.dead,
        paused: state.dispatcher.is_paused(),
        routes,
    }))
}

/// One page of the delivery log, newest first.
pub async fn list_deliveries(
    state: &AppState,
    query: DeliveryQuery,
) -> Result<dto::DeliveriesBody> {
    let Some((filter, limit)) = delivery_filter(state, query).await? else {
        return Ok(dto::DeliveriesBody {
            deliveries: Vec::new(),
            next_cursor: None,
        });
    };
    let mut page = deliveries::list(&state.pool, &filter, limit + 1).await?;
    let next_cursor = if page.len() > usize::try_from(limit).unwrap_or(usize::MAX) {
        page.pop();
        page.last().map(|d| d.id)
    } else {
        None
    };
    let ids: Vec<DeliveryId> = page.iter().map(|d| d.id).collect();
    let recovered = chatwoot_recovered::recovered_among(&state.pool, &ids).await?;
    Ok(dto::DeliveriesBody {
        deliveries: page
            .into_iter()
            .map(|d| {
                let mut view = named(state, d.into());
                view.recovered = recovered.contains(&view.id);
                view
            })
            .collect(),
        next_cursor,
    })
}

/// The delivery log's filter and page size from the query; `None` when no delivery can match (a route of
/// another inbox). Parameters are checked in the order the first error found is reported.
async fn delivery_filter(state: &AppState, query: DeliveryQuery) -> Result<Option<(Filter, i64)>> {
    let status = match query
        .status
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        None => None,
        Some("pending") => Some(DeliveryStatus::Pending),
        Some("delivered") => Some(DeliveryStatus::Delivered),
        Some("dead") => Some(DeliveryStatus::Dead),
        Some(_) => {
            return Err(Error::invalid(
                "status",
                "status must be pending, delivered or dead",
            ));
        }
    };
    let mut inbox_id = positive(query.inbox_id, "inboxId")?.map(InboxId);
    if let Some(route_id) = positive(query.route_id, "routeId")? {
        let route = find_route(state, RouteId(route_id)).await?;
        if inbox_id.is_some_and(|i| i != route.inbox_id) {
            return Ok(None);
        }
        inbox_id = Some(route.inbox_id);
    }
    let limit = positive(query.limit, "limit")?.unwrap_or(DEFAULT_PAGE);
    if limit > MAX_PAGE {
        return Err(Error::invalid(
            "limit",
            format!("limit must be at most {MAX_PAGE}"),
        ));
    }
    let filter = Filter {
        status,
        inbox_id,
        conversation_id: positive(query.conversation_id, "conversationId")?,
        before: positive(query.cursor, "cursor")?.map(DeliveryId),
    };
    Ok(Some((filter, limit)))
}

/// A delivery with its inbox's name, where the inbox belongs to a linked Chatwoot account.
fn named(state: &AppState, mut delivery: dto::Delivery) -> dto::Delivery {
    delivery.inbox_name = state.inbox_name(delivery.inbox_id);
    delivery
}

/// A query parameter that must be a positive integer when given (blank counts as not given).
fn positive(value: Option<String>, field: &'static str) -> Result<Option<i64>> {
    match value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(|| Error::invalid(field, format!("{field} must be a positive integer"))),
    }
}

pub async fn delivery_detail(state: &AppState, id: DeliveryId) -> Result<dto::DeliveryBody> {
    let d = deliveries::find(&state.pool, id)
        .await?
        .ok_or_else(|| delivery_not_found(id))?;
    let log = attempts::list_for_delivery(&state.pool, id).await?;
    let told = chatwoot_feedback::list_for_delivery(&state.pool, id).await?;
    let mut summary = named(state, d.summary().into());
    summary.recovered = !chatwoot_recovered::recovered_among(&state.pool, &[id])
        .await?
        .is_empty();
    Ok(dto::DeliveryBody {
        delivery: dto::DeliveryDetail {
            delivery: summary,
            payload: String::from_utf8_lossy(&d.body).into_owned(),
            attempt_log: log.into_iter().map(Into::into).collect(),
            chatwoot: told
                .into_iter()
                .filter(|f| f.kind != "none")
                .map(Into::into)
                .collect(),
        },
    })
}

/// Sends a delivered or dead delivery again: one attempt, in its conversation's order. If that attempt fails
/// the delivery is dead again (a manual retry does not re-enter the retry schedule).
pub async fn retry_delivery(state: &AppState, id: DeliveryId) -> Result<dto::DeliveryBody> {
    match deliveries::requeue(&state.pool, id, now_ms()).await? {
        Some(pending) => requeued(state, &[pending]),
        None if deliveries::find(&state.pool, id).await?.is_some() => {
            return Err(Error::Conflict(format!(
                "delivery {id} is already waiting to be sent"
            )));
        }
        None => return Err(delivery_not_found(id)),
    }
    tracing::info!(delivery_id = %id, "delivery retried by hand");
    delivery_detail(state, id).await
}

/// [`retry_delivery`] for every dead delivery of a route; says how many.
pub async fn retry_dead_for_route(state: &AppState, id: RouteId) -> Result<dto::RetriedBody> {
    let route = find_route(state, id).await?;
    let pending = deliveries::requeue_dead_for_inbox(&state.pool, route.inbox_id, now_ms()).await?;
    requeued(state, &pending);
    tracing::info!(route_id = %id, count = pending.len(), "dead deliveries retried by hand");
    Ok(dto::RetriedBody {
        retried: pending.len(),
    })
}

/// Removes a delivery from the queue and the log.
pub async fn discard_delivery(state: &AppState, id: DeliveryId) -> Result<dto::SuccessBody> {
    let Some(deleted) = deliveries::delete(&state.pool, id).await? else {
        return Err(delivery_not_found(id));
    };
    state.writer.forget_keys(&[deleted]);
    state.dispatcher.forget(id);
    tracing::info!(delivery_id = %id, "delivery discarded");
    state.events.send(UiEvent::Deliveries);
    Ok(dto::SuccessBody { success: true })
}

fn requeued(state: &AppState, pending: &[PendingRef]) {
    state.dispatcher.enqueue(pending.iter().copied());
    state.events.send(UiEvent::Deliveries);
}

fn delivery_not_found(id: DeliveryId) -> Error {
    Error::NotFound {
        what: "delivery",
        id: id.to_string(),
    }
}

fn not_found(id: RouteId) -> Error {
    Error::NotFound {
        what: "route",
        id: id.to_string(),
    }
}

fn conflict(err: sqlx::Error, inbox_id: InboxId) -> Error {
    match err.as_database_error() {
        Some(db) if db.is_unique_violation() => {
            Error::Conflict(format!("a route for inbox {inbox_id} already exists"))
        }
        _ => err.into(),
    }
}

/// Applies `input` over `base` (an update) or over nothing (a create, where inboxId and webhookUrl are
/// required) and checks every field.
fn validate(input: RouteInput, base: Option<RouteFields>) -> Result<RouteFields> {
    let inbox_id = match (input.inbox_id, &base) {
        (Some(v), _) => inbox_id(&v)?,
        (None, Some(b)) => b.inbox_id,
        (None, None) => return Err(Error::invalid("inboxId", "inboxId is required")),
    };
    let webhook_url = match (input.webhook_url, &base) {
        (Some(v), Some(b)) => {
            unmask_password(&webhook_url(&v)?, &b.webhook_url).ok_or_else(|| {
                Error::invalid(
                    "webhookUrl",
                    "the password in webhookUrl is masked; type the GoWA password again",
                )
            })?
        }
        (Some(v), None) => webhook_url(&v)?,
        (None, Some(b)) => b.webhook_url.clone(),
        (None, None) => return Err(Error::invalid("webhookUrl", "webhookUrl is required")),
    };
    let name = match input.name {
        Some(v) => optional_text(&v, "name", MAX_NAME_CHARS)?,
        None => base.as_ref().and_then(|b| b.name.clone()),
    };
    let enabled = match input.enabled {
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(Error::invalid("enabled", "enabled must be true or false")),
        None => base.as_ref().is_none_or(|b| b.enabled),
    };
    let secret = match input.secret {
        Some(v) => optional_text(&v, "secret", MAX_SECRET_CHARS)?,
        None => base.as_ref().and_then(|b| b.secret.clone()),
    };
    let chatwoot_secret = match input.chatwoot_secret {
        Some(v) => optional_text(&v, "chatwootSecret", MAX_SECRET_CHARS)?,
        None => base.and_then(|b| b.chatwoot_secret),
    };
    Ok(RouteFields {
        inbox_id,
        webhook_url,
        name,
        enabled,
        secret,
        chatwoot_secret,
    })
}

fn inbox_id(v: &Value) -> Result<InboxId> {
    let id = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        _ => None,
    };
    id.filter(|id| *id > 0).map(InboxId).ok_or_else(|| {
        Error::invalid(
            "inboxId",
            "inboxId must be a positive integer (the Chatwoot inbox id)",
        )
    })
}

fn webhook_url(v: &Value) -> Result<String> {
    let Value::String(url) = v else {
        return Err(Error::invalid("webhookUrl", "webhookUrl must be a string"));
    };
    let url = url.trim();
    if url.chars().any(char::is_control) {
        return Err(Error::invalid(
            "webhookUrl",
            "webhookUrl must not contain control characters",
        ));
    }
    if url.chars().count() > MAX_URL_CHARS {
        return Err(Error::invalid(
            "webhookUrl",
            format!("webhookUrl must be at most {MAX_URL_CHARS} characters"),
        ));
    }
    Target::parse(url).map_err(|_| {
        Error::invalid(
            "webhookUrl",
            "webhookUrl must be an absolute http:// or https:// URL, e.g. http://gowa:3000/chatwoot/webhook",
        )
    })?;
    Ok(url.to_owned())
}

/// A trimmed string of at most `max` characters; `null` or empty means none.
/// Whether a route's URL is this machine (loopback, `localhost`), link-local, or a cloud metadata address.
fn is_internal(target: &Target) -> bool {
    match target.url().host() {
        Some(url::Host::Domain(name)) => {
            name.eq_ignore_ascii_case("localhost")
                || name.to_ascii_lowercase().ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback() || ip.is_link_local() || ip.is_unspecified(),
        Some(url::Host::Ipv6(ip)) => {
            ip.is_loopback()
                || ip.is_unspecified()
                || ip.is_unicast_link_local()
                // AWS's metadata service over IPv6.
                || ip == std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
        }
        None => false,
    }
}

/// The Unicode controls that reorder text (U+202A–U+202E, U+2066–U+2069): a name with them could show in the
/// panel as something it is not.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Refuses a route that would send webhooks back to this relay's own `/webhook`: each would come back as a
/// new webhook, without end.
fn refuse_own_address(state: &AppState, url: &str) -> Result<()> {
    let Ok(target) = Target::parse(url) else {
        return Ok(());
    };
    let url = target.url();
    let own_port = url.port_or_known_default() == Some(state.config.port);
    let path = url.path().trim_end_matches('/');
    let local = match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => {
            ip.is_loopback() || ip.is_unspecified() || std::net::IpAddr::V4(ip) == state.config.bind
        }
        Some(url::Host::Ipv6(ip)) => {
            ip.is_loopback() || ip.is_unspecified() || std::net::IpAddr::V6(ip) == state.config.bind
        }
        None => false,
    };
    if local && own_port && path.eq_ignore_ascii_case("/webhook") {
        return Err(Error::invalid(
            "webhookUrl",
            "webhookUrl is this relay's own webhook address: GoWA's is usually http://<gowa-host>:3000/chatwoot/webhook",
        ));
    }
    Ok(())
}

fn optional_text(v: &Value, field: &'static str, max: usize) -> Result<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => {
            let s = s.trim();
            if s.chars().count() > max {
                Err(Error::invalid(
                    field,
                    format!("{field} must be at most {max} characters"),
                ))
            } else if s.chars().any(|c| c.is_control() || is_bidi_control(c)) {
                Err(Error::invalid(
                    field,
                    format!("{field} must not contain control characters"),
                ))
            } else {
                Ok((!s.is_empty()).then(|| s.to_owned()))
            }
        }
        _ => Err(Error::invalid(
            field,
            format!("{field} must be a string or null"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn input(v: Value) -> RouteInput {
        serde_json::from_value(v).unwrap()
    }

    fn field_of(err: Error) -> Option<&'static str> {
        match err {
            Error::Invalid { field, .. } => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn create_requires_inbox_and_url_and_checks_each_field() {
        let ok = validate(
            input(json!({"inboxId": 7, "webhookUrl": " http://gowa:3000/chatwoot/webhook "})),
            None,
        )
        .unwrap();
        assert_eq!(
            (ok.inbox_id, ok.webhook_url.as_str(), ok.enabled),
            (InboxId(7), "http://gowa:3000/chatwoot/webhook", true)
        );
        assert_eq!(
            validate(
                input(json!({"inboxId": "12", "webhookUrl": "https://g/x"})),
                None
            )
            .unwrap()
            .inbox_id,
            InboxId(12)
        );

        let cases = [
            (json!({"webhookUrl": "http://g/x"}), "inboxId"),
            (json!({"inboxId": 7}), "webhookUrl"),
            (json!({"inboxId": 0, "webhookUrl": "http://g/x"}), "inboxId"),
            (
                json!({"inboxId": -3, "webhookUrl": "http://g/x"}),
                "inboxId",
            ),
            (
                json!({"inboxId": 1.5, "webhookUrl": "http://g/x"}),
                "inboxId",
            ),
            (
                json!({"inboxId": true, "webhookUrl": "http://g/x"}),
                "inboxId",
            ),
            (
                json!({"inboxId": null, "webhookUrl": "http://g/x"}),
                "inboxId",
            ),
            (
                json!({"inboxId": 7, "webhookUrl": "javascript:alert(1)"}),
                "webhookUrl",
            ),
            (
                json!({"inboxId": 7, "webhookUrl": "file:///etc/passwd"}),
                "webhookUrl",
            ),
            (
                json!({"inboxId": 7, "webhookUrl": "gowa:3000"}),
                "webhookUrl",
            ),
            (json!({"inboxId": 7, "webhookUrl": 5}), "webhookUrl"),
            (
                json!({"inboxId": 7, "webhookUrl": "http://g/x", "name": "n".repeat(101)}),
                "name",
            ),
            (
                json!({"inboxId": 7, "webhookUrl": "http://g/x", "name": 5}),
                "name",
            ),
            (
                json!({"inboxId": 7, "webhookUrl": "http://g/x", "enabled": "yes"}),
                "enabled",
            ),
            (
                json!({"inboxId": 7, "webhookUrl": "http://g/x", "secret": ["a"]}),
                "secret",
            ),
        ];
        for (body, field) in cases {
            let err = validate(input(body.clone()), None).unwrap_err();
            assert_eq!(field_of(err), Some(field), "{body}");
        }
        let long_url = format!("http://g/{}", "a".repeat(MAX_URL_CHARS));
        assert_eq!(
            field_of(
                validate(input(json!({"inboxId": 7, "webhookUrl": long_url})), None).unwrap_err()
            ),
            Some("webhookUrl")
        );
    }

    #[test]
    fn internal_targets_are_recognised() {
        for (url, internal) in [
            ("http://127.0.0.1:3000/chatwoot/webhook", true),
            ("http://localhost:3000/x", true),
            ("http://169.254.169.254/latest/meta-data", true),
            ("http://[::1]:3000/x", true),
            ("http://[fd00:ec2::254]/x", true),
            ("http://gowa:3000/chatwoot/webhook", false),
            ("http://192.168.1.20:3000/chatwoot/webhook", false),
            ("https://gowa.example.com/chatwoot/webhook", false),
        ] {
            assert_eq!(is_internal(&Target::parse(url).unwrap()), internal, "{url}");
        }
    }

    #[test]
    fn update_keeps_absent_fields_and_null_clears() {
        let base = RouteFields {
            inbox_id: InboxId(7),
            webhook_url: "http://g/x".into(),
            name: Some("Shop".into()),
            enabled: true,
            secret: Some("k".into()),
            chatwoot_secret: Some("cw".into()),
        };
        let same = validate(input(json!({})), Some(base.clone())).unwrap();
        assert_eq!(
            (same.name.as_deref(), same.secret.as_deref()),
            (Some("Shop"), Some("k"))
        );
        let cleared = validate(
            input(json!({"name": null, "secret": "", "enabled": false})),
            Some(base),
        )
        .unwrap();
        assert_eq!(
            (cleared.name, cleared.secret, cleared.enabled),
            (None, None, false)
        );
    }
}
