//! The app and task store: MySQL/MariaDB for clusters, SQLite for a standalone node.
//!
//! [`Store::connect`] picks the backend from the URL scheme and applies the embedded
//! migrations (`migrations/mysql`, `migrations/sqlite`; tracked in their own table,
//! `task_dispatch_migrations`, so that other crates may share the database). SQL is written
//! once, in the subset both dialects share, and run on whichever pool is in use.
//!
//! Groups of calls:
//! - apps (`apps.rs`): create, get, list, delete. Any node.
//! - tasks (`tasks.rs`): submit, check an action early, get. Any node.
//! - cluster settings (`cluster.rs`): the cluster's id and node-to-node signing key, drawn once
//!   and shared through this database. Any node.
//! - views (`views.rs`): filtered app pages, an app's task history, counts by state, rows
//!   changed since a moment (the web console and its event stream). Any node; reads only.
//! - owner writes, which only the dispatcher of the owning node makes; every one of them
//!   carries its [`NodeLease`] and is refused once that session's epoch is no longer current:
//!   - `fencing.rs`: node registration, epochs, fencing a session (the protocol is described
//!     there);
//!   - `leases.rs`: adopting and releasing an app's lease;
//!   - `claims.rs`: claiming a task (one statement on MySQL, a transaction otherwise);
//!   - `outcomes.rs`: a phase done, a task finished, an app found dead.
//!   - `owner_batches.rs`, `batch_writes.rs` (issue 15): the queue reads, adoptions, claims and
//!     outcomes of many apps at once, each answered as the single call, every condition kept
//!     per row.
//!
//! Statements with many parameters name them (`named.rs`) so that each value can be matched
//! to its placeholder.
//!
//! Architecture invariant: no query reads the whole task table. Tasks are found through
//! `tasks_status_app (status, app_id)` (only PENDING/RUNNING rows) and
//! `tasks_app_status_id (app_id, status, id)` (one app's unfinished tasks).

mod apps;
mod batch_writes;
mod claims;
mod cluster;
mod fencing;
mod leases;
mod model;
mod named;
mod outcomes;
mod owner_batches;
mod submissions;
mod tasks;
mod views;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::error::{Error, Result};
use crate::redact::redact_url;

pub use apps::{AppSet, MAX_PAGE_SIZE};
pub use claims::Claim;
pub use cluster::ClusterSettings;
pub use leases::Adoption;
pub use model::{
    App, AppId, MAX_APP_WEIGHT, NewApp, NodeLease, Page, Submitted, Task, TaskId, TaskStatus,
};
pub use outcomes::Outcome;
pub use owner_batches::{ClaimRequest, FinishRequest, MAX_OWNER_BATCH};
pub use submissions::Submission;
pub use views::{AppFilter, MAX_TASK_PAGE_SIZE};

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// MySQL or MariaDB (`mysql://`).
    MySql,
    /// SQLite (`sqlite://path`), for a single standalone node.
    Sqlite,
}

/// The app/task store. Cheap to clone (a pool handle).
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
}

#[derive(Debug, Clone)]
enum Pool {
    MySql(MySqlPool),
    Sqlite(SqlitePool),
}

/// Runs `$body` with `$db` bound to the pool in use (a `&MySqlPool` or a `&SqlitePool`); the
/// body is compiled once per backend.
macro_rules! on_pool {
    ($store:expr, $db:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::MySql($db) => $body,
            $crate::store::Pool::Sqlite($db) => $body,
        }
    };
}

/// Runs the async `$body` (yielding a `Result`) in a write transaction with `$conn` bound to the
/// connection; commits when the body yields `Ok`, rolls back otherwise. SQLite transactions
/// start with `BEGIN IMMEDIATE`, so two writers queue on the busy timeout instead of failing
/// when a read lock cannot be upgraded.
macro_rules! in_write_tx {
    ($store:expr, $conn:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::MySql(pool) => {
                let mut tx = pool.begin().await?;
                let result = async {
                    let $conn = &mut *tx;
                    $body
                }
                .await;
                if result.is_ok() {
                    tx.commit().await?;
                }
                result
            }
            $crate::store::Pool::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let result = async {
                    let $conn = &mut *tx;
                    $body
                }
                .await;
                if result.is_ok() {
                    tx.commit().await?;
                }
                result
            }
        }
    };
}

pub(crate) use {in_write_tx, on_pool};

/// The app columns, in `AppRow` order.
macro_rules! app_columns {
    () => {
        "id, name, executor, spec, state, handle, version, owner_node, owner_epoch, last_error, \
         created_at, updated_at, host, weight"
    };
}

/// The task columns, in `TaskRow` order.
macro_rules! task_columns {
    () => {
        "id, app_id, action, status, claimed_by, claim_epoch, attempts, error, idempotency_key, \
         version, created_at, updated_at, started_at, finished_at, params"
    };
}

pub(crate) use {app_columns, task_columns};

/// The MySQL pool's settings, `max_connections` apart.
fn mysql_pool_options(max_connections: u32) -> MySqlPoolOptions {
    MySqlPoolOptions::new()
        .max_connections(max_connections)
        // The fenced writes read the node's epoch in a subquery of the same statement and
        // count on REPEATABLE READ's locking reads (issue 12, finding 16): a server whose
        // default is READ COMMITTED must not change what they mean.
        .after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::raw_sql("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    .execute(conn)
                    .await?;
                Ok(())
            })
        })
        .acquire_timeout(ACQUIRE_TIMEOUT)
        // sqlx pings every connection it hands out; under load that is one extra round
        // trip per statement. A connection that was in use a moment ago is alive, so
        // only one that sat idle is checked (a dead one is replaced before use).
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IF_IDLE_FOR {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

/// How long a SQLite writer waits for another one before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections per MySQL pool: the dispatcher's parallel actions plus the HTTP handlers.
const MYSQL_MAX_CONNECTIONS: u32 = 16;
/// A pooled MySQL connection idle this long is pinged before it is handed out.
const PING_IF_IDLE_FOR: Duration = Duration::from_millis(500);
/// How long a caller waits for a pooled connection before the call fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

impl Store {
    /// Connects to `url` and applies the embedded migrations.
    ///
    /// - `mysql://user:pass@host:3306/db` (or `mariadb://`): the database must exist.
    /// - `sqlite://path/to/file.db` or `sqlite:path`: the file and its parent directory are
    ///   created if missing; WAL journal. `sqlite::memory:` gives a private in-memory database.
    ///
    /// # Notable errors
    /// [`Error::UnsupportedUrl`] for any other scheme; [`Error::Database`] when the server cannot
    /// be reached or refuses the credentials; [`Error::Migration`] when the schema cannot be
    /// brought up to date (for example a newer schema from a newer release).
    pub async fn connect(url: &str) -> Result<Self> {
        let store = if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            let options = MySqlConnectOptions::from_str(url)?;
            let pool = mysql_pool_options(MYSQL_MAX_CONNECTIONS)
                .connect_with(options)
                .await?;
            Self {
                pool: Pool::MySql(pool),
            }
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?;
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            if !in_memory {
                create_parent_dir(options.get_filename())?;
            }
            let options = options
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .foreign_keys(true);
            // An in-memory database lives in one connection; a file takes a few readers.
            let max_connections = if in_memory { 1 } else { 4 };
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(options)
                .await?;
            Self {
                pool: Pool::Sqlite(pool),
            }
        } else {
            return Err(Error::UnsupportedUrl(redact_url(url)));
        };
        store.migrate().await?;
        Ok(store)
    }

    /// A store on the same database with a pool of its own of at most `max_connections`
    /// (opened when first used), for a caller that sends its statements one at a time and
    /// wants them on the same few connections: each connection prepares a statement once
    /// (sqlx caches it), so a group-commit writer with a connection of its own prepares each
    /// shape of its statements once, not once per connection of the shared pool. SQLite
    /// (one writer, few connections) shares the pool.
    #[must_use]
    pub fn dedicated(&self, max_connections: u32) -> Self {
        match &self.pool {
            Pool::MySql(pool) => {
                let options = (*pool.connect_options()).clone();
                Self {
                    pool: Pool::MySql(
                        mysql_pool_options(max_connections.max(1)).connect_lazy_with(options),
                    ),
                }
            }
            Pool::Sqlite(_) => self.clone(),
        }
    }

    async fn migrate(&self) -> Result<()> {
        match &self.pool {
            Pool::MySql(pool) => {
                let mut migrator = sqlx::migrate!("migrations/mysql");
                migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
                // sqlx serializes migrators with `GET_LOCK(name, -1)`, which MariaDB answers
                // with NULL at once instead of waiting: nodes starting together on a fresh
                // database would all apply migration 1. Hold a lock of our own, with a real
                // timeout, on a connection kept aside while the migrator runs on the pool.
                let mut conn = pool.acquire().await?;
                let locked: Option<i64> = sqlx::query_scalar(
                    "SELECT GET_LOCK(CONCAT('task_dispatch_migrate.', DATABASE()), ?)",
                )
                .bind(MIGRATION_LOCK_TIMEOUT.as_secs())
                .fetch_one(&mut *conn)
                .await?;
                if locked != Some(1) {
                    return Err(Error::Conflict(format!(
                        "another node kept the migration lock for more than {MIGRATION_LOCK_TIMEOUT:?}"
                    )));
                }
                let migrated = migrator.run(pool).await;
                sqlx::query("DO RELEASE_LOCK(CONCAT('task_dispatch_migrate.', DATABASE()))")
                    .execute(&mut *conn)
                    .await?;
                migrated?;
            }
            Pool::Sqlite(pool) => {
                let mut migrator = sqlx::migrate!("migrations/sqlite");
                migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
                migrator.run(pool).await?;
            }
        }
        Ok(())
    }

    /// The backend in use.
    #[must_use]
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::MySql(_) => Backend::MySql,
            Pool::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Closes every pooled connection; calls made afterwards fail.
    pub async fn close(&self) {
        on_pool!(self, db => db.close().await);
    }
}

/// How long a node waits for another one that is migrating the same database.
const MIGRATION_LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// This crate's migration history table (not sqlx's default, which another crate may own).
const MIGRATIONS_TABLE: &str = "task_dispatch_migrations";

fn create_parent_dir(file: &Path) -> Result<()> {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                path: dir.display().to_string(),
                source,
            })
        }
        _ => Ok(()),
    }
}

/// The id an `INSERT` assigned, on either backend.
pub(crate) trait InsertedId {
    fn inserted_id(&self) -> i64;
}

impl InsertedId for sqlx::mysql::MySqlQueryResult {
    fn inserted_id(&self) -> i64 {
        // A signed BIGINT AUTO_INCREMENT id is below 2^63: the cast is exact.
        self.last_insert_id().cast_signed()
    }
}

impl InsertedId for sqlx::sqlite::SqliteQueryResult {
    fn inserted_id(&self) -> i64 {
        self.last_insert_rowid()
    }
}

/// Whether a database error is a unique-key violation (a concurrent insert won).
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}
