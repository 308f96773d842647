//! All SQL lives here: connecting and migrating, one module per table, and the group-commit writer.
//!
//! Other modules call typed functions and never write SQL themselves. Times are unix milliseconds (UTC).
//!
//! Two backends behind one seam, [`Db`]: SQLite (one relay on one file, the default) and PostgreSQL (several
//! relays on one database). A function's SQL is written once where both understand it (`$1` placeholders,
//! `RETURNING`, `ON CONFLICT`) and once per backend where they differ; [`on!`] runs the same code on either pool.

/// Runs `$body` with `$pool` bound to the backend's pool: the same code, compiled once per backend.
macro_rules! on {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite($pool) => $body,
            $crate::store::Db::Postgres($pool) => $body,
        }
    };
}

/// The SQL for the backend of `$db`: `sqlite` or `postgres`.
macro_rules! sql {
    ($db:expr, sqlite: $sqlite:expr, postgres: $postgres:expr $(,)?) => {
        match $db {
            $crate::store::Db::Sqlite(_) => $sqlite,
            $crate::store::Db::Postgres(_) => $postgres,
        }
    };
}

pub mod attempts;
pub mod chatwoot_feedback;
pub mod chatwoot_inboxes;
pub mod chatwoot_links;
pub mod chatwoot_recovered;
pub mod clock;
pub mod dedupe;
pub mod deliveries;
pub mod lanes;
pub mod prisma;
pub mod routes;
pub mod settings;
pub mod unrouted_inboxes;
pub mod writer;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

pub use clock::now_ms;
pub use writer::Writer;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
pub static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The relay's database: a pool of either backend; cheap to clone.
#[derive(Debug, Clone)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Db {
    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }

    /// Waits for the connections in use, then closes them all.
    pub async fn close(&self) {
        on!(self, |pool| pool.close().await);
    }
}

/// How long a relay's transaction may wait for the relay between statements (never, while the relay runs).
const IDLE_IN_TRANSACTION: Duration = Duration::from_secs(3);

/// Connections to PostgreSQL per relay: several relays and Chatwoot share the server's `max_connections`.
const POSTGRES_CONNECTIONS: u32 = 8;

/// Connects to a PostgreSQL database (`postgres://…` or `postgresql://…`) and applies pending migrations; relays
/// starting together migrate one after another (sqlx holds an advisory lock meanwhile).
///
/// # Errors
/// The URL is malformed, the server cannot be reached or refuses the login, or a migration fails.
pub async fn connect_postgres(url: &str) -> Result<PgPool, sqlx::Error> {
    // A write caught behind another's lock fails after the same wait as on SQLite, so that its webhook is
    // answered 503 within Chatwoot's 5 s. A relay that stops in the middle of a transaction (a frozen process, a
    // paused VM) has it ended by the server after a moment, so that the lanes it locked can be taken over.
    let lock_timeout = format!("{}ms", BUSY_TIMEOUT.as_millis());
    let idle_timeout = format!("{}ms", IDLE_IN_TRANSACTION.as_millis());
    let options = PgConnectOptions::from_str(url)?
        .application_name("chatgowa")
        .options([
            ("lock_timeout", lock_timeout.as_str()),
            ("idle_in_transaction_session_timeout", idle_timeout.as_str()),
        ]);
    let pool = PgPoolOptions::new()
        .max_connections(POSTGRES_CONNECTIONS)
        // A webhook that cannot get a connection is answered 503 well within Chatwoot's 5 s.
        .acquire_timeout(BUSY_TIMEOUT)
        .connect_with(options)
        .await?;
    POSTGRES_MIGRATOR.run(&pool).await?;
    clock::follow(&pool).await?;
    Ok(pool)
}

/// How long a statement waits for a lock held by another connection or process before failing. Short enough
/// that a webhook caught behind a lock is answered 503 well within Chatwoot's 5 s, instead of timing out.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// Opens (creating if needed) the database file and applies pending migrations.
///
/// WAL lets the admin and the workers read while the writer commits; `synchronous = FULL` makes every commit
/// survive a power loss, which is what an acknowledged webhook promises (group commit keeps it cheap).
///
/// # Errors
/// The file cannot be created or opened, or a migration fails.
pub async fn connect(path: &Path) -> Result<SqlitePool, sqlx::Error> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    create_private(path)?;
    let options = SqliteConnectOptions::from_str("sqlite://")?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true);
    // Local file connections never go stale: keeping them avoids a maintenance task waking up while idle, and
    // not pinging one before each use saves a round trip to its thread per query.
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .test_before_acquire(false)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(options)
        .await?;
    MIGRATOR.run(&pool).await?;
    Ok(pool)
}

/// Creates the database file readable by its owner only, whatever the umask (it holds the Chatwoot token, the
/// webhook secrets and GoWA passwords); SQLite gives its WAL files the same mode. An existing file is left as
/// it is.
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new();
    file.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
    match file.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Opens the writer's own connection to a database that [`connect`] has created and migrated, with the same
/// settings (WAL is a property of the file).
///
/// # Errors
/// The file cannot be opened.
pub fn open_writer_connection(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(conn)
}

/// Proof that this process is the only relay using a database: the lanes keep their queue in memory, so two
/// relays on one file would send the same deliveries twice. The OS releases the lock when the process dies, even
/// on `kill -9`, so a crashed relay never blocks its successor.
#[derive(Debug)]
pub struct DatabaseLock {
    _file: std::fs::File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another Chatgowa is already using this database (lock file {0}); stop it first")]
    Busy(String),

    #[error("cannot lock {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Takes the database's lock file (`<database>.lock`) for the life of the returned value.
///
/// # Errors
/// Another process holds it, or the file cannot be created.
pub fn lock_database(database: &Path) -> Result<DatabaseLock, LockError> {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    let path = std::path::PathBuf::from(name);
    let shown = path.display().to_string();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| LockError::Io {
            path: shown.clone(),
            source,
        })?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| LockError::Io {
            path: shown.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(DatabaseLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(LockError::Busy(shown)),
        Err(std::fs::TryLockError::Error(source)) => Err(LockError::Io {
            path: shown,
            source,
        }),
    }
}

/// Work that one relay at a time does, whichever relays share the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Retention = 1,
    /// Telling a linked Chatwoot about replies.
    Feedback = 2,
    /// Catching up with a linked Chatwoot.
    CatchUp = 3,
}

/// Advisory locks of this relay's jobs: `(JOBS, job)`.
const JOBS: i32 = 0x6367_7761; // "cgwa"

/// How often a turn's transaction says that its relay is alive.
const TURN_BEAT: Duration = Duration::from_secs(5);
/// How long PostgreSQL lets a turn's transaction be silent before it ends the session, and with it the turn: a
/// relay frozen (SIGSTOP, a VM paused) or cut off in its turn does not stop the job at every other relay.
const TURN_SILENCE: &str = "20s";

/// Does `work` if this relay has the turn at `job`; `None` while another relay has it. On PostgreSQL the turn is
/// a transaction holding the job's advisory lock, ended as soon as the work is (the server releases the lock
/// with it, and also when the connection dies; a transaction-level lock works behind a transaction pooler); while
/// the work runs the transaction says every [`TURN_BEAT`] that it is alive, and a turn silent for
/// [`TURN_SILENCE`] is ended by the server. On SQLite the one relay always has the turn.
///
/// # Errors
/// The database failed, or the turn was ended by the server (the work is then dropped where it stands).
pub async fn in_turn<T>(
    db: &Db,
    job: Job,
    work: impl Future<Output = T>,
) -> sqlx::Result<Option<T>> {
    let Db::Postgres(pool) = db else {
        return Ok(Some(work.await));
    };
    let mut tx = pool.begin().await?;
    // The turn's transaction only holds the job's lock, while the job calls Chatwoot in between.
    sqlx::query(&format!(
        "SET LOCAL idle_in_transaction_session_timeout = '{TURN_SILENCE}'"
    ))
    .execute(&mut *tx)
    .await?;
    let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1, $2)")
        .bind(JOBS)
        .bind(job as i32)
        .fetch_one(&mut *tx)
        .await?;
    if !taken {
        tx.rollback().await?;
        return Ok(None);
    }
    let beating = async {
        loop {
            tokio::time::sleep(TURN_BEAT).await;
            if let Err(err) = sqlx::query("SELECT 1").execute(&mut *tx).await {
                return err;
            }
        }
    };
    let done = tokio::select! {
        done = work => done,
        err = beating => return Err(err),
    };
    tx.rollback().await?;
    Ok(Some(done))
}

/// Formats unix milliseconds as RFC 3339 with milliseconds, as the TypeScript version (Prisma) did.
pub fn to_rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
#[path = "../../tests/it/postgres.rs"]
mod test_postgres;

#[cfg(test)]
pub(crate) mod test_support {
    use sqlx::SqlitePool;

    use super::Db;

    /// A fresh migrated database in a temporary file (kept alive by the returned guard).
    pub async fn temp_db() -> (Db, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let pool = super::connect(&db_path(&dir)).await.unwrap();
        (Db::Sqlite(pool), dir)
    }

    /// A fresh migrated database of its own on the test binary's PostgreSQL cluster.
    pub async fn postgres_db() -> Db {
        let url = super::test_postgres::cluster().database();
        Db::Postgres(super::connect_postgres(&url).await.unwrap())
    }

    /// A fresh database of each backend (the guard keeps the SQLite file).
    pub async fn both() -> (Vec<Db>, tempfile::TempDir) {
        let (sqlite, dir) = temp_db().await;
        (vec![sqlite, postgres_db().await], dir)
    }

    impl Db {
        /// The SQLite pool of a test database, for statements of the test's own.
        pub fn sqlite(&self) -> &SqlitePool {
            match self {
                Self::Sqlite(pool) => pool,
                Self::Postgres(_) => panic!("not a SQLite database"),
            }
        }
    }

    pub fn db_path(dir: &tempfile::TempDir) -> std::path::PathBuf {
        dir.path().join("test.db")
    }

    /// A writer's connection to the database of [`temp_db`].
    pub fn writer_connection(dir: &tempfile::TempDir) -> rusqlite::Connection {
        super::open_writer_connection(&db_path(dir)).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_relay_frozen_in_its_turn_gives_the_turn_up() {
        let url = test_postgres::cluster().database();
        let db = Db::Postgres(connect_postgres(&url).await.unwrap());
        // A relay whose process stops in its turn (SIGSTOP): its runtime runs nothing more, heartbeat included.
        // Its connections are its own, made on its runtime (this test's runtime waits for it, blocked).
        let (taken, turn_taken) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let frozen = Db::Postgres(connect_postgres(&url).await.unwrap());
                in_turn(&frozen, Job::Feedback, async {
                    taken.send(()).unwrap();
                    std::thread::sleep(Duration::from_secs(60));
                })
                .await
            })
        });
        turn_taken.recv().unwrap();
        let others = || in_turn(&db, Job::Feedback, async {});
        assert_eq!(
            others().await.unwrap(),
            None,
            "the frozen relay has the turn"
        );
        // Another relay gets the turn once the frozen one has been silent too long.
        let deadline = std::time::Instant::now() + Duration::from_secs(45);
        while others().await.unwrap().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "the turn stayed with the frozen relay"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    #[tokio::test]
    async fn migrations_apply_to_an_empty_file_and_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/relay.db");
        let pool = connect(&path).await.unwrap();
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                .fetch_all(&pool)
                .await
                .unwrap();
        for t in [
            "deliveries",
            "delivery_attempts",
            "routes",
            "unrouted_inboxes",
        ] {
            assert!(tables.iter().any(|n| n == t), "{t} missing in {tables:?}");
        }
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        pool.close().await;
        // Reopening the same file applies nothing twice.
        let pool = connect(&path).await.unwrap();
        pool.close().await;
    }

    /// A database as the releases before migration `version` left it, with `rows` written into it, then opened
    /// as this release opens it (applying `version` and whatever follows). Returns its path and the pool.
    async fn migrated_across(
        dir: &tempfile::TempDir,
        version: &str,
        rows: &str,
    ) -> (std::path::PathBuf, Db) {
        let earlier = dir.path().join("migrations");
        std::fs::create_dir(&earlier).unwrap();
        for entry in
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite")).unwrap()
        {
            let path = entry.unwrap().path();
            if *path.file_name().unwrap().to_str().unwrap() < *version {
                std::fs::copy(&path, earlier.join(path.file_name().unwrap())).unwrap();
            }
        }
        let path = dir.path().join("relay.db");
        let old = SqlitePool::connect_with(
            SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true)
                .foreign_keys(true),
        )
        .await
        .unwrap();
        sqlx::migrate::Migrator::new(earlier.as_path())
            .await
            .unwrap()
            .run(&old)
            .await
            .unwrap();
        sqlx::raw_sql(rows).execute(&old).await.unwrap();
        old.close().await;
        let pool = connect(&path).await.unwrap();
        (path, Db::Sqlite(pool))
    }

    async fn first_delivery(pool: &Db) -> deliveries::Delivery {
        deliveries::find(pool, crate::ids::DeliveryId(1))
            .await
            .unwrap()
            .unwrap()
    }

    #[tokio::test]
    async fn bodies_move_to_their_own_table_and_nothing_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let (_, pool) = migrated_across(
            &dir,
            "20261126000000",
            "INSERT INTO deliveries (inbox_id, conversation_id, event, body, next_attempt_at, received_at, updated_at)
             VALUES (7, 1, 'message_created', x'7b7d0001ff', 5, 5, 5)",
        )
        .await;
        let d = first_delivery(&pool).await;
        assert_eq!(d.body, b"{}\x00\x01\xff");
        let listed = deliveries::list(&pool, &deliveries::Filter::default(), 10)
            .await
            .unwrap();
        assert_eq!(listed[0].summary.size, 5);
    }

    #[tokio::test]
    async fn dedupe_keys_move_to_a_column_without_index_and_nothing_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let (path, pool) = migrated_across(
            &dir,
            "20261127000000",
            "INSERT INTO deliveries (inbox_id, event, dedupe_key, next_attempt_at, received_at, updated_at, size)
             VALUES (7, 'message_created', 'uuid-1', 5, 5, 5, 2), (7, 'message_created', 'uuid-2', 6, 6, 6, 2),
                    (7, 'message_created', 'uuid-3', 7, 7, 7, 2);
             INSERT INTO delivery_bodies (delivery_id, body) VALUES (1, x'7b7d'), (2, x'7b7d'), (3, x'7b7d');
             INSERT INTO delivery_attempts (delivery_id, attempt, trigger, started_at, duration_ms)
             VALUES (1, 1, 'scheduled', 5, 1);
             DELETE FROM deliveries WHERE id = 3;",
        )
        .await;
        // Keys, attempts and bodies are where they were.
        let d = first_delivery(&pool).await;
        assert_eq!(
            (d.dedupe_key.as_deref(), d.body.as_slice()),
            (Some("uuid-1"), &b"{}"[..])
        );
        let attempts = attempts::list_for_delivery(&pool, d.id).await.unwrap();
        assert_eq!(attempts.len(), 1);
        let checks: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_all(pool.sqlite())
            .await
            .unwrap();
        assert_eq!(checks, ["ok"]);
        let (broken, old_keys): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM pragma_foreign_key_check),
                    (SELECT count(unused_unique_key) FROM deliveries)",
        )
        .fetch_one(pool.sqlite())
        .await
        .unwrap();
        assert_eq!((broken, old_keys), (0, 0));
        // A second delivery with the same key can be stored (the relay's own index decides).
        let conn = open_writer_connection(&path).unwrap();
        let again = deliveries::insert(
            &conn,
            &deliveries::tests::new_delivery(None, Some("uuid-1")),
            9,
        )
        .unwrap();
        assert_eq!(again, crate::ids::DeliveryId(4));
        assert!(
            deliveries::delete(&pool, crate::ids::DeliveryId(1))
                .await
                .unwrap()
                .is_some()
        );
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM delivery_attempts")
            .fetch_one(pool.sqlite())
            .await
            .unwrap();
        assert_eq!(left, 0, "deleting a delivery still deletes its attempts");
    }

    #[tokio::test]
    async fn deliveries_stored_before_message_identity_keep_their_keys_and_forward_their_delivery_id()
     {
        let dir = tempfile::tempdir().unwrap();
        let (_path, pool) = migrated_across(
            &dir,
            "20261201000000",
            "INSERT INTO deliveries (inbox_id, conversation_id, event, dedupe_key, attempts, next_attempt_at,
                                     received_at, updated_at, size)
             VALUES (7, 42, 'message_created', 'uuid-1', 1, 5, 5, 5, 2),
                    (7, 42, 'message_created', NULL, 0, 6, 6, 6, 2);
             INSERT INTO delivery_bodies (delivery_id, body) VALUES (1, x'7b7d'), (2, x'7b7d');
             INSERT INTO delivery_attempts (delivery_id, attempt, trigger, started_at, duration_ms)
             VALUES (1, 1, 'scheduled', 5, 1);",
        )
        .await;
        let d = first_delivery(&pool).await;
        assert_eq!(
            (
                d.dedupe_key.as_deref(),
                d.cw_delivery.as_deref(),
                d.message_id,
                d.duplicates
            ),
            (Some("uuid-1"), Some("uuid-1"), None, 0)
        );
        let attempts = attempts::list_for_delivery(&pool, d.id).await.unwrap();
        assert!(!attempts[0].ambiguous);
        // Pending ones go back in arrival order: no message id was stored for them.
        let pending = deliveries::list_pending(&pool).await.unwrap();
        assert_eq!(
            pending
                .iter()
                .map(|p| (p.id.0, p.message_id, p.attempted))
                .collect::<Vec<_>>(),
            [(1, None, true), (2, None, false)]
        );
        assert_eq!(deliveries::count_duplicates(&pool).await.unwrap(), 0);
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(
            "EXPLAIN QUERY PLAN SELECT coalesce(sum(duplicates), 0) FROM deliveries WHERE duplicates > 0",
        )
        .fetch_all(pool.sqlite())
        .await
        .unwrap();
        assert!(
            plan.iter()
                .any(|row| row.3.contains("deliveries_duplicated")),
            "the total reads the partial index: {plan:?}"
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_new_database_and_its_wal_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let (_pool, dir) = test_support::temp_db().await;
        let db = test_support::db_path(&dir);
        let wal = db.with_extension("db-wal");
        assert!(wal.exists(), "WAL mode");
        for path in [db, wal] {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", path.display());
        }
    }

    /// Databases made by earlier releases record each migration's checksum, and would refuse to open if a released
    /// file changed (moving them to `migrations/sqlite/` kept their bytes).
    #[test]
    fn released_sqlite_migrations_are_unchanged() {
        let released = include_str!("../../tests/fixtures/released-sqlite-migrations.txt");
        let embedded: std::collections::HashMap<i64, String> = MIGRATOR
            .iter()
            .map(|m| (m.version, hex::encode(&m.checksum)))
            .collect();
        let mut count = 0;
        for line in released.lines().filter(|l| !l.starts_with('#')) {
            let (version, checksum) = line.split_once(' ').unwrap();
            let version: i64 = version.parse().unwrap();
            assert_eq!(
                embedded.get(&version).map(String::as_str),
                Some(checksum),
                "{version}"
            );
            count += 1;
        }
        assert_eq!(count, 11);
    }

    /// A relay's PostgreSQL sessions give up on a lock within Chatwoot's 5 s, and end a transaction their relay
    /// stopped in the middle of (so that the lanes it locked can be taken over).
    #[tokio::test]
    async fn postgres_sessions_wait_for_locks_and_idle_transactions_only_briefly() {
        let Db::Postgres(pool) = test_support::postgres_db().await else {
            unreachable!()
        };
        let (lock, idle): (String, String) = sqlx::query_as(
            "SELECT current_setting('lock_timeout'), current_setting('idle_in_transaction_session_timeout')",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!((lock.as_str(), idle.as_str()), ("2s", "3s"));
    }

    #[test]
    fn one_relay_per_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("relay.db");
        let held = lock_database(&db).unwrap();
        assert!(matches!(lock_database(&db), Err(LockError::Busy(_))));
        assert!(lock_database(&dir.path().join("other.db")).is_ok());
        drop(held);
        assert!(lock_database(&db).is_ok());
    }

    #[test]
    fn timestamps_look_like_prisma_json() {
        assert_eq!(to_rfc3339(1_781_964_310_123), "2026-06-20T14:05:10.123Z");
    }
}
