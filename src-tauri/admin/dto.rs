//! Wire types of the admin API, camelCase as in the TypeScript version; the same on HTTP and IPC.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::ids::{InboxId, RouteId};
use crate::store::{self, routes};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    pub id: RouteId,
    pub inbox_id: InboxId,
    pub webhook_url: String,
    pub name: Option<String>,
    pub enabled: bool,
    /// Whether a GoWA secret is set; the secret itself is never sent back.
    pub has_secret: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl From<routes::Route> for Route {
    fn from(r: routes::Route) -> Self {
        Self {
            id: r.id,
            inbox_id: r.inbox_id,
            webhook_url: r.webhook_url,
            name: r.name,
            enabled: r.enabled,
            has_secret: r.secret.is_some(),
            created_at: store::to_rfc3339(r.created_at),
            updated_at: store::to_rfc3339(r.updated_at),
        }
    }
}

/// Body of `POST /admin/routes` and `PUT /admin/routes/:id`. Fields stay raw JSON so that validation can say
/// exactly which field is wrong; for updates an absent field is kept, `null` clears `name` or `secret`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteInput {
    #[serde(default, deserialize_with = "present")]
    pub inbox_id: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub webhook_url: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub name: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub enabled: Option<Value>,
    /// Write-only GoWA secret (`X-Hub-Signature-256`).
    #[serde(default, deserialize_with = "present")]
    pub secret: Option<Value>,
}

/// `Some(value)` whenever the key is present, `null` included (serde's `Option` would fold `null` into `None`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RoutesBody {
    pub routes: Vec<Route>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RouteBody {
    pub route: Route,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SuccessBody {
    pub success: bool,
}
