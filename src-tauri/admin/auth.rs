//! HTTP Basic Auth for the admin API, realm `Chatgowa Admin`.
//!
//! Both the user name and the password are compared in constant time (over SHA-256 digests, so that not even
//! the length leaks). A wrong or missing header gets 401 with a `WWW-Authenticate` challenge.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::AdminCredentials;
use crate::error::ApiError;
use crate::state::AppState;

pub const REALM: &str = "Chatgowa Admin";

/// axum middleware: lets the request through only with the configured credentials.
pub async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let authorized = state.config.admin.as_ref().is_some_and(|admin| {
        request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| check(admin, v))
    });
    if authorized {
        return next.run(request).await;
    }
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

/// Checks an `Authorization` header value against the credentials.
pub fn check(admin: &AdminCredentials, header_value: &str) -> bool {
    let Some((scheme, encoded)) = header_value.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let Some(colon) = decoded.iter().position(|b| *b == b':') else {
        return false;
    };
    let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
    let user_ok = digest(user).ct_eq(&digest(admin.user.as_bytes()));
    let password_ok = digest(password).ct_eq(&digest(admin.password.expose().as_bytes()));
    (user_ok & password_ok).into()
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn basic(raw: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    #[test]
    fn only_the_exact_credentials_pass() {
        let admin = AdminCredentials {
            user: "admin".into(),
            password: Secret::new("p:ss word".into()),
        };
        assert!(check(&admin, &basic("admin:p:ss word")));
        assert!(check(
            &admin,
            &format!(
                "basic  {}",
                base64::engine::general_purpose::STANDARD.encode("admin:p:ss word")
            )
        ));
        for bad in [
            basic("admin:p:ss wor"),
            basic("Admin:p:ss word"),
            basic("admin"),
            basic(":"),
            basic(""),
            "Basic !!!not-base64".into(),
            "Bearer abc".into(),
            "Basic".into(),
            String::new(),
        ] {
            assert!(!check(&admin, &bad), "{bad}");
        }
    }
}
