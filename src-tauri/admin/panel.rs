//! The browser admin panel: the files of `ui/`, embedded in the binary, served under `/admin/`.
//!
//! Nothing is loaded from elsewhere at run time, and every response carries a strict Content-Security-Policy
//! (no inline script, same-origin only), so the panel works offline and a stored value can never run as code.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use crate::error::ApiError;

#[derive(rust_embed::Embed)]
#[folder = "ui/"]
struct Assets;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; \
                   form-action 'self'; frame-ancestors 'none'";

/// `GET /admin`: the panel lives at `/admin/` so that its relative links resolve.
pub async fn redirect_to_panel() -> Redirect {
    Redirect::permanent("/admin/")
}

/// `GET /admin/`.
pub async fn index() -> Response {
    serve("index.html")
}

/// `GET /admin/{*path}`: a file of the panel.
pub async fn asset(Path(path): Path<String>) -> Response {
    serve(&path)
}

fn serve(path: &str) -> Response {
    let Some(file) = Assets::get(path) else {
        return ApiError::new(StatusCode::NOT_FOUND, "not_found", "not found").into_response();
    };
    let mime = file.metadata.mimetype().to_owned();
    let mut response = (StatusCode::OK, file.data.into_owned()).into_response();
    let headers = response.headers_mut();
    if let Ok(mime) = HeaderValue::from_str(&mime) {
        headers.insert(header::CONTENT_TYPE, mime);
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
