//! Use-cases of the app's own settings, kept in the database: the first admin password (the headless setup
//! link) and the desktop's generated one, the language, notifications, the listen addresses chosen in the app,
//! and pausing deliveries. They know nothing of transports.

use std::net::SocketAddr;
use std::sync::PoisonError;

use super::dto;
use crate::config::{AdminCredentials, DEFAULT_ADMIN_USER, Secret};
use crate::error::{Error, Result};
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
    if !in_setup(state) {
        return Ok(None);
    }
    let (hash, shown) = match settings::find(&state.db, settings::ADMIN_PASSWORD_HASH).await? {
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

/// Shortest password the setup link accepts.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// The headless relay's first run: without a configured or stored login, opens the setup state and returns its
/// one-time token (for the link written to the log). With a stored login (chosen through an earlier setup),
/// puts it in force instead. A configured login (`BASIC_AUTH_PASS`) is left as it is.
///
/// # Errors
/// The database cannot be read.
pub async fn open_setup(state: &AppState) -> Result<Option<String>> {
    if !in_setup(state) {
        return Ok(None);
    }
    if adopt_stored_password(state).await? {
        return Ok(None);
    }
    let token = random_text(32);
    *state
        .setup_token
        .write()
        .unwrap_or_else(PoisonError::into_inner) =
        Some((Secret::new(token.clone()), std::time::Instant::now()));
    Ok(Some(token))
}

/// How long a setup link works.
pub const SETUP_LINK_LIFETIME: std::time::Duration = std::time::Duration::from_secs(3600);

/// Puts in force the admin password chosen through a setup link, here or at another relay on the same
/// PostgreSQL database; whether there was one.
///
/// # Errors
/// The database cannot be read.
pub async fn adopt_stored_password(state: &AppState) -> Result<bool> {
    let Some(hash) = settings::find(&state.db, settings::ADMIN_PASSWORD_HASH).await? else {
        return Ok(false);
    };
    *state.admin.write().unwrap_or_else(PoisonError::into_inner) =
        Some(AdminCredentials::new(DEFAULT_ADMIN_USER, hash));
    *state
        .setup_token
        .write()
        .unwrap_or_else(PoisonError::into_inner) = None;
    Ok(true)
}

/// Whether no admin login is in force yet: the headless relay then waits for its first password (only the setup
/// link and the panel's files answer).
pub fn in_setup(state: &AppState) -> bool {
    state
        .admin
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .is_none()
}

/// Sets the first admin password through the setup link: `token` must be the link's, `password` at least
/// [`MIN_PASSWORD_CHARS`]. It is stored as an Argon2 hash and in force at once; the link stops working.
///
/// # Errors
/// `Conflict` when a password exists already, `Unauthorized` for a wrong or used token, `Invalid` for a short
/// password, or the database cannot be written.
pub async fn complete_setup(
    state: &AppState,
    token: &str,
    password: &str,
) -> Result<dto::SuccessBody> {
    if !in_setup(state) {
        return Err(Error::Conflict("the admin password is set already".into()));
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(Error::invalid(
            "password",
            format!("password must be at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    // The token is taken before anything is stored: of two holders of the link, one succeeds.
    let taken = {
        let mut slot = state
            .setup_token
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let valid = slot.as_ref().is_some_and(|(expected, made)| {
            login::same_text(expected.expose(), token) && made.elapsed() < SETUP_LINK_LIFETIME
        });
        if valid { slot.take() } else { None }
    };
    let Some(taken) = taken else {
        return Err(Error::Unauthorized(
            "this setup link is not valid (links work once, for an hour): use the one in the relay's log, or \
             restart the relay for a new one"
                .into(),
        ));
    };
    let hash = login::hash_password(password);
    match settings::insert_new(&state.db, settings::ADMIN_PASSWORD_HASH, &hash).await {
        Ok(true) => {}
        // Chosen meanwhile through another relay's link.
        Ok(false) => {
            adopt_stored_password(state).await?;
            return Err(Error::Conflict("the admin password is set already".into()));
        }
        Err(e) => {
            *state
                .setup_token
                .write()
                .unwrap_or_else(PoisonError::into_inner) = Some(taken);
            return Err(e.into());
        }
    }
    *state.admin.write().unwrap_or_else(PoisonError::into_inner) =
        Some(AdminCredentials::new(DEFAULT_ADMIN_USER, hash));
    tracing::info!("the admin password was chosen through the setup link");
    Ok(dto::SuccessBody { success: true })
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

/// `chars` random letters and digits.
fn random_text(chars: usize) -> String {
    use rand::Rng as _;
    rand::rng()
        .sample_iter(&rand::distr::Alphanumeric)
        .take(chars)
        .map(char::from)
        .collect()
}

async fn store_new_password(state: &AppState) -> Result<(String, String)> {
    let password = random_text(GENERATED_PASSWORD_CHARS);
    let hash = login::hash_password(&password);
    settings::upsert(&state.db, settings::ADMIN_PASSWORD_HASH, &hash).await?;
    Ok((hash, password))
}

/// The language and notification choices; notifications are on unless turned off.
///
/// # Errors
/// The database cannot be read.
pub async fn preferences(state: &AppState) -> Result<Preferences> {
    let notifications = settings::find(&state.db, settings::NOTIFICATIONS).await?;
    Ok(Preferences {
        language: settings::find(&state.db, settings::LANGUAGE).await?,
        notifications: notifications.is_none_or(|v| v != "off"),
    })
}

/// Remembers the window's language, which the tray speaks too.
///
/// # Errors
/// The database cannot be written.
pub async fn set_language(state: &AppState, language: &str) -> Result<()> {
    settings::upsert(&state.db, settings::LANGUAGE, language).await?;
    Ok(())
}

/// Remembers whether notifications are shown.
///
/// # Errors
/// The database cannot be written.
pub async fn set_notifications(state: &AppState, on: bool) -> Result<()> {
    let value = if on { "on" } else { "off" };
    settings::upsert(&state.db, settings::NOTIFICATIONS, value).await?;
    Ok(())
}

/// The address last chosen in the app for `listener`, if any (one that no longer parses is ignored).
///
/// # Errors
/// The database cannot be read.
pub async fn saved_address(state: &AppState, listener: Listener) -> Result<Option<SocketAddr>> {
    let value = settings::find(&state.db, listener.key()).await?;
    Ok(value.and_then(|v| v.parse().ok()))
}

/// Remembers where `listener` listens, for the next start.
///
/// # Errors
/// The database cannot be written.
pub async fn save_address(state: &AppState, listener: Listener, addr: SocketAddr) -> Result<()> {
    settings::upsert(&state.db, listener.key(), &addr.to_string()).await?;
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
