//! `chatwoot_inboxes`: the linked accounts' inboxes as last read from Chatwoot, for their names.

use sqlx::FromRow;

use super::Db;

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct KnownInbox {
    pub link_id: i64,
    pub inbox_id: i64,
    pub name: String,
    pub channel_type: String,
}

pub async fn list(db: &Db) -> sqlx::Result<Vec<KnownInbox>> {
    on!(db, |pool| {
        sqlx::query_as(
        "SELECT link_id, inbox_id, name, channel_type FROM chatwoot_inboxes ORDER BY link_id, inbox_id",
    )
    .fetch_all(pool)
    .await
    })
}

/// Replaces what is known of one link's inboxes.
pub async fn replace(db: &Db, link_id: i64, inboxes: &[KnownInbox]) -> sqlx::Result<()> {
    on!(db, |pool| {
        let mut tx = pool.begin().await?;
        sqlx::query("DELETE FROM chatwoot_inboxes WHERE link_id = $1")
            .bind(link_id)
            .execute(&mut *tx)
            .await?;
        for inbox in inboxes {
            sqlx::query(
                "INSERT INTO chatwoot_inboxes (link_id, inbox_id, name, channel_type) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (link_id, inbox_id) DO UPDATE SET name = excluded.name, channel_type = excluded.channel_type",
            )
            .bind(link_id)
            .bind(inbox.inbox_id)
            .bind(&inbox.name)
            .bind(&inbox.channel_type)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    })
}
