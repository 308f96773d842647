//! Tauri commands: the admin service over IPC. Each takes one `input` (the same JSON the HTTP API takes) and
//! answers with the same DTOs and the same `{code, message, field}` error.

use serde::{Deserialize, Serialize};
use tauri::State;

use super::Desktop;
use crate::admin::dto::{self, DeliveryQuery, RouteInput};
use crate::admin::service;
use crate::error::ApiError;
use crate::ids::{DeliveryId, RouteId};
use crate::listeners::{AddressesInput, Locks};
use crate::state::AppState;

type Answer<T> = Result<T, ApiError>;

#[derive(Debug, Deserialize)]
pub struct IdInput {
    id: i64,
}

#[derive(Debug, Deserialize)]
pub struct UpdateRouteInput {
    id: i64,
    #[serde(flatten)]
    changes: RouteInput,
}

#[tauri::command]
pub async fn stats(state: State<'_, AppState>) -> Answer<dto::Stats> {
    Ok(service::stats(&state).await?)
}

#[tauri::command]
pub async fn list_routes(state: State<'_, AppState>) -> Answer<dto::RoutesBody> {
    Ok(dto::RoutesBody {
        routes: service::list_routes(&state).await?,
    })
}

#[tauri::command]
pub async fn create_route(state: State<'_, AppState>, input: RouteInput) -> Answer<dto::RouteBody> {
    Ok(dto::RouteBody {
        route: service::create_route(&state, input).await?,
    })
}

#[tauri::command]
pub async fn update_route(
    state: State<'_, AppState>,
    input: UpdateRouteInput,
) -> Answer<dto::RouteBody> {
    Ok(dto::RouteBody {
        route: service::update_route(&state, RouteId(input.id), input.changes).await?,
    })
}

#[tauri::command]
pub async fn delete_route(state: State<'_, AppState>, input: IdInput) -> Answer<dto::SuccessBody> {
    service::delete_route(&state, RouteId(input.id)).await?;
    Ok(dto::SuccessBody { success: true })
}

#[tauri::command]
pub async fn test_route(state: State<'_, AppState>, input: IdInput) -> Answer<dto::TestResult> {
    Ok(service::test_route(&state, RouteId(input.id)).await?)
}

#[tauri::command]
pub async fn retry_dead(state: State<'_, AppState>, input: IdInput) -> Answer<dto::RetriedBody> {
    Ok(dto::RetriedBody {
        retried: service::retry_dead_for_route(&state, RouteId(input.id)).await?,
    })
}

#[tauri::command]
pub async fn list_deliveries(
    state: State<'_, AppState>,
    input: DeliveryQuery,
) -> Answer<dto::DeliveriesBody> {
    Ok(service::list_deliveries(&state, input).await?)
}

#[tauri::command]
pub async fn delivery(state: State<'_, AppState>, input: IdInput) -> Answer<dto::DeliveryBody> {
    Ok(dto::DeliveryBody {
        delivery: service::delivery_detail(&state, DeliveryId(input.id)).await?,
    })
}

#[tauri::command]
pub async fn retry_delivery(
    state: State<'_, AppState>,
    input: IdInput,
) -> Answer<dto::DeliveryBody> {
    Ok(dto::DeliveryBody {
        delivery: service::retry_delivery(&state, DeliveryId(input.id)).await?,
    })
}

#[tauri::command]
pub async fn discard_delivery(
    state: State<'_, AppState>,
    input: IdInput,
) -> Answer<dto::SuccessBody> {
    service::discard_delivery(&state, DeliveryId(input.id)).await?;
    Ok(dto::SuccessBody { success: true })
}

#[tauri::command]
pub async fn list_unrouted(state: State<'_, AppState>) -> Answer<dto::UnroutedBody> {
    Ok(dto::UnroutedBody {
        unrouted: service::list_unrouted(&state).await?,
    })
}

/// Where the relay listens and how to log in to the browser panel, for the window.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DesktopInfo {
    pub webhook_url: String,
    pub admin_url: String,
    /// Why the relay is not listening, e.g. a busy port.
    pub listen_error: Option<String>,
    pub webhook_host: String,
    pub webhook_port: u16,
    pub admin_host: String,
    pub admin_port: u16,
    /// Addresses the environment sets, which the window shows but does not change.
    pub locked: Locks,
    /// `None` when the browser panel is off.
    pub admin_user: Option<String>,
    /// A browser-panel password generated in this run (first start, or "new password"); never shown again
    /// after the app quits.
    pub generated_password: Option<String>,
    /// `BASIC_AUTH_PASS` sets the password.
    pub password_locked: bool,
    pub start_at_login: bool,
    pub notifications: bool,
    pub language: String,
}

#[tauri::command]
pub async fn desktop_info(
    app: tauri::AppHandle,
    state: State<'_, AppState>,
    desktop: State<'_, Desktop>,
) -> Answer<DesktopInfo> {
    Ok(desktop.info(&app, &state))
}

#[derive(Debug, Deserialize)]
pub struct EnabledInput {
    enabled: bool,
}

#[tauri::command]
pub async fn set_start_at_login(
    app: tauri::AppHandle,
    state: State<'_, AppState>,
    desktop: State<'_, Desktop>,
    input: EnabledInput,
) -> Answer<DesktopInfo> {
    desktop.set_autostart(&app, input.enabled);
    Ok(desktop.info(&app, &state))
}

#[tauri::command]
pub async fn set_notifications(
    app: tauri::AppHandle,
    state: State<'_, AppState>,
    desktop: State<'_, Desktop>,
    input: EnabledInput,
) -> Answer<DesktopInfo> {
    desktop.set_notifications(&state, input.enabled).await?;
    Ok(desktop.info(&app, &state))
}

#[derive(Debug, Deserialize)]
pub struct LanguageInput {
    language: String,
}

/// The window's language, for the tray menu.
#[tauri::command]
pub async fn set_language(
    app: tauri::AppHandle,
    state: State<'_, AppState>,
    desktop: State<'_, Desktop>,
    input: LanguageInput,
) -> Answer<DesktopInfo> {
    desktop.set_language(&app, &state, &input.language).await?;
    Ok(desktop.info(&app, &state))
}

/// Moves the webhook and admin listeners without restarting.
#[tauri::command]
pub async fn set_addresses(
    app: tauri::AppHandle,
    state: State<'_, AppState>,
    desktop: State<'_, Desktop>,
    input: AddressesInput,
) -> Answer<DesktopInfo> {
    desktop.set_addresses(&app, &input).await?;
    Ok(desktop.info(&app, &state))
}

/// Replaces the browser-panel password with a new generated one.
#[tauri::command]
pub async fn new_password(
    app: tauri::AppHandle,
    state: State<'_, AppState>,
    desktop: State<'_, Desktop>,
) -> Answer<DesktopInfo> {
    desktop.new_password(&state).await?;
    Ok(desktop.info(&app, &state))
}
