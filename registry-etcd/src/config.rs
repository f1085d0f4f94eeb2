//! `registry.etcd` in the YAML configuration.

use std::time::Duration;

use registry_api::{RegistryError, Secret};
use serde::{Deserialize, Serialize};

/// Settings of the etcd backend (`registry.etcd`).
///
/// ```yaml
/// registry:
///   type: etcd
///   etcd: { endpoints: "127.0.0.1:2379", namespace: /console, session_timeout_ms: 10000, username: "", password: "" }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EtcdConfig {
    /// The cluster's client endpoints, comma-separated `host:port` pairs (plain HTTP/2).
    pub endpoints: String,
    /// The prefix every key lives under; two clusters with different namespaces never see each
    /// other.
    pub namespace: String,
    /// The TTL of the session's lease, rounded up to whole seconds (the server may raise it to
    /// its minimum). It bounds how long a crashed node's ephemeral keys and locks outlive it.
    pub session_timeout_ms: u64,
    /// The user to authenticate as when etcd has authentication enabled; empty: none.
    pub username: String,
    /// That user's password.
    pub password: Secret,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        Self {
            endpoints: "127.0.0.1:2379".to_owned(),
            namespace: "/console".to_owned(),
            session_timeout_ms: 10_000,
            username: String::new(),
            password: Secret::default(),
        }
    }
}

impl EtcdConfig {
    /// Checks the values that deserialization cannot, naming the offending key.
    pub fn validate(&self) -> Result<(), RegistryError> {
        let bad = |key: &str, message: String| {
            Err(RegistryError::Config {
                key: format!("registry.etcd.{key}"),
                message,
            })
        };
        for endpoint in self.endpoints.split(',').map(str::trim) {
            let port = endpoint
                .rsplit_once(':')
                .map(|(host, port)| (host, port.parse::<u16>()));
            if !matches!(port, Some((host, Ok(1..))) if !host.is_empty() && !host.contains('/')) {
                return bad(
                    "endpoints",
                    format!(
                        "{endpoint:?} is not host:port; expected comma-separated host:port pairs, got {:?}",
                        self.endpoints
                    ),
                );
            }
        }
        if let Err(error) = registry_api::path::validate(&self.namespace) {
            return bad("namespace", error.to_string());
        }
        if self.session_timeout_ms < 1000 {
            return bad(
                "session_timeout_ms",
                format!(
                    "must be at least 1000 (etcd leases live whole seconds), got {}",
                    self.session_timeout_ms
                ),
            );
        }
        if self.username.is_empty() && !self.password.is_empty() {
            return bad("username", "a password is set but no username".to_owned());
        }
        Ok(())
    }

    pub(crate) fn endpoints(&self) -> Vec<String> {
        self.endpoints
            .split(',')
            .map(|e| e.trim().to_owned())
            .collect()
    }

    /// The lease TTL asked of the server, in whole seconds.
    pub(crate) fn ttl_seconds(&self) -> i64 {
        self.session_timeout_ms.div_ceil(1000) as i64
    }

    pub(crate) fn session_timeout(&self) -> Duration {
        Duration::from_secs(self.ttl_seconds() as u64)
    }
}
