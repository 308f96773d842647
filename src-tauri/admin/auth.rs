//! HTTP Basic Auth for the admin API, realm `Chatgowa Admin`.
//!
//! Both the user name and the password are compared in constant time (over SHA-256 digests, so that not even
//! the length leaks), or the password is verified against an Argon2 hash. A wrong or missing header gets 401
//! with a `WWW-Authenticate` challenge.

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
    let admin = state
        .admin
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let authorized = admin.as_ref().is_some_and(|admin| {
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
    let user_ok: bool = digest(user).ct_eq(&digest(admin.user.as_bytes())).into();
    let password_ok = if admin.is_hashed() {
        verify_hash(admin, password)
    } else {
        digest(password)
            .ct_eq(&digest(admin.password.expose().as_bytes()))
            .into()
    };
    user_ok & password_ok
}

/// Verifies against the Argon2 hash once; afterwards compares with the remembered digest in constant time.
fn verify_hash(admin: &AdminCredentials, password: &[u8]) -> bool {
    use argon2::PasswordVerifier as _;
    let given = digest(password);
    if let Some(known) = admin.verified.get() {
        return given.ct_eq(known).into();
    }
    let Ok(hash) = argon2::PasswordHash::new(admin.password.expose()) else {
        return false;
    };
    let ok = argon2::Argon2::default()
        .verify_password(password, &hash)
        .is_ok();
    if ok {
        let _ = admin.verified.set(given);
    }
    ok
}

/// An Argon2id hash of `password` in PHC form, with a random salt (`chatgowa hash-password`).
pub fn hash_password(password: &str) -> String {
    use argon2::PasswordHasher as _;
    use argon2::password_hash::{SaltString, rand_core::OsRng};
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        // Hashing with default parameters and a generated salt has no failure case.
        .unwrap_or_else(|e| unreachable!("argon2: {e}"))
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(raw: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    #[test]
    fn argon2_hashes_verify_and_stay_strict_once_cached() {
        let admin = AdminCredentials::new("admin", hash_password("p:ss word"));
        assert!(admin.is_hashed());
        for _ in 0..2 {
            assert!(check(&admin, &basic("admin:p:ss word")));
            assert!(!check(&admin, &basic("admin:p:ss wor")));
            assert!(!check(&admin, &basic("root:p:ss word")));
        }
        assert_ne!(hash_password("x"), hash_password("x"), "salted");
    }

    #[test]
    fn only_the_exact_credentials_pass() {
        let admin = AdminCredentials::new("admin", "p:ss word");
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
