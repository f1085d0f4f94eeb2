//! MariaDB (or MySQL) for tests: the shared server and a database of one test that is dropped on
//! drop.
//!
//! The server is named by `CONSOLE_TEST_MYSQL_URL` (default `mysql://root@127.0.0.1:3306`,
//! started by `deploy/mariadb.sh start`); its user must be allowed to create databases. It serves
//! every test running at the same time: a test takes it away from its clients with a
//! [`crate::proxy::TcpProxy`], never by stopping it, and drops only the databases it created.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};

use crate::teardown;

/// The variable that names the server.
pub const URL_VAR: &str = "CONSOLE_TEST_MYSQL_URL";

/// How long the server may take to answer the test before it fails.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// The test server: where it is and who the tests are on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MariaDb {
    /// `host:port`.
    pub host_port: String,
    pub username: String,
    pub password: String,
}

impl MariaDb {
    /// The server named by `CONSOLE_TEST_MYSQL_URL` (default `mysql://root@127.0.0.1:3306`;
    /// `mariadb://` works too, a database in the URL is ignored).
    pub fn from_env() -> Self {
        let url =
            std::env::var(URL_VAR).unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_owned());
        let rest = url
            .strip_prefix("mysql://")
            .or_else(|| url.strip_prefix("mariadb://"))
            .unwrap_or(&url);
        let authority = rest.split('/').next().unwrap_or_default();
        let (user_info, host_port) = authority.rsplit_once('@').unwrap_or(("root", authority));
        let (username, password) = user_info.split_once(':').unwrap_or((user_info, ""));
        Self {
            host_port: host_port.to_owned(),
            username: username.to_owned(),
            password: password.to_owned(),
        }
    }

    /// `mysql://user[:password]@host_port/database`: a URL with the credentials, to reach
    /// `database` at `host_port` (the server's own, or a proxy's in front of it).
    pub fn url(&self, host_port: &str, database: &str) -> String {
        if self.password.is_empty() {
            format!("mysql://{}@{host_port}/{database}", self.username)
        } else {
            format!(
                "mysql://{}:{}@{host_port}/{database}",
                self.username, self.password
            )
        }
    }

    /// Options for a connection of the test's user at `host_port` (the server's own, or a
    /// proxy's), to `database` or to none.
    ///
    /// # Panics
    /// When `host_port` does not parse.
    pub fn connect_options(&self, host_port: &str, database: Option<&str>) -> MySqlConnectOptions {
        let url = match database {
            Some(database) => format!("mysql://{host_port}/{database}"),
            None => format!("mysql://{host_port}"),
        };
        let options = MySqlConnectOptions::from_str(&url)
            .unwrap_or_else(|error| panic!("bad server address {host_port}: {error}"))
            .username(&self.username);
        if self.password.is_empty() {
            options
        } else {
            options.password(&self.password)
        }
    }

    /// A connection of the test's user to the server, no default database (for status reads and
    /// administration); also the check that the server answers.
    ///
    /// # Notable errors
    /// The server does not answer: the message names `deploy/mariadb.sh start` and
    /// `CONSOLE_TEST_MYSQL_URL`.
    pub async fn connect(&self) -> Result<MySqlConnection, String> {
        self.connect_to(None).await
    }

    async fn connect_to(&self, database: Option<&str>) -> Result<MySqlConnection, String> {
        let options = self.connect_options(&self.host_port, database);
        match tokio::time::timeout(ANSWER_TIMEOUT, options.connect()).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error)) => Err(format!(
                "MariaDB at {} does not answer ({error}); start it with `deploy/mariadb.sh start` \
                 (or point CONSOLE_TEST_MYSQL_URL at a server where this user may create databases)",
                self.host_port
            )),
            Err(_) => Err(format!(
                "MariaDB at {} did not answer within {ANSWER_TIMEOUT:?}; start it with \
                 `deploy/mariadb.sh start`",
                self.host_port
            )),
        }
    }

    /// Creates the empty database `name`, dropped when the answer is dropped.
    ///
    /// # Panics
    /// When the server does not answer (naming `deploy/mariadb.sh start`) or refuses.
    pub async fn create_database(&self, name: &str) -> TestDatabase {
        let mut admin = self
            .connect()
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE `{name}`")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|error| panic!("cannot create database {name}: {error}"));
        let _ = admin.close().await;
        TestDatabase {
            server: self.clone(),
            name: name.to_owned(),
            owned: true,
            dropped: AtomicBool::new(false),
        }
    }
}

/// A database of one test. Dropping it ends every connection still using the database, then
/// drops the database, also when the test panics.
#[derive(Debug)]
pub struct TestDatabase {
    server: MariaDb,
    name: String,
    /// `false` for a database another process owns ([`TestDatabase::attach`]).
    owned: bool,
    dropped: AtomicBool,
}

impl TestDatabase {
    /// A fresh database `<prefix>_<random>` on the server of `CONSOLE_TEST_MYSQL_URL`.
    ///
    /// # Panics
    /// When the server does not answer (naming `deploy/mariadb.sh start`) or refuses.
    pub async fn create(prefix: &str) -> Self {
        MariaDb::from_env()
            .create_database(&format!("{prefix}_{}", crate::unique_token()))
            .await
    }

    /// The database `name` that another process created (a test's child process): this value
    /// never drops it.
    pub fn attach(name: &str) -> Self {
        Self {
            server: MariaDb::from_env(),
            name: name.to_owned(),
            owned: false,
            dropped: AtomicBool::new(false),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn server(&self) -> &MariaDb {
        &self.server
    }

    /// `mysql://user[:password]@host:port/name`.
    pub fn url(&self) -> String {
        self.server.url(&self.server.host_port, &self.name)
    }

    /// A connection to this database for the test's own queries.
    ///
    /// # Panics
    /// When the server does not answer (naming `deploy/mariadb.sh start`).
    pub async fn connect(&self) -> MySqlConnection {
        self.server
            .connect_to(Some(&self.name))
            .await
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// Ends every connection still using the database and drops it now; dropping the value later
    /// does nothing more. Best effort: reports on stderr, never panics.
    pub async fn drop_database(&self) {
        self.dropped.store(true, Ordering::SeqCst);
        drop_database(&self.server, &self.name).await;
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if !self.owned || self.dropped.load(Ordering::SeqCst) {
            return;
        }
        let (server, name) = (self.server.clone(), self.name.clone());
        teardown::run_blocking(&format!("database {}", self.name), move || async move {
            drop_database(&server, &name).await;
        });
    }
}

async fn drop_database(server: &MariaDb, name: &str) {
    let mut admin = match server.connect().await {
        Ok(admin) => admin,
        Err(error) => {
            eprintln!("cannot drop test database {name}: {error}");
            return;
        }
    };
    // Connections left open (a client under test that was not closed) would make DROP wait.
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT CAST(ID AS SIGNED) FROM information_schema.PROCESSLIST \
         WHERE DB = ? AND ID <> CONNECTION_ID()",
    )
    .bind(name)
    .fetch_all(&mut admin)
    .await
    .unwrap_or_default();
    for id in ids {
        let _ = sqlx::query(AssertSqlSafe(format!("KILL {id}")))
            .execute(&mut admin)
            .await;
    }
    if let Err(error) = sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS `{name}`")))
        .execute(&mut admin)
        .await
    {
        eprintln!("cannot drop test database {name}: {error}");
    }
    let _ = admin.close().await;
}
