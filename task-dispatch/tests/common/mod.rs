//! Test databases: every test gets its own MariaDB database or SQLite file and removes it.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub mod fake;

use std::path::PathBuf;

use sqlx::{AssertSqlSafe, Connection, Executor};
use task_dispatch::Store;
use test_support::mariadb::TestDatabase;

/// A database of its own for one test; dropped (MariaDB) or deleted (SQLite) at the end, also
/// when the test fails.
#[derive(Debug)]
pub struct TestDb {
    /// The URL to give `Store::connect`.
    pub url: String,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    MySql(TestDatabase),
    Sqlite { dir: PathBuf },
}

impl TestDb {
    /// A fresh database `dispatch_test_<random>` on the test MariaDB server
    /// (`CONSOLE_TEST_MYSQL_URL`).
    ///
    /// Panics with instructions when the server cannot be reached: tests never skip.
    pub async fn mysql() -> Self {
        let database = TestDatabase::create("dispatch_test").await;
        Self {
            url: database.url(),
            kind: Kind::MySql(database),
        }
    }

    /// A fresh SQLite file in a directory that does not exist yet (the store creates it).
    pub async fn sqlite() -> Self {
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..16];
        let dir = std::env::temp_dir().join(format!("dispatch_test_{suffix}"));
        let url = format!("sqlite://{}/nested/console.db", dir.display());
        Self {
            url,
            kind: Kind::Sqlite { dir },
        }
    }

    /// Connects a store (running migrations).
    pub async fn store(&self) -> Store {
        Store::connect(&self.url).await.unwrap()
    }

    /// Whether this is the MariaDB flavour.
    pub fn is_mysql(&self) -> bool {
        matches!(self.kind, Kind::MySql(_))
    }

    /// Runs one raw statement (to set up a state the API refuses to create, like a race).
    pub async fn execute(&self, sql: String) {
        match &self.kind {
            Kind::MySql(database) => {
                let mut conn = database.connect().await;
                conn.execute(AssertSqlSafe(sql)).await.unwrap();
                conn.close().await.unwrap();
            }
            Kind::Sqlite { .. } => {
                let mut conn = sqlx::sqlite::SqliteConnection::connect(&self.url)
                    .await
                    .unwrap();
                conn.execute(AssertSqlSafe(sql)).await.unwrap();
                conn.close().await.unwrap();
            }
        }
    }

    /// Removes the database and checks that it is gone.
    pub async fn cleanup(self) {
        match &self.kind {
            Kind::MySql(database) => {
                database.drop_database().await;
                let mut admin = database.server().connect().await.unwrap();
                let left: Option<String> = sqlx::query_scalar(
                    "SELECT schema_name FROM information_schema.schemata WHERE schema_name = ?",
                )
                .bind(database.name())
                .fetch_optional(&mut admin)
                .await
                .unwrap();
                assert_eq!(left, None, "database {} left behind", database.name());
            }
            Kind::Sqlite { dir } => {
                if dir.exists() {
                    std::fs::remove_dir_all(dir).unwrap();
                }
                assert!(!dir.exists(), "{} left behind", dir.display());
            }
        }
    }
}

impl Drop for TestDb {
    /// A failed test still removes its database (the MariaDB one drops itself).
    fn drop(&mut self) {
        if let Kind::Sqlite { dir } = &self.kind
            && dir.exists()
            && let Err(error) = std::fs::remove_dir_all(dir)
        {
            eprintln!("cannot remove {}: {error}", dir.display());
        }
    }
}

/// Declares one test per backend from an `async fn(&TestDb)`: `mysql_<name>` and
/// `sqlite_<name>`.
#[macro_export]
macro_rules! on_both_backends {
    ($body:ident => $mysql:ident, $sqlite:ident) => {
        #[tokio::test]
        async fn $mysql() {
            let db = common::TestDb::mysql().await;
            $body(&db).await;
            db.cleanup().await;
        }

        #[tokio::test]
        async fn $sqlite() {
            let db = common::TestDb::sqlite().await;
            $body(&db).await;
            db.cleanup().await;
        }
    };
}
