//! Chatwoot's REST API, as far as the relay uses it: who a token belongs to, an account's inboxes and
//! webhooks, its conversations, and the typing indicator (the harmless event of the reachability check).
//! Facts: `tests/fixtures/chatwoot-api/README.md`.
//!
//! Every failure is a [`Problem`] that says what to fix in words for the admin; none holds the token, and
//! none quotes more of Chatwoot's answer than a short error text.

mod address;
mod clock;

pub use address::{Reach, classify};
pub use clock::Clock;

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::config::Secret;

/// How long one call to Chatwoot may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of an answer read (an account's inbox list is a few kilobytes).
const MAX_ANSWER: usize = 4 * 1024 * 1024;

/// The events the relay's webhook is subscribed to: what GoWA acts on (a reply; a deleted reply).
pub const SUBSCRIPTIONS: [&str; 2] = ["message_created", "message_updated"];
/// The event of the reachability check: a typing indicator switched on and off again.
pub const CHECK_EVENT: &str = "conversation_typing_on";
/// The name the relay's webhook has in Chatwoot's list.
pub const WEBHOOK_NAME: &str = "Chatgowa";

/// Why a call to Chatwoot failed, in words that name what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("nothing answers at {0}: is Chatwoot running, and is the address right?{1}")]
    Unreachable(String, String),
    #[error("Chatwoot at {0} did not answer within {1} seconds; try again, or check the address")]
    Timeout(String, u64),
    #[error(
        "{0} answers with a web page, not Chatwoot's API: give the address Chatwoot opens at (for example \
         https://chat.example.com), without /app/… or anything after it"
    )]
    NotApi(String),
    #[error("{0} sends Chatwoot's requests on to {1}: give that address instead")]
    Moved(String, String),
    #[error(
        "{0} has no Chatwoot API (404): give the address Chatwoot opens at, without /app/… after it"
    )]
    NoApi(String),
    #[error(
        "Chatwoot refused the access token: copy it again from Chatwoot's Profile settings → Access Token"
    )]
    BadToken,
    #[error(
        "this token's user is not a member of account {0}: check the account id (the number after /accounts/ \
         in Chatwoot's address) or use a token of that account's administrator"
    )]
    NoAccount(i64),
    #[error(
        "the token belongs to an agent of account {0}; use the access token of an administrator of that account"
    )]
    NotAdmin(i64),
    #[error("{0} was not found in Chatwoot (was it deleted there?)")]
    Gone(String),
    #[error("Chatwoot refused: {0}")]
    Rejected(String),
    #[error("Chatwoot answered {0}; try again later")]
    Server(u16),
    #[error("Chatwoot asks for fewer requests (429); the relay tries again later")]
    RateLimited,
    #[error("Chatwoot's answer was not understood ({0})")]
    Malformed(String),
}

impl Problem {
    /// Whether Chatwoot failed (down, broken) rather than refused what was asked.
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            Self::Unreachable(..)
                | Self::Timeout(..)
                | Self::Server(_)
                | Self::Malformed(_)
                | Self::RateLimited
        )
    }

    /// A stable word for the UI.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unreachable(..) | Self::Timeout(..) => "chatwoot_unreachable",
            Self::NotApi(_) | Self::NoApi(_) | Self::Moved(..) => "chatwoot_not_api",
            Self::BadToken => "chatwoot_token",
            Self::NoAccount(_) => "chatwoot_account",
            Self::NotAdmin(_) => "chatwoot_not_admin",
            Self::Gone(_) => "chatwoot_gone",
            Self::Rejected(_) => "chatwoot_rejected",
            Self::Server(_) | Self::Malformed(_) | Self::RateLimited => "chatwoot_error",
        }
    }

    /// The form field to fix, where there is one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::Unreachable(..)
            | Self::Timeout(..)
            | Self::NotApi(_)
            | Self::NoApi(_)
            | Self::Moved(..) => Some("url"),
            Self::BadToken | Self::NotAdmin(_) => Some("token"),
            Self::NoAccount(_) => Some("accountId"),
            _ => None,
        }
    }
}

/// One account of a token's user.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Account {
    pub id: i64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Inbox {
    pub id: i64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub channel_type: String,
    /// API-channel inboxes: where Chatwoot posts that inbox's events itself.
    #[serde(default)]
    pub webhook_url: Option<String>,
}

impl Inbox {
    pub fn is_api(&self) -> bool {
        self.channel_type == "Channel::Api"
    }

    /// What the relay keeps of it, for the account linked as `link_id`.
    pub fn known(&self, link_id: i64) -> crate::store::chatwoot_inboxes::KnownInbox {
        crate::store::chatwoot_inboxes::KnownInbox {
            link_id,
            inbox_id: self.id,
            name: self.name.clone(),
            channel_type: self.channel_type.clone(),
        }
    }
}

/// A conversation as the list gives it: its display id and its contact (`meta.sender`).
#[derive(Debug, Clone, Deserialize)]
pub struct Conversation {
    pub id: i64,
    #[serde(default)]
    pub meta: Value,
}

#[derive(Clone, Deserialize)]
pub struct Webhook {
    pub id: i64,
    pub url: String,
    #[serde(default)]
    pub subscriptions: Vec<String>,
    #[serde(default, deserialize_with = "secret")]
    pub secret: Option<Secret<String>>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("subscriptions", &self.subscriptions)
            .finish_non_exhaustive()
    }
}

fn secret<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Secret<String>>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    Ok(text.filter(|s| !s.is_empty()).map(Secret::new))
}

/// The HTTP client for Chatwoot: redirects are not followed, so the token is never sent to another address.
///
/// # Errors
/// The TLS backend cannot be set up.
pub fn http_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .build()
}

/// A client for one Chatwoot, with one user's access token.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: HeaderValue,
    /// Where the answers' `Date` is read into.
    clock: Option<Clock>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// # Errors
    /// The token is not a valid header value.
    pub fn new(http: reqwest::Client, base: Url, token: &Secret<String>) -> Result<Self, String> {
        let mut token = HeaderValue::from_str(token.expose().trim())
            .map_err(|_| "the access token has characters a token cannot have".to_owned())?;
        token.set_sensitive(true);
        Ok(Self {
            http,
            base,
            token,
            clock: None,
        })
    }

    /// This client, reading Chatwoot's clock from every answer into `clock`.
    #[must_use]
    pub fn measuring(mut self, clock: &Clock) -> Self {
        self.clock = Some(clock.clone());
        self
    }

    /// A client for a linked account, with its stored token.
    ///
    /// # Errors
    /// The stored address or token is unusable.
    pub fn of_link(
        http: &reqwest::Client,
        link: &crate::store::chatwoot_links::Link,
    ) -> Result<Self, String> {
        let base = Url::parse(&link.base_url).map_err(|e| e.to_string())?;
        Self::new(http.clone(), base, &Secret::new(link.token.clone()))
    }

    /// The address as shown to the admin (scheme, host, port, path).
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The accounts of the token's user, with the user's role in each.
    ///
    /// # Errors
    /// See [`Problem`].
    pub async fn accounts(&self) -> Result<Vec<Account>, Problem> {
        #[derive(Deserialize)]
        struct Profile {
            #[serde(default)]
            accounts: Vec<Account>,
        }
        let profile: Profile = self
            .call(Method::GET, "/api/v1/profile", None, None)
            .await?;
        Ok(profile.accounts)
    }

    /// The account's inboxes.
    ///
    /// # Errors
    /// See [`Problem`].
    pub async fn inboxes(&self, account: i64) -> Result<Vec<Inbox>, Problem> {
        let path = format!("/api/v1/accounts/{account}/inboxes");
        let list: Payload<Vec<Inbox>> = self.call(Method::GET, &path, None, Some(account)).await?;
        Ok(list.payload)
    }

    /// Points an API inbox's own callback at `url` ("" clears it).
    ///
    /// # Errors
    /// See [`Problem`].
    pub async fn set_inbox_webhook(
        &self,
        account: i64,
        inbox: i64,
        url: &str,
    ) -> Result<(), Problem> {
        let path = format!("/api/v1/accounts/{account}/inboxes/{inbox}");
        let body = json!({"channel": {"webhook_url": url}});
        self.act(
            Method::PATCH,
            &path,
            Some(body),
            Some(account),
            format!("inbox {inbox}"),
        )
        .await
    }

    /// The account's webhooks, with their secrets (an administrator's token sees them).
    ///
    /// # Errors
    /// See [`Problem`].
    pub async fn webhooks(&self, account: i64) -> Result<Vec<Webhook>, Problem> {
        #[derive(Deserialize)]
        struct Webhooks {
            webhooks: Vec<Webhook>,
        }
        let path = format!("/api/v1/accounts/{account}/webhooks");
        let list: Payload<Webhooks> = self.call(Method::GET, &path, None, Some(account)).await?;
        Ok(list.payload.webhooks)
    }

    /// Creates an account webhook; Chatwoot generates its secret.
    ///
    /// # Errors
    /// See [`Problem`] (422 when the URL is taken in this account).
    pub async fn create_webhook(
        &self,
        account: i64,
        url: &str,
        subscriptions: &[String],
    ) -> Result<Webhook, Problem> {
        let path = format!("/api/v1/accounts/{account}/webhooks");
        let body = json!({"url": url, "name": WEBHOOK_NAME, "subscriptions": subscriptions});
        let created: Payload<OneWebhook> = self
            .call(Method::POST, &path, Some(body), Some(account))
            .await?;
        Ok(created.payload.webhook)
    }

    /// Changes a webhook's URL and subscriptions.
    ///
    /// # Errors
    /// See [`Problem`].
    pub async fn update_webhook(
        &self,
        account: i64,
        id: i64,
        url: &str,
        subscriptions: &[String],
    ) -> Result<Webhook, Problem> {
        let path = format!("/api/v1/accounts/{account}/webhooks/{id}");
        let body = json!({"url": url, "name": WEBHOOK_NAME, "subscriptions": subscriptions});
        let updated: Payload<OneWebhook> = self
            .call(Method::PATCH, &path, Some(body), Some(account))
            .await
            .map_err(|e| gone(e, format!("webhook {id}")))?;
        Ok(updated.payload.webhook)
    }

    /// # Errors
    /// See [`Problem`].
    pub async fn delete_webhook(&self, account: i64, id: i64) -> Result<(), Problem> {
        let path = format!("/api/v1/accounts/{account}/webhooks/{id}");
        self.act(
            Method::DELETE,
            &path,
            None,
            Some(account),
            format!("webhook {id}"),
        )
        .await
    }

    /// The id of the account's most recently active conversation, if it has any.
    ///
    /// # Errors
    /// See [`Problem`].
    pub async fn latest_conversation(&self, account: i64) -> Result<Option<i64>, Problem> {
        let path =
            format!("/api/v1/accounts/{account}/conversations?status=all&assignee_type=all&page=1");
        let list: Data<Vec<Conversation>> =
            self.call(Method::GET, &path, None, Some(account)).await?;
        Ok(list.data.payload.first().map(|c| c.id))
    }

    /// The conversations of `inbox` updated in the last `seconds` (unpaged), with their contact.
    ///
    /// # Errors
    /// See [`Problem`].
    pub async fn conversations_updated(
        &self,
        account: i64,
        inbox: i64,
        seconds: i64,
    ) -> Result<Vec<Conversation>, Problem> {
        let path = format!(
            "/api/v1/accounts/{account}/conversations?status=all&assignee_type=all&inbox_id={inbox}\
             &updated_within={seconds}"
        );
        let list: Data<Vec<Conversation>> =
            self.call(Method::GET, &path, None, Some(account)).await?;
        Ok(list.data.payload)
    }

    /// Up to 100 messages of a conversation with an id above `after`, oldest first.
    ///
    /// # Errors
    /// See [`Problem`].
    pub async fn messages_after(
        &self,
        account: i64,
        conversation: i64,
        after: i64,
    ) -> Result<Vec<Value>, Problem> {
        let path = format!(
            "/api/v1/accounts/{account}/conversations/{conversation}/messages?after={after}"
        );
        let list: Payload<Vec<Value>> = self.call(Method::GET, &path, None, Some(account)).await?;
        Ok(list.payload)
    }

    /// Shows (`on`) or hides the token user's typing indicator in a conversation: Chatwoot then fires
    /// `conversation_typing_on`/`_off` to the account's webhooks. The customer sees nothing (GoWA ignores these
    /// events) and nothing stays in the conversation.
    ///
    /// # Errors
    /// See [`Problem`].
    pub async fn typing(&self, account: i64, conversation: i64, on: bool) -> Result<(), Problem> {
        let path =
            format!("/api/v1/accounts/{account}/conversations/{conversation}/toggle_typing_status");
        let body = json!({"typing_status": if on { "on" } else { "off" }});
        self.call::<Value>(Method::POST, &path, Some(body), Some(account))
            .await
            .map(drop)
    }

    /// Sets a message's status as agents see it (`failed` with a short reason, or `sent` again). Chatwoot takes it
    /// for API-channel inboxes only (others: 403) and fires `message_updated`.
    ///
    /// # Errors
    /// See [`Problem`].
    pub async fn set_message_status(
        &self,
        account: i64,
        conversation: i64,
        message: i64,
        status: &str,
        external_error: Option<&str>,
    ) -> Result<(), Problem> {
        let path =
            format!("/api/v1/accounts/{account}/conversations/{conversation}/messages/{message}");
        let mut body = json!({"status": status});
        if let Some(error) = external_error {
            body["external_error"] = json!(error);
        }
        self.act(
            Method::PATCH,
            &path,
            Some(body),
            Some(account),
            format!("message {message}"),
        )
        .await
    }

    /// Adds a private note to a conversation, threaded under `in_reply_to`: agents see it, the customer does not
    /// (GoWA ignores private messages).
    ///
    /// # Errors
    /// See [`Problem`].
    pub async fn private_note(
        &self,
        account: i64,
        conversation: i64,
        in_reply_to: Option<i64>,
        content: &str,
    ) -> Result<(), Problem> {
        let path = format!("/api/v1/accounts/{account}/conversations/{conversation}/messages");
        let mut body = json!({"content": content, "message_type": "outgoing", "private": true});
        if let Some(message) = in_reply_to {
            body["content_attributes"] = json!({"in_reply_to": message});
        }
        self.act(
            Method::POST,
            &path,
            Some(body),
            Some(account),
            format!("conversation {conversation}"),
        )
        .await
    }

    /// A call whose answer is not needed; a 404 is `what` gone.
    async fn act(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        account: Option<i64>,
        what: String,
    ) -> Result<(), Problem> {
        self.call::<Value>(method, path, body, account)
            .await
            .map(drop)
            .map_err(|e| gone(e, what))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Value>,
        account: Option<i64>,
    ) -> Result<T, Problem> {
        let url = self.url(path_and_query)?;
        let mut request = self
            .http
            .request(method, url)
            .timeout(CALL_TIMEOUT)
            .header("api_access_token", self.token.clone())
            .header("accept", "application/json");
        if let Some(body) = body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let sent = crate::store::now_ms();
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        if let Some(clock) = &self.clock {
            let date = response.headers().get(reqwest::header::DATE);
            clock.observe(date, sent, crate::store::now_ms());
        }
        let status = response.status();
        if status.is_redirection() {
            return Err(self.moved(&response));
        }
        let is_json = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.to_ascii_lowercase().contains("json"));
        let bytes = read_limited(response)
            .await
            .map_err(|e| self.unreachable(&e))?;
        if !(is_json || status.is_success() && bytes.is_empty()) {
            return Err(if status.is_server_error() {
                Problem::Server(status.as_u16())
            } else if status == StatusCode::TOO_MANY_REQUESTS {
                // Rack::Attack's throttle answers in plain text.
                Problem::RateLimited
            } else if status == StatusCode::NOT_FOUND {
                Problem::NoApi(self.shown())
            } else {
                Problem::NotApi(self.shown())
            });
        }
        if !status.is_success() {
            return Err(refusal(status, &bytes, account, &self.shown()));
        }
        let bytes = if bytes.is_empty() {
            &b"null"[..]
        } else {
            &bytes
        };
        serde_json::from_slice(bytes).map_err(|e| Problem::Malformed(e.to_string()))
    }

    /// A redirection: Chatwoot is elsewhere (the origin it points to, never a path with a token in it).
    fn moved(&self, response: &reqwest::Response) -> Problem {
        let to = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| self.base.join(l).ok())
            .map_or_else(
                || "another address".to_owned(),
                |u| u.origin().ascii_serialization(),
            );
        Problem::Moved(self.shown(), to)
    }

    fn url(&self, path_and_query: &str) -> Result<Url, Problem> {
        let base = self.base.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}{path_and_query}"))
            .map_err(|e| Problem::Malformed(e.to_string()))
    }

    /// Scheme, host and port, as named in messages.
    fn shown(&self) -> String {
        self.base.origin().ascii_serialization()
    }

    fn unreachable(&self, e: &reqwest::Error) -> Problem {
        if e.is_timeout() {
            return Problem::Timeout(self.shown(), CALL_TIMEOUT.as_secs());
        }
        Problem::Unreachable(self.shown(), cause(e))
    }
}

/// Chatwoot's answers wrap what they carry: `{"payload": …}`, and the conversation list `{"data": {"payload": …}}`.
#[derive(Deserialize)]
struct Payload<T> {
    payload: T,
}

#[derive(Deserialize)]
struct Data<T> {
    data: Payload<T>,
}

#[derive(Deserialize)]
struct OneWebhook {
    webhook: Webhook,
}

/// The innermost cause of a failed request, as a hint after the message (" (connection refused)").
fn cause(e: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(next) = source.source() {
        source = next;
    }
    let text = source.to_string().to_ascii_lowercase();
    let hint = if text.contains("refused") {
        "connection refused"
    } else if text.contains("dns") || text.contains("resolve") || text.contains("name or service") {
        "the name does not resolve"
    } else if text.contains("certificate") || text.contains("tls") || text.contains("handshake") {
        "its HTTPS certificate is not trusted"
    } else {
        return String::new();
    };
    format!(" ({hint})")
}

/// A 4xx from Chatwoot, as the admin's fix.
fn refusal(status: StatusCode, body: &[u8], account: Option<i64>, shown: &str) -> Problem {
    #[derive(Deserialize, Default)]
    struct Answer {
        error: Option<String>,
        message: Option<String>,
        #[serde(default)]
        errors: Vec<Value>,
    }
    let answer: Answer = serde_json::from_slice(body).unwrap_or_default();
    let said = answer
        .message
        .or(answer.error)
        .or_else(|| {
            answer
                .errors
                .first()
                .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
        })
        .unwrap_or_default();
    match (status, account) {
        (StatusCode::UNAUTHORIZED, _) if said.contains("Invalid Access Token") => Problem::BadToken,
        (StatusCode::UNAUTHORIZED, None) => Problem::BadToken,
        (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, Some(account)) => {
            Problem::NotAdmin(account)
        }
        // Only the profile is asked without an account: its absence is a wrong address.
        (StatusCode::NOT_FOUND, None) => Problem::NoApi(shown.to_owned()),
        (StatusCode::NOT_FOUND, Some(_)) => Problem::Gone(shown.to_owned()),
        (s, _) if s.is_server_error() => Problem::Server(s.as_u16()),
        (StatusCode::TOO_MANY_REQUESTS, _) => Problem::RateLimited,
        _ => Problem::Rejected(short(&said, status)),
    }
}

fn short(said: &str, status: StatusCode) -> String {
    let said: String = said.chars().take(200).collect();
    if said.is_empty() {
        format!("HTTP {}", status.as_u16())
    } else {
        said
    }
}

/// A 404 on a thing the relay named is that thing gone, not a wrong address.
fn gone(problem: Problem, what: String) -> Problem {
    match problem {
        Problem::Gone(_) => Problem::Gone(what),
        other => other,
    }
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if out.len() + chunk.len() > MAX_ANSWER {
            break;
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
