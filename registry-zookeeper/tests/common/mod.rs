//! What the ZooKeeper tests share: where the test server is, isolated namespaces, clients with a
//! short session timeout, and private ZooKeeper instances for tests that stop the server.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub mod proxy;
pub mod server;

use std::time::Duration;

use registry_api::Registry;
use registry_zookeeper::{ZookeeperConfig, ZookeeperRegistry};

/// The session timeout of test clients: short, so that expiry cases run fast.
pub const SESSION_TIMEOUT: Duration = Duration::from_millis(2000);

/// The shared test server: `CONSOLE_TEST_ZK`, or the one `deploy/zookeeper.sh start` runs.
pub fn servers() -> String {
    std::env::var("CONSOLE_TEST_ZK").unwrap_or_else(|_| "127.0.0.1:2181".to_owned())
}

/// A namespace nobody else uses.
pub fn unique_namespace(kind: &str) -> String {
    format!("/{kind}-{}", uuid::Uuid::new_v4().simple())
}

/// The configuration of a test client in `namespace` on `servers`.
pub fn config(servers: &str, namespace: &str) -> ZookeeperConfig {
    ZookeeperConfig {
        servers: servers.to_owned(),
        namespace: namespace.to_owned(),
        session_timeout_ms: SESSION_TIMEOUT.as_millis() as u64,
        connect_timeout_ms: 10_000,
        ..ZookeeperConfig::default()
    }
}

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Fails with how to start ZooKeeper when the server at `servers` does not answer.
pub async fn require_server(servers: &str) -> Result<(), String> {
    let probe = ZookeeperRegistry::new(config(servers, "/")).map_err(|e| e.to_string())?;
    match probe.connect(Duration::from_secs(5)).await {
        Ok(()) => {
            let _ = probe.close().await;
            Ok(())
        }
        Err(error) => Err(format!(
            "ZooKeeper at {servers} does not answer ({error}); start it with `deploy/zookeeper.sh start` \
             (or point CONSOLE_TEST_ZK at a running server)"
        )),
    }
}

/// A namespace of one test, deleted when dropped, also when the test fails.
#[derive(Debug)]
pub struct Namespace {
    pub servers: String,
    pub name: String,
    /// The credentials needed to delete it, if it was created with a digest.
    pub digest: String,
}

impl Namespace {
    pub fn new(servers: &str, kind: &str) -> Self {
        Self {
            servers: servers.to_owned(),
            name: unique_namespace(kind),
            digest: String::new(),
        }
    }

    /// The configuration of a test client in this namespace.
    pub fn config(&self) -> ZookeeperConfig {
        ZookeeperConfig {
            digest: self.digest.as_str().into(),
            ..config(&self.servers, &self.name)
        }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let admin = ZookeeperConfig {
            namespace: "/".to_owned(),
            ..self.config()
        };
        let name = self.name.clone();
        // Drop may run inside a runtime (or during a panic): delete from a thread of its own.
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to delete the test namespace");
            runtime.block_on(delete_with(admin, &name));
        })
        .join();
        if deleted.is_err() {
            eprintln!("deleting test namespace {} panicked", self.name);
        }
    }
}

/// Deletes `namespace` on `servers` (best effort: it is a test's leftovers).
pub async fn delete_namespace(servers: &str, namespace: &str) {
    delete_with(config(servers, "/"), namespace).await;
}

async fn delete_with(admin: ZookeeperConfig, namespace: &str) {
    let Ok(admin) = ZookeeperRegistry::new(admin) else {
        return;
    };
    if admin.connect(Duration::from_secs(10)).await.is_ok() {
        if let Err(error) = admin.delete(namespace).await {
            eprintln!("could not delete test namespace {namespace}: {error}");
        }
        let _ = admin.close().await;
    }
}

/// A connected client of `namespace` on `servers`.
pub async fn connected(servers: &str, namespace: &str) -> ZookeeperRegistry {
    connected_with(config(servers, namespace)).await
}

pub async fn connected_with(config: ZookeeperConfig) -> ZookeeperRegistry {
    let client = ZookeeperRegistry::new(config).expect("valid config");
    client
        .connect(Duration::from_secs(15))
        .await
        .expect("connect to the test ZooKeeper");
    client
}

/// Waits until the client reports `state` (the current state counts), failing after `within`.
pub async fn wait_state(
    client: &ZookeeperRegistry,
    within: Duration,
    state: registry_api::ConnectionState,
) {
    let mut listener = client.connection_listener();
    let outcome = tokio::time::timeout(within, async {
        while let Some(seen) = listener.next().await {
            if seen == state {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        outcome,
        Ok(true),
        "expected {state:?} within {within:?}; the state is {:?}",
        client.connection_state()
    );
}
