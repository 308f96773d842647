//! Admin use-cases, one function each, called by the HTTP handlers, the Tauri commands and the tray alike.
//! They validate input, talk to the store and tell the delivery lanes when routes change; they know nothing
//! of transports. Where both transports answer with the same body, the use-case returns that body.

use serde_json::Value;

use std::collections::HashMap;

use super::dto::{self, DeliveryQuery, HealthState, RouteInput};
use super::glimpse::{self, Glimpse, Search};
use crate::delivery::gowa::{self, Target, unmask_password};
use crate::error::{Error, FieldError, Result};
use crate::events::UiEvent;
use crate::ids::{DeliveryId, InboxId, RouteId};
use crate::metrics::{Gauges, RouteGauge};
use crate::state::AppState;
use crate::store::deliveries::{self, DeliveryStatus, DeliverySummary, Filter, PendingRef};
use crate::store::routes::{self, Route, RouteFields};
use crate::store::{attempts, chatwoot_feedback, chatwoot_recovered, now_ms, unrouted_inboxes};

pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_URL_CHARS: usize = 2048;
pub const MAX_SECRET_CHARS: usize = 256;

pub const DEFAULT_PAGE: i64 = 50;
/// Most deliveries one bulk action takes.
pub const MAX_BULK: usize = 500;
/// Rows the delivery log's search reads from the database at a time, and at most per request (a page may then
/// come back short, with a cursor to read on).
const SEARCH_BATCH: i64 = 200;
const SEARCH_SCAN: usize = 5_000;
/// Longest search accepted.
pub const MAX_SEARCH_CHARS: usize = 200;
const DAY_MS: i64 = 24 * 3600 * 1000;
pub const MAX_PAGE: i64 = 500;

pub async fn routes_body(state: &AppState) -> Result<dto::RoutesBody> {
    Ok(dto::RoutesBody {
        routes: list_routes(state).await?,
    })
}

pub async fn list_routes(state: &AppState) -> Result<Vec<dto::Route>> {
    let mut views = Vec::new();
    for route in routes::list(&state.db).await? {
        views.push(route_view(state, route).await?);
    }
    Ok(views)
}

/// A route with its queue and health.
async fn route_view(state: &AppState, route: Route) -> Result<dto::Route> {
    let pending =
        deliveries::count_for_inbox(&state.db, route.inbox_id, DeliveryStatus::Pending).await?;
    let dead = deliveries::count_for_inbox(&state.db, route.inbox_id, DeliveryStatus::Dead).await?;
    let last = deliveries::last_attempted_for_inbox(&state.db, route.inbox_id).await?;
    let delivered = deliveries::last_delivered_at_for_inbox(&state.db, route.inbox_id).await?;
    let mut view = dto::Route::new(route, pending, dead, last);
    view.inbox_name = state.inbox_name(view.inbox_id);
    view.last_delivered_at = delivered.map(crate::store::to_rfc3339);
    Ok(view)
}

async fn route_body(state: &AppState, route: Route) -> Result<dto::RouteBody> {
    Ok(dto::RouteBody {
        route: route_view(state, route).await?,
    })
}

async fn find_route(state: &AppState, id: RouteId) -> Result<Route> {
    routes::find(&state.db, id)
        .await?
        .ok_or_else(|| not_found(id))
}

/// Routes changed: the relay takes the new ones, paused lanes look again, screens refresh.
async fn routes_changed(state: &AppState) -> Result<()> {
    state.dispatcher.routes_changed().await?;
    state.events.send(UiEvent::Routes);
    Ok(())
}

pub async fn create_route(state: &AppState, input: RouteInput) -> Result<dto::RouteBody> {
    let fields = validate(input, None)?;
    refuse_own_address(state, &fields.webhook_url)?;
    let route = routes::insert(&state.db, &fields)
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
    let route = routes::update(&state.db, id, &fields)
        .await
        .map_err(|e| conflict(e, fields.inbox_id))?
        .ok_or_else(|| not_found(id))?;
    tracing::info!(route_id = %route.id, inbox_id = %route.inbox_id, "route updated");
    routes_changed(state).await?;
    route_body(state, route).await
}

pub async fn delete_route(state: &AppState, id: RouteId) -> Result<dto::SuccessBody> {
    if !routes::delete(&state.db, id).await? {
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
        problem: gowa::problem(result.status.map(i64::from), result.error.as_deref())
            .map(Into::into),
        error: result.error,
        response_snippet: result.snippet,
        internal_target: is_internal(&target),
    })
}

pub async fn stats(state: &AppState) -> Result<dto::Stats> {
    let totals = deliveries::totals(&state.db).await?;
    let oldest = deliveries::oldest_pending_received_at(&state.db).await?;
    let told = state.intake.linked().clock().told();
    Ok(dto::Stats {
        version: env!("CARGO_PKG_VERSION").into(),
        totals,
        queue_depth: totals.pending,
        oldest_pending_age_ms: oldest.map(|at| (now_ms() - at).max(0)),
        delivered_last_day: deliveries::count_delivered_since(&state.db, now_ms() - DAY_MS).await?,
        retention_seconds: state.config.retention.as_secs(),
        dead_retention_seconds: state.config.dead_retention.as_secs(),
        duplicates_dropped: deliveries::count_duplicates(&state.db).await?,
        routes: routes::list(&state.db).await?.len(),
        unrouted_inboxes: unrouted_inboxes::count(&state.db).await?,
        webhooks_signed: state.intake.signatures_required(),
        clock_skew_seconds: told.map(|t| t.seconds),
        clock_reckoned: told.is_none_or(|t| t.reckoned),
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
        unrouted: unrouted_inboxes::list(&state.db)
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
    Ok(deliveries::count_pending(&state.db).await?)
}

/// Deliveries delivered since `since_ms` (the tray's "today").
pub async fn count_delivered_since(state: &AppState, since_ms: i64) -> Result<i64> {
    Ok(deliveries::count_delivered_since(&state.db, since_ms).await?)
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

/// The events GoWA acts on (a reply, a deleted reply); the log can hide the rest.
const EVENTS_GOWA_READS: &[&str] = &["message_created", "message_updated"];

/// One page of the delivery log, newest first. A search reads the log in batches until the page is full.
pub async fn list_deliveries(
    state: &AppState,
    query: DeliveryQuery,
) -> Result<dto::DeliveriesBody> {
    if query
        .q
        .as_ref()
        .is_some_and(|q| q.chars().count() > MAX_SEARCH_CHARS)
    {
        return Err(Error::invalid(
            "q",
            format!("q must be at most {MAX_SEARCH_CHARS} characters"),
        ));
    }
    let search = query.q.as_deref().and_then(Search::parse);
    let Some((mut filter, limit)) = delivery_filter(state, query).await? else {
        return Ok(dto::DeliveriesBody {
            deliveries: Vec::new(),
            next_cursor: None,
        });
    };
    filter.body_has = search.as_ref().and_then(Search::prefilter);
    let (page, next_cursor) = read_page(state, filter, search.as_ref(), limit).await?;
    let ids: Vec<DeliveryId> = page.iter().map(|(d, _)| d.id).collect();
    let recovered = chatwoot_recovered::recovered_among(&state.db, &ids).await?;
    let names = route_names(state).await?;
    Ok(dto::DeliveriesBody {
        deliveries: page
            .into_iter()
            .map(|(d, about)| {
                let mut view = named(state, &names, d.into(), about);
                view.recovered = recovered.contains(&view.id);
                view
            })
            .collect(),
        next_cursor,
    })
}

/// One page of deliveries that `filter` and `search` keep, and the cursor to the next. Without a search the
/// database filters alone; with one, rows are read in batches and checked on their parsed webhook, and the
/// read stops after [`SEARCH_SCAN`] rows (the page may then be short, with a cursor to read on).
async fn read_page(
    state: &AppState,
    mut filter: Filter,
    search: Option<&Search>,
    limit: i64,
) -> Result<(Vec<(DeliverySummary, Glimpse)>, Option<DeliveryId>)> {
    let wanted = usize::try_from(limit).unwrap_or(usize::MAX);
    let batch = if search.is_some() {
        SEARCH_BATCH.max(limit + 1)
    } else {
        limit + 1
    };
    let (mut page, mut scanned) = (Vec::new(), 0);
    let exhausted = loop {
        let rows = deliveries::list(&state.db, &filter, batch).await?;
        let last_batch = rows.len() < usize::try_from(batch).unwrap_or(usize::MAX);
        for row in rows {
            scanned += 1;
            filter.before = Some(row.summary.id);
            let read = glimpse::read(&row.body);
            if search.is_none_or(|s| s.matches(&read)) {
                page.push((row.summary, read.glimpse));
            }
            if page.len() > wanted {
                break;
            }
        }
        if page.len() > wanted {
            break false;
        }
        if last_batch || scanned >= SEARCH_SCAN {
            break last_batch;
        }
    };
    let next_cursor = if page.len() > wanted {
        page.pop();
        page.last().map(|(d, _)| d.id)
    } else if exhausted {
        None
    } else {
        filter.before
    };
    Ok((page, next_cursor))
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
    let (event, events) = event_filter(query.event, query.hide_ignored)?;
    let filter = Filter {
        status,
        inbox_id,
        conversation_id: positive(query.conversation_id, "conversationId")?,
        event,
        events,
        body_has: None,
        before: positive(query.cursor, "cursor")?.map(DeliveryId),
    };
    Ok(Some((filter, limit)))
}

/// One event, or the events GoWA reads (`hideIgnored=true`), or every event.
type EventFilter = (Option<String>, Option<&'static [&'static str]>);

fn event_filter(event: Option<String>, hide_ignored: Option<String>) -> Result<EventFilter> {
    let event = event.map(|e| e.trim().to_owned()).filter(|e| !e.is_empty());
    if event
        .as_ref()
        .is_some_and(|e| e.len() > 64 || !e.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
    {
        return Err(Error::invalid(
            "event",
            "event must be an event name such as message_created",
        ));
    }
    let hide_ignored = match hide_ignored.as_deref().map(str::trim) {
        None | Some("" | "false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(Error::invalid(
                "hideIgnored",
                "hideIgnored must be true or false",
            ));
        }
    };
    Ok((event, hide_ignored.then_some(EVENTS_GOWA_READS)))
}

/// Each inbox's route name.
async fn route_names(state: &AppState) -> Result<HashMap<InboxId, String>> {
    Ok(routes::list(&state.db)
        .await?
        .into_iter()
        .filter_map(|r| Some((r.inbox_id, r.name?)))
        .collect())
}

/// A delivery with its route's name, its inbox's name (where the inbox belongs to a linked Chatwoot account),
/// and who and what it is about.
fn named(
    state: &AppState,
    routes: &HashMap<InboxId, String>,
    mut delivery: dto::Delivery,
    about: Glimpse,
) -> dto::Delivery {
    delivery.inbox_name = state.inbox_name(delivery.inbox_id);
    delivery.route_name = routes.get(&delivery.inbox_id).cloned();
    delivery.about = about;
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
    let d = deliveries::find(&state.db, id)
        .await?
        .ok_or_else(|| delivery_not_found(id))?;
    let log = attempts::list_for_delivery(&state.db, id).await?;
    let told = chatwoot_feedback::list_for_delivery(&state.db, id).await?;
    let names = route_names(state).await?;
    let about = glimpse::read(&d.body).glimpse;
    let mut summary = named(state, &names, d.summary().into(), about);
    summary.recovered = !chatwoot_recovered::recovered_among(&state.db, &[id])
        .await?
        .is_empty();
    Ok(dto::DeliveryBody {
        delivery: dto::DeliveryDetail {
            delivery: summary,
            payload: String::from_utf8_lossy(&d.body).into_owned(),
            attempt_log: log.into_iter().map(Into::into).collect(),
            chatwoot: told
                .into_iter()
                .filter(|f| !matches!(f.kind.as_str(), "none" | "late_arrival" | "caught_up_late"))
                .map(Into::into)
                .collect(),
        },
    })
}

/// Sends a delivered or dead delivery again: one attempt, in its conversation's order. If that attempt fails
/// the delivery is dead again (a manual retry does not re-enter the retry schedule).
pub async fn retry_delivery(state: &AppState, id: DeliveryId) -> Result<dto::DeliveryBody> {
    match deliveries::requeue(&state.db, id, now_ms()).await? {
        Some(pending) => requeued(state, &[pending]),
        None if deliveries::find(&state.db, id).await?.is_some() => {
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
    let pending = deliveries::requeue_dead_for_inbox(&state.db, route.inbox_id, now_ms()).await?;
    requeued(state, &pending);
    tracing::info!(route_id = %id, count = pending.len(), "dead deliveries retried by hand");
    Ok(dto::RetriedBody {
        retried: pending.len(),
        skipped: None,
    })
}

/// [`retry_delivery`] for those of the chosen deliveries that are dead; the others (waiting, delivered, gone)
/// are left as they are and counted: sending a delivered reply again is asked for one at a time.
pub async fn retry_deliveries(state: &AppState, input: dto::IdsInput) -> Result<dto::RetriedBody> {
    let ids = chosen(&input.ids)?;
    let pending = deliveries::requeue_dead(&state.db, &ids, now_ms()).await?;
    requeued(state, &pending);
    tracing::info!(
        count = pending.len(),
        "chosen dead deliveries retried by hand"
    );
    Ok(dto::RetriedBody {
        retried: pending.len(),
        skipped: Some(ids.len() - pending.len()),
    })
}

/// [`discard_delivery`] for each of the chosen deliveries; says how many were there to discard.
pub async fn discard_deliveries(
    state: &AppState,
    input: dto::IdsInput,
) -> Result<dto::DiscardedBody> {
    let mut gone = Vec::new();
    for id in chosen(&input.ids)? {
        if let Some(deleted) = deliveries::delete(&state.db, id).await? {
            state.dispatcher.forget(id);
            gone.push(deleted);
        }
    }
    state.writer.forget_keys(&gone);
    tracing::info!(count = gone.len(), "chosen deliveries discarded");
    state.events.send(UiEvent::Deliveries);
    Ok(dto::DiscardedBody {
        discarded: gone.len(),
    })
}

/// The ids of a bulk action: 1 to [`MAX_BULK`] positive integers, each once.
fn chosen(ids: &Value) -> Result<Vec<DeliveryId>> {
    let invalid = || {
        Error::invalid(
            "ids",
            format!("ids must be a list of 1 to {MAX_BULK} delivery ids"),
        )
    };
    let list = ids
        .as_array()
        .filter(|l| !l.is_empty() && l.len() <= MAX_BULK);
    let mut ids = list
        .ok_or_else(invalid)?
        .iter()
        .map(|v| v.as_i64().filter(|n| *n > 0).map(DeliveryId))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(invalid)?;
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// Removes a delivery from the queue and the log.
pub async fn discard_delivery(state: &AppState, id: DeliveryId) -> Result<dto::SuccessBody> {
    let Some(deleted) = deliveries::delete(&state.db, id).await? else {
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
        Some(db) if db.is_unique_violation() => Error::Fields {
            errors: vec![FieldError::new(
                "inboxId",
                "taken",
                format!("a route for inbox {inbox_id} already exists"),
            )],
            conflict: true,
        },
        _ => err.into(),
    }
}

/// Applies `input` over `base` (an update) or over nothing (a create, where inboxId and webhookUrl are
/// required) and checks every field, reporting all that are wrong at once.
fn validate(input: RouteInput, base: Option<RouteFields>) -> Result<RouteFields> {
    let mut errors = Vec::new();
    let inbox_id = match (input.inbox_id, &base) {
        (Some(v), _) => keep(&mut errors, inbox_id(&v)),
        (None, Some(b)) => Some(b.inbox_id),
        (None, None) => keep(&mut errors, Err(required("inboxId"))),
    };
    let webhook_url = match (input.webhook_url, &base) {
        (Some(v), b) => keep(&mut errors, new_webhook_url(&v, b.as_ref())),
        (None, Some(b)) => Some(b.webhook_url.clone()),
        (None, None) => keep(&mut errors, Err(required("webhookUrl"))),
    };
    let b = base.as_ref();
    let mut text = |v: Option<Value>, field, max, kept: Option<&Option<String>>| match v {
        Some(v) => keep(&mut errors, optional_text(&v, field, max)).flatten(),
        None => kept.cloned().flatten(),
    };
    let name = text(input.name, "name", MAX_NAME_CHARS, b.map(|b| &b.name));
    let secret = text(
        input.secret,
        "secret",
        MAX_SECRET_CHARS,
        b.map(|b| &b.secret),
    );
    let chatwoot_secret = text(
        input.chatwoot_secret,
        "chatwootSecret",
        MAX_SECRET_CHARS,
        b.map(|b| &b.chatwoot_secret),
    );
    let enabled = match input.enabled {
        Some(Value::Bool(enabled)) => enabled,
        Some(_) => {
            errors.push(FieldError::new(
                "enabled",
                "not_boolean",
                "enabled must be true or false",
            ));
            true
        }
        None => b.is_none_or(|b| b.enabled),
    };
    match (inbox_id, webhook_url) {
        (Some(inbox_id), Some(webhook_url)) if errors.is_empty() => Ok(RouteFields {
            inbox_id,
            webhook_url,
            name,
            enabled,
            secret,
            chatwoot_secret,
        }),
        _ => Err(Error::Fields {
            errors,
            conflict: false,
        }),
    }
}

/// The value of a checked field, or `None` with its error added to `errors`.
fn keep<T>(errors: &mut Vec<FieldError>, checked: Result<T, FieldError>) -> Option<T> {
    checked.map_err(|e| errors.push(e)).ok()
}

/// A route's new URL; on an update, a masked password in it stands for the stored one.
fn new_webhook_url(v: &Value, base: Option<&RouteFields>) -> Result<String, FieldError> {
    let url = webhook_url(v)?;
    let Some(base) = base else {
        return Ok(url);
    };
    unmask_password(&url, &base.webhook_url).ok_or_else(|| {
        FieldError::new(
            "webhookUrl",
            "masked_password",
            "the password in webhookUrl is masked; type the GoWA password again",
        )
    })
}

fn required(field: &'static str) -> FieldError {
    FieldError::new(field, "required", format!("{field} is required"))
}

fn inbox_id(v: &Value) -> Result<InboxId, FieldError> {
    crate::ids::parse_json(v).map(InboxId).ok_or_else(|| {
        FieldError::new(
            "inboxId",
            "not_inbox_id",
            "inboxId must be a positive integer (the Chatwoot inbox id)",
        )
    })
}

fn webhook_url(v: &Value) -> Result<String, FieldError> {
    let invalid = |code, message: String| FieldError::new("webhookUrl", code, message);
    let Value::String(url) = v else {
        return Err(invalid("not_text", "webhookUrl must be a string".into()));
    };
    let url = url.trim();
    if url.chars().any(char::is_control) {
        return Err(invalid(
            "control_characters",
            "webhookUrl must not contain control characters".into(),
        ));
    }
    if url.chars().count() > MAX_URL_CHARS {
        return Err(FieldError {
            max: Some(MAX_URL_CHARS),
            ..invalid(
                "too_long",
                format!("webhookUrl must be at most {MAX_URL_CHARS} characters"),
            )
        });
    }
    Target::parse(url).map_err(|_| {
        invalid(
            "not_url",
            "webhookUrl must be an absolute http:// or https:// URL, e.g. http://gowa:3000/chatwoot/webhook".into(),
        )
    })?;
    Ok(url.to_owned())
}

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
        return Err(Error::Fields {
            errors: vec![FieldError::new(
                "webhookUrl",
                "own_address",
                "webhookUrl is this relay's own webhook address: GoWA's is usually http://<gowa-host>:3000/chatwoot/webhook",
            )],
            conflict: false,
        });
    }
    Ok(())
}

/// A trimmed string of at most `max` characters; `null` or empty means none.
fn optional_text(v: &Value, field: &'static str, max: usize) -> Result<Option<String>, FieldError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => {
            let s = s.trim();
            if s.chars().count() > max {
                Err(FieldError {
                    max: Some(max),
                    ..FieldError::new(
                        field,
                        "too_long",
                        format!("{field} must be at most {max} characters"),
                    )
                })
            } else if s.chars().any(|c| c.is_control() || is_bidi_control(c)) {
                Err(FieldError::new(
                    field,
                    "control_characters",
                    format!("{field} must not contain control characters"),
                ))
            } else {
                Ok((!s.is_empty()).then(|| s.to_owned()))
            }
        }
        _ => Err(FieldError::new(
            field,
            "not_text",
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
            Error::Fields { errors, .. } => errors.first().map(|e| e.field),
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
    fn every_wrong_field_is_reported_at_once_with_its_code() {
        let err = validate(
            input(json!({"webhookUrl": "gowa:3000", "name": "n".repeat(101), "enabled": 1})),
            None,
        )
        .unwrap_err();
        let Error::Fields { errors, conflict } = err else {
            panic!("{err:?}")
        };
        let found: Vec<_> = errors.iter().map(|e| (e.field, e.code, e.max)).collect();
        assert_eq!(
            found,
            [
                ("inboxId", "required", None),
                ("webhookUrl", "not_url", None),
                ("name", "too_long", Some(MAX_NAME_CHARS)),
                ("enabled", "not_boolean", None),
            ]
        );
        assert!(!conflict);
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
