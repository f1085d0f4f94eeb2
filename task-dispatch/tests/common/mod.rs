//! Test databases: every test gets its own MariaDB database or SQLite file and removes it.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub mod fake;

use std::path::PathBuf;

use sqlx::{AssertSqlSafe, Connection, Executor};
use task_dispatch::Store;

/// The MariaDB server the tests use; override with `CONSOLE_TEST_MYSQL_URL`.
pub const DEFAULT_MYSQL_URL: &str = "mysql://root@127.0.0.1:3306";

/// A database of its own for one test; dropped (MariaDB) or deleted (SQLite) at the end.
#[derive(Debug)]
pub struct TestDb {
    /// The URL to give `Store::connect`.
    pub url: String,
    kind: Kind,
    cleaned: bool,
}

#[derive(Debug, Clone)]
enum Kind {
    MySql { server: String, name: String },
    Sqlite { dir: PathBuf },
}

fn unique_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_owned()
}

impl TestDb {
    /// A fresh database `dispatch_test_<random>` on the test MariaDB server.
    ///
    /// Panics with instructions when the server cannot be reached: tests never skip.
    pub async fn mysql() -> Self {
        let server = std::env::var("CONSOLE_TEST_MYSQL_URL")
            .unwrap_or_else(|_| DEFAULT_MYSQL_URL.to_owned())
            .trim_end_matches('/')
            .to_owned();
        let name = format!("dispatch_test_{}", unique_suffix());
        let mut admin = match sqlx::mysql::MySqlConnection::connect(&server).await {
            Ok(conn) => conn,
            Err(e) => panic!(
                "MariaDB is not reachable at {server}: {e}\n\
                 Start it with `deploy/mariadb.sh start`, or point CONSOLE_TEST_MYSQL_URL at a \
                 server where this user may create databases."
            ),
        };
        admin
            .execute(AssertSqlSafe(format!("CREATE DATABASE `{name}`")))
            .await
            .unwrap();
        admin.close().await.unwrap();
        Self {
            url: format!("{server}/{name}"),
            kind: Kind::MySql { server, name },
            cleaned: false,
        }
    }

    /// A fresh SQLite file in a directory that does not exist yet (the store creates it).
    pub async fn sqlite() -> Self {
        let dir = std::env::temp_dir().join(format!("dispatch_test_{}", unique_suffix()));
        let url = format!("sqlite://{}/nested/console.db", dir.display());
        Self {
            url,
            kind: Kind::Sqlite { dir },
            cleaned: false,
        }
    }

    /// Connects a store (running migrations).
    pub async fn store(&self) -> Store {
        Store::connect(&self.url).await.unwrap()
    }

    /// Whether this is the MariaDB flavour.
    pub fn is_mysql(&self) -> bool {
        matches!(self.kind, Kind::MySql { .. })
    }

    /// Runs one raw statement (to set up a state the API refuses to create, like a race).
    pub async fn execute(&self, sql: String) {
        match &self.kind {
            Kind::MySql { .. } => {
                let mut conn = sqlx::mysql::MySqlConnection::connect(&self.url)
                    .await
                    .unwrap();
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
    pub async fn cleanup(mut self) {
        self.cleaned = true;
        remove(self.kind.clone()).await;
        match &self.kind {
            Kind::MySql { server, name } => {
                let mut admin = sqlx::mysql::MySqlConnection::connect(server).await.unwrap();
                let left: Option<String> = sqlx::query_scalar(
                    "SELECT schema_name FROM information_schema.schemata WHERE schema_name = ?",
                )
                .bind(name)
                .fetch_optional(&mut admin)
                .await
                .unwrap();
                assert_eq!(left, None, "database {name} left behind");
            }
            Kind::Sqlite { dir } => assert!(!dir.exists(), "{} left behind", dir.display()),
        }
    }
}

async fn remove(kind: Kind) {
    match kind {
        Kind::MySql { server, name } => {
            let mut admin = sqlx::mysql::MySqlConnection::connect(&server)
                .await
                .unwrap();
            admin
                .execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS `{name}`")))
                .await
                .unwrap();
            admin.close().await.unwrap();
        }
        Kind::Sqlite { dir } => {
            if dir.exists() {
                std::fs::remove_dir_all(&dir).unwrap();
            }
        }
    }
}

impl Drop for TestDb {
    /// A failed test still removes its database: on a thread of its own, since the test's
    /// runtime cannot be blocked on from inside.
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        let kind = self.kind.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(remove(kind));
        })
        .join();
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
