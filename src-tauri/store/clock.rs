//! The time relays agree on. On PostgreSQL several relays compare the times they store (a reply's arrival, which
//! ends its reorder window; a retry's time; when a note is due), so each follows the database's clock, measured
//! at connect and every [`EVERY`], whatever its own machine's clock says. On SQLite the one relay keeps its own.
//!
//! The offset belongs to the process: a relay has one database.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// How often the database's clock is measured again.
pub const EVERY: Duration = Duration::from_secs(60);
/// Round trips per measurement; the quickest one counts.
const TRIES: usize = 3;
/// An offset this large is told in the log.
const TOLD_MS: i64 = 1_000;

/// How far the database's clock is ahead of this machine's, in milliseconds.
static AHEAD_MS: AtomicI64 = AtomicI64::new(0);

/// Current time as unix milliseconds: this machine's clock, moved to the database's on PostgreSQL.
pub fn now_ms() -> i64 {
    machine_ms().saturating_add(AHEAD_MS.load(Ordering::Relaxed))
}

/// How far the database's clock is ahead of this machine's, as last measured (0 on SQLite).
pub fn database_ahead_ms() -> i64 {
    AHEAD_MS.load(Ordering::Relaxed)
}

fn machine_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Measures how far the database's clock is from this machine's and follows it from now on; a difference of a
/// second or more (or a change of one) is logged.
///
/// # Errors
/// The database cannot be asked.
pub async fn follow(pool: &PgPool) -> sqlx::Result<i64> {
    let mut best: Option<(i64, i64)> = None;
    for _ in 0..TRIES {
        let sent = machine_ms();
        let theirs: i64 =
            sqlx::query_scalar("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint")
                .fetch_one(pool)
                .await?;
        let back = machine_ms();
        let trip = back - sent;
        let ahead = theirs - sent - trip / 2;
        if best.is_none_or(|(quickest, _)| trip < quickest) {
            best = Some((trip, ahead));
        }
    }
    let ahead = best.map_or(0, |(_, ahead)| ahead);
    let before = AHEAD_MS.swap(ahead, Ordering::Relaxed);
    if ahead.abs() >= TOLD_MS && (ahead - before).abs() >= TOLD_MS {
        let (seconds, way) = (
            ahead.abs() / 1000,
            if ahead > 0 { "behind" } else { "ahead of" },
        );
        tracing::warn!(
            "this machine's clock is {seconds} s {way} the database's: the relay keeps the database's time, which \
             the other relays keep too"
        );
    }
    Ok(ahead)
}

/// Follows the database's clock every [`EVERY`] until `shutdown`; a failed measurement keeps the last one.
pub async fn keep_following(pool: PgPool, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(EVERY) => {}
        }
        if let Err(err) = follow(&pool).await {
            tracing::debug!(problem = %err, "the database's clock could not be read");
        }
    }
}
