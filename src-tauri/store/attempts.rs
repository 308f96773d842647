//! `delivery_attempts`: one row per HTTP attempt, kept for the delivery log.

use serde::{Deserialize, Serialize};
use sqlx::{FromRow, SqliteConnection, SqlitePool};

use crate::ids::DeliveryId;

/// What started an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(rename_all = "lowercase")]
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
}

/// One attempt through [`insert_many`].
#[cfg(test)]
pub async fn insert(conn: &mut SqliteConnection, a: &Attempt) -> sqlx::Result<()> {
    insert_many(conn, &[a]).await
}

/// Inserts many attempts in few statements; an attempt whose delivery was removed meanwhile is dropped.
pub async fn insert_many(conn: &mut SqliteConnection, attempts: &[&Attempt]) -> sqlx::Result<()> {
    for chunk in attempts.chunks(500) {
        let mut q = sqlx::QueryBuilder::new(
            "INSERT INTO delivery_attempts
                 (delivery_id, attempt, trigger, started_at, duration_ms, status_code, error, response_snippet)
             SELECT * FROM (",
        );
        q.push_values(chunk, |mut row, a| {
            row.push_bind(a.delivery_id)
                .push_bind(a.attempt)
                .push_bind(a.trigger)
                .push_bind(a.started_at)
                .push_bind(a.duration_ms)
                .push_bind(a.status_code)
                .push_bind(&a.error)
                .push_bind(&a.response_snippet);
        });
        q.push(") AS v WHERE EXISTS (SELECT 1 FROM deliveries WHERE id = v.column1)");
        q.build().persistent(false).execute(&mut *conn).await?;
    }
    Ok(())
}

pub async fn list_for_delivery(pool: &SqlitePool, id: DeliveryId) -> sqlx::Result<Vec<Attempt>> {
    sqlx::query_as(
        "SELECT delivery_id, attempt, trigger, started_at, duration_ms, status_code, error, response_snippet
         FROM delivery_attempts WHERE delivery_id = ? ORDER BY id",
    )
    .bind(id)
    .fetch_all(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::deliveries::{self, tests::new_delivery};
    use crate::store::test_support::temp_db;

    #[tokio::test]
    async fn attempts_are_listed_in_order() {
        let (pool, _dir) = temp_db().await;
        let mut conn = pool.acquire().await.unwrap();
        let id = deliveries::insert(&mut conn, &new_delivery(None, None), 1)
            .await
            .unwrap()
            .unwrap();
        let first = Attempt {
            delivery_id: id,
            attempt: 1,
            trigger: Trigger::Scheduled,
            started_at: 5,
            duration_ms: 12,
            status_code: None,
            error: Some("connection refused".into()),
            response_snippet: None,
        };
        let second = Attempt {
            attempt: 2,
            trigger: Trigger::Manual,
            status_code: Some(200),
            error: None,
            response_snippet: Some("OK".into()),
            ..first.clone()
        };
        insert(&mut conn, &first).await.unwrap();
        insert(&mut conn, &second).await.unwrap();
        drop(conn);
        assert_eq!(
            list_for_delivery(&pool, id).await.unwrap(),
            vec![first, second]
        );
    }
}
