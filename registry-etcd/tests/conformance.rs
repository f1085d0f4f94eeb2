//! The registry conformance kit against a real etcd (`CONSOLE_TEST_ETCD`, default
//! 127.0.0.1:2379, started by `deploy/etcd.sh start`), including the SIGKILL crash case, the
//! unreachable-server case and the cases that cut a client off (through a TCP proxy, never by
//! stopping the shared server). Each case runs in a namespace of its own, deleted afterwards.
//! The cases are `etcd_conformance::<case>`, so `cargo test etcd_` runs them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use async_trait::async_trait;
use registry_api::RegistryError;
use registry_api::testkit::{Cut, Environment, Switch};
use registry_etcd::{EtcdConfig, EtcdRegistry};
use test_support::etcd::{self, Namespace};
use test_support::ports::free_port;
use test_support::proxy::TcpProxy;

/// The session timeout of test clients: short, so that expiry cases run fast (etcd's minimum
/// lease TTL with its default timings is 2 s).
const SESSION_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug)]
struct EtcdEnvironment {
    namespace: Namespace,
}

impl EtcdEnvironment {
    fn config(&self, endpoints: &str) -> EtcdConfig {
        EtcdConfig {
            endpoints: endpoints.to_owned(),
            namespace: self.namespace.path().to_owned(),
            session_timeout_ms: SESSION_TIMEOUT.as_millis() as u64,
            ..EtcdConfig::default()
        }
    }
}

#[async_trait]
impl Environment for EtcdEnvironment {
    type Client = EtcdRegistry;

    async fn create() -> Result<Self, String> {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let endpoints = etcd::endpoints();
        etcd::client(&endpoints).await?;
        Ok(Self {
            namespace: Namespace::new(&endpoints, "conformance").await,
        })
    }

    /// `description` is `<endpoints> <namespace>`.
    async fn attach(description: &str) -> Result<Self, String> {
        let (endpoints, path) = description
            .split_once(' ')
            .ok_or_else(|| format!("bad description: {description}"))?;
        Ok(Self {
            namespace: Namespace::attach(endpoints, path),
        })
    }

    fn describe(&self) -> String {
        format!("{} {}", self.namespace.endpoints(), self.namespace.path())
    }

    fn new_client(&self) -> Result<EtcdRegistry, RegistryError> {
        EtcdRegistry::new(self.config(self.namespace.endpoints()))
    }

    fn unreachable_client(&self, _timeout: Duration) -> Option<EtcdRegistry> {
        EtcdRegistry::new(self.config(&format!("127.0.0.1:{}", free_port()))).ok()
    }

    async fn cuttable_client(&self) -> Option<(EtcdRegistry, Box<dyn Cut>)> {
        let proxy = TcpProxy::start(self.namespace.endpoints()).await;
        let client = EtcdRegistry::new(self.config(&proxy.addr().to_string())).ok()?;
        Some((
            client,
            Box::new(Switch::new(proxy, TcpProxy::cut, TcpProxy::pass)),
        ))
    }

    async fn expire_session(&self, client: &EtcdRegistry) -> Result<(), String> {
        client
            .expire_session()
            .await
            .map_err(|error| error.to_string())
    }

    fn session_timeout(&self) -> Duration {
        SESSION_TIMEOUT
    }

    async fn destroy(&self) {
        self.namespace.delete().await;
    }
}

mod etcd_conformance {
    registry_api::registry_conformance_tests!(super::EtcdEnvironment);
}
