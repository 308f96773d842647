//! Inbound Chatwoot webhooks: read the routing fields, store the raw body durably, answer.
//!
//! A webhook is acknowledged only once its delivery is committed (or a deliberate decision not to queue it
//! was made); GoWA is never called from here.

pub mod linked;
pub mod payload;
pub mod signature;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use self::linked::Linked;
use self::payload::Payload;
use crate::config::{self, Secret};
use crate::delivery::Dispatcher;
use crate::error::{Error, Result};
use crate::ids::{DeliveryId, InboxId};
use crate::metrics::Metrics;
use crate::store::Writer;
use crate::store::deliveries::NewDelivery;
use crate::store::writer::{self, WriteError};

/// What was done with an inbound webhook: its name goes out to Chatwoot as `reason`, and into logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum Decision {
    queued,
    duplicate,
    no_inbox,
    no_route,
    /// A reply its agent deleted in Chatwoot before its webhook came: stored, never sent.
    deleted,
    /// Refused: not JSON, too large, wrong content type.
    rejected,
    /// Refused: a Chatwoot secret is configured and the signature is missing, stale or wrong (401).
    unsigned,
    /// Shed: more webhooks at once than the relay takes (503 + Retry-After).
    shed,
    /// Could not be stored (answered 503).
    unavailable,
}

impl Decision {
    /// Its name in logs, in metrics and in the answer to Chatwoot (`reason`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::queued => "queued",
            Self::duplicate => "duplicate",
            Self::no_inbox => "no_inbox",
            Self::no_route => "no_route",
            Self::deleted => "deleted",
            Self::rejected => "rejected",
            Self::unsigned => "unsigned",
            Self::shed => "shed",
            Self::unavailable => "unavailable",
        }
    }
}

/// What `POST /webhook` works with: shared by every request, one reference count per clone.
#[derive(Clone)]
pub struct Intake(Arc<Parts>);

struct Parts {
    writer: Writer,
    /// For the routes' own Chatwoot secrets.
    dispatcher: Dispatcher,
    metrics: Metrics,
    admission: Admission,
    /// `CHATGOWA_CHATWOOT_SECRET`: what webhooks of a route without a secret of its own are signed with.
    chatwoot_secrets: Vec<Secret<String>>,
    /// Linked Chatwoot accounts: their webhooks' secrets, and when each was last heard from.
    linked: Linked,
    /// Accepting unsigned webhooks is written to the log at most once an hour.
    open_door: crate::logging::Sparse,
}

impl Intake {
    pub fn new(
        writer: Writer,
        dispatcher: Dispatcher,
        metrics: Metrics,
        max_body: usize,
        chatwoot_secrets: Vec<Secret<String>>,
    ) -> Self {
        Self(Arc::new(Parts {
            writer,
            dispatcher,
            metrics,
            admission: Admission::new(max_body),
            chatwoot_secrets,
            linked: Linked::default(),
            open_door: crate::logging::Sparse::every(std::time::Duration::from_secs(3600)),
        }))
    }

    /// The linked Chatwoot accounts as webhooks see them.
    pub fn linked(&self) -> &Linked {
        &self.0.linked
    }

    /// The largest body accepted.
    pub fn max_body(&self) -> usize {
        self.0.admission.max_body
    }
}

/// How many maximum-size bodies may be in memory at once (being read or waiting for their commit)…
const BODIES_IN_MEMORY: usize = 64;
/// …within this many bytes, whatever the maximum size (at least one body of that size fits).
const MAX_BUDGET: usize = 64 * 1024 * 1024;
/// What a webhook counts for at least, so that a flood of empty bodies is bounded too.
const MIN_CHARGE: usize = 1024;

/// Bounds the memory held by webhooks in progress: each one takes [`MIN_CHARGE`] when its headers are in, and
/// then each chunk of its body as it arrives, from a budget of [`BODIES_IN_MEMORY`] maximum bodies (at most
/// [`MAX_BUDGET`]) until it is answered. Charged by what was received, not by what was declared: a request
/// that sends nothing holds next to nothing, and one that stops sending is cut off by the request timeout.
/// When the budget is spent, webhooks are shed with 503 + `Retry-After` instead of queueing without bound.
/// One client (its address, or behind a trusted proxy the address it forwarded for) may hold at most a
/// [`CLIENT_SHARE`] of the budget, so that a few slow bodies from one stranger cannot hold all of it.
#[derive(Debug, Clone)]
struct Admission {
    budget: Arc<Semaphore>,
    max_body: usize,
    /// What one client may hold at once (at least one maximum body).
    share: usize,
    /// What each client holds now.
    held_by: Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>,
    /// Shedding is written to the log at most every 10 s.
    warnings: crate::logging::Sparse,
}

impl Admission {
    fn new(max_body: usize) -> Self {
        let permits = max_body
            .saturating_mul(BODIES_IN_MEMORY)
            .min(MAX_BUDGET.max(max_body + MIN_CHARGE))
            .min(Semaphore::MAX_PERMITS);
        Self {
            budget: Arc::new(Semaphore::new(permits)),
            max_body,
            share: (permits / CLIENT_SHARE)
                .max(max_body + MIN_CHARGE)
                .min(permits),
            held_by: Arc::default(),
            warnings: crate::logging::Sparse::every(std::time::Duration::from_secs(10)),
        }
    }

    /// What a new request of `client` holds: nothing yet.
    fn hold(&self, client: Option<IpAddr>) -> Hold {
        Hold {
            permit: None,
            client: client.map(crate::login::client_key),
            bytes: 0,
            held_by: self.held_by.clone(),
        }
    }

    /// Takes `bytes` more from the budget for a request holding `hold`, within its client's share.
    fn charge(&self, hold: &mut Hold, bytes: usize) -> Result<(), Shed> {
        let n = u32::try_from(bytes).map_err(|_| Shed)?;
        let mut held_by = self
            .held_by
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(client) = hold.client {
            let used = held_by.get(&client).copied().unwrap_or(0);
            if used.saturating_add(bytes) > self.share {
                return Err(Shed);
            }
        }
        let more = self
            .budget
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| Shed)?;
        if let Some(client) = hold.client {
            *held_by.entry(client).or_insert(0) += bytes;
            hold.bytes += bytes;
        }
        match &mut hold.permit {
            Some(permit) => permit.merge(more),
            None => hold.permit = Some(more),
        }
        Ok(())
    }

    /// Logs that webhooks are being shed, at most once every 10 s.
    fn warn_shed(&self) {
        self.warnings.warn(
            "webhook_budget",
            "webhooks shed with 503: the memory budget for webhooks in progress is spent",
        );
    }
}

/// One client may hold at most this fraction (1/n) of the budget for webhooks in progress.
const CLIENT_SHARE: usize = 4;

/// What one webhook in progress holds of the budget and of its client's share; given back when dropped.
#[derive(Debug)]
struct Hold {
    permit: Option<OwnedSemaphorePermit>,
    client: Option<IpAddr>,
    bytes: usize,
    held_by: Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        let Some(client) = self.client else {
            return;
        };
        let mut held_by = self
            .held_by
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(used) = held_by.get_mut(&client) {
            *used = used.saturating_sub(self.bytes);
            if *used == 0 {
                held_by.remove(&client);
            }
        }
    }
}

/// The budget for webhooks in progress is spent: the request is shed.
#[derive(Debug, thiserror::Error)]
#[error("too many webhooks at once; retry shortly")]
struct Shed;

/// How long the body of a refused webhook is read (and dropped) at most before the answer is sent.
const DISCARD_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// axum middleware of `POST /webhook`: refuses a declared body over the limit, and admits the request within
/// the memory budget as its body arrives, or sheds it.
pub async fn admit(State(intake): State<Intake>, request: Request, next: Next) -> Response {
    let (admission, metrics) = (&intake.0.admission, &intake.0.metrics);
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > admission.max_body) {
        metrics.webhook(Decision::rejected.as_str());
        discard_body(request).await;
        return too_large(admission.max_body).into_response();
    }
    let client = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip());
    let mut held = admission.hold(client);
    if admission.charge(&mut held, MIN_CHARGE).is_err() {
        metrics.webhook(Decision::shed.as_str());
        admission.warn_shed();
        discard_body(request).await;
        return Error::Overloaded(Shed.to_string()).into_response();
    }
    // Each chunk is charged as it arrives. Past the budget the rest of the body is read and dropped (so that the
    // sender, still writing, reads the answer), and the body then ends with `Shed`, which the handler answers
    // as 503. What was charged is given back when the answer has been sent.
    let held = Arc::new(std::sync::Mutex::new(held));
    let (parts, body) = request.into_parts();
    let counted = charged(body, admission.clone(), held.clone());
    let response = next
        .run(Request::from_parts(
            parts,
            axum::body::Body::from_stream(counted),
        ))
        .await;
    drop(held);
    response
}

/// `body`, each chunk charged to the budget as it arrives (see [`admit`]).
fn charged(
    body: axum::body::Body,
    admission: Admission,
    held: Arc<std::sync::Mutex<Hold>>,
) -> impl futures_util::Stream<Item = std::result::Result<Bytes, axum::BoxError>> + Send + 'static {
    use std::sync::atomic::{AtomicBool, Ordering};

    use futures_util::StreamExt as _;
    let shed = Arc::new(AtomicBool::new(false));
    let over = shed.clone();
    let chunks = body.into_data_stream().filter_map(move |chunk| {
        let item = match chunk {
            Err(err) => Some(Err(axum::BoxError::from(err))),
            Ok(_) if shed.load(Ordering::Relaxed) => None,
            Ok(chunk) => {
                let mut held = held
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if admission.charge(&mut held, chunk.len()).is_ok() {
                    Some(Ok(chunk))
                } else {
                    admission.warn_shed();
                    shed.store(true, Ordering::Relaxed);
                    None
                }
            }
        };
        std::future::ready(item)
    });
    let end = futures_util::stream::once(async move {
        over.load(Ordering::Relaxed)
            .then(|| Err(axum::BoxError::from(Shed)))
    })
    .filter_map(std::future::ready);
    chunks.chain(end)
}

/// Whether reading the body stopped because the budget was spent (see [`admit`]).
fn was_shed(rejection: &BytesRejection) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(error) = cause {
        if error.is::<Shed>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// Reads and drops the body of a refused request (nothing is kept) for up to [`DISCARD_TIME`], so that a
/// sender still writing it reads the answer instead of a reset connection. The admin API refuses its large
/// bodies the same way.
pub async fn discard_body(request: Request) {
    use futures_util::StreamExt as _;
    let mut stream = request.into_body().into_data_stream();
    let drain = async { while let Some(Ok(_)) = stream.next().await {} };
    let _ = tokio::time::timeout(DISCARD_TIME, drain).await;
}

fn too_large(max_body: usize) -> Error {
    Error::PayloadTooLarge(format!(
        "body is larger than the limit of {max_body} bytes (CHATGOWA_MAX_BODY)"
    ))
}

/// The answer to Chatwoot: always `received`, and whether (or why not) the webhook was queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    pub received: bool,
    pub queued: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<DeliveryId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inbox_id: Option<InboxId>,
    /// What was decided, for the metrics; `queued` and `reason` say it on the wire.
    #[serde(skip)]
    pub decision: Decision,
}

impl Receipt {
    fn new(decision: Decision, delivery_id: Option<DeliveryId>, inbox_id: Option<InboxId>) -> Self {
        let queued = decision == Decision::queued;
        Self {
            received: true,
            queued,
            reason: (!queued).then(|| decision.as_str()),
            delivery_id,
            inbox_id,
            decision,
        }
    }
}

/// `POST /webhook`.
pub async fn webhook(
    State(intake): State<Intake>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<Receipt>> {
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => too_large(intake.max_body()),
        _ if was_shed(&rejection) => Error::Overloaded(Shed.to_string()),
        _ => Error::Invalid {
            field: None,
            message: rejection.body_text(),
        },
    });
    let body = match body {
        Ok(body) => body,
        Err(err) => return intake.counted(Err(err)).map(Json),
    };
    // Once the body is here, storing, logging and counting it finish even if the sender hangs up meanwhile
    // (which drops this handler): a webhook that is stored is always in the log and the metrics.
    let task = tokio::spawn({
        let intake = intake.clone();
        async move {
            let result = accept(&intake, &headers, body).await;
            intake.counted(result)
        }
    });
    match task.await {
        Ok(result) => result.map(Json),
        Err(err) => Err(Error::Unavailable(format!("webhook task failed: {err}"))),
    }
}

/// Validates, stores and decides; the service behind `POST /webhook`.
///
/// # Errors
/// `UnsupportedMediaType` / `Invalid` for a body that is not a JSON object, `Unauthorized` for a missing or
/// wrong Chatwoot signature where one is required, `Overloaded` when the writer's queue is full,
/// `Unavailable` when it could not be stored (Chatwoot then shows the message as failed instead of it being
/// lost silently).
pub async fn accept(intake: &Intake, headers: &HeaderMap, body: Bytes) -> Result<Receipt> {
    check_headers(headers)?;
    let payload = payload::parse(&body).map_err(|e| Error::Invalid {
        field: None,
        message: e.to_string(),
    })?;
    let size = body.len();
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    intake.check_signature(headers, &body, &payload)?;
    let Some(inbox_id) = payload.inbox_id else {
        tracing::info!(
            event = payload.event,
            bytes = size,
            decision = "no_inbox",
            "webhook"
        );
        return Ok(Receipt::new(Decision::no_inbox, None, None));
    };
    let cw_delivery = text("x-chatwoot-delivery").filter(|k| !k.is_empty());
    let delivery = NewDelivery {
        inbox_id,
        conversation_id: payload.conversation_id,
        event: payload.event.clone(),
        message_id: payload.message_id,
        // A twin Chatwoot fires with a new delivery id is still the same message.
        dedupe_key: payload.identity.clone().or_else(|| cw_delivery.clone()),
        cw_delivery,
        cw_timestamp: text("x-chatwoot-timestamp"),
        cw_signature: text("x-chatwoot-signature"),
        body,
    };
    let (decision, delivery_id) = intake.store(delivery).await?;
    tracing::info!(
        event = payload.event,
        inbox_id = %inbox_id,
        bytes = size,
        decision = decision.as_str(),
        delivery_id = delivery_id.map(|d| d.0),
        "webhook"
    );
    Ok(Receipt::new(decision, delivery_id, Some(inbox_id)))
}

impl Intake {
    /// Counts what was decided about a webhook, and passes the result on.
    fn counted(&self, result: Result<Receipt>) -> Result<Receipt> {
        let decision = match &result {
            Ok(receipt) => receipt.decision,
            Err(Error::Unavailable(_)) => Decision::unavailable,
            Err(Error::Overloaded(_)) => Decision::shed,
            Err(Error::Unauthorized(_)) => Decision::unsigned,
            Err(_) => Decision::rejected,
        };
        self.0.metrics.webhook(decision.as_str());
        result
    }

    /// Stores a webhook through the writer; says what was decided and which delivery holds it.
    async fn store(&self, delivery: NewDelivery) -> Result<(Decision, Option<DeliveryId>)> {
        let stored = self.0.writer.ingest(delivery).await.map_err(|e| match e {
            WriteError::Full => {
                Error::Overloaded("too many webhooks at once; retry shortly".into())
            }
            e => Error::Unavailable(e.to_string()),
        })?;
        Ok(match stored {
            writer::Decision::Queued(id) => (Decision::queued, Some(id)),
            writer::Decision::Duplicate(id) => (Decision::duplicate, Some(id)),
            writer::Decision::Deleted(id) => (Decision::deleted, Some(id)),
            writer::Decision::NoRoute => (Decision::no_route, None),
        })
    }

    /// Checks Chatwoot's signature. Which secrets a webhook must be signed with is decided by the relay's
    /// settings and the inbox it is routed by, never by the body's other fields (an account id a stranger
    /// writes, leaves out or spells as a string): the inbox's route's own secret, else `CHATGOWA_CHATWOOT_SECRET`,
    /// and the webhook secrets of the linked accounts that have the inbox. An inbox with none of these, or a
    /// webhook without an inbox, must be signed with any secret the relay knows. Only a relay that knows no
    /// secret at all, and is not linking the accounts the environment names, takes unsigned webhooks (and says
    /// so: [`Intake::signatures_required`]).
    fn check_signature(&self, headers: &HeaderMap, body: &[u8], payload: &Payload) -> Result<()> {
        let keys = self.signing_keys(payload.inbox_id);
        if keys.is_empty() && self.0.linked.is_linking() {
            tracing::info!(event = payload.event, inbox_id = ?payload.inbox_id, "webhook refused: the Chatwoot account is not linked yet");
            return Err(Error::Unauthorized(
                "the Chatwoot account of CHATGOWA_CHATWOOT_* is not linked yet: webhooks are refused until the \
                 relay knows the secret they are signed with"
                    .into(),
            ));
        }
        if keys.is_empty() {
            self.0.open_door.warn(
                "unsigned_webhooks",
                "an unsigned webhook was accepted: anyone who can reach this port can send WhatsApp messages in \
                 the business's name; link the Chatwoot account and register its webhook, or set \
                 CHATGOWA_CHATWOOT_SECRET",
            );
            return Ok(());
        }
        let secrets: Vec<Secret<String>> = keys.iter().map(|(_, s)| s.clone()).collect();
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let verified = signature::verify(
            &secrets,
            text("x-chatwoot-timestamp"),
            text("x-chatwoot-signature"),
            body,
            // Chatwoot's time, once its clock is known: a relay clock minutes off refuses no real webhook.
            self.0.linked.clock().chatwoot_now().div_euclid(1000),
        );
        let linked = &self.0.linked;
        if matches!(verified, Ok(_) | Err(signature::SignatureError::Stale))
            && let Some(ts) = text("x-chatwoot-timestamp").and_then(|t| t.trim().parse().ok())
        {
            linked.clock().observe_signed(ts, crate::store::now_ms());
        }
        match verified {
            Ok(n) => {
                if let Some(account) = keys[n].0 {
                    linked.record(account, true);
                }
                Ok(())
            }
            Err(e) => {
                // For the reachability check: a linked account whose webhook arrives signed wrongly.
                let account = payload
                    .account_id
                    .filter(|a| keys.iter().any(|(k, _)| *k == Some(*a)));
                if let Some(account) = account {
                    linked.record(account, false);
                }
                tracing::info!(event = payload.event, inbox_id = ?payload.inbox_id, problem = %e, "webhook refused");
                Err(Error::Unauthorized(e.to_string()))
            }
        }
    }

    /// The secrets a webhook for `inbox_id` may be signed with, each with its linked account (see
    /// [`Intake::check_signature`]); empty only when the relay knows no secret.
    fn signing_keys(&self, inbox_id: Option<InboxId>) -> Vec<(Option<i64>, Secret<String>)> {
        let own = inbox_id
            .and_then(|inbox_id| self.0.dispatcher.route(inbox_id))
            .and_then(|route| route.chatwoot_secret.as_deref().map(config::secrets));
        let mut keys: Vec<_> = own
            .unwrap_or_else(|| self.0.chatwoot_secrets.clone())
            .into_iter()
            .map(|secret| (None, secret))
            .collect();
        if let Some(inbox_id) = inbox_id {
            let linked = self.0.linked.secrets(Some(inbox_id.0));
            keys.extend(linked.into_iter().map(|(a, s)| (Some(a), s)));
        }
        if keys.is_empty() {
            keys = self.known_keys();
        }
        keys
    }

    /// Every secret the relay knows: the linked accounts', `CHATGOWA_CHATWOOT_SECRET` and the routes' own.
    fn known_keys(&self) -> Vec<(Option<i64>, Secret<String>)> {
        let linked = self.0.linked.secrets(None).into_iter();
        let routes = self.0.dispatcher.routes();
        let own = routes
            .values()
            .filter_map(|route| route.chatwoot_secret.as_deref())
            .flat_map(config::secrets);
        linked
            .map(|(a, s)| (Some(a), s))
            .chain(self.0.chatwoot_secrets.iter().cloned().map(|s| (None, s)))
            .chain(own.map(|s| (None, s)))
            .collect()
    }

    /// Whether webhooks must be signed: false only while the relay knows no Chatwoot secret at all (and links no
    /// account of the environment), when
    /// anyone who can reach the webhook can send WhatsApp messages in the business's name.
    pub fn signatures_required(&self) -> bool {
        self.0.linked.is_linking() || !self.known_keys().is_empty()
    }
}

/// Refuses what is not JSON, and what a Chatgowa relay sent: a route that points back at a relay would make
/// each webhook come back without end.
fn check_headers(headers: &HeaderMap) -> Result<()> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|ct| ct.to_str().unwrap_or_default());
    if !content_type.is_some_and(is_json) {
        return Err(Error::UnsupportedMediaType(
            "webhooks must be sent as application/json".into(),
        ));
    }
    if headers.contains_key("x-chatgowa-delivery") {
        tracing::warn!(
            "webhook refused: it was sent by a Chatgowa relay (a route points back at a relay)"
        );
        return Err(Error::Invalid {
            field: None,
            message: "this webhook was sent by a Chatgowa relay (X-Chatgowa-Delivery): a route points back at \
                      a relay; point it at GoWA"
                .into(),
        });
    }
    Ok(())
}

/// `application/json` or `…+json`, parameters allowed.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::is_json;

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/ld+json",
        ] {
            assert!(is_json(ok), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "",
        ] {
            assert!(!is_json(bad), "{bad}");
        }
    }
}
