//! The registry conformance kit against a real ZooKeeper (`CONSOLE_TEST_ZK`, default
//! 127.0.0.1:2181, started by `deploy/zookeeper.sh start`), including the SIGKILL crash case and
//! the unreachable-server case. Each case runs in a namespace of its own, deleted afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use async_trait::async_trait;
use registry_api::RegistryError;
use registry_api::testkit::Environment;
use registry_zookeeper::{ZookeeperConfig, ZookeeperRegistry};
use serde::{Deserialize, Serialize};

/// One namespace on the test server; clients use a 2 s session timeout.
#[derive(Debug, Serialize, Deserialize)]
struct ZookeeperEnvironment {
    servers: String,
    namespace: String,
}

#[async_trait]
impl Environment for ZookeeperEnvironment {
    type Client = ZookeeperRegistry;

    async fn create() -> Result<Self, String> {
        common::init_logging();
        let servers = common::servers();
        common::require_server(&servers).await?;
        Ok(Self {
            servers,
            namespace: common::unique_namespace("conformance"),
        })
    }

    async fn attach(description: &str) -> Result<Self, String> {
        serde_json::from_str(description).map_err(|error| format!("bad description: {error}"))
    }

    fn describe(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    fn new_client(&self) -> Result<ZookeeperRegistry, RegistryError> {
        ZookeeperRegistry::new(common::config(&self.servers, &self.namespace))
    }

    fn unreachable_client(&self, timeout: Duration) -> Option<ZookeeperRegistry> {
        let config = ZookeeperConfig {
            servers: format!("127.0.0.1:{}", closed_port()),
            connect_timeout_ms: timeout.as_millis() as u64,
            ..common::config(&self.servers, &self.namespace)
        };
        ZookeeperRegistry::new(config).ok()
    }

    async fn expire_session(&self, client: &ZookeeperRegistry) -> Result<(), String> {
        client
            .expire_session()
            .await
            .map_err(|error| error.to_string())
    }

    fn session_timeout(&self) -> Duration {
        common::SESSION_TIMEOUT
    }

    /// ZooKeeper notifications carry no data: a value overwritten before the subscriber read it
    /// is skipped (never reordered or repeated).
    fn delivers_every_value(&self) -> bool {
        false
    }

    async fn destroy(&self) {
        common::delete_namespace(&self.servers, &self.namespace).await;
    }
}

/// A local port where nothing listens (bound by us a moment ago, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

registry_api::registry_conformance_tests!(ZookeeperEnvironment);
