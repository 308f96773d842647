//! Tauri commands: the admin service over IPC. Each takes one `input` (the same JSON the HTTP API takes) and
//! answers with the same DTOs and the same `{code, message, field}` error.

use serde::Deserialize;
use tauri::State;

use super::listeners::AddressesInput;
use super::native::{Desktop, DesktopInfo};
use crate::admin::dto::{self, DeliveryQuery, RouteInput};
use crate::admin::{chatwoot, service};
use crate::error::ApiError;
use crate::ids::{DeliveryId, RouteId};
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
    Ok(service::routes_body(&state).await?)
}

#[tauri::command]
pub async fn create_route(state: State<'_, AppState>, input: RouteInput) -> Answer<dto::RouteBody> {
    Ok(service::create_route(&state, input).await?)
}

#[tauri::command]
pub async fn update_route(
    state: State<'_, AppState>,
    input: UpdateRouteInput,
) -> Answer<dto::RouteBody> {
    Ok(service::update_route(&state, RouteId(input.id), input.changes).await?)
}

#[tauri::command]
pub async fn delete_route(state: State<'_, AppState>, input: IdInput) -> Answer<dto::SuccessBody> {
    Ok(service::delete_route(&state, RouteId(input.id)).await?)
}

#[tauri::command]
pub async fn test_route(state: State<'_, AppState>, input: IdInput) -> Answer<dto::TestResult> {
    Ok(service::test_route(&state, RouteId(input.id)).await?)
}

#[tauri::command]
pub async fn retry_dead(state: State<'_, AppState>, input: IdInput) -> Answer<dto::RetriedBody> {
    Ok(service::retry_dead_for_route(&state, RouteId(input.id)).await?)
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
    Ok(service::delivery_detail(&state, DeliveryId(input.id)).await?)
}

#[tauri::command]
pub async fn retry_delivery(
    state: State<'_, AppState>,
    input: IdInput,
) -> Answer<dto::DeliveryBody> {
    Ok(service::retry_delivery(&state, DeliveryId(input.id)).await?)
}

#[tauri::command]
pub async fn discard_delivery(
    state: State<'_, AppState>,
    input: IdInput,
) -> Answer<dto::SuccessBody> {
    Ok(service::discard_delivery(&state, DeliveryId(input.id)).await?)
}

#[tauri::command]
pub async fn retry_deliveries(
    state: State<'_, AppState>,
    input: dto::IdsInput,
) -> Answer<dto::RetriedBody> {
    Ok(service::retry_deliveries(&state, input).await?)
}

#[tauri::command]
pub async fn discard_deliveries(
    state: State<'_, AppState>,
    input: dto::IdsInput,
) -> Answer<dto::DiscardedBody> {
    Ok(service::discard_deliveries(&state, input).await?)
}

#[tauri::command]
pub async fn list_unrouted(state: State<'_, AppState>) -> Answer<dto::UnroutedBody> {
    Ok(service::list_unrouted(&state).await?)
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

#[tauri::command]
pub async fn chatwoot_status(state: State<'_, AppState>) -> Answer<dto::ChatwootBody> {
    Ok(chatwoot::status(&state).await?)
}

#[tauri::command]
pub async fn set_public_url(
    state: State<'_, AppState>,
    input: dto::PublicUrlInput,
) -> Answer<dto::ChatwootBody> {
    Ok(chatwoot::set_public_url(&state, input).await?)
}

#[tauri::command]
pub async fn link_chatwoot(
    state: State<'_, AppState>,
    input: dto::LinkInput,
) -> Answer<dto::LinkBody> {
    Ok(chatwoot::link(&state, input).await?)
}

#[tauri::command]
pub async fn unlink_chatwoot(
    state: State<'_, AppState>,
    input: dto::LinkAction,
) -> Answer<dto::SuccessBody> {
    Ok(chatwoot::unlink(&state, input).await?)
}

#[tauri::command]
pub async fn register_webhook(
    state: State<'_, AppState>,
    input: dto::LinkAction,
) -> Answer<dto::LinkBody> {
    Ok(chatwoot::register(&state, input).await?)
}

#[tauri::command]
pub async fn check_reach(
    state: State<'_, AppState>,
    input: dto::LinkAction,
) -> Answer<dto::CheckResult> {
    Ok(chatwoot::check(&state, input).await?)
}

#[tauri::command]
pub async fn chatwoot_inboxes(state: State<'_, AppState>) -> Answer<dto::InboxesBody> {
    Ok(chatwoot::inboxes(&state).await?)
}

#[tauri::command]
pub async fn clear_inbox_webhook(
    state: State<'_, AppState>,
    input: dto::InboxAction,
) -> Answer<dto::InboxesBody> {
    Ok(chatwoot::clear_inbox_webhook(&state, input).await?)
}

#[tauri::command]
pub async fn held_replies(state: State<'_, AppState>) -> Answer<dto::HeldBody> {
    Ok(chatwoot::held(&state).await?)
}

#[tauri::command]
pub async fn decide_held(
    state: State<'_, AppState>,
    input: dto::HeldAction,
) -> Answer<dto::HeldBody> {
    Ok(chatwoot::decide_held(&state, input).await?)
}
