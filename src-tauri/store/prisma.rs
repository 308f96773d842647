//! Upgrading from the TypeScript version: its Prisma table `WebhookRoute` sits in the same SQLite file (the
//! default `DATABASE_URL` is the same), and its routes are copied into `routes` once, on the first start.
//! The old table is only read, never changed, so going back to the old version stays possible.

use sqlx::SqlitePool;

use super::{now_ms, settings};

/// What the first start found in the TypeScript version's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    /// Routes copied.
    pub routes: u64,
    /// Routes left out: their inbox already had a route here, or the inbox id was not positive.
    pub skipped: u64,
}

/// Copies `WebhookRoute` into `routes` (ids, inbox ids, URLs, names, timestamps) if the table exists and this
/// was not done before; `None` otherwise. One transaction: all or nothing.
///
/// Prisma keeps `DateTime` in SQLite as unix milliseconds; rows written by its driver adapters hold ISO 8601
/// text and rows filled by the column default `CURRENT_TIMESTAMP` hold `YYYY-MM-DD HH:MM:SS` (UTC); all three
/// are read.
///
/// # Errors
/// The database failed; nothing was imported.
pub async fn import_routes(pool: &SqlitePool) -> sqlx::Result<Option<Imported>> {
    let mut tx = pool.begin().await?;
    let has_table: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'WebhookRoute')",
    )
    .fetch_one(&mut *tx)
    .await?;
    let done: Option<String> = sqlx::query_scalar("SELECT value FROM settings WHERE key = ?")
        .bind(settings::PRISMA_ROUTES_IMPORTED)
        .fetch_optional(&mut *tx)
        .await?;
    if !has_table || done.is_some() {
        return Ok(None);
    }
    let now = now_ms();
    let total: i64 = sqlx::query_scalar(r#"SELECT count(*) FROM "WebhookRoute""#)
        .fetch_one(&mut *tx)
        .await?;
    let copied = sqlx::query(&format!(
        r#"INSERT OR IGNORE INTO routes (id, inbox_id, webhook_url, name, enabled, created_at, updated_at)
           SELECT "id", "inboxId", "webhookUrl", "name", 1,
                  {created}, {updated}
           FROM "WebhookRoute" WHERE "inboxId" > 0 ORDER BY "id""#,
        created = millis(r#""createdAt""#),
        updated = millis(r#""updatedAt""#),
    ))
    .bind(now)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query("INSERT INTO settings (key, value) VALUES (?, ?)")
        .bind(settings::PRISMA_ROUTES_IMPORTED)
        .bind(copied.to_string())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(Imported {
        routes: copied,
        skipped: total.unsigned_abs().saturating_sub(copied),
    }))
}

/// SQL turning a Prisma `DateTime` column into unix milliseconds; `?` (now) when it cannot be read.
fn millis(column: &str) -> String {
    format!(
        "COALESCE(CASE typeof({column}) \
           WHEN 'integer' THEN {column} \
           WHEN 'real' THEN CAST({column} AS INTEGER) \
           WHEN 'text' THEN CAST(round((julianday({column}) - 2440587.5) * 86400000.0) AS INTEGER) \
         END, ?)"
    )
}
