//! `settings`: small values the app keeps for itself, by key.

use super::Db;

/// The Argon2 hash of the desktop's generated browser-panel password.
pub const ADMIN_PASSWORD_HASH: &str = "admin_password_hash";
/// The window's language (`en`, `id`), which the tray speaks too.
pub const LANGUAGE: &str = "language";
/// Where the desktop's webhook listens (`ip:port`), when chosen in the app.
pub const WEBHOOK_ADDRESS: &str = "webhook_address";
/// Where the desktop's admin API and panel listen (`ip:port`), when chosen in the app.
pub const ADMIN_ADDRESS: &str = "admin_address";
/// Set once the TypeScript version's routes were copied (see [`super::prisma`]): how many.
pub const PRISMA_ROUTES_IMPORTED: &str = "prisma_routes_imported";
/// The URL Chatwoot must post webhooks to, chosen in the panel ("" or absent: none).
pub const PUBLIC_URL: &str = "public_url";
/// The newest `message_updated` delivery the feedback task has looked at (Chatwoot's Retry), so that one stored
/// while it was not running is still seen after a restart.
pub const FEEDBACK_UPDATES_SEEN: &str = "feedback_updates_seen";
/// "off" when the desktop should not show notifications.
pub const NOTIFICATIONS: &str = "notifications";

pub async fn find(db: &Db, key: &str) -> sqlx::Result<Option<String>> {
    on!(db, |pool| sqlx::query_scalar(
        "SELECT value FROM settings WHERE key = $1"
    )
    .bind(key)
    .fetch_optional(pool)
    .await)
}

pub async fn upsert(db: &Db, key: &str, value: &str) -> sqlx::Result<()> {
    on!(db, |pool| {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = $2",
        )
        .bind(key)
        .bind(value)
        .execute(pool)
        .await?;
        Ok(())
    })
}

/// Stores `value` under `key` unless the key has a value already; whether it was stored.
pub async fn insert_new(db: &Db, key: &str, value: &str) -> sqlx::Result<bool> {
    on!(db, |pool| {
        let done = sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(pool)
        .await?;
        Ok(done.rows_affected() > 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::temp_db;

    #[tokio::test]
    async fn values_are_kept_and_replaced() {
        let (pool, _dir) = temp_db().await;
        assert_eq!(find(&pool, "k").await.unwrap(), None);
        upsert(&pool, "k", "1").await.unwrap();
        upsert(&pool, "k", "2").await.unwrap();
        assert_eq!(find(&pool, "k").await.unwrap().as_deref(), Some("2"));
    }
}
