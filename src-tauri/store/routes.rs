//! `routes`: which GoWA URL serves which Chatwoot inbox.

use sqlx::FromRow;

use super::{Db, now_ms};
use crate::ids::{InboxId, RouteId};

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct Route {
    pub id: RouteId,
    pub inbox_id: InboxId,
    /// As entered, credentials included; they are sent as `Authorization: Basic`, never in the URL.
    pub webhook_url: String,
    pub name: Option<String>,
    pub enabled: bool,
    /// HMAC key for `X-Hub-Signature-256`; write-only over the admin API.
    pub secret: Option<String>,
    /// Chatwoot's webhook secret(s) for this inbox, comma-separated; write-only over the admin API.
    pub chatwoot_secret: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A route's fields, already validated by the caller.
#[derive(Debug, Clone)]
pub struct RouteFields {
    pub inbox_id: InboxId,
    pub webhook_url: String,
    pub name: Option<String>,
    pub enabled: bool,
    pub secret: Option<String>,
    pub chatwoot_secret: Option<String>,
}

impl From<Route> for RouteFields {
    fn from(r: Route) -> Self {
        Self {
            inbox_id: r.inbox_id,
            webhook_url: r.webhook_url,
            name: r.name,
            enabled: r.enabled,
            secret: r.secret,
            chatwoot_secret: r.chatwoot_secret,
        }
    }
}

const COLUMNS: &str =
    "id, inbox_id, webhook_url, name, enabled, secret, chatwoot_secret, created_at, updated_at";

pub async fn list(db: &Db) -> sqlx::Result<Vec<Route>> {
    let sql = format!("SELECT {COLUMNS} FROM routes ORDER BY id");
    on!(db, |pool| sqlx::query_as(&sql).fetch_all(pool).await)
}

pub async fn find(db: &Db, id: RouteId) -> sqlx::Result<Option<Route>> {
    let sql = format!("SELECT {COLUMNS} FROM routes WHERE id = $1");
    on!(db, |pool| sqlx::query_as(&sql)
        .bind(id)
        .fetch_optional(pool)
        .await)
}

/// Every inbox that has a route, enabled or paused (on the writer's connection).
pub fn inboxes(
    conn: &rusqlite::Connection,
) -> rusqlite::Result<std::collections::HashSet<InboxId>> {
    conn.prepare_cached("SELECT inbox_id FROM routes")?
        .query_map([], |row| row.get(0))?
        .collect()
}

/// # Errors
/// A unique violation when the inbox already has a route.
pub async fn insert(db: &Db, f: &RouteFields) -> sqlx::Result<Route> {
    let sql = format!(
        "INSERT INTO routes (inbox_id, webhook_url, name, enabled, secret, chatwoot_secret, created_at,
                             updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING {COLUMNS}"
    );
    on!(db, |pool| sqlx::query_as(&sql)
        .bind(f.inbox_id)
        .bind(&f.webhook_url)
        .bind(&f.name)
        .bind(f.enabled)
        .bind(&f.secret)
        .bind(&f.chatwoot_secret)
        .bind(now_ms())
        .fetch_one(pool)
        .await)
}

/// Replaces every field of route `id`; `None` when it does not exist.
///
/// # Errors
/// A unique violation when another route already serves the new inbox id.
pub async fn update(db: &Db, id: RouteId, f: &RouteFields) -> sqlx::Result<Option<Route>> {
    let sql = format!(
        "UPDATE routes SET inbox_id = $1, webhook_url = $2, name = $3, enabled = $4, secret = $5,
                           chatwoot_secret = $6, updated_at = $7
         WHERE id = $8 RETURNING {COLUMNS}"
    );
    on!(db, |pool| sqlx::query_as(&sql)
        .bind(f.inbox_id)
        .bind(&f.webhook_url)
        .bind(&f.name)
        .bind(f.enabled)
        .bind(&f.secret)
        .bind(&f.chatwoot_secret)
        .bind(now_ms())
        .bind(id)
        .fetch_optional(pool)
        .await)
}

/// `false` when there was no such route.
pub async fn delete(db: &Db, id: RouteId) -> sqlx::Result<bool> {
    let done = on!(db, |pool| sqlx::query("DELETE FROM routes WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?;
    Ok(done > 0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::test_support::{both, temp_db, writer_connection};

    pub(crate) fn fields(inbox: i64) -> RouteFields {
        RouteFields {
            inbox_id: InboxId(inbox),
            webhook_url: format!("http://gowa:3000/chatwoot/webhook/{inbox}"),
            name: Some(format!("inbox {inbox}")),
            enabled: true,
            secret: None,
            chatwoot_secret: None,
        }
    }

    #[tokio::test]
    async fn crud_round_trip() {
        let (pool, dir) = temp_db().await;
        let a = insert(&pool, &fields(7)).await.unwrap();
        let b = insert(&pool, &fields(9)).await.unwrap();
        assert_eq!(list(&pool).await.unwrap(), vec![a.clone(), b.clone()]);

        let mut changed = RouteFields::from(a.clone());
        changed.name = None;
        changed.enabled = false;
        changed.secret = Some("k".into());
        let a2 = update(&pool, a.id, &changed).await.unwrap().unwrap();
        assert_eq!(
            (a2.name.as_deref(), a2.enabled, a2.secret.as_deref()),
            (None, false, Some("k"))
        );
        assert!(a2.updated_at >= a.updated_at);
        assert_eq!(find(&pool, a.id).await.unwrap(), Some(a2.clone()));
        let routed = inboxes(&writer_connection(&dir)).unwrap();
        assert_eq!(routed, [InboxId(7), InboxId(9)].into(), "paused or not");

        assert!(delete(&pool, b.id).await.unwrap());
        assert!(!delete(&pool, b.id).await.unwrap());
        assert_eq!(update(&pool, b.id, &fields(9)).await.unwrap(), None);
        assert_eq!(list(&pool).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn one_route_per_inbox() {
        let (dbs, _dir) = both().await;
        for db in &dbs {
            let a = insert(db, &fields(7)).await.unwrap();
            let dup = insert(db, &fields(7)).await.unwrap_err();
            assert!(dup.as_database_error().unwrap().is_unique_violation());
            let b = insert(db, &fields(8)).await.unwrap();
            let clash = update(db, b.id, &RouteFields::from(a)).await.unwrap_err();
            assert!(clash.as_database_error().unwrap().is_unique_violation());
            assert_eq!(list(db).await.unwrap().len(), 2);
        }
    }
}
