//! `registry.zookeeper` in the YAML configuration.

use registry_api::{RegistryError, Secret};
use serde::{Deserialize, Serialize};

/// Settings of the ZooKeeper backend (`registry.zookeeper`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZookeeperConfig {
    /// The ensemble, comma-separated `host:port` pairs.
    pub servers: String,
    /// The chroot every path lives under; created if missing. Two clusters with different
    /// namespaces never see each other.
    pub namespace: String,
    /// The session timeout asked of the server; it may clamp it to its own bounds.
    pub session_timeout_ms: u64,
    /// How long `connect` waits for the first session.
    pub connect_timeout_ms: u64,
    /// `user:password` for digest authentication; when set, everything the backend creates is
    /// readable and writable by that identity only.
    pub digest: Secret,
}

impl Default for ZookeeperConfig {
    fn default() -> Self {
        Self {
            servers: "127.0.0.1:2181".to_owned(),
            namespace: "/console".to_owned(),
            session_timeout_ms: 10_000,
            connect_timeout_ms: 15_000,
            digest: Secret::default(),
        }
    }
}

impl ZookeeperConfig {
    /// Checks the values that deserialization cannot, naming the offending key.
    pub fn validate(&self) -> Result<(), RegistryError> {
        let bad = |key: &str, message: String| {
            Err(RegistryError::Config {
                key: format!("registry.zookeeper.{key}"),
                message,
            })
        };
        if self.servers.split(',').any(|s| s.trim().is_empty()) {
            return bad(
                "servers",
                format!(
                    "expected comma-separated host:port pairs, got {:?}",
                    self.servers
                ),
            );
        }
        if let Err(error) = registry_api::path::validate(&self.namespace) {
            return bad("namespace", error.to_string());
        }
        if self.session_timeout_ms == 0 {
            return bad("session_timeout_ms", "must be greater than 0".to_owned());
        }
        if self.connect_timeout_ms == 0 {
            return bad("connect_timeout_ms", "must be greater than 0".to_owned());
        }
        if !self.digest.is_empty() && !self.digest.expose().contains(':') {
            return bad("digest", "expected user:password".to_owned());
        }
        Ok(())
    }
}
