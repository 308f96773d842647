//! axum adapters for the admin API: map the request, call [`super::service`], map the answer.

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{StatusCode, header};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::dto::{RouteBody, RouteInput, RoutesBody, SuccessBody};
use super::service;
use crate::error::{ApiError, Error, Result};
use crate::ids::RouteId;
use crate::state::AppState;

pub async fn list_routes(State(state): State<AppState>) -> Result<Json<RoutesBody>> {
    Ok(Json(RoutesBody {
        routes: service::list_routes(&state).await?,
    }))
}

pub async fn create_route(
    State(state): State<AppState>,
    JsonBody(input): JsonBody<RouteInput>,
) -> Result<(StatusCode, Json<RouteBody>)> {
    let route = service::create_route(&state, input).await?;
    Ok((StatusCode::CREATED, Json(RouteBody { route })))
}

pub async fn update_route(
    State(state): State<AppState>,
    Path(id): Path<RouteIdParam>,
    JsonBody(input): JsonBody<RouteInput>,
) -> Result<Json<RouteBody>> {
    let route = service::update_route(&state, id.0?, input).await?;
    Ok(Json(RouteBody { route }))
}

pub async fn delete_route(
    State(state): State<AppState>,
    Path(id): Path<RouteIdParam>,
) -> Result<Json<SuccessBody>> {
    service::delete_route(&state, id.0?).await?;
    Ok(Json(SuccessBody { success: true }))
}

/// A route id from the path; anything but a positive integer is a 404, as no such route can exist.
pub struct RouteIdParam(Result<RouteId>);

impl<'de> serde::Deserialize<'de> for RouteIdParam {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        let id = raw.parse::<i64>().ok().filter(|id| *id > 0).map(RouteId);
        Ok(Self(id.ok_or(Error::NotFound {
            what: "route",
            id: raw,
        })))
    }
}

/// A JSON body that must be sent as `application/json`: an HTML form from another site cannot produce
/// that content type, so the browser's cached Basic credentials cannot be abused to change routes.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> std::result::Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(Error::UnsupportedMediaType(
                "send the body as Content-Type: application/json".into(),
            )
            .into());
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e: BytesRejection| {
                ApiError::from(Error::Invalid {
                    field: None,
                    message: e.body_text(),
                })
            })?;
        let value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::from(Error::Invalid {
                field: None,
                message: format!("body is not valid JSON: {e}"),
            })
        })?;
        Ok(Self(value))
    }
}
