//! Inbound Chatwoot webhooks: read the routing fields, store the raw body durably, answer.
//!
//! A webhook is acknowledged only once its delivery is committed (or a deliberate decision not to queue it
//! was made); GoWA is never called from here.

pub mod payload;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::ids::{DeliveryId, InboxId};
use crate::metrics;
use crate::state::AppState;
use crate::store::deliveries::NewDelivery;
use crate::store::writer::{Decision, Writer};

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
    pub decision: metrics::Decision,
}

impl Receipt {
    fn new(
        decision: metrics::Decision,
        delivery_id: Option<DeliveryId>,
        inbox_id: Option<InboxId>,
    ) -> Self {
        let queued = decision == metrics::Decision::queued;
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
    State(state): State<AppState>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<Receipt>> {
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Error::PayloadTooLarge(format!(
            "body is larger than the limit of {} bytes (CHATGOWA_MAX_BODY)",
            state.config.max_body
        )),
        _ => Error::Invalid {
            field: None,
            message: rejection.body_text(),
        },
    });
    let result = match body {
        Ok(body) => accept(&state.writer, &headers, body).await,
        Err(err) => Err(err),
    };
    state.metrics.webhook(match &result {
        Ok(receipt) => receipt.decision,
        Err(Error::Unavailable(_)) => metrics::Decision::unavailable,
        Err(_) => metrics::Decision::rejected,
    });
    result.map(Json)
}

/// Validates, stores and decides; the service behind `POST /webhook`.
///
/// # Errors
/// `UnsupportedMediaType` / `Invalid` for a body that is not a JSON object, `Unavailable` when it could not be
/// stored (Chatwoot then shows the message as failed instead of it being lost silently).
pub async fn accept(writer: &Writer, headers: &HeaderMap, body: Bytes) -> Result<Receipt> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE)
        && !is_json(ct.to_str().unwrap_or_default())
    {
        return Err(Error::UnsupportedMediaType(
            "webhooks must be sent as application/json".into(),
        ));
    }
    let payload = payload::parse(&body).map_err(|e| Error::Invalid {
        field: None,
        message: e.to_string(),
    })?;
    let size = body.len();
    let Some(inbox_id) = payload.inbox_id else {
        tracing::info!(
            event = payload.event,
            bytes = size,
            decision = "no_inbox",
            "webhook"
        );
        return Ok(Receipt::new(metrics::Decision::no_inbox, None, None));
    };
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let delivery = NewDelivery {
        inbox_id,
        conversation_id: payload.conversation_id,
        event: payload.event.clone(),
        dedupe_key: text("x-chatwoot-delivery").filter(|k| !k.is_empty()),
        cw_timestamp: text("x-chatwoot-timestamp"),
        cw_signature: text("x-chatwoot-signature"),
        body,
    };
    let decision = writer
        .ingest(delivery)
        .await
        .map_err(|e| Error::Unavailable(e.to_string()))?;
    let (decision, delivery_id) = match decision {
        Decision::Queued(id) => (metrics::Decision::queued, Some(id)),
        Decision::Duplicate(id) => (metrics::Decision::duplicate, Some(id)),
        Decision::NoRoute => (metrics::Decision::no_route, None),
        Decision::RouteDisabled => (metrics::Decision::route_disabled, None),
    };
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
