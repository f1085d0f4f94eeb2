//! What the ZooKeeper tests share: test clients with a short session timeout. The server, the
//! namespaces, the private servers, the proxy and waiting come from `test_support`.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::time::Duration;

use registry_api::Registry;
use registry_zookeeper::{ZookeeperConfig, ZookeeperRegistry};
use test_support::zookeeper::Namespace;

/// The session timeout of test clients: short, so that expiry cases run fast.
pub const SESSION_TIMEOUT: Duration = Duration::from_millis(2000);

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

/// The configuration of a test client in `namespace`.
pub fn config_in(namespace: &Namespace) -> ZookeeperConfig {
    config(namespace.servers(), namespace.path())
}

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
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
