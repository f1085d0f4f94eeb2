//! The conformance kit against the in-process `standalone` registry: every case that applies to
//! a single process. The cases are `standalone_conformance::<case>`, so `cargo test standalone_`
//! runs them with every other test of the standalone registry.

use std::time::Duration;

use async_trait::async_trait;
use registry_api::testkit::Environment;
use registry_api::{RegistryError, StandaloneRegistry, StandaloneServer};

/// Each case gets its own in-process server.
struct StandaloneEnvironment {
    server: StandaloneServer,
}

#[async_trait]
impl Environment for StandaloneEnvironment {
    type Client = StandaloneRegistry;

    async fn create() -> Result<Self, String> {
        Ok(Self {
            server: StandaloneServer::new(),
        })
    }

    async fn attach(_description: &str) -> Result<Self, String> {
        Err("the standalone registry cannot be shared with another process".to_owned())
    }

    fn describe(&self) -> String {
        String::new()
    }

    fn new_client(&self) -> Result<StandaloneRegistry, RegistryError> {
        Ok(self.server.client())
    }

    fn unreachable_client(&self, _timeout: Duration) -> Option<StandaloneRegistry> {
        None
    }

    async fn expire_session(&self, client: &StandaloneRegistry) -> Result<(), String> {
        client.expire_session();
        Ok(())
    }

    fn session_timeout(&self) -> Duration {
        Duration::ZERO
    }

    async fn destroy(&self) {}
}

mod standalone_conformance {
    registry_api::registry_conformance_tests!(super::StandaloneEnvironment, single_process);
}
