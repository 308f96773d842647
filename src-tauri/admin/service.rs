//! Admin use-cases, one function each, called by the HTTP handlers (and the desktop commands). They validate
//! input, talk to the store and tell the delivery lanes when routes change; they know nothing of transports.

use serde_json::Value;

use super::dto::{self, RouteInput};
use crate::delivery::gowa::Target;
use crate::error::{Error, Result};
use crate::ids::{InboxId, RouteId};
use crate::state::AppState;
use crate::store::routes::{self, RouteFields};

pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_URL_CHARS: usize = 2048;
pub const MAX_SECRET_CHARS: usize = 256;

pub async fn list_routes(state: &AppState) -> Result<Vec<dto::Route>> {
    Ok(routes::list(&state.pool)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

pub async fn create_route(state: &AppState, input: RouteInput) -> Result<dto::Route> {
    let fields = validate(input, None)?;
    let route = routes::insert(&state.pool, &fields)
        .await
        .map_err(|e| conflict(e, fields.inbox_id))?;
    tracing::info!(route_id = %route.id, inbox_id = %route.inbox_id, "route created");
    state.dispatcher.routes_changed();
    Ok(route.into())
}

pub async fn update_route(state: &AppState, id: RouteId, input: RouteInput) -> Result<dto::Route> {
    let current = routes::find(&state.pool, id).await?.ok_or(not_found(id))?;
    let fields = validate(input, Some(current.into()))?;
    let route = routes::update(&state.pool, id, &fields)
        .await
        .map_err(|e| conflict(e, fields.inbox_id))?
        .ok_or(not_found(id))?;
    tracing::info!(route_id = %route.id, inbox_id = %route.inbox_id, "route updated");
    state.dispatcher.routes_changed();
    Ok(route.into())
}

pub async fn delete_route(state: &AppState, id: RouteId) -> Result<()> {
    if !routes::delete(&state.pool, id).await? {
        return Err(not_found(id));
    }
    tracing::info!(route_id = %id, "route deleted");
    state.dispatcher.routes_changed();
    Ok(())
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
        (Some(v), _) => webhook_url(&v)?,
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
        None => base.and_then(|b| b.secret),
    };
    Ok(RouteFields {
        inbox_id,
        webhook_url,
        name,
        enabled,
        secret,
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
            } else if s.chars().any(char::is_control) {
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
    fn update_keeps_absent_fields_and_null_clears() {
        let base = RouteFields {
            inbox_id: InboxId(7),
            webhook_url: "http://g/x".into(),
            name: Some("Shop".into()),
            enabled: true,
            secret: Some("k".into()),
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
