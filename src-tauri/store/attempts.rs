//! `delivery_attempts`: one row per HTTP attempt, kept for the delivery log.

use serde::{Deserialize, Serialize};
use sqlx::FromRow;

use super::Db;
use crate::ids::DeliveryId;

/// What started an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Trigger {
    Scheduled,
    Manual,
}

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct Attempt {
    pub delivery_id: DeliveryId,
    /// 1 for the first attempt of the delivery.
    pub attempt: i64,
    pub trigger: Trigger,
    pub started_at: i64,
    pub duration_ms: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    /// The first bytes of the response body (lossy UTF-8).
    pub response_snippet: Option<String>,
    /// Failed after the whole request was sent, with no answer: GoWA may have sent the message.
    pub ambiguous: bool,
}

impl rusqlite::ToSql for Trigger {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(match self {
            Self::Scheduled => "scheduled",
            Self::Manual => "manual",
        }
        .into())
    }
}

/// Records an attempt (on the writer's connection); one whose delivery was removed meanwhile is dropped.
pub fn insert(conn: &rusqlite::Connection, a: &Attempt) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO delivery_attempts
             (delivery_id, attempt, trigger, started_at, duration_ms, status_code, error, response_snippet,
              ambiguous)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9 WHERE EXISTS (SELECT 1 FROM deliveries WHERE id = ?1)",
    )?
    .execute(rusqlite::params![
        a.delivery_id,
        a.attempt,
        a.trigger,
        a.started_at,
        a.duration_ms,
        a.status_code,
        a.error,
        a.response_snippet,
        a.ambiguous,
    ])?;
    Ok(())
}

pub async fn list_for_delivery(db: &Db, id: DeliveryId) -> sqlx::Result<Vec<Attempt>> {
    on!(db, |pool| {
        sqlx::query_as(
        "SELECT delivery_id, attempt, trigger, started_at, duration_ms, status_code, error, response_snippet,
                ambiguous
         FROM delivery_attempts WHERE delivery_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::deliveries::{self, tests::new_delivery};
    use crate::store::test_support::{temp_db, writer_connection};

    #[tokio::test]
    async fn attempts_are_listed_in_order() {
        let (pool, dir) = temp_db().await;
        let conn = writer_connection(&dir);
        let id = deliveries::insert(&conn, &new_delivery(None, None), 1).unwrap();
        let first = Attempt {
            delivery_id: id,
            attempt: 1,
            trigger: Trigger::Scheduled,
            started_at: 5,
            duration_ms: 12,
            status_code: None,
            error: Some("timed out".into()),
            response_snippet: None,
            ambiguous: true,
        };
        let second = Attempt {
            attempt: 2,
            trigger: Trigger::Manual,
            status_code: Some(200),
            error: None,
            response_snippet: Some("OK".into()),
            ambiguous: false,
            ..first.clone()
        };
        insert(&conn, &first).unwrap();
        insert(&conn, &second).unwrap();
        assert_eq!(
            list_for_delivery(&pool, id).await.unwrap(),
            vec![first, second]
        );
    }
}
