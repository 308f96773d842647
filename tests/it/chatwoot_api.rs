//! A Chatwoot REST API stand-in on `127.0.0.1:0`, as strict as `tests/fixtures/chatwoot-api/README.md`: the
//! `api_access_token` header, 401 for a wrong token or an account the user is not in, administrator-only
//! webhooks, inbox changes and secrets, `payload` wrappers, integer ids, 422 for a webhook URL taken in the
//! account, JSON bodies only. It posts signed webhooks as Chatwoot does (the typing indicator fires
//! `conversation_typing_on` to the account's subscribed webhooks).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use chatgowa_lib::relay::signature;

/// Events an account webhook may subscribe to (without `ENABLE_INBOX_EVENTS`).
const EVENTS: [&str; 10] = [
    "conversation_created",
    "conversation_status_changed",
    "conversation_updated",
    "conversation_typing_on",
    "conversation_typing_off",
    "message_created",
    "message_updated",
    "contact_created",
    "contact_updated",
    "webwidget_triggered",
];

#[derive(Debug, Clone)]
pub struct Hook {
    pub id: i64,
    pub account: i64,
    pub url: String,
    pub name: String,
    pub subscriptions: Vec<String>,
    pub secret: String,
}

/// A message as Chatwoot keeps it.
#[derive(Debug, Clone)]
pub struct Message {
    pub account: i64,
    pub conversation: i64,
    pub id: i64,
    pub content: String,
    pub private: bool,
    /// `sent`, `delivered`, `read`, `failed`.
    pub status: String,
    pub external_error: String,
    pub in_reply_to: Option<i64>,
    /// 0 incoming, 1 outgoing (as the REST API gives it).
    pub kind: i64,
    /// `WAID:…` for what GoWA mirrored from WhatsApp.
    pub source_id: Option<String>,
    pub attachments: Vec<Value>,
    /// Unix seconds.
    pub created_at: i64,
    /// Deleted by an agent: Chatwoot keeps the row, with `content_attributes.deleted`.
    pub deleted: bool,
}

#[derive(Debug, Clone)]
pub struct Inbox {
    pub account: i64,
    pub id: i64,
    pub name: String,
    pub channel_type: String,
    pub webhook_url: String,
}

/// How the stand-in misbehaves, if at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// A web page on every path (a proxy's login page, the dashboard URL given for the API).
    Html,
    /// 500 on every path.
    Broken,
    /// Every call refused with this status, as Chatwoot or what stands in front of it answers it: 401 (the token
    /// revoked for a while), 429 (Rack::Attack's throttle), 502 or 503 (the proxy while Rails restarts).
    Refusing(u16),
}

#[derive(Debug)]
pub struct World {
    /// token → (user name, account → role)
    users: BTreeMap<String, (String, BTreeMap<i64, &'static str>)>,
    accounts: BTreeMap<i64, String>,
    pub inboxes: Vec<Inbox>,
    pub hooks: Vec<Hook>,
    /// (account, display id, inbox id)
    conversations: Vec<(i64, i64, i64)>,
    /// Messages written in conversations (agents' replies, private notes).
    pub messages: Vec<Message>,
    /// When each conversation (account, id) last changed, unix seconds.
    updated: BTreeMap<(i64, i64), i64>,
    pub mode: Mode,
    /// Calls are carried out at once and answered this much later (a slow Chatwoot: past the caller's timeout the
    /// answer is lost, the work done all the same).
    pub answer_after: Duration,
    /// Whether webhooks are posted at all (false: Chatwoot cannot reach the relay).
    pub deliver: bool,
    /// Sign webhooks with this instead of the webhook's secret.
    pub wrong_secret: Option<String>,
    /// Private notes whose answer is lost on the way back (a proxy in front times out with a 504 page): stored
    /// all the same.
    pub lose_note_answers: usize,
    /// Seconds Chatwoot's clock is ahead of this machine's (negative: behind): its `Date` headers, timestamps,
    /// `created_at` and webhook signatures all follow it.
    pub clock_offset: i64,
    next_id: i64,
    /// Method and path of every request, in order.
    pub calls: Vec<String>,
    /// How the webhook sender loses, twins and reorders webhooks (nothing of that by default).
    pub sender: Sender,
}

/// Chatwoot's webhook sender as it behaves on a busy installation: each webhook is a Sidekiq job posted once with a
/// 5 s timeout and never again; a job enqueued twice posts twins (a new delivery id each); jobs run out of order
/// within a jitter; a webhook can be lost on its way (a tunnel blip). Which webhook meets which fate is a function
/// of the seed and the webhook (its message's content, its event, how many times it fired before), never of the
/// order webhooks happen to fire in.
#[derive(Debug, Clone, Default)]
pub struct Sender {
    pub seed: u64,
    /// Per mille of webhooks lost in transit.
    pub lost: u64,
    /// Per mille of webhooks posted twice.
    pub twins: u64,
    /// Up to this long before a webhook is posted.
    pub jitter: Duration,
    fired: BTreeMap<(String, String), u64>,
    /// What became of each webhook.
    pub story: Arc<Mutex<Vec<Fate>>>,
}

/// What became of one webhook: its message id, event, the relay's answer (0: none, `lost`: not posted), and
/// when.
pub type Fate = (i64, String, String, Instant);

impl Sender {
    /// What happens to the next webhook of `event` for a message with `content`: lost, or posted after a delay,
    /// once or twice.
    fn fate(&mut self, event: &str, content: &str) -> Option<(Duration, bool)> {
        let nth = self
            .fired
            .entry((event.to_owned(), content.to_owned()))
            .or_default();
        *nth += 1;
        let mut dice =
            crate::promise::schedule::Rng::keyed(self.seed, &format!("{event}/{content}/{nth}"));
        if dice.chance(self.lost) {
            return None;
        }
        let jitter = u64::try_from(self.jitter.as_millis()).unwrap_or(0);
        Some((
            Duration::from_millis(dice.below(jitter + 1)),
            dice.chance(self.twins),
        ))
    }
}

#[derive(Clone)]
pub struct ChatwootApi {
    pub base: String,
    world: Arc<Mutex<World>>,
}

/// The administrator's token of the stand-in's accounts 1 and 2.
pub const ADMIN_TOKEN: &str = "cw-admin-token-Zq81";
/// An agent's token (account 1).
pub const AGENT_TOKEN: &str = "cw-agent-token-Lp02";

impl ChatwootApi {
    /// Accounts 1 ("Toko Bandung") and 2 ("Klinik Sehat"), administered by [`ADMIN_TOKEN`]; account 1 has an API
    /// inbox 7 and a website inbox 8 and a conversation 41 in inbox 7; account 2 has an API inbox 9.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut users = BTreeMap::new();
        users.insert(
            ADMIN_TOKEN.to_owned(),
            (
                "Ana Admin".to_owned(),
                BTreeMap::from([(1, "administrator"), (2, "administrator")]),
            ),
        );
        users.insert(
            AGENT_TOKEN.to_owned(),
            ("Budi Agent".to_owned(), BTreeMap::from([(1, "agent")])),
        );
        let inbox = |account, id, name: &str, channel: &str| Inbox {
            account,
            id,
            name: name.into(),
            channel_type: channel.into(),
            webhook_url: String::new(),
        };
        let world = World {
            users,
            accounts: BTreeMap::from([(1, "Toko Bandung".into()), (2, "Klinik Sehat".into())]),
            inboxes: vec![
                inbox(1, 7, "WhatsApp Toko", "Channel::Api"),
                inbox(1, 8, "Website", "Channel::WebWidget"),
                inbox(2, 9, "WhatsApp Klinik", "Channel::Api"),
            ],
            hooks: Vec::new(),
            conversations: vec![(1, 41, 7)],
            messages: Vec::new(),
            updated: BTreeMap::new(),
            mode: Mode::Normal,
            answer_after: Duration::ZERO,
            deliver: true,
            wrong_secret: None,
            clock_offset: 0,
            lose_note_answers: 0,
            next_id: 100,
            calls: Vec::new(),
            sender: Sender::default(),
        };
        let world = Arc::new(Mutex::new(world));
        let app = Router::new().fallback(answer).with_state(world.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base, world }
    }

    /// Reads or changes the stand-in's state.
    pub fn with<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        f(&mut self.world.lock().unwrap())
    }

    pub fn hooks(&self) -> Vec<Hook> {
        self.with(|w| w.hooks.clone())
    }

    /// Adds a webhook as an admin would in Chatwoot's settings; returns its secret.
    pub fn add_hook(&self, account: i64, url: &str, subscriptions: &[&str]) -> String {
        self.with(|w| {
            let hook = w.new_hook(
                account,
                url,
                "Made by hand",
                subscriptions.iter().map(|s| (*s).to_owned()).collect(),
            );
            let secret = hook.secret.clone();
            w.hooks.push(hook);
            secret
        })
    }
}

/// Links `relay` to account 1 of `chatwoot` through the admin API, with the relay's own address as the public URL,
/// and registers the webhook; returns the link's id.
pub async fn link_account(relay: &crate::support::TestRelay, chatwoot: &ChatwootApi) -> i64 {
    link_account_number(relay, chatwoot, 1).await
}

/// [`link_account`] for account `account` (1 or 2).
pub async fn link_account_number(
    relay: &crate::support::TestRelay,
    chatwoot: &ChatwootApi,
    account: i64,
) -> i64 {
    let (status, body) = relay
        .admin
        .post_json(
            "/admin/chatwoot/links",
            json!({"url": chatwoot.base, "accountId": account, "token": ADMIN_TOKEN}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let link = body["link"]["id"].as_i64().unwrap();
    let public = format!("{}/webhook", relay.base);
    relay
        .admin
        .put_json("/admin/chatwoot/public-url", json!({"url": public}))
        .await;
    let (status, body) = relay
        .admin
        .post_json(&format!("/admin/chatwoot/links/{link}/webhook"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    link
}

/// Makes every linked account of `db` look linked, and last caught up with, `hours` ago (the office PC was off
/// since): catching up then looks back that far.
pub async fn linked_hours_ago(db: &chatgowa_lib::store::Db, hours: i64) {
    let at = chrono::Utc::now().timestamp_millis() - hours * 3600 * 1000;
    crate::support::execute(
        db,
        &format!("UPDATE chatwoot_links SET created_at = {at}, caught_up_at = {at}"),
    )
    .await;
}

impl Message {
    /// An agent's reply in a conversation of account 1, written now.
    /// Its `content_attributes`, as the webhooks and the API show them.
    fn attributes(&self) -> Value {
        let mut attributes = json!({});
        if !self.external_error.is_empty() {
            attributes["external_error"] = json!(self.external_error);
        }
        if let Some(parent) = self.in_reply_to {
            attributes["in_reply_to"] = json!(parent);
        }
        if self.deleted {
            attributes["deleted"] = json!(true);
        }
        attributes
    }

    pub fn reply(conversation: i64, content: &str) -> Self {
        Self {
            account: 1,
            conversation,
            id: 0,
            content: content.into(),
            private: false,
            status: "sent".into(),
            external_error: String::new(),
            in_reply_to: None,
            kind: 1,
            source_id: None,
            attachments: Vec::new(),
            created_at: chrono::Utc::now().timestamp(),
            deleted: false,
        }
    }
}

impl World {
    /// Chatwoot's clock, unix seconds.
    fn now(&self) -> i64 {
        chrono::Utc::now().timestamp() + self.clock_offset
    }

    fn next(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    fn new_hook(
        &mut self,
        account: i64,
        url: &str,
        name: &str,
        subscriptions: Vec<String>,
    ) -> Hook {
        let id = self.next();
        Hook {
            id,
            account,
            url: url.into(),
            name: name.into(),
            subscriptions,
            secret: format!("cw-generated-secret-{id}-Xk7"),
        }
    }

    pub fn remove_conversations(&mut self) {
        self.conversations.clear();
    }

    /// Adds a conversation of `account` in `inbox`.
    pub fn add_conversation(&mut self, account: i64, id: i64, inbox: i64) {
        self.conversations.push((account, id, inbox));
    }

    /// The inbox of conversation `conversation` of `account`.
    pub fn conversation_inbox(&self, account: i64, conversation: i64) -> i64 {
        self.inbox_of(account, conversation).map_or(0, |i| i.id)
    }

    fn inbox_of(&self, account: i64, conversation: i64) -> Option<&Inbox> {
        let &(_, _, inbox) = self
            .conversations
            .iter()
            .find(|(a, c, _)| *a == account && *c == conversation)?;
        self.inboxes.iter().find(|i| i.id == inbox)
    }

    /// A message's webhook body, as Chatwoot's `message_created` / `message_updated` carry it.
    fn message_body(&self, event: &str, m: &Message) -> Value {
        let inbox = self.inbox_of(m.account, m.conversation).cloned().unwrap();
        let attributes = m.attributes();
        json!({
            "event": event,
            "id": m.id,
            "content": m.content,
            "content_type": "text",
            "content_attributes": attributes,
            "message_type": if m.kind == 1 { "outgoing" } else { "incoming" },
            "private": m.private,
            "status": m.status,
            "source_id": m.source_id,
            "created_at": "2026-12-01T10:00:00.000Z",
            "sender": {"id": 5, "name": "Ana Admin", "type": "user"},
            "account": {"id": m.account, "name": self.accounts[&m.account]},
            "inbox": {"id": inbox.id, "name": inbox.name},
            "attachments": m.attachments,
            "conversation": {
                "id": m.conversation,
                "inbox_id": inbox.id,
                "channel": inbox.channel_type,
                "account": {"id": m.account, "name": self.accounts[&m.account]},
                "meta": {"sender": {"id": 77, "name": "Ibu Maria", "phone_number": "+6281234567890",
                                    "identifier": null, "custom_attributes": {}}},
            },
        })
    }

    /// Two replies in conversation `conversation` that agents wrote two hours ago (a minute apart) while nothing
    /// reached the relay; returns their ids.
    pub fn replies_two_hours_ago(&mut self, conversation: i64, texts: [&str; 2]) -> (i64, i64) {
        let deliver = std::mem::replace(&mut self.deliver, false);
        let two_hours_ago = chrono::Utc::now().timestamp() - 7200;
        let mut ids = [0; 2];
        for (n, text) in texts.iter().enumerate() {
            let mut m = Message::reply(conversation, text);
            m.created_at = two_hours_ago + 60 * i64::try_from(n).unwrap_or(0);
            ids[n] = self.add_message(m);
        }
        self.deliver = deliver;
        (ids[0], ids[1])
    }

    /// Posts `event` for message `m` again (a webhook Chatwoot sends late, or twice).
    pub fn fire_again(&mut self, event: &str, m: &Message) {
        self.fire(event, m);
    }

    /// The token stops working (revoked, or its user removed).
    pub fn revoke(&mut self, token: &str) {
        self.users.remove(token);
    }

    /// Posts `event` for message `m` to the account's webhooks subscribed to it (when delivering), as the sender
    /// decides.
    fn fire(&mut self, event: &str, m: &Message) {
        let story = self.sender.story.clone();
        // The story names a deletion apart from the message's other updates.
        let told = if m.deleted && event == "message_updated" {
            "message_deleted"
        } else {
            event
        };
        if !self.deliver {
            story.lock().unwrap().push((
                m.id,
                told.to_owned(),
                "not posted".into(),
                Instant::now(),
            ));
            return;
        }
        let Some((delay, twins)) = self.sender.fate(event, &m.content) else {
            story
                .lock()
                .unwrap()
                .push((m.id, told.to_owned(), "lost".into(), Instant::now()));
            return;
        };
        let targets: Vec<(String, String)> = self
            .hooks
            .iter()
            .filter(|h| h.account == m.account && h.subscriptions.iter().any(|s| s == event))
            .map(|h| {
                (
                    h.url.clone(),
                    self.wrong_secret
                        .clone()
                        .unwrap_or_else(|| h.secret.clone()),
                )
            })
            .collect();
        let body = self.message_body(event, m).to_string();
        for _ in 0..if twins { 2 } else { 1 } {
            let (targets, body, offset) = (targets.clone(), body.clone(), self.clock_offset);
            let (story, id, event) = (story.clone(), m.id, told.to_owned());
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                for answer in post_webhooks(targets, body, offset).await {
                    let at = Instant::now();
                    story.lock().unwrap().push((id, event.clone(), answer, at));
                }
            });
        }
    }

    /// Does `change` with its webhooks lost on the way (Chatwoot posts them, the relay never gets them).
    pub fn unposted<T>(&mut self, change: impl FnOnce(&mut Self) -> T) -> T {
        let deliver = std::mem::replace(&mut self.deliver, false);
        let done = change(self);
        self.deliver = deliver;
        done
    }

    /// An agent writes a reply in a conversation: Chatwoot stores it and fires `message_created`. Returns its id.
    pub fn agent_replies(&mut self, account: i64, conversation: i64, content: &str) -> i64 {
        self.add_message(Message {
            account,
            ..Message::reply(conversation, content)
        })
    }

    /// Adds a message as Chatwoot stores it (and fires `message_created` when delivering). Returns its id.
    pub fn add_message(&mut self, mut m: Message) -> i64 {
        m.id = self.next();
        m.created_at += self.clock_offset;
        let id = m.id;
        self.touch(m.account, m.conversation);
        self.fire("message_created", &m);
        self.messages.push(m);
        id
    }

    fn touch(&mut self, account: i64, conversation: i64) {
        self.updated.insert((account, conversation), self.now());
    }

    /// The dashboard's Retry on a failed message: the status goes back to `sent`, `message_updated` fires, and
    /// nothing is sent (chatwoot#15918).
    pub fn press_retry(&mut self, message: i64) {
        let m = self.messages.iter_mut().find(|m| m.id == message).unwrap();
        assert_eq!(m.status, "failed", "Retry shows only on a failed message");
        m.status = "sent".into();
        m.external_error.clear();
        let m = m.clone();
        self.fire("message_updated", &m);
    }

    /// An agent deletes a message: Chatwoot replaces its content and fires `message_updated` with
    /// `content_attributes.deleted`.
    pub fn delete_message(&mut self, message: i64) {
        self.update_message(message, |m| {
            m.deleted = true;
            m.content = "This message was deleted".into();
        });
    }

    /// An agent edits a message: its content changes, `message_updated` is fired.
    pub fn edit_message(&mut self, message: i64, content: &str) {
        self.update_message(message, |m| m.content = content.into());
    }

    fn update_message(&mut self, message: i64, change: impl FnOnce(&mut Message)) {
        let m = self.messages.iter_mut().find(|m| m.id == message).unwrap();
        change(m);
        let m = m.clone();
        self.fire("message_updated", &m);
    }

    pub fn message(&self, id: i64) -> Message {
        self.messages.iter().find(|m| m.id == id).cloned().unwrap()
    }

    /// Private notes threaded under `message`.
    pub fn notes_under(&self, message: i64) -> Vec<Message> {
        self.messages
            .iter()
            .filter(|m| m.private && m.in_reply_to == Some(message))
            .cloned()
            .collect()
    }
}

type Answer = Result<Response, Refusal>;

/// A JSON error answer.
pub struct Refusal(StatusCode, Value);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, axum::Json(self.1)).into_response()
    }
}

fn error(status: StatusCode, body: Value) -> Refusal {
    Refusal(status, body)
}

fn ok(body: Value) -> Answer {
    Ok(axum::Json(body).into_response())
}

async fn answer(
    State(world): State<Arc<Mutex<World>>>,
    method: Method,
    uri: Uri,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (response, after) = {
        let mut w = world.lock().unwrap();
        let response = answer_now(&mut w, &method, &uri, &query, &headers, &body);
        (response, w.answer_after)
    };
    if !after.is_zero() {
        tokio::time::sleep(after).await;
    }
    response
}

fn answer_now(
    w: &mut World,
    method: &Method,
    uri: &Uri,
    query: &BTreeMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    w.calls.push(format!("{method} {}", uri.path()));
    match w.mode {
        Mode::Html => {
            return (
                StatusCode::OK,
                [("content-type", "text/html; charset=utf-8")],
                "<!DOCTYPE html><html><body>Sign in</body></html>",
            )
                .into_response();
        }
        Mode::Broken => {
            return error(StatusCode::INTERNAL_SERVER_ERROR, json!({"error": "boom"}))
                .into_response();
        }
        Mode::Refusing(status) => return refusal(status),
        Mode::Normal => {}
    }
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let result = route(w, method, &segments, query, headers, body);
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    // Chatwoot's clock, as every HTTP answer carries it.
    let at = std::time::UNIX_EPOCH + Duration::from_secs(w.now().unsigned_abs());
    let date = httpdate::fmt_http_date(at).parse().unwrap();
    response
        .headers_mut()
        .insert(axum::http::header::DATE, date);
    response
}

/// What Chatwoot, or the proxy in front of it, answers when it refuses every call with `status`.
fn refusal(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap();
    match status {
        401 => error(code, json!({"error": "Invalid Access Token"})).into_response(),
        // Rack::Attack's throttled answer.
        429 => (code, [("content-type", "text/plain")], "Retry later\n").into_response(),
        _ => (
            code,
            [("content-type", "text/html")],
            format!("<html><head><title>{status}</title></head><body><center><h1>{status}</h1></center></body></html>"),
        )
            .into_response(),
    }
}

fn route(
    w: &mut World,
    method: &Method,
    segments: &[&str],
    query: &BTreeMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Answer {
    let (name, roles) = user(w, headers)?;
    match (method.as_str(), segments) {
        ("GET", ["api", "v1", "profile"]) => {
            let accounts: Vec<Value> = roles
                .iter()
                .map(|(id, role)| json!({"id": id, "name": w.accounts[id], "role": role, "status": "active"}))
                .collect();
            let token = headers["api_access_token"].to_str().unwrap();
            ok(json!({"id": 5, "name": name, "access_token": token, "accounts": accounts}))
        }
        (_, ["api", "v1", "accounts", account, rest @ ..]) => {
            let account: i64 = account.parse().map_err(|_| not_found())?;
            let role = *roles.get(&account).ok_or_else(|| {
                error(
                    StatusCode::UNAUTHORIZED,
                    json!({"error": "You are not authorized to access this account"}),
                )
            })?;
            let admin = role == "administrator";
            let input = || json_body(headers, body);
            match (method.as_str(), rest) {
                ("GET", ["inboxes"]) => list_inboxes(w, account, admin),
                ("PATCH", ["inboxes", id]) => patch_inbox(w, account, admin, id, &input()?),
                ("GET", ["webhooks"]) => list_hooks(w, account, admin),
                ("POST", ["webhooks"]) => create_hook(w, account, admin, &input()?),
                ("PATCH", ["webhooks", id]) => update_hook(w, account, admin, id, &input()?),
                ("DELETE", ["webhooks", id]) => delete_hook(w, account, admin, id),
                ("GET", ["conversations"]) => list_conversations(w, account, query),
                ("GET", ["conversations", id, "messages"]) => list_messages(w, account, id, query),
                ("POST", ["conversations", id, "messages"]) => {
                    create_message(w, account, id, &input()?)
                }
                ("PATCH", ["conversations", id, "messages", message]) => {
                    update_message(w, account, id, message, &input()?)
                }
                ("POST", ["conversations", id, "toggle_typing_status"]) => {
                    typing(w, account, id, &input()?)
                }
                _ => Err(no_route()),
            }
        }
        _ => Err(no_route()),
    }
}

/// The token's user: 401 `Invalid Access Token` without a known token.
fn user(w: &World, headers: &HeaderMap) -> Result<(String, BTreeMap<i64, &'static str>), Refusal> {
    headers
        .get("api_access_token")
        .and_then(|v| v.to_str().ok())
        .and_then(|token| w.users.get(token))
        .cloned()
        .ok_or_else(|| {
            error(
                StatusCode::UNAUTHORIZED,
                json!({"error": "Invalid Access Token"}),
            )
        })
}

/// Rails' answer to a path it has no route for, asked for JSON.
fn no_route() -> Refusal {
    error(
        StatusCode::NOT_FOUND,
        json!({"status": 404, "error": "Not Found"}),
    )
}

fn not_found() -> Refusal {
    error(
        StatusCode::NOT_FOUND,
        json!({"error": "Resource could not be found"}),
    )
}

fn admin_only(admin: bool) -> Result<(), Refusal> {
    if admin {
        Ok(())
    } else {
        Err(error(
            StatusCode::UNAUTHORIZED,
            json!({"error": "You are not authorized to do this action"}),
        ))
    }
}

fn json_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, Refusal> {
    let is_json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if !is_json {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            json!({"error": "JSON only"}),
        ));
    }
    serde_json::from_slice(body)
        .map_err(|_| error(StatusCode::BAD_REQUEST, json!({"error": "bad JSON"})))
}

fn inbox_json(inbox: &Inbox, admin: bool) -> Value {
    let mut v = json!({
        "id": inbox.id,
        "name": inbox.name,
        "channel_type": inbox.channel_type,
        "webhook_url": if inbox.channel_type == "Channel::Api" { json!(inbox.webhook_url) } else { Value::Null },
        "inbox_identifier": format!("ident-{}", inbox.id),
    });
    if admin {
        v["secret"] = json!(format!("inbox-secret-{}", inbox.id));
        v["hmac_token"] = json!(format!("hmac-{}", inbox.id));
    }
    v
}

fn list_inboxes(w: &World, account: i64, admin: bool) -> Answer {
    let payload: Vec<Value> = w
        .inboxes
        .iter()
        .filter(|i| i.account == account)
        .map(|i| inbox_json(i, admin))
        .collect();
    ok(json!({"payload": payload}))
}

fn patch_inbox(w: &mut World, account: i64, admin: bool, id: &str, input: &Value) -> Answer {
    admin_only(admin)?;
    let id: i64 = id.parse().map_err(|_| not_found())?;
    let inbox = w
        .inboxes
        .iter_mut()
        .find(|i| i.account == account && i.id == id)
        .ok_or_else(not_found)?;
    if let Some(url) = input["channel"].get("webhook_url") {
        let url = url.as_str().ok_or_else(|| {
            error(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"message": "Webhook url is invalid"}),
            )
        })?;
        inbox.webhook_url = url.into();
    }
    ok(inbox_json(inbox, admin))
}

fn hook_json(hook: &Hook) -> Value {
    json!({
        "id": hook.id,
        "name": hook.name,
        "url": hook.url,
        "account_id": hook.account,
        "subscriptions": hook.subscriptions,
        "secret": hook.secret,
        "inbox": null,
    })
}

fn list_hooks(w: &World, account: i64, admin: bool) -> Answer {
    admin_only(admin)?;
    let hooks: Vec<Value> = w
        .hooks
        .iter()
        .filter(|h| h.account == account)
        .map(hook_json)
        .collect();
    ok(json!({"payload": {"webhooks": hooks}}))
}

/// URL and subscriptions of a webhook body, as Chatwoot validates them.
fn hook_fields(
    w: &World,
    account: i64,
    input: &Value,
    except: Option<i64>,
) -> Result<(String, Vec<String>), Refusal> {
    let invalid = |m: &str| error(StatusCode::UNPROCESSABLE_ENTITY, json!({"message": m}));
    let url = input["url"]
        .as_str()
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"));
    let url = url.ok_or_else(|| invalid("Url is invalid"))?;
    if w.hooks
        .iter()
        .any(|h| h.account == account && h.url == url && Some(h.id) != except)
    {
        return Err(invalid("Url has already been taken"));
    }
    let subscriptions: Vec<String> = input["subscriptions"]
        .as_array()
        .ok_or_else(|| invalid("Subscriptions is invalid"))?
        .iter()
        .map(|s| s.as_str().map(str::to_owned))
        .collect::<Option<_>>()
        .ok_or_else(|| invalid("Subscriptions is invalid"))?;
    if subscriptions.is_empty() || subscriptions.iter().any(|s| !EVENTS.contains(&s.as_str())) {
        return Err(invalid("Subscriptions is invalid"));
    }
    Ok((url.into(), subscriptions))
}

fn create_hook(w: &mut World, account: i64, admin: bool, input: &Value) -> Answer {
    admin_only(admin)?;
    let (url, subscriptions) = hook_fields(w, account, input, None)?;
    let name = input["name"].as_str().unwrap_or_default().to_owned();
    let hook = w.new_hook(account, &url, &name, subscriptions);
    let body = json!({"payload": {"webhook": hook_json(&hook)}});
    w.hooks.push(hook);
    ok(body)
}

fn update_hook(w: &mut World, account: i64, admin: bool, id: &str, input: &Value) -> Answer {
    admin_only(admin)?;
    let id: i64 = id.parse().map_err(|_| not_found())?;
    if !w.hooks.iter().any(|h| h.account == account && h.id == id) {
        return Err(not_found());
    }
    let (url, subscriptions) = hook_fields(w, account, input, Some(id))?;
    let hook = w.hooks.iter_mut().find(|h| h.id == id).unwrap();
    hook.url = url;
    hook.subscriptions = subscriptions;
    if let Some(name) = input["name"].as_str() {
        hook.name = name.into();
    }
    ok(json!({"payload": {"webhook": hook_json(hook)}}))
}

fn delete_hook(w: &mut World, account: i64, admin: bool, id: &str) -> Answer {
    admin_only(admin)?;
    let id: i64 = id.parse().map_err(|_| not_found())?;
    let before = w.hooks.len();
    w.hooks.retain(|h| !(h.account == account && h.id == id));
    if w.hooks.len() == before {
        return Err(not_found());
    }
    // Rails' `head :ok`.
    Ok(StatusCode::OK.into_response())
}

fn list_conversations(w: &World, account: i64, query: &BTreeMap<String, String>) -> Answer {
    let inbox: Option<i64> = query.get("inbox_id").and_then(|i| i.parse().ok());
    let within: Option<i64> = match query.get("updated_within") {
        None => None,
        Some(s) => Some(s.parse().map_err(|_| {
            error(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"message": "updated_within"}),
            )
        })?),
    };
    let now = w.now();
    let payload: Vec<Value> = w
        .conversations
        .iter()
        .filter(|(a, _, i)| *a == account && inbox.is_none_or(|want| want == *i))
        .filter(|(a, c, _)| {
            within.is_none_or(|s| w.updated.get(&(*a, *c)).is_some_and(|at| now - at <= s))
        })
        .map(|(_, id, inbox)| {
            json!({
                "id": id, "inbox_id": inbox, "account_id": account, "status": "open",
                "timestamp": w.updated.get(&(account, *id)).copied().unwrap_or(now),
                "meta": {"sender": {"id": 77, "name": "Ibu Maria", "phone_number": "+6281234567890",
                                    "identifier": null, "custom_attributes": {}}},
            })
        })
        .collect();
    ok(json!({"data": {"meta": {"all_count": payload.len()}, "payload": payload}}))
}

/// `GET …/conversations/:id/messages?after=`: up to 100 messages with a larger id, ascending, as the REST API
/// gives them (`message_type` an integer, `created_at` unix seconds).
fn list_messages(w: &World, account: i64, id: &str, query: &BTreeMap<String, String>) -> Answer {
    let conversation: i64 = id.parse().map_err(|_| not_found())?;
    let inbox = w.inbox_of(account, conversation).ok_or_else(not_found)?.id;
    let after: i64 = query.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
    let payload: Vec<Value> = w
        .messages
        .iter()
        .filter(|m| m.account == account && m.conversation == conversation && m.id > after)
        .take(100)
        .map(|m| {
            json!({
                "id": m.id, "content": m.content, "message_type": m.kind, "private": m.private,
                "status": m.status, "source_id": m.source_id,
                "content_attributes": m.attributes(),
                "sender": {"id": 5, "name": "Ana Admin", "type": "user"},
                "attachments": m.attachments, "created_at": m.created_at,
                "conversation_id": conversation, "inbox_id": inbox, "account_id": account,
            })
        })
        .collect();
    ok(json!({"meta": {"contact": {"id": 77}}, "payload": payload}))
}

/// `POST …/conversations/:id/messages`: only what the relay sends, a private note (threaded or not).
fn create_message(w: &mut World, account: i64, id: &str, input: &Value) -> Answer {
    let conversation: i64 = id.parse().map_err(|_| not_found())?;
    w.inbox_of(account, conversation).ok_or_else(not_found)?;
    let content = input["content"].as_str().filter(|c| !c.is_empty());
    let content = content.ok_or_else(|| {
        error(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"message": "content"}),
        )
    })?;
    if input["message_type"] != "outgoing" || input["private"] != true {
        return Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"message": "only private notes here"}),
        ));
    }
    let in_reply_to = match &input["content_attributes"]["in_reply_to"] {
        Value::Null => None,
        v => Some(v.as_i64().ok_or_else(|| {
            error(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"message": "in_reply_to"}),
            )
        })?),
    };
    let m = Message {
        account,
        conversation,
        id: w.next(),
        content: content.into(),
        private: true,
        status: "sent".into(),
        external_error: String::new(),
        in_reply_to,
        kind: 1,
        source_id: None,
        attachments: Vec::new(),
        created_at: w.now(),
        deleted: false,
    };
    w.touch(account, conversation);
    let body = w.message_body("message_created", &m);
    w.fire("message_created", &m);
    w.messages.push(m);
    if w.lose_note_answers > 0 {
        w.lose_note_answers -= 1;
        return Ok((
            StatusCode::GATEWAY_TIMEOUT,
            [("content-type", "text/html")],
            "<html><body><h1>504 Gateway Time-out</h1></body></html>",
        )
            .into_response());
    }
    ok(body)
}

/// `PATCH …/conversations/:id/messages/:id` with `{status, external_error}`: API-channel inboxes only (403
/// otherwise); `read` never goes back; fires `message_updated`.
fn update_message(w: &mut World, account: i64, id: &str, message: &str, input: &Value) -> Answer {
    let conversation: i64 = id.parse().map_err(|_| not_found())?;
    let message: i64 = message.parse().map_err(|_| not_found())?;
    let inbox = w.inbox_of(account, conversation).ok_or_else(not_found)?;
    if inbox.channel_type != "Channel::Api" {
        return Err(error(
            StatusCode::FORBIDDEN,
            json!({"error": "Only API inbox messages can be updated"}),
        ));
    }
    let status = input["status"]
        .as_str()
        .filter(|s| ["sent", "delivered", "read", "failed"].contains(s));
    let status = status.ok_or_else(|| {
        error(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"message": "status"}),
        )
    })?;
    let m = w
        .messages
        .iter_mut()
        .find(|m| m.account == account && m.conversation == conversation && m.id == message)
        .ok_or_else(not_found)?;
    if m.status == "read" && status != "read" {
        return Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"message": "a read message stays read"}),
        ));
    }
    m.status = status.into();
    if let Some(e) = input["external_error"].as_str() {
        m.external_error = e.into();
    }
    let m = m.clone();
    let body = w.message_body("message_updated", &m);
    w.fire("message_updated", &m);
    ok(body)
}

fn typing(w: &mut World, account: i64, id: &str, input: &Value) -> Answer {
    let id: i64 = id.parse().map_err(|_| not_found())?;
    let &(_, _, inbox) = w
        .conversations
        .iter()
        .find(|(a, c, _)| *a == account && *c == id)
        .ok_or_else(not_found)?;
    let event = match input["typing_status"].as_str() {
        Some("on") => "conversation_typing_on",
        Some("off") => "conversation_typing_off",
        _ => {
            return Err(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"message": "typing_status"}),
            ));
        }
    };
    if w.deliver {
        let body = json!({
            "event": event,
            "user": {"id": 5, "name": "Ana Admin", "type": "user"},
            "conversation": {"id": id, "inbox_id": inbox, "account": {"id": account, "name": w.accounts[&account]}},
            "is_private": false,
        });
        let targets: Vec<(String, String)> = w
            .hooks
            .iter()
            .filter(|h| h.account == account && h.subscriptions.iter().any(|s| s == event))
            .map(|h| {
                (
                    h.url.clone(),
                    w.wrong_secret.clone().unwrap_or_else(|| h.secret.clone()),
                )
            })
            .collect();
        tokio::spawn(post_webhooks(targets, body.to_string(), w.clock_offset));
    }
    Ok(StatusCode::OK.into_response())
}

/// Posts `body` to each `(url, secret)` as Chatwoot's webhook job does: signed, with a fresh delivery id.
/// Posts `body` to each target; the answers (a status, or what went wrong).
async fn post_webhooks(
    targets: Vec<(String, String)>,
    body: String,
    clock_offset: i64,
) -> Vec<String> {
    let http = crate::support::http_client();
    let mut answers = Vec::new();
    for (url, secret) in targets {
        // Chatwoot's webhook job gives up after 5 s, and is not run again.
        let ts = (chrono::Utc::now().timestamp() + clock_offset).to_string();
        let signature = signature::sign(&secret, &ts, body.as_bytes());
        let answer = http
            .post(url)
            .header("content-type", "application/json")
            .header(
                "x-chatwoot-delivery",
                format!("typing-{ts}-{}", rand::random::<u32>()),
            )
            .header("x-chatwoot-timestamp", ts)
            .header("x-chatwoot-signature", signature)
            .timeout(Duration::from_secs(5))
            .body(body.clone())
            .send()
            .await;
        answers.push(match answer {
            Ok(response) => response.status().as_u16().to_string(),
            Err(e) if e.is_timeout() => "timed out".into(),
            Err(_) => "no answer".into(),
        });
    }
    answers
}
