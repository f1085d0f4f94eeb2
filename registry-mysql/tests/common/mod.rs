//! What the MySQL registry tests share: test clients with short timings in a database of the
//! test's own, the kit's `Environment`, and ending a client's session from outside. The server,
//! the databases, the proxy and waiting come from `test_support`.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::time::Duration;

use async_trait::async_trait;
use registry_api::testkit::{Cut, Environment, Switch};
use registry_api::{Registry, RegistryError, Secret};
use registry_mysql::{MysqlConfig, MysqlRegistry};
use test_support::mariadb::TestDatabase;
use test_support::ports::free_port;
use test_support::proxy::TcpProxy;

/// Short timings so that session expiry shows up quickly.
pub const HEARTBEAT_MS: u64 = 200;
pub const SESSION_MS: u64 = 1_000;
pub const PREFIX: &str = "registry_";

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A fresh database `registry_test_<random>`, dropped when the test ends.
pub async fn database() -> TestDatabase {
    init_logging();
    TestDatabase::create("registry_test").await
}

/// The configuration of a test client of `db`.
pub fn config(db: &TestDatabase) -> MysqlConfig {
    let server = db.server();
    MysqlConfig {
        url: format!("mysql://{}/{}", server.host_port, db.name()),
        username: server.username.clone(),
        password: Secret::new(server.password.clone()),
        heartbeat_interval_ms: HEARTBEAT_MS,
        session_timeout_ms: SESSION_MS,
        table_prefix: PREFIX.to_owned(),
    }
}

/// A connected client of `db`.
pub async fn connected(db: &TestDatabase) -> MysqlRegistry {
    let client = MysqlRegistry::new(config(db)).unwrap();
    client.connect(Duration::from_secs(15)).await.unwrap();
    client
}

/// A connected client of `db` that reaches it through a proxy the test can cut or black-hole.
pub async fn connected_through_proxy(db: &TestDatabase) -> (MysqlRegistry, TcpProxy) {
    let proxy = TcpProxy::start(&db.server().host_port).await;
    let mut config = config(db);
    config.url = format!("mysql://{}/{}", proxy.addr(), db.name());
    let client = MysqlRegistry::new(config).unwrap();
    client.connect(Duration::from_secs(15)).await.unwrap();
    (client, proxy)
}

/// Ends `client`'s session the way the backend's expiry does: another client purges it
/// (`MysqlRegistry::end_session`: its connection killed, its row, ephemeral keys and locks
/// gone). Ageing the row is not enough: a live client refreshes a row that merely looks expired
/// (a stepped database clock looks the same).
pub async fn expire(db: &TestDatabase, client: &MysqlRegistry) -> Result<(), String> {
    let id = client
        .client_id()
        .ok_or_else(|| "the client has no session to expire".to_owned())?;
    let purger = MysqlRegistry::new(config(db)).map_err(|error| error.to_string())?;
    purger
        .connect(Duration::from_secs(15))
        .await
        .map_err(|error| error.to_string())?;
    let ended = purger
        .end_session(id)
        .await
        .map_err(|error| error.to_string());
    let _ = purger.close().await;
    match ended? {
        true => Ok(()),
        false => Err(format!("client row {id} not found")),
    }
}

/// The kit's environment: one database per case.
pub struct MysqlEnvironment {
    pub db: TestDatabase,
}

#[async_trait]
impl Environment for MysqlEnvironment {
    type Client = MysqlRegistry;

    async fn create() -> Result<Self, String> {
        test_support::mariadb::MariaDb::from_env().connect().await?;
        Ok(Self {
            db: database().await,
        })
    }

    async fn attach(description: &str) -> Result<Self, String> {
        Ok(Self {
            db: TestDatabase::attach(description),
        })
    }

    fn describe(&self) -> String {
        self.db.name().to_owned()
    }

    fn new_client(&self) -> Result<MysqlRegistry, RegistryError> {
        MysqlRegistry::new(config(&self.db))
    }

    fn unreachable_client(&self, _timeout: Duration) -> Option<MysqlRegistry> {
        let mut config = config(&self.db);
        config.url = format!("mysql://127.0.0.1:{}/{}", free_port(), self.db.name());
        MysqlRegistry::new(config).ok()
    }

    async fn cuttable_client(&self) -> Option<(MysqlRegistry, Box<dyn Cut>)> {
        let proxy = TcpProxy::start(&self.db.server().host_port).await;
        let mut config = config(&self.db);
        config.url = format!("mysql://{}/{}", proxy.addr(), self.db.name());
        let client = MysqlRegistry::new(config).ok()?;
        Some((
            client,
            Box::new(Switch::new(proxy, TcpProxy::cut, TcpProxy::pass)),
        ))
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
