//! `unrouted_inboxes`: inbox ids that sent webhooks while no route served them.

use serde::Serialize;
use sqlx::FromRow;

use super::Db;
use crate::ids::InboxId;

#[derive(Debug, Clone, PartialEq, Eq, FromRow, Serialize)]
pub struct UnroutedInbox {
    pub inbox_id: InboxId,
    pub count: i64,
    pub first_seen: i64,
    pub last_seen: i64,
    pub last_event: String,
}

/// Counts a webhook for an inbox without a route (on the writer's connection).
pub fn record(
    conn: &rusqlite::Connection,
    inbox_id: InboxId,
    event: &str,
    now: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO unrouted_inboxes (inbox_id, count, first_seen, last_seen, last_event)
         VALUES (?1, 1, ?2, ?2, ?3)
         ON CONFLICT (inbox_id) DO UPDATE SET count = count + 1, last_seen = ?2, last_event = ?3",
    )?
    .execute(rusqlite::params![inbox_id, now, event])?;
    Ok(())
}

/// Inboxes seen without a route that still have none, most recent first.
pub async fn list(db: &Db) -> sqlx::Result<Vec<UnroutedInbox>> {
    on!(db, |pool| sqlx::query_as(
        "SELECT inbox_id, count, first_seen, last_seen, last_event FROM unrouted_inboxes
         WHERE inbox_id NOT IN (SELECT inbox_id FROM routes) ORDER BY last_seen DESC",
    )
    .fetch_all(pool)
    .await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{temp_db, writer_connection};

    #[tokio::test]
    async fn counts_and_keeps_first_and_last_seen() {
        let (pool, dir) = temp_db().await;
        let conn = writer_connection(&dir);
        record(&conn, InboxId(5), "message_created", 100).unwrap();
        record(&conn, InboxId(5), "conversation_updated", 200).unwrap();
        record(&conn, InboxId(6), "message_created", 150).unwrap();
        let rows = list(&pool).await.unwrap();
        assert_eq!(
            rows[0],
            UnroutedInbox {
                inbox_id: InboxId(5),
                count: 2,
                first_seen: 100,
                last_seen: 200,
                last_event: "conversation_updated".into()
            }
        );
        assert_eq!(rows[1].inbox_id, InboxId(6));
    }
}
