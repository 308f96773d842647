//! `chatwoot_links`: Chatwoot accounts linked with an administrator's token, and the webhook registered there.

use sqlx::FromRow;

use super::{Db, now_ms};

#[derive(Clone, PartialEq, Eq, FromRow)]
pub struct Link {
    pub id: i64,
    /// The address Chatwoot opens at, without a trailing slash.
    pub base_url: String,
    pub account_id: i64,
    pub account_name: String,
    /// The access token; never leaves the relay except in the header of calls to this Chatwoot.
    pub token: String,
    pub from_env: bool,
    pub webhook_id: Option<i64>,
    pub webhook_url: Option<String>,
    /// The secret Chatwoot generated for the webhook: its deliveries are verified with it.
    pub webhook_secret: Option<String>,
    pub created_at: i64,
    /// When catching up last found the account current (unix ms).
    pub caught_up_at: Option<i64>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("id", &self.id)
            .field("base_url", &self.base_url)
            .field("account_id", &self.account_id)
            .field("webhook_id", &self.webhook_id)
            .finish_non_exhaustive()
    }
}

/// What a link is made of before it is stored.
#[derive(Clone)]
pub struct NewLink<'a> {
    pub base_url: &'a str,
    pub account_id: i64,
    pub account_name: &'a str,
    pub token: &'a str,
    pub from_env: bool,
}

const COLUMNS: &str = "id, base_url, account_id, account_name, token, from_env, webhook_id, webhook_url, \
                       webhook_secret, created_at, caught_up_at";

pub async fn list(db: &Db) -> sqlx::Result<Vec<Link>> {
    on!(db, |pool| {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM chatwoot_links ORDER BY id"))
            .fetch_all(pool)
            .await
    })
}

pub async fn find(db: &Db, id: i64) -> sqlx::Result<Option<Link>> {
    on!(db, |pool| {
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM chatwoot_links WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(pool)
        .await
    })
}

/// Stores a link, or renews the token and name of the one with the same address and account (its webhook kept).
pub async fn upsert(db: &Db, link: &NewLink<'_>) -> sqlx::Result<Link> {
    on!(db, |pool| {
        sqlx::query_as(&format!(
        "INSERT INTO chatwoot_links (base_url, account_id, account_name, token, from_env, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (base_url, account_id) DO UPDATE
           SET account_name = $3, token = $4, from_env = chatwoot_links.from_env OR excluded.from_env
         RETURNING {COLUMNS}"
    ))
    .bind(link.base_url)
    .bind(link.account_id)
    .bind(link.account_name)
    .bind(link.token)
    .bind(link.from_env)
    .bind(now_ms())
    .fetch_one(pool)
    .await
    })
}

/// Records the webhook registered for a link (`None`: it is gone).
pub async fn set_webhook(
    db: &Db,
    id: i64,
    webhook: Option<(i64, &str, Option<&str>)>,
) -> sqlx::Result<()> {
    on!(db, |pool| {
        let (webhook_id, url, secret) = webhook.map_or((None, None, None), |(id, url, secret)| {
            (Some(id), Some(url), secret)
        });
        sqlx::query(
        "UPDATE chatwoot_links SET webhook_id = $1, webhook_url = $2, webhook_secret = $3 WHERE id = $4",
    )
    .bind(webhook_id)
    .bind(url)
    .bind(secret)
    .bind(id)
    .execute(pool)
    .await?;
        Ok(())
    })
}

/// Records that catching up found the account current as of `at`.
pub async fn set_caught_up(db: &Db, id: i64, at: i64) -> sqlx::Result<()> {
    on!(db, |pool| {
        sqlx::query("UPDATE chatwoot_links SET caught_up_at = $1 WHERE id = $2")
            .bind(at)
            .bind(id)
            .execute(pool)
            .await?;
        Ok(())
    })
}

/// Removes a link, its inboxes and how far catching up read it; false when there was none.
pub async fn delete(db: &Db, id: i64) -> sqlx::Result<bool> {
    on!(db, |pool| {
        let mut tx = pool.begin().await?;
        for table in ["chatwoot_inboxes", "chatwoot_catchup"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE link_id = $1"))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let gone = sqlx::query("DELETE FROM chatwoot_links WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(gone > 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::temp_db;

    #[tokio::test]
    async fn a_link_is_renewed_not_doubled_and_keeps_its_webhook() {
        let (pool, _dir) = temp_db().await;
        let new = NewLink {
            base_url: "https://chat.example.com",
            account_id: 3,
            account_name: "Toko",
            token: "t1",
            from_env: false,
        };
        let first = upsert(&pool, &new).await.unwrap();
        set_webhook(
            &pool,
            first.id,
            Some((9, "https://relay.example.com/webhook", Some("s"))),
        )
        .await
        .unwrap();
        let again = upsert(
            &pool,
            &NewLink {
                token: "t2",
                ..new.clone()
            },
        )
        .await
        .unwrap();
        assert_eq!(again.id, first.id);
        assert_eq!(again.token, "t2");
        assert_eq!(again.webhook_id, Some(9));
        assert_eq!(list(&pool).await.unwrap().len(), 1);
        assert!(delete(&pool, first.id).await.unwrap());
        assert!(!delete(&pool, first.id).await.unwrap());
    }
}
