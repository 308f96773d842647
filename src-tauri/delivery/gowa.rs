//! The outbound side: one HTTP POST of a stored webhook to a GoWA instance, described as data.
//!
//! Owns the wire format GoWA expects (see `tests/fixtures/gowa/README.md`); knows nothing about queues,
//! retries or the database.

use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use sha2::Sha256;

use super::retry;
use crate::store::deliveries::Delivery;

/// How much of a response body is kept in the delivery log.
pub const SNIPPET_BYTES: usize = 1024;

/// A route's URL made ready to send to: credentials moved from the URL into a Basic header.
#[derive(Clone)]
pub struct Target {
    url: reqwest::Url,
    authorization: Option<HeaderValue>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

impl Target {
    /// # Errors
    /// Not an absolute http(s) URL with a host.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut url = reqwest::Url::parse(raw.trim()).map_err(|e| e.to_string())?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
            return Err("must be an absolute http:// or https:// URL with a host".into());
        }
        let authorization = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            let user = percent_decode(url.username());
            let pass = url.password().map(percent_decode).unwrap_or_default();
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            let mut value =
                HeaderValue::from_str(&format!("Basic {token}")).map_err(|e| e.to_string())?;
            value.set_sensitive(true);
            // Infallible for http(s) URLs, which always can carry credentials.
            let _ = url.set_username("");
            let _ = url.set_password(None);
            Some(value)
        };
        Ok(Self { url, authorization })
    }

    /// The URL without credentials.
    pub fn url(&self) -> &reqwest::Url {
        &self.url
    }
}

/// Shown in place of the password of a route's URL; sent back unchanged, it keeps the stored one.
pub const MASKED_PASSWORD: &str = "********";

/// `raw` with its password, if it has one, replaced by [`MASKED_PASSWORD`]: how a route's URL is shown.
pub fn mask_password(raw: &str) -> String {
    match reqwest::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            // Infallible: a URL that has a password can have another one.
            let _ = url.set_password(Some(MASKED_PASSWORD));
            url.into()
        }
        _ => raw.to_owned(),
    }
}

/// `new` with a masked password replaced by the password of `stored`: what a form that showed the masked URL
/// sends back. `None` when `new` carries the mask but `stored` has no password to keep, or when `new` goes to
/// another server (scheme, host or port changed): the stored password is never sent where it was not typed for.
pub fn unmask_password(new: &str, stored: &str) -> Option<String> {
    let Ok(mut url) = reqwest::Url::parse(new) else {
        return Some(new.to_owned());
    };
    if url.password() != Some(MASKED_PASSWORD) {
        return Some(new.to_owned());
    }
    let stored = reqwest::Url::parse(stored).ok()?;
    if stored.origin() != url.origin() {
        return None;
    }
    let kept = stored.password()?.to_owned();
    url.set_password(Some(&kept)).ok()?;
    Some(url.into())
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// `sha256=<lowercase hex HMAC-SHA256(secret, body)>`, the `X-Hub-Signature-256` GoWA verifies.
pub fn hub_signature(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length.
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// What one attempt produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptResult {
    /// `None` when no response arrived (connect error, timeout, reset).
    pub status: Option<u16>,
    pub timed_out: bool,
    /// No answer, but the connection was made and the request went out: GoWA may have acted on it (it answers
    /// only after sending to WhatsApp), so a retry may send the message twice.
    pub ambiguous: bool,
    pub retry_after: Option<Duration>,
    pub error: Option<String>,
    pub snippet: Option<String>,
    pub duration: Duration,
}

/// One POST to GoWA: a body and the headers that are particular to it.
#[derive(Debug, Clone)]
pub struct Request {
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

impl Request {
    /// A stored delivery: its body unchanged, Chatwoot's headers passed through, ours added.
    pub fn delivery(delivery: &Delivery, attempt: i64) -> Self {
        let mut headers = vec![
            ("X-Chatgowa-Delivery", delivery.id.to_string()),
            ("X-Chatgowa-Attempt", attempt.to_string()),
        ];
        for (name, value) in [
            ("X-Chatwoot-Delivery", &delivery.cw_delivery),
            ("X-Chatwoot-Timestamp", &delivery.cw_timestamp),
            ("X-Chatwoot-Signature", &delivery.cw_signature),
        ] {
            if let Some(value) = value {
                headers.push((name, value.clone()));
            }
        }
        Self {
            body: delivery.body.clone(),
            headers,
        }
    }
}

/// POSTs a request with the route's credentials and signature.
pub async fn send(
    client: &reqwest::Client,
    target: &Target,
    secret: Option<&str>,
    request: Request,
) -> AttemptResult {
    let started = Instant::now();
    let mut builder = client
        .post(target.url.clone())
        .header(CONTENT_TYPE, "application/json");
    for (name, value) in request.headers {
        builder = builder.header(name, value);
    }
    if let Some(auth) = &target.authorization {
        builder = builder.header(AUTHORIZATION, auth.clone());
    }
    if let Some(secret) = secret.filter(|s| !s.is_empty()) {
        builder = builder.header("X-Hub-Signature-256", hub_signature(secret, &request.body));
    }

    match builder.body(request.body).send().await {
        Ok(response) => answered(response, started).await,
        Err(e) => unanswered(&e, started),
    }
}

/// An attempt that got an HTTP answer.
async fn answered(mut response: reqwest::Response, started: Instant) -> AttemptResult {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry::parse_retry_after(v, SystemTime::now()));
    let (body, read_error) = read_snippet(&mut response).await;
    let success = response.status().is_success();
    let waited = started.elapsed();
    let ambiguous = late_failure(status, waited);
    AttemptResult {
        status: Some(status),
        timed_out: false,
        ambiguous,
        retry_after,
        error: if success {
            None
        } else if ambiguous {
            Some(format!(
                "HTTP {status} after {} s (GoWA, or a proxy in front of it, may have sent the message first)",
                waited.as_secs()
            ))
        } else {
            Some(format!("HTTP {status}"))
        }
        .or(read_error),
        snippet: (!body.is_empty()).then(|| String::from_utf8_lossy(&body).into_owned()),
        duration: started.elapsed(),
    }
}

/// How long GoWA may take before a 408 or 5xx counts as ambiguous: it sends to WhatsApp before answering
/// (downloading media first), so an error after a long wait may come after the message went out, and from a
/// proxy that gave up on a GoWA still working.
pub const LONG_WAIT: Duration = Duration::from_secs(10);

/// Whether an error answer may have followed the message going out (see [`LONG_WAIT`]).
fn late_failure(status: u16, waited: Duration) -> bool {
    (status == 408 || status >= 500) && waited >= LONG_WAIT
}

/// An attempt that got no answer; ambiguous when the request may have reached GoWA.
fn unanswered(e: &reqwest::Error, started: Instant) -> AttemptResult {
    let ambiguous = is_ambiguous(e);
    let mut error = describe(e);
    if ambiguous {
        error.push_str(" (after the request was sent: GoWA may have sent the message)");
    }
    AttemptResult {
        status: None,
        timed_out: e.is_timeout(),
        ambiguous,
        retry_after: None,
        error: Some(error),
        snippet: None,
        duration: started.elapsed(),
    }
}

/// Whether a request that got no answer may still have been acted on: the connection was made (a connect
/// error or timeout means GoWA never saw it) and the request was built, so it was sent, in part or whole,
/// before the timeout or the reset.
fn is_ambiguous(e: &reqwest::Error) -> bool {
    !e.is_connect() && !e.is_builder() && !e.is_redirect() && e.status().is_none()
}

/// The first [`SNIPPET_BYTES`] of the response body, and why reading it stopped early, if it did.
async fn read_snippet(response: &mut reqwest::Response) -> (Vec<u8>, Option<String>) {
    let mut body = Vec::new();
    let mut read_error = None;
    while body.len() < SNIPPET_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => {
                read_error = Some(describe(&e));
                break;
            }
        }
    }
    body.truncate(SNIPPET_BYTES);
    (body, read_error)
}

/// An error's cause chain without the URL, which may carry a secret in its query.
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "reading the response failed"
    } else {
        "request failed"
    };
    let mut text = kind.to_owned();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// What went wrong with an attempt, as one word the panel turns into a sentence in the user's language:
/// `refused` (nothing listens at that address), `dns` (the name does not resolve), `timeout`, `tls` (the
/// certificate or TLS handshake), `reset` (the connection dropped), `unreachable` (no route to that network),
/// `unauthorized` (401/403: GoWA's user, password or secret), `not_found` (404: the path or device), `rejected`
/// (another 4xx), `server` (5xx). `None` for a success, or a failure none of these describe.
pub fn problem(status: Option<i64>, error: Option<&str>) -> Option<&'static str> {
    match status {
        Some(200..=299) => return None,
        Some(401 | 403) => return Some("unauthorized"),
        Some(404) => return Some("not_found"),
        Some(400..=499) => return Some("rejected"),
        Some(500..=599) => return Some("server"),
        _ => {}
    }
    let error = error?.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| error.contains(n));
    Some(
        if error.starts_with("timed out") || has(&["timed out", "deadline"]) {
            "timeout"
        } else if has(&["connection refused"]) {
            "refused"
        } else if has(&[
            "dns error",
            "failed to lookup",
            "name or service not known",
            "no such host",
        ]) {
            "dns"
        } else if has(&["certificate", "tls", "ssl", "handshake"]) {
            "tls"
        } else if has(&[
            "no route to host",
            "network is unreachable",
            "host is unreachable",
        ]) {
            "unreachable"
        } else if has(&[
            "reset",
            "broken pipe",
            "connection closed",
            "incomplete",
            "unexpected eof",
        ]) {
            "reset"
        } else {
            return None;
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_masked_password_is_kept_only_for_the_same_server() {
        let stored = "http://admin:s3cret@gowa.local:3000/chatwoot/webhook";
        let masked = |url: &str| url.replace("s3cret", MASKED_PASSWORD);
        assert_eq!(
            unmask_password(
                &masked("http://admin:s3cret@gowa.local:3000/chatwoot/webhook/dev1"),
                stored
            )
            .as_deref(),
            Some("http://admin:s3cret@gowa.local:3000/chatwoot/webhook/dev1")
        );
        for elsewhere in [
            "http://admin:s3cret@attacker.example:3000/chatwoot/webhook",
            "http://admin:s3cret@gowa.local:3001/chatwoot/webhook",
            "https://admin:s3cret@gowa.local:3000/chatwoot/webhook",
        ] {
            assert_eq!(
                unmask_password(&masked(elsewhere), stored),
                None,
                "{elsewhere}"
            );
        }
    }

    #[test]
    fn an_error_after_a_long_wait_may_have_followed_the_message() {
        let long = LONG_WAIT;
        let short = Duration::from_millis(200);
        for status in [408, 500, 502, 504] {
            assert!(late_failure(status, long), "{status}");
            assert!(!late_failure(status, short), "{status}");
        }
        for status in [200, 400, 401, 404, 429] {
            assert!(!late_failure(status, long), "{status}");
        }
    }

    #[test]
    fn failures_are_named_for_the_panel() {
        for (status, error, expected) in [
            (Some(200), None, None),
            (Some(401), Some("GoWA: unauthorized"), Some("unauthorized")),
            (Some(404), None, Some("not_found")),
            (Some(422), None, Some("rejected")),
            (Some(502), None, Some("server")),
            (
                None,
                Some(
                    "connection failed: client error (Connect): tcp connect error: Connection refused (os error 111)",
                ),
                Some("refused"),
            ),
            (
                None,
                Some(
                    "connection failed: client error (Connect): dns error: failed to lookup address information: Name or service not known",
                ),
                Some("dns"),
            ),
            (
                None,
                Some("timed out: operation timed out"),
                Some("timeout"),
            ),
            (
                None,
                Some(
                    "connection failed: client error (Connect): invalid peer certificate: UnknownIssuer",
                ),
                Some("tls"),
            ),
            (
                None,
                Some(
                    "request failed: connection closed before message completed (after the request was sent: GoWA may have sent the message)",
                ),
                Some("reset"),
            ),
            (
                None,
                Some("connection failed: tcp connect error: No route to host (os error 113)"),
                Some("unreachable"),
            ),
            (None, Some("something new"), None),
            (None, None, None),
        ] {
            assert_eq!(problem(status, error), expected, "{status:?} {error:?}");
        }
    }

    #[test]
    fn credentials_move_from_the_url_to_a_basic_header() {
        let t = Target::parse("http://relay%40shop:p%3Ass@gowa.lan:3000/chatwoot/webhook/dev1?x=1")
            .unwrap();
        assert_eq!(
            t.url().as_str(),
            "http://gowa.lan:3000/chatwoot/webhook/dev1?x=1"
        );
        let expected = base64::engine::general_purpose::STANDARD.encode("relay@shop:p:ss");
        assert_eq!(
            t.authorization.unwrap().to_str().unwrap(),
            format!("Basic {expected}")
        );
        assert!(
            Target::parse("https://gowa.example.com/chatwoot/webhook")
                .unwrap()
                .authorization
                .is_none()
        );
        assert!(
            !format!("{:?}", Target::parse("http://u:secretpw@h/").unwrap()).contains("secretpw")
        );
    }

    #[test]
    fn only_http_urls_with_a_host() {
        for bad in [
            "ftp://h/x",
            "javascript:alert(1)",
            "file:///etc/passwd",
            "/relative",
            "http://",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hub_signature_matches_the_gowa_test_vector() {
        let body = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/chatwoot/message_created.unicode_emoji.json"
        ))
        .unwrap();
        assert_eq!(
            hub_signature("gowa-shared-secret", &body),
            "sha256=76d0c72122571dd9e2079cfe004919eaf142ddf236283b48a50f22a518d01f15"
        );
    }
}
