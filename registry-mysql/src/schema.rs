//! The backend's tables and the embedded migrations that create them.
//!
//! # Why not `sqlx::migrate!`
//! Every table name carries the configurable `table_prefix`, so the DDL is a template. sqlx's
//! migrator runs literal SQL files, checksums them, and records them in one fixed
//! `_sqlx_migrations` table per database: a prefixed template would give each prefix different
//! checksums in the same bookkeeping table, and two registries with different prefixes in one
//! database would trip over each other's history. So the backend carries its own small runner:
//! numbered steps of templated DDL, recorded in `<prefix>schema_version`, applied under a named
//! server lock (`GET_LOCK`, which MySQL and MariaDB both have) so that clients starting together
//! do not race. Each step is idempotent (`CREATE TABLE IF NOT EXISTS`, upserts), because MySQL
//! DDL commits implicitly and a step interrupted half-way must be safe to run again.
//!
//! # Tables (prefix `registry_` by default)
//! - `clients`: one row per live session; `expires_at` is the last heartbeat plus the client's
//!   own session timeout, both written with the database's clock (`UTC_TIMESTAMP(6)`);
//!   `connection_id` is the client's call connection, which a purger may `KILL`.
//! - `sessions` (version 2): one row per live session, created and purged with its `clients`
//!   row. Writers share-lock their own row for the length of a write and a purge deletes it, so
//!   a purge and a write of the same client never interleave; heartbeats never touch it, so a
//!   write never delays its own client's heartbeat.
//! - `data`: the key tree; `owner` is the client that owns an ephemeral key (NULL: persistent);
//!   `version` is the optimistic check of every write.
//! - `events`: the change log; `seq` is allocated under the `sequence` row lock, so sequence
//!   order is commit order.
//! - `sequence`: one row, `last_seq`; a write locks it in its final packet only (`write.rs`).
//! - `locks`: one row per lock path ever used, never deleted, so `token` (the fencing counter)
//!   never goes back.
//!
//! Every query the backend runs is served by a primary key or one of the `KEY`s below.

use std::time::Duration;

use sqlx::mysql::MySqlConnection;
use sqlx::{AssertSqlSafe, Row};

use crate::error::OpError;

/// The prefixed names of the backend's tables.
#[derive(Debug, Clone)]
pub(crate) struct Tables {
    pub clients: String,
    pub data: String,
    pub events: String,
    pub sequence: String,
    pub sessions: String,
    pub locks: String,
    pub schema_version: String,
    prefix: String,
}

impl Tables {
    /// Table names for `prefix`, which the configuration has checked to be `[A-Za-z0-9_]*`.
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            clients: format!("{prefix}clients"),
            data: format!("{prefix}data"),
            events: format!("{prefix}events"),
            sequence: format!("{prefix}sequence"),
            sessions: format!("{prefix}sessions"),
            locks: format!("{prefix}locks"),
            schema_version: format!("{prefix}schema_version"),
            prefix: prefix.to_owned(),
        }
    }

    fn render(&self, template: &str) -> String {
        template.replace("{p}", &self.prefix)
    }
}

/// One numbered migration step: statements with `{p}` standing for the table prefix.
struct Migration {
    version: i64,
    description: &'static str,
    statements: &'static [&'static str],
}

/// The schema history. Append new steps; never edit a released one.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "clients, data, events, sequence, locks",
        statements: &[
            "CREATE TABLE IF NOT EXISTS {p}clients (
            id BIGINT NOT NULL AUTO_INCREMENT,
            name VARCHAR(255) NOT NULL,
            session_timeout_ms BIGINT NOT NULL,
            connection_id BIGINT NOT NULL,
            created_at DATETIME(6) NOT NULL,
            heartbeat_at DATETIME(6) NOT NULL,
            expires_at DATETIME(6) NOT NULL,
            PRIMARY KEY (id),
            KEY by_expiry (expires_at)
        ) ENGINE = InnoDB",
            "CREATE TABLE IF NOT EXISTS {p}data (
            path VARBINARY(1024) NOT NULL,
            value MEDIUMBLOB NOT NULL,
            owner BIGINT NULL,
            version BIGINT NOT NULL,
            updated_at DATETIME(6) NOT NULL,
            PRIMARY KEY (path),
            KEY by_owner (owner)
        ) ENGINE = InnoDB",
            "CREATE TABLE IF NOT EXISTS {p}events (
            seq BIGINT NOT NULL,
            path VARBINARY(1024) NOT NULL,
            kind TINYINT NOT NULL,
            old_value MEDIUMBLOB NULL,
            new_value MEDIUMBLOB NULL,
            created_at DATETIME(6) NOT NULL,
            PRIMARY KEY (seq),
            KEY by_age (created_at)
        ) ENGINE = InnoDB",
            "CREATE TABLE IF NOT EXISTS {p}sequence (
            id TINYINT NOT NULL,
            last_seq BIGINT NOT NULL,
            PRIMARY KEY (id)
        ) ENGINE = InnoDB",
            "INSERT INTO {p}sequence (id, last_seq) VALUES (1, 0) ON DUPLICATE KEY UPDATE id = id",
            "CREATE TABLE IF NOT EXISTS {p}locks (
            path VARBINARY(1024) NOT NULL,
            owner BIGINT NULL,
            claim BIGINT NULL,
            token BIGINT NOT NULL,
            version BIGINT NOT NULL,
            acquired_at DATETIME(6) NULL,
            PRIMARY KEY (path),
            KEY by_owner (owner)
        ) ENGINE = InnoDB",
        ],
    },
    Migration {
        version: 2,
        description: "sessions: the row writers share-lock instead of their clients row",
        statements: &[
            "CREATE TABLE IF NOT EXISTS {p}sessions (
            id BIGINT NOT NULL,
            PRIMARY KEY (id)
        ) ENGINE = InnoDB",
            "INSERT IGNORE INTO {p}sessions (id) SELECT id FROM {p}clients",
        ],
    },
];

/// The schema version this build creates and understands.
pub(crate) fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// How long to wait for another client that is migrating the same tables.
const MIGRATION_LOCK_WAIT: Duration = Duration::from_secs(30);

/// Brings the tables up to [`latest_version`]. Idempotent and safe to run from many clients at
/// once.
///
/// # Notable errors
/// A database whose schema is newer than this build ([`OpError::Refused`] with a `Config`
/// error): an older binary must not write to tables it does not understand.
pub(crate) async fn migrate(conn: &mut MySqlConnection, tables: &Tables) -> Result<(), OpError> {
    // Named locks are server-wide and at most 64 characters in MySQL.
    let lock_name: String =
        sqlx::query_scalar("SELECT LEFT(CONCAT(COALESCE(DATABASE(), ''), '/', ?, 'migrate'), 64)")
            .bind(&tables.prefix)
            .fetch_one(&mut *conn)
            .await?;
    let got: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, ?)")
        .bind(&lock_name)
        .bind(MIGRATION_LOCK_WAIT.as_secs() as i64)
        .fetch_one(&mut *conn)
        .await?;
    if got != Some(1) {
        return Err(OpError::Refused(registry_api::RegistryError::Backend {
            backend: crate::error::BACKEND,
            message: format!(
                "another client held the migration lock {lock_name:?} for more than {MIGRATION_LOCK_WAIT:?}"
            ),
        }));
    }
    let outcome = apply(conn, tables).await;
    let released = sqlx::query("DO RELEASE_LOCK(?)")
        .bind(&lock_name)
        .execute(&mut *conn)
        .await;
    outcome?;
    released?;
    Ok(())
}

async fn apply(conn: &mut MySqlConnection, tables: &Tables) -> Result<(), OpError> {
    let create_version_table = format!(
        "CREATE TABLE IF NOT EXISTS {} (
            version BIGINT NOT NULL,
            description VARCHAR(255) NOT NULL,
            applied_at DATETIME(6) NOT NULL,
            PRIMARY KEY (version)
        ) ENGINE = InnoDB",
        tables.schema_version
    );
    sqlx::query(AssertSqlSafe(create_version_table))
        .execute(&mut *conn)
        .await?;
    let current: i64 = sqlx::query(AssertSqlSafe(format!(
        "SELECT COALESCE(MAX(version), 0) AS v FROM {}",
        tables.schema_version
    )))
    .fetch_one(&mut *conn)
    .await?
    .try_get_unchecked("v")?;
    if current > latest_version() {
        return Err(OpError::Refused(registry_api::RegistryError::Config {
            key: "registry.mysql.table_prefix".to_owned(),
            message: format!(
                "the tables {}* are at schema version {current}, newer than this build's {}; upgrade this program",
                tables.prefix,
                latest_version()
            ),
        }));
    }
    for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
        tracing::info!(
            version = migration.version,
            description = migration.description,
            prefix = %tables.prefix,
            "applying registry schema migration"
        );
        for statement in migration.statements {
            sqlx::query(AssertSqlSafe(tables.render(statement)))
                .execute(&mut *conn)
                .await?;
        }
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {} (version, description, applied_at) VALUES (?, ?, UTC_TIMESTAMP(6))",
            tables.schema_version
        )))
        .bind(migration.version)
        .bind(migration.description)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_increase_and_every_table_is_prefixed() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version));
        let tables = Tables::new("x_");
        for migration in MIGRATIONS {
            for statement in migration.statements {
                let sql = tables.render(statement);
                assert!(!sql.contains("{p}"), "{sql}");
                assert!(sql.contains("x_"), "{sql}");
            }
        }
        assert_eq!(tables.clients, "x_clients");
    }
}
