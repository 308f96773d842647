//! Errors of the service layer, and the one wire shape they take on HTTP and over Tauri IPC (`{code, message}`).
//!
//! User-facing messages for 4xx are written for the user; for 5xx the client gets a generic message while the
//! cause goes to the log.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    /// Bad input; `field` names the offending field where there is one.
    #[error("{message}")]
    Invalid {
        field: Option<&'static str>,
        message: String,
    },
    /// Fields of a form that are wrong, all of them; `conflict`: a value another record already has (409).
    #[error("{}", join_messages(.errors))]
    Fields {
        errors: Vec<FieldError>,
        conflict: bool,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The request's credentials or signature are missing or wrong.
    #[error("{0}")]
    Unauthorized(String),
    /// More requests at once than the relay takes; retrying shortly will work.
    #[error("{0}")]
    Overloaded(String),
    /// The request was fine but could not be stored; retrying later may work.
    #[error("{0}")]
    Unavailable(String),
    /// Another service (Chatwoot) refused or failed; `message` says what to fix. `gateway`: it failed (502)
    /// rather than refused what was asked (422).
    #[error("{message}")]
    Remote {
        code: &'static str,
        field: Option<&'static str>,
        message: String,
        gateway: bool,
    },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// One invalid field. `code` names the problem (`required`, `too_long`, `taken`, …) so that the panel can say it
/// in the user's language under the field; `max` is the limit where one applies; `message` is the English text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: &'static str,
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<usize>,
}

impl FieldError {
    pub fn new(field: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            code,
            message: message.into(),
            max: None,
        }
    }
}

fn join_messages(errors: &[FieldError]) -> String {
    let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
    messages.join("; ")
}

impl Error {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: Some(field),
            message: message.into(),
        }
    }
}

/// The wire form of an error: `{error, code, message, field?}`. `error` keeps the TypeScript version's shape;
/// `code` and `message` are what the UI reads.
#[derive(Debug, Clone, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'static str>,
    /// Every invalid field of a form, where the error is about a form's fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<FieldError>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            status,
            code,
            error: message.clone(),
            message,
            field: None,
            fields: None,
        }
    }
}

impl ApiError {
    /// 400 `invalid` (409 `conflict`) naming the first wrong field in `field` and every one in `fields`.
    fn fields(errors: Vec<FieldError>, conflict: bool) -> Self {
        let (status, code) = if conflict {
            (StatusCode::CONFLICT, "conflict")
        } else {
            (StatusCode::BAD_REQUEST, "invalid")
        };
        Self {
            field: errors.first().map(|e| e.field),
            fields: Some(errors.clone()),
            ..Self::new(status, code, join_messages(&errors))
        }
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        match err {
            Error::NotFound { .. } => {
                Self::new(StatusCode::NOT_FOUND, "not_found", err.to_string())
            }
            Error::Invalid { field, message } => Self {
                field,
                ..Self::new(StatusCode::BAD_REQUEST, "invalid", message)
            },
            Error::Fields { errors, conflict } => Self::fields(errors, conflict),
            Error::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            Error::UnsupportedMediaType(m) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                m,
            ),
            Error::PayloadTooLarge(m) => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", m)
            }
            Error::Unauthorized(m) => Self::new(StatusCode::UNAUTHORIZED, "unauthorized", m),
            Error::Remote {
                code,
                field,
                message,
                gateway,
            } => {
                let status = if gateway {
                    StatusCode::BAD_GATEWAY
                } else {
                    StatusCode::UNPROCESSABLE_ENTITY
                };
                Self {
                    field,
                    ..Self::new(status, code, message)
                }
            }
            Error::Overloaded(m) => Self::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", m),
            Error::Unavailable(cause) => {
                tracing::error!(cause, "request could not be stored");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "temporarily unable to store the request; try again",
                )
            }
            Error::Database(e) => {
                tracing::error!(error = %e, "database error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let mut response = (status, axum::Json(self)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}
