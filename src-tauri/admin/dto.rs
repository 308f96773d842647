//! Wire types of the admin API, camelCase as in the TypeScript version; the same on HTTP and IPC.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::glimpse::Glimpse;
use crate::delivery::gowa::{mask_password, problem};
use crate::ids::{DeliveryId, InboxId, RouteId};
use crate::store::attempts::{Attempt, Trigger};
use crate::store::deliveries::{DeliveryStatus, DeliverySummary, Totals};
use crate::store::unrouted_inboxes::UnroutedInbox;
use crate::store::{self, routes};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    pub id: RouteId,
    pub inbox_id: InboxId,
    /// The inbox's name in a linked Chatwoot account.
    pub inbox_name: Option<String>,
    /// With its password, if any, masked ([`crate::delivery::gowa::MASKED_PASSWORD`]).
    pub webhook_url: String,
    pub name: Option<String>,
    pub enabled: bool,
    /// Whether a GoWA secret is set; the secret itself is never sent back.
    pub has_secret: bool,
    /// Whether this inbox's webhooks must be signed with a Chatwoot secret of its own (never sent back).
    pub has_chatwoot_secret: bool,
    pub created_at: String,
    pub updated_at: String,
    /// Deliveries of this inbox waiting to be sent.
    pub pending: i64,
    /// Deliveries of this inbox that gave up (see retry-dead).
    pub dead: i64,
    /// The outcome of the inbox's latest attempt; `None` before the first one.
    pub health: Option<RouteHealth>,
    /// When the inbox's latest delivery went through.
    pub last_delivered_at: Option<String>,
}

impl Route {
    pub fn new(r: routes::Route, pending: i64, dead: i64, last: Option<DeliverySummary>) -> Self {
        Self {
            id: r.id,
            inbox_id: r.inbox_id,
            inbox_name: None,
            webhook_url: mask_password(&r.webhook_url),
            name: r.name,
            enabled: r.enabled,
            has_secret: r.secret.is_some(),
            has_chatwoot_secret: r.chatwoot_secret.is_some(),
            created_at: store::to_rfc3339(r.created_at),
            updated_at: store::to_rfc3339(r.updated_at),
            pending,
            dead,
            health: last.map(RouteHealth::from),
            last_delivered_at: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// The latest attempt succeeded.
    Ok,
    /// The latest attempt failed and will be retried.
    Failing,
    /// The latest attempt failed for good.
    Dead,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteHealth {
    pub state: HealthState,
    pub at: String,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    /// What went wrong, in one word ([`crate::delivery::gowa::problem`]).
    pub problem: Option<String>,
}

impl From<DeliverySummary> for RouteHealth {
    fn from(d: DeliverySummary) -> Self {
        let state = match d.status {
            DeliveryStatus::Delivered => HealthState::Ok,
            DeliveryStatus::Pending => HealthState::Failing,
            DeliveryStatus::Dead => HealthState::Dead,
        };
        Self {
            state,
            at: store::to_rfc3339(d.updated_at),
            problem: problem(d.last_status_code, d.last_error.as_deref()).map(Into::into),
            status_code: d.last_status_code,
            error: d.last_error,
        }
    }
}

/// A delivery in the log, without its body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub id: DeliveryId,
    pub inbox_id: InboxId,
    /// The inbox's name in a linked Chatwoot account.
    pub inbox_name: Option<String>,
    /// Found by catching up with Chatwoot: its webhook never arrived.
    pub recovered: bool,
    pub conversation_id: Option<i64>,
    pub event: String,
    /// Chatwoot's message id, for message events.
    pub message_id: Option<i64>,
    /// Repeats of this webhook that were dropped as duplicates.
    pub duplicates: i64,
    pub status: DeliveryStatus,
    pub attempts: i64,
    /// When the next attempt is due (pending deliveries only).
    pub next_attempt_at: Option<String>,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    /// What went wrong with the latest attempt, in one word ([`crate::delivery::gowa::problem`]).
    pub problem: Option<String>,
    pub received_at: String,
    pub updated_at: String,
    /// Body size in bytes.
    pub size: i64,
    /// The name of the route that serves the inbox.
    pub route_name: Option<String>,
    /// Who and what, from the stored webhook.
    #[serde(flatten)]
    pub about: Glimpse,
}

impl From<DeliverySummary> for Delivery {
    fn from(d: DeliverySummary) -> Self {
        Self {
            id: d.id,
            inbox_id: d.inbox_id,
            inbox_name: None,
            recovered: false,
            conversation_id: d.conversation_id,
            event: d.event,
            message_id: d.message_id,
            duplicates: d.duplicates,
            status: d.status,
            attempts: d.attempts,
            next_attempt_at: (d.status == DeliveryStatus::Pending)
                .then(|| store::to_rfc3339(d.next_attempt_at)),
            problem: problem(d.last_status_code, d.last_error.as_deref()).map(Into::into),
            last_status_code: d.last_status_code,
            last_error: d.last_error,
            received_at: store::to_rfc3339(d.received_at),
            updated_at: store::to_rfc3339(d.updated_at),
            size: d.size,
            route_name: None,
            about: Glimpse::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    pub attempt: i64,
    pub trigger: Trigger,
    pub started_at: String,
    pub duration_ms: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub response_snippet: Option<String>,
    /// No answer after the whole request was sent: GoWA may have sent the message.
    pub ambiguous: bool,
    /// What went wrong, in one word ([`crate::delivery::gowa::problem`]).
    pub problem: Option<String>,
}

impl From<Attempt> for AttemptView {
    fn from(a: Attempt) -> Self {
        Self {
            attempt: a.attempt,
            trigger: a.trigger,
            started_at: store::to_rfc3339(a.started_at),
            duration_ms: a.duration_ms,
            status_code: a.status_code,
            problem: problem(a.status_code, a.error.as_deref()).map(Into::into),
            error: a.error,
            response_snippet: a.response_snippet,
            ambiguous: a.ambiguous,
        }
    }
}

/// A delivery with its payload (as text; Chatwoot sends UTF-8 JSON) and every attempt.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryDetail {
    #[serde(flatten)]
    pub delivery: Delivery,
    pub payload: String,
    /// Every attempt, oldest first.
    pub attempt_log: Vec<AttemptView>,
    /// What a linked Chatwoot was told about this reply, oldest first.
    pub chatwoot: Vec<FeedbackView>,
}

/// One thing told to Chatwoot about a reply: `kind` is `mark_failed`, `note_dead`, `mark_sent`, `note_delayed`,
/// `note_delivered`, `note_late` (a recovered reply that went after later ones) or `resent` (Chatwoot's Retry); `status` is `pending`, `done` or `gave_up`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedbackView {
    pub kind: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub at: String,
}

impl From<crate::store::chatwoot_feedback::Feedback> for FeedbackView {
    fn from(f: crate::store::chatwoot_feedback::Feedback) -> Self {
        Self {
            kind: f.kind,
            status: f.status,
            attempts: f.attempts,
            last_error: f.last_error,
            at: store::to_rfc3339(f.updated_at),
        }
    }
}

/// Filters and page of the delivery log; all optional, as strings so that errors can name the field.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryQuery {
    pub status: Option<String>,
    pub route_id: Option<String>,
    pub inbox_id: Option<String>,
    pub conversation_id: Option<String>,
    /// A phone number (any spelling), a name or words of the message.
    pub q: Option<String>,
    /// One event, e.g. `message_created`.
    pub event: Option<String>,
    /// `true`: leave out the events GoWA ignores (typing indicators, conversation and contact changes).
    pub hide_ignored: Option<String>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
    pub limit: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveriesBody {
    pub deliveries: Vec<Delivery>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<DeliveryId>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DeliveryBody {
    pub delivery: DeliveryDetail,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RetriedBody {
    pub retried: usize,
    /// Of the deliveries asked for, those left as they were (not dead, or gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<usize>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DiscardedBody {
    pub discarded: usize,
}

/// Deliveries chosen in the log, for a bulk action.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IdsInput {
    pub ids: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Unrouted {
    pub inbox_id: InboxId,
    /// The inbox's name in a linked Chatwoot account.
    pub inbox_name: Option<String>,
    pub count: i64,
    pub first_seen: String,
    pub last_seen: String,
    pub last_event: String,
}

impl From<UnroutedInbox> for Unrouted {
    fn from(u: UnroutedInbox) -> Self {
        Self {
            inbox_id: u.inbox_id,
            inbox_name: None,
            count: u.count,
            first_seen: store::to_rfc3339(u.first_seen),
            last_seen: store::to_rfc3339(u.last_seen),
            last_event: u.last_event,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct UnroutedBody {
    pub unrouted: Vec<Unrouted>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub version: String,
    pub totals: Totals,
    /// Deliveries waiting (the same as `totals.pending`).
    pub queue_depth: i64,
    /// Age of the oldest pending delivery.
    pub oldest_pending_age_ms: Option<i64>,
    /// Delivered in the last 24 hours.
    pub delivered_last_day: i64,
    /// How long delivered deliveries are kept (the period `totals.delivered` and `duplicatesDropped` cover).
    pub retention_seconds: u64,
    /// How long dead deliveries are kept (the period `totals.dead` covers).
    pub dead_retention_seconds: u64,
    /// Repeats dropped as duplicates (of the deliveries still kept).
    pub duplicates_dropped: i64,
    pub routes: usize,
    pub unrouted_inboxes: i64,
    /// Whether webhooks must carry Chatwoot's signature; false while the relay knows no Chatwoot secret, when
    /// anyone who can reach the webhook can send WhatsApp messages in the business's name.
    pub webhooks_signed: bool,
    /// How far this computer's clock is behind Chatwoot's, in seconds (negative: ahead), as Chatwoot's API
    /// answers show it, else as the last hour's signed webhooks did; only when it is off by more than 30 s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock_skew_seconds: Option<i64>,
    /// Whether the relay reckons with Chatwoot's time (measured by its API): false when the offset was only
    /// seen on signed webhooks, which are refused once the clocks are more than 5 minutes apart.
    pub clock_reckoned: bool,
    /// Where Chatwoot posts, relative to the relay's address.
    pub webhook_path: String,
    /// The webhook's port when the admin API listens on an address of its own (`CHATGOWA_ADMIN_BIND`, the
    /// desktop app): the panel's own address is then not where Chatwoot must post.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_port: Option<u16>,
}

/// The outcome of sending a test event to a route's GoWA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestResult {
    pub ok: bool,
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    pub error: Option<String>,
    pub response_snippet: Option<String>,
    /// The route points at this machine, a link-local or a cloud metadata address: the answer shown may be
    /// another service's, not GoWA's.
    pub internal_target: bool,
    /// What went wrong, in one word ([`crate::delivery::gowa::problem`]).
    pub problem: Option<String>,
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
    /// Write-only Chatwoot webhook secret(s) of this inbox, comma-separated.
    #[serde(default, deserialize_with = "present")]
    pub chatwoot_secret: Option<Value>,
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

/// Body of `POST /admin/setup`: the setup link's token and the first admin password (no `Debug`: both are
/// secrets).
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetupInput {
    pub token: String,
    pub password: String,
}

/// `GET /admin/chatwoot`: the public webhook URL and the linked Chatwoot accounts (no token, no secret).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatwootBody {
    /// The URL Chatwoot must post to, once chosen.
    pub public_url: Option<String>,
    /// `env` (`CHATGOWA_PUBLIC_URL`, not changeable here) or `setting`.
    pub public_url_source: Option<String>,
    /// What the relay would use: its webhook listener's address on this computer's network.
    pub suggested_url: String,
    /// Whom the public URL's host can be reached by (`public`, `private`, `loopback`, `linkLocal`).
    pub public_url_reach: Option<String>,
    pub links: Vec<LinkView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkView {
    pub id: i64,
    /// Chatwoot's address.
    pub url: String,
    pub account_id: i64,
    pub account_name: String,
    /// Linked by `CHATGOWA_CHATWOOT_*`: linked again at every start.
    pub from_env: bool,
    pub webhook: Option<WebhookView>,
    /// When a webhook of this account last arrived with a valid signature (since the relay started).
    pub heard_at: Option<String>,
    /// The last catch-up with this account (since the relay started).
    pub caught_up: Option<CatchUpView>,
}

/// One catch-up: when, what went wrong if anything, how many replies were queued and held.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CatchUpView {
    pub at: String,
    pub error: Option<String>,
    pub queued: usize,
    pub held: usize,
}

/// A reply found by catching up, older than `CHATGOWA_CATCHUP_SEND_WITHIN`: waiting for "send now" or "discard".
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldView {
    pub id: i64,
    pub account_id: i64,
    pub inbox_id: InboxId,
    pub inbox_name: Option<String>,
    pub conversation_id: i64,
    pub message_id: i64,
    /// When the agent wrote it.
    pub written_at: String,
    /// The reply's text (what the customer would receive).
    pub content: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeldBody {
    pub held: Vec<HeldView>,
}

/// A held reply and what to do with it: `send` now, or discard.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldAction {
    #[serde(default)]
    pub id: i64,
    #[serde(default)]
    pub send: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookView {
    pub id: i64,
    pub url: String,
    /// Whether it posts to the current public URL.
    pub current: bool,
    /// Whether webhooks of this account are verified with its secret.
    pub verified: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct LinkBody {
    pub link: LinkView,
}

/// Body of `POST /admin/chatwoot/links`. Raw JSON fields, so that each can be named when wrong; no `Debug`: the
/// token is a secret.
#[derive(Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkInput {
    #[serde(default)]
    pub url: Option<Value>,
    #[serde(default)]
    pub account_id: Option<Value>,
    #[serde(default)]
    pub token: Option<Value>,
}

/// Body of `PUT /admin/chatwoot/public-url`; empty or `null` clears it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PublicUrlInput {
    #[serde(default)]
    pub url: Option<String>,
}

/// A link named by id, with what the action needs (IPC carries these in one body; HTTP in the path and query).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkAction {
    #[serde(default)]
    pub id: i64,
    /// Unlinking: remove the webhook from Chatwoot too.
    #[serde(default)]
    pub remove_webhook: bool,
    /// The reachability check: how long to wait for Chatwoot's webhook (1–30 s; 10 by default).
    #[serde(default)]
    pub wait_seconds: Option<u64>,
}

/// An inbox of a linked account.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InboxView {
    pub link_id: i64,
    pub account_id: i64,
    pub id: i64,
    pub name: String,
    pub channel_type: String,
    /// The route that serves it, if any.
    pub route_id: Option<RouteId>,
    /// An API inbox whose own callback posts to a GoWA that a route also delivers to: every reply would be
    /// sent twice.
    pub double_delivery: bool,
    /// Where an API inbox posts its own events (scheme, host and port only).
    pub own_webhook: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InboxesBody {
    pub inboxes: Vec<InboxView>,
    /// Linked accounts whose inboxes could not be read, and why.
    pub problems: Vec<LinkProblem>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkProblem {
    pub link_id: i64,
    pub code: String,
    pub message: String,
}

/// Body of `POST /admin/chatwoot/inboxes/clear-webhook`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InboxAction {
    #[serde(default)]
    pub link_id: i64,
    #[serde(default)]
    pub inbox_id: i64,
}

/// The outcome of the reachability check.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckResult {
    pub ok: bool,
    /// `reached`, or the step that failed: `no_public_url`, `webhook_missing`, `api`, `no_conversation`,
    /// `refused` (it arrived with a wrong signature), `timeout`.
    pub step: String,
    pub message: String,
    pub reached_at: Option<String>,
    /// From asking Chatwoot to the webhook's arrival.
    pub latency_ms: Option<u64>,
}
