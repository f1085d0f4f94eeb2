//! The registry conformance kit against a real ZooKeeper (`CONSOLE_TEST_ZK`, default
//! 127.0.0.1:2181, started by `deploy/zookeeper.sh start`), including the SIGKILL crash case and
//! the unreachable-server case. Each case runs in a namespace of its own, deleted afterwards.
//! The cases are `zk_conformance::<case>`, so `cargo test zk_` runs them with every other
//! ZooKeeper test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use async_trait::async_trait;
use registry_api::RegistryError;
use registry_api::testkit::{Cut, Environment, Switch};
use registry_zookeeper::{ZookeeperConfig, ZookeeperRegistry};
use test_support::ports::free_port;
use test_support::proxy::TcpProxy;
use test_support::zookeeper::{self, Namespace};

/// One namespace on the test server; clients use a 2 s session timeout.
#[derive(Debug)]
struct ZookeeperEnvironment {
    namespace: Namespace,
}

#[async_trait]
impl Environment for ZookeeperEnvironment {
    type Client = ZookeeperRegistry;

    async fn create() -> Result<Self, String> {
        common::init_logging();
        let servers = zookeeper::servers();
        zookeeper::check(&servers).await?;
        Ok(Self {
            namespace: Namespace::new(&servers, "conformance").await,
        })
    }

    /// `description` is `<servers> <namespace path>`.
    async fn attach(description: &str) -> Result<Self, String> {
        let (servers, path) = description
            .split_once(' ')
            .ok_or_else(|| format!("bad description: {description}"))?;
        Ok(Self {
            namespace: Namespace::attach(servers, path),
        })
    }

    fn describe(&self) -> String {
        format!("{} {}", self.namespace.servers(), self.namespace.path())
    }

    fn new_client(&self) -> Result<ZookeeperRegistry, RegistryError> {
        ZookeeperRegistry::new(common::config_in(&self.namespace))
    }

    fn unreachable_client(&self, timeout: Duration) -> Option<ZookeeperRegistry> {
        let config = ZookeeperConfig {
            servers: format!("127.0.0.1:{}", free_port()),
            connect_timeout_ms: timeout.as_millis() as u64,
            ..common::config_in(&self.namespace)
        };
        ZookeeperRegistry::new(config).ok()
    }

    async fn cuttable_client(&self) -> Option<(ZookeeperRegistry, Box<dyn Cut>)> {
        let proxy = TcpProxy::start(self.namespace.servers()).await;
        let config = ZookeeperConfig {
            servers: proxy.addr().to_string(),
            ..common::config_in(&self.namespace)
        };
        let client = ZookeeperRegistry::new(config).ok()?;
        Some((
            client,
            Box::new(Switch::new(proxy, TcpProxy::cut, TcpProxy::pass)),
        ))
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
        self.namespace.delete().await;
    }
}

mod zk_conformance {
    registry_api::registry_conformance_tests!(super::ZookeeperEnvironment);
}
