//! HTTP Basic Auth for the admin API, realm `Chatgowa Admin`, and what guards it.
//!
//! The credentials are checked by [`crate::login`]. A wrong or missing header gets 401 with a
//! `WWW-Authenticate` challenge. Before that: an address that keeps failing is throttled (429, see
//! [`login::Throttle`]), and a state-changing request sent by a page of another site (its `Origin`) is refused.
//! Every admin response says not to sniff, frame, cache or refer.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::settings;
use crate::error::ApiError;
use crate::login;
use crate::state::AppState;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// axum middleware: lets the request through only with the configured credentials, from an address that is
/// not throttled, and (for changes) from the panel's own origin.
pub async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = guard(&state, request, next).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn guard(state: &AppState, request: Request, next: Next) -> Response {
    if !is_safe(request.method()) && !same_origin(request.headers(), &state.config.admin_origins) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "changes must come from the admin panel's own address (Origin refused); if you open the panel \
             by a name, add that address to CHATGOWA_ADMIN_ORIGINS",
        )
        .into_response();
    }
    // Another relay on the same database may have had the password chosen meanwhile.
    if settings::in_setup(state)
        && !matches!(settings::adopt_stored_password(state).await, Ok(true))
    {
        return setup_state(request, next).await;
    }
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    let checking = match state.logins.begin(peer, Instant::now()) {
        Ok(checking) => checking,
        Err(wait) => return too_many(wait),
    };
    if is_admin(state, given.clone()).await {
        state.logins.succeeded(peer);
        drop(checking);
        return next.run(request).await;
    }
    if given.is_some() {
        // A missing header is the browser asking for the login dialog; a wrong one is a guess.
        state.logins.failed(peer, Instant::now());
        tracing::warn!(client = ?peer, "admin login failed");
    }
    drop(checking);
    let mut response = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "admin credentials required",
    )
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(r#"Basic realm="Chatgowa Admin", charset="UTF-8""#),
    );
    response
}

/// What a request outside the admin API (`/healthz`) may carry of the admin's login: its `Authorization`
/// header and its client.
pub fn login_of(request: &Request) -> (Option<String>, Option<IpAddr>) {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    (given, peer)
}

/// Whether `given` (see [`login_of`]) is the admin's login, checked and throttled as the admin API checks it; no
/// header is not a guess.
pub async fn carries_admin_login(
    state: &AppState,
    given: Option<String>,
    peer: Option<IpAddr>,
) -> bool {
    if given.is_none() {
        return false;
    }
    let Ok(checking) = state.logins.begin(peer, Instant::now()) else {
        return false;
    };
    let admin = is_admin(state, given).await;
    if admin {
        state.logins.succeeded(peer);
    } else {
        state.logins.failed(peer, Instant::now());
    }
    drop(checking);
    admin
}

/// Whether `given` (an `Authorization` header) is the admin's login. Argon2 takes tens of milliseconds of CPU:
/// not on the async workers.
async fn is_admin(state: &AppState, given: Option<String>) -> bool {
    let admin = state
        .admin
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let (Some(admin), Some(given)) = (admin, given) else {
        return false;
    };
    tokio::task::spawn_blocking(move || login::check(&admin, &given))
        .await
        .unwrap_or(false)
}

/// While no admin password exists, only the panel's files and the setup link answer (without a login prompt,
/// which the admin could not answer yet).
async fn setup_state(request: Request, next: Next) -> Response {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    if matches!(
        path,
        Some("/admin" | "/admin/" | "/admin/{*path}" | "/admin/setup")
    ) {
        return next.run(request).await;
    }
    ApiError::new(
        StatusCode::FORBIDDEN,
        "setup_required",
        "no admin password yet: open the setup link that the relay wrote to its log (or set BASIC_AUTH_PASS)",
    )
    .into_response()
}

fn too_many(wait: Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        format!("too many failed logins from this address; try again in {seconds} s"),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// No `Origin` (not a browser page, e.g. curl), or the origin the request was sent to (its `Host`), reached by
/// an IP address or `localhost`, or one of `allowed` (the names the panel is opened by). Browsers send `Origin`
/// on every cross-site POST/PUT/DELETE, so a page elsewhere cannot drive the admin API with the stored login;
/// and a page under a name that an attacker points at this machine (DNS rebinding) is refused too.
fn same_origin(headers: &HeaderMap, allowed: &[String]) -> bool {
    let text = |name| headers.get(name).map(|v| v.to_str().unwrap_or_default());
    if text(header::HeaderName::from_static("sec-fetch-site")) == Some("cross-site") {
        return false;
    }
    let Some(origin) = text(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = url::Url::parse(origin) else {
        return false;
    };
    if allowed.contains(&origin.origin().ascii_serialization()) {
        return true;
    }
    let host = text(header::HOST).unwrap_or_default();
    let authority = match (origin.host(), origin.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        (None, _) => return false,
    };
    let by_address = match origin.host() {
        Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) => true,
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    by_address && authority.eq_ignore_ascii_case(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_refused_from_another_origin() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        let none: &[String] = &[];
        assert!(same_origin(&headers(&[("host", "127.0.0.1:3001")]), none));
        for (host, origin) in [
            ("127.0.0.1:3001", "http://127.0.0.1:3001"),
            ("localhost:3001", "http://localhost:3001"),
            ("[::1]:3001", "http://[::1]:3001"),
            ("192.168.1.5:3000", "http://192.168.1.5:3000"),
        ] {
            assert!(
                same_origin(&headers(&[("host", host), ("origin", origin)]), none),
                "{origin}"
            );
        }
        // A name is someone's DNS: it must be one the panel is opened by.
        let named = headers(&[
            ("host", "relay.example.com"),
            ("origin", "https://relay.example.com"),
        ]);
        assert!(!same_origin(&named, none), "DNS rebinding");
        assert!(same_origin(
            &named,
            &["https://relay.example.com".to_owned()]
        ));
        for bad in [
            &[
                ("host", "127.0.0.1:3001"),
                ("origin", "http://evil.example"),
            ][..],
            &[
                ("host", "127.0.0.1:3001"),
                ("origin", "http://127.0.0.1:3002"),
            ],
            &[("host", "127.0.0.1:3001"), ("origin", "null")],
            &[("host", "127.0.0.1:3001"), ("sec-fetch-site", "cross-site")],
        ] {
            assert!(!same_origin(&headers(bad), none), "{bad:?}");
        }
    }
}
