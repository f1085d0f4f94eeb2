//! Test support: a database of its own per test on the MariaDB/MySQL server named by
//! `CONSOLE_TEST_MYSQL_URL` (default `mysql://root@127.0.0.1:3306`), the kit's `Environment`,
//! and helpers that wait for conditions with deadlines.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub mod proxy;

use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use registry_api::testkit::Environment;
use registry_api::{ConnectionListener, ConnectionState, RegistryError, Secret};
use registry_mysql::{MysqlConfig, MysqlRegistry};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};

/// Short timings so that session expiry shows up quickly.
pub const HEARTBEAT_MS: u64 = 200;
pub const SESSION_MS: u64 = 1_000;
pub const PREFIX: &str = "registry_";

const DEFAULT_URL: &str = "mysql://root@127.0.0.1:3306";

/// The server's URL (no database).
pub fn server_url() -> String {
    std::env::var("CONSOLE_TEST_MYSQL_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// Host, port and credentials of the test server.
#[derive(Debug, Clone)]
pub struct Server {
    pub host_port: String,
    pub username: String,
    pub password: String,
}

impl Server {
    pub fn from_env() -> Self {
        let url = server_url();
        let rest = url
            .strip_prefix("mysql://")
            .or_else(|| url.strip_prefix("mariadb://"))
            .unwrap_or(&url);
        let authority = rest.split('/').next().unwrap_or_default();
        let (user_info, host_port) = match authority.rsplit_once('@') {
            Some((user_info, host_port)) => (user_info, host_port),
            None => ("root", authority),
        };
        let (username, password) = user_info.split_once(':').unwrap_or((user_info, ""));
        Self {
            host_port: host_port.to_owned(),
            username: username.to_owned(),
            password: password.to_owned(),
        }
    }

    pub fn options(&self, database: Option<&str>) -> MySqlConnectOptions {
        let url = match database {
            Some(database) => format!("mysql://{}/{database}", self.host_port),
            None => format!("mysql://{}", self.host_port),
        };
        let mut options = MySqlConnectOptions::from_str(&url)
            .expect("the test server URL parses")
            .username(&self.username);
        if !self.password.is_empty() {
            options = options.password(&self.password);
        }
        options
    }

    /// A connection for the test itself, failing with instructions when the server is down.
    pub async fn admin(&self, database: Option<&str>) -> Result<MySqlConnection, String> {
        match tokio::time::timeout(Duration::from_secs(10), self.options(database).connect()).await
        {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(error)) => Err(format!(
                "MariaDB/MySQL does not answer at {} ({error}); start it with `deploy/mariadb.sh start` \
                 or point CONSOLE_TEST_MYSQL_URL at a server",
                server_url()
            )),
            Err(_) => Err(format!(
                "MariaDB/MySQL at {} did not answer within 10 s; start it with `deploy/mariadb.sh start`",
                server_url()
            )),
        }
    }
}

/// A database of its own, dropped by [`TestDatabase::drop_database`].
#[derive(Debug, Clone)]
pub struct TestDatabase {
    pub server: Server,
    pub name: String,
}

impl TestDatabase {
    pub async fn create() -> Result<Self, String> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let name = format!(
            "registry_test_{}_{}_{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let server = Server::from_env();
        let mut admin = server.admin(None).await?;
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE `{name}`")))
            .execute(&mut admin)
            .await
            .map_err(|error| format!("creating database {name}: {error}"))?;
        let _ = admin.close().await;
        Ok(Self { server, name })
    }

    pub fn attach(name: &str) -> Self {
        Self {
            server: Server::from_env(),
            name: name.to_owned(),
        }
    }

    /// A connection to this database for the test's own queries.
    pub async fn admin(&self) -> MySqlConnection {
        self.server.admin(Some(&self.name)).await.unwrap()
    }

    pub fn config(&self) -> MysqlConfig {
        MysqlConfig {
            url: format!("mysql://{}/{}", self.server.host_port, self.name),
            username: self.server.username.clone(),
            password: Secret::new(self.server.password.clone()),
            heartbeat_interval_ms: HEARTBEAT_MS,
            session_timeout_ms: SESSION_MS,
            table_prefix: PREFIX.to_owned(),
        }
    }

    pub fn client(&self) -> MysqlRegistry {
        MysqlRegistry::new(self.config()).unwrap()
    }

    /// Ends every connection to the database, then drops it.
    pub async fn drop_database(&self) {
        let Ok(mut admin) = self.server.admin(None).await else {
            return;
        };
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT CAST(ID AS SIGNED) FROM information_schema.PROCESSLIST WHERE DB = ? AND ID <> CONNECTION_ID()",
        )
        .bind(&self.name)
        .fetch_all(&mut admin)
        .await
        .unwrap_or_default();
        for id in ids {
            let _ = sqlx::query(AssertSqlSafe(format!("KILL {id}")))
                .execute(&mut admin)
                .await;
        }
        if let Err(error) = sqlx::query(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS `{}`",
            self.name
        )))
        .execute(&mut admin)
        .await
        {
            eprintln!("could not drop test database {}: {error}", self.name);
        }
        let _ = admin.close().await;
    }
}

/// Makes the server end `client`'s session: its row is aged past expiry, so the next poll of
/// any live client (or the client's own next heartbeat, which then matches 0 rows) ends it.
pub async fn expire(db: &TestDatabase, client: &MysqlRegistry) -> Result<(), String> {
    let id = client
        .client_id()
        .ok_or_else(|| "the client has no session to expire".to_owned())?;
    let mut admin = db.admin().await;
    let aged = sqlx::query(AssertSqlSafe(format!(
        "UPDATE {PREFIX}clients SET expires_at = UTC_TIMESTAMP(6) - INTERVAL 1 SECOND WHERE id = ?"
    )))
    .bind(id as i64)
    .execute(&mut admin)
    .await
    .map_err(|error| error.to_string())?;
    let _ = admin.close().await;
    if aged.rows_affected() != 1 {
        return Err(format!("client row {id} not found"));
    }
    Ok(())
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The kit's environment: one database per case.
pub struct MysqlEnvironment {
    pub db: TestDatabase,
}

#[async_trait]
impl Environment for MysqlEnvironment {
    type Client = MysqlRegistry;

    async fn create() -> Result<Self, String> {
        Ok(Self {
            db: TestDatabase::create().await?,
        })
    }

    async fn attach(description: &str) -> Result<Self, String> {
        Ok(Self {
            db: TestDatabase::attach(description),
        })
    }

    fn describe(&self) -> String {
        self.db.name.clone()
    }

    fn new_client(&self) -> Result<MysqlRegistry, RegistryError> {
        MysqlRegistry::new(self.db.config())
    }

    fn unreachable_client(&self, _timeout: Duration) -> Option<MysqlRegistry> {
        let mut config = self.db.config();
        config.url = format!("mysql://127.0.0.1:{}/{}", closed_port(), self.db.name);
        MysqlRegistry::new(config).ok()
    }

    async fn expire_session(&self, client: &MysqlRegistry) -> Result<(), String> {
        expire(&self.db, client).await
    }

    fn session_timeout(&self) -> Duration {
        Duration::from_millis(SESSION_MS)
    }

    fn lock_wake_bound(&self) -> Duration {
        Duration::from_millis(HEARTBEAT_MS)
    }

    async fn destroy(&self) {
        self.db.drop_database().await;
    }
}

/// Waits for the next state that `accept` takes, recording the ones passed over.
pub async fn wait_for_state(
    listener: &mut ConnectionListener,
    within: Duration,
    seen: &mut Vec<ConnectionState>,
    accept: impl Fn(ConnectionState) -> bool,
) -> bool {
    tokio::time::timeout(within, async {
        while let Some(state) = listener.next().await {
            seen.push(state);
            if accept(state) {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false)
}

/// Runs `body` on a fresh database and drops the database afterwards, even when `body` panics.
pub async fn with_database<F, Fut>(body: F)
where
    F: FnOnce(TestDatabase) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let db = TestDatabase::create()
        .await
        .unwrap_or_else(|message| panic!("{message}"));
    let outcome = tokio::spawn(body(db.clone())).await;
    db.drop_database().await;
    if let Err(error) = outcome {
        if error.is_panic() {
            std::panic::resume_unwind(error.into_panic());
        }
        panic!("the test body was cancelled: {error}");
    }
}

/// A connected client of `db`.
pub async fn connected(db: &TestDatabase) -> MysqlRegistry {
    use registry_api::Registry;
    let client = db.client();
    client.connect(Duration::from_secs(15)).await.unwrap();
    client
}

/// Polls `condition` every 20 ms until it holds or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {what} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
