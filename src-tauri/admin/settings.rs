//! Use-cases of the app's own settings, kept in the database: the generated browser-panel password, the
//! language, notifications, the listen addresses chosen in the app, and pausing deliveries. The desktop calls
//! them; they know nothing of Tauri.

use std::net::SocketAddr;
use std::sync::PoisonError;

use crate::config::{AdminCredentials, DEFAULT_ADMIN_USER};
use crate::error::Result;
use crate::login;
use crate::state::AppState;
use crate::store::settings;

/// Length of a generated browser-panel password (alphanumeric: about 119 bits).
pub const GENERATED_PASSWORD_CHARS: usize = 20;

/// What the app remembers of the user's choices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preferences {
    /// `None` until a language was chosen in the window.
    pub language: Option<String>,
    pub notifications: bool,
}

/// Which listener an address is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Webhook,
    Admin,
}

impl Listener {
    fn key(self) -> &'static str {
        match self {
            Self::Webhook => settings::WEBHOOK_ADDRESS,
            Self::Admin => settings::ADMIN_ADDRESS,
        }
    }
}

/// Gives the browser panel a login when none is configured: the stored Argon2 hash, or on first run a new
/// random password, stored only as its hash. Returns the plain password only when it was just generated, so
/// the app can show it once. A configured login is left as it is.
///
/// # Errors
/// The database cannot be read or written.
pub async fn ensure_admin_login(state: &AppState) -> Result<Option<String>> {
    if state
        .admin
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .is_some()
    {
        return Ok(None);
    }
    let (hash, shown) = match settings::find(&state.pool, settings::ADMIN_PASSWORD_HASH).await? {
        Some(hash) => (hash, None),
        None => {
            let (hash, password) = store_new_password(state).await?;
            tracing::info!(
                "generated a password for the browser admin panel (shown in the app's Settings)"
            );
            (hash, Some(password))
        }
    };
    *state.admin.write().unwrap_or_else(PoisonError::into_inner) =
        Some(AdminCredentials::new(DEFAULT_ADMIN_USER, hash));
    Ok(shown)
}

/// Replaces the browser-panel password with a new random one, at once for the running relay too; returns
/// the password, which is not kept anywhere in plain text.
///
/// # Errors
/// The database cannot be written.
pub async fn new_admin_password(state: &AppState) -> Result<String> {
    let (hash, password) = store_new_password(state).await?;
    let mut admin = state.admin.write().unwrap_or_else(PoisonError::into_inner);
    let user = admin
        .as_ref()
        .map_or(DEFAULT_ADMIN_USER, |a| a.user.as_str())
        .to_owned();
    *admin = Some(AdminCredentials::new(user, hash));
    drop(admin);
    tracing::info!("the browser admin panel has a new password");
    Ok(password)
}

async fn store_new_password(state: &AppState) -> Result<(String, String)> {
    use rand::Rng as _;
    let password: String = rand::rng()
        .sample_iter(&rand::distr::Alphanumeric)
        .take(GENERATED_PASSWORD_CHARS)
        .map(char::from)
        .collect();
    let hash = login::hash_password(&password);
    settings::upsert(&state.pool, settings::ADMIN_PASSWORD_HASH, &hash).await?;
    Ok((hash, password))
}

/// The language and notification choices; notifications are on unless turned off.
///
/// # Errors
/// The database cannot be read.
pub async fn preferences(state: &AppState) -> Result<Preferences> {
    let notifications = settings::find(&state.pool, settings::NOTIFICATIONS).await?;
    Ok(Preferences {
        language: settings::find(&state.pool, settings::LANGUAGE).await?,
        notifications: notifications.is_none_or(|v| v != "off"),
    })
}

/// Remembers the window's language, which the tray speaks too.
///
/// # Errors
/// The database cannot be written.
pub async fn set_language(state: &AppState, language: &str) -> Result<()> {
    settings::upsert(&state.pool, settings::LANGUAGE, language).await?;
    Ok(())
}

/// Remembers whether notifications are shown.
///
/// # Errors
/// The database cannot be written.
pub async fn set_notifications(state: &AppState, on: bool) -> Result<()> {
    let value = if on { "on" } else { "off" };
    settings::upsert(&state.pool, settings::NOTIFICATIONS, value).await?;
    Ok(())
}

/// The address last chosen in the app for `listener`, if any (one that no longer parses is ignored).
///
/// # Errors
/// The database cannot be read.
pub async fn saved_address(state: &AppState, listener: Listener) -> Result<Option<SocketAddr>> {
    let value = settings::find(&state.pool, listener.key()).await?;
    Ok(value.and_then(|v| v.parse().ok()))
}

/// Remembers where `listener` listens, for the next start.
///
/// # Errors
/// The database cannot be written.
pub async fn save_address(state: &AppState, listener: Listener, addr: SocketAddr) -> Result<()> {
    settings::upsert(&state.pool, listener.key(), &addr.to_string()).await?;
    Ok(())
}

/// Whether deliveries are paused.
pub fn is_paused(state: &AppState) -> bool {
    state.dispatcher.is_paused()
}

/// Pauses or resumes deliveries (webhooks are still accepted and queued while paused).
pub fn set_paused(state: &AppState, paused: bool) {
    state.dispatcher.set_paused(paused);
    tracing::info!(paused, "deliveries paused by the admin");
}
