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

/// Inboxes kept at most: a new one beyond this pushes out the one seen least recently, so that webhooks for
/// made-up inbox ids cannot grow the table without bound.
pub const MAX_ROWS: i64 = 500;

/// Counts a webhook for an inbox without a route (on the writer's connection).
pub fn record(
    conn: &rusqlite::Connection,
    inbox_id: InboxId,
    event: &str,
    now: i64,
) -> rusqlite::Result<()> {
    let count: i64 = conn
        .prepare_cached(
            "INSERT INTO unrouted_inboxes (inbox_id, count, first_seen, last_seen, last_event)
             VALUES (?1, 1, ?2, ?2, ?3)
             ON CONFLICT (inbox_id) DO UPDATE SET count = count + 1, last_seen = ?2, last_event = ?3
             RETURNING count",
        )?
        .query_row(rusqlite::params![inbox_id, now, event], |row| row.get(0))?;
    if count == 1 {
        conn.prepare_cached(
            "DELETE FROM unrouted_inboxes WHERE inbox_id IN
               (SELECT inbox_id FROM unrouted_inboxes ORDER BY last_seen DESC, inbox_id DESC LIMIT -1 OFFSET ?1)",
        )?
        .execute([MAX_ROWS])?;
    }
    Ok(())
}

/// How many inboxes without a route are kept.
pub async fn count(db: &Db) -> sqlx::Result<i64> {
    on!(db, |pool| sqlx::query_scalar(
        "SELECT count(*) FROM unrouted_inboxes WHERE inbox_id NOT IN (SELECT inbox_id FROM routes)",
    )
    .fetch_one(pool)
    .await)
}

/// Forgets inboxes last seen before `before` (unix ms).
pub async fn prune(db: &Db, before: i64) -> sqlx::Result<u64> {
    on!(db, |pool| Ok(sqlx::query(
        "DELETE FROM unrouted_inboxes WHERE last_seen < $1"
    )
    .bind(before)
    .execute(pool)
    .await?
    .rows_affected()))
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
        assert_eq!(count(&pool).await.unwrap(), 2);
        assert_eq!(prune(&pool, 160).await.unwrap(), 1);
        assert_eq!(list(&pool).await.unwrap()[0].inbox_id, InboxId(5));
    }

    #[tokio::test]
    async fn made_up_inboxes_push_out_the_least_recently_seen() {
        let (pool, dir) = temp_db().await;
        let conn = writer_connection(&dir);
        record(&conn, InboxId(1), "message_created", 10).unwrap();
        for n in 0..MAX_ROWS + 20 {
            record(&conn, InboxId(1000 + n), "message_created", 100 + n).unwrap();
            // The real one goes on being seen.
            record(&conn, InboxId(1), "message_created", 100 + n).unwrap();
        }
        assert_eq!(count(&pool).await.unwrap(), MAX_ROWS);
        let rows = list(&pool).await.unwrap();
        assert!(rows.iter().any(|r| r.inbox_id == InboxId(1)));
        assert!(!rows.iter().any(|r| r.inbox_id == InboxId(1000)));
    }
}
