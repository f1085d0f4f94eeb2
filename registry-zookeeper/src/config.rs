//! `registry.zookeeper` in the YAML configuration.

use std::time::Duration;

use registry_api::{RegistryError, Secret};
use serde::{Deserialize, Serialize};
use zookeeper_client as zk;

/// Settings of the ZooKeeper backend (`registry.zookeeper`).
///
/// ```yaml
/// registry:
///   type: zookeeper
///   zookeeper: { servers: "zk1:2181,zk2:2181", namespace: /console, session_timeout_ms: 10000 }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZookeeperConfig {
    /// The ensemble, comma-separated `host:port` pairs. No chroot suffix: that is `namespace`.
    pub servers: String,
    /// The chroot every path lives under; created if missing. Two clusters with different
    /// namespaces never see each other.
    pub namespace: String,
    /// The session timeout asked of the server; it may clamp it to its own bounds
    /// (`minSessionTimeout`, `maxSessionTimeout`). It bounds how long a crashed node's ephemeral
    /// keys and locks outlive it.
    pub session_timeout_ms: u64,
    /// How long `connect` (and each attempt to build a new session after a session loss) waits
    /// for a session before it gives up with a clear error.
    pub connect_timeout_ms: u64,
    /// `user:password` for digest authentication; when set, everything the backend creates is
    /// readable and writable by that identity only (ZooKeeper's creator-only ACL).
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
        for server in self.servers.split(',') {
            if let Err(message) = validate_server(server.trim()) {
                return bad(
                    "servers",
                    format!(
                        "{message}; expected comma-separated host:port pairs, got {:?}",
                        self.servers
                    ),
                );
            }
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

    pub(crate) fn session_timeout(&self) -> Duration {
        Duration::from_millis(self.session_timeout_ms)
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// The ACL of every node the backend creates: creator-only with a digest, open without.
    pub(crate) fn acls(&self) -> zk::Acls<'static> {
        if self.digest.is_empty() {
            zk::Acls::anyone_all()
        } else {
            zk::Acls::creator_all()
        }
    }
}

fn validate_server(server: &str) -> Result<(), String> {
    if server.is_empty() {
        return Err("empty server entry".to_owned());
    }
    if server.contains('/') {
        return Err(format!(
            "{server:?} contains '/': put the chroot in registry.zookeeper.namespace"
        ));
    }
    let Some((host, port)) = server.rsplit_once(':') else {
        return Err(format!("{server:?} has no port"));
    };
    if host.is_empty() {
        return Err(format!("{server:?} has no host"));
    }
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok(()),
        _ => Err(format!("{server:?} has an invalid port {port:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(config: &ZookeeperConfig) -> Option<String> {
        match config.validate() {
            Ok(()) => None,
            Err(RegistryError::Config { key, .. }) => Some(key),
            Err(other) => panic!("expected a Config error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(key_of(&ZookeeperConfig::default()), None);
    }

    #[test]
    fn bad_values_name_their_key() {
        let with = |f: fn(&mut ZookeeperConfig)| {
            let mut config = ZookeeperConfig::default();
            f(&mut config);
            key_of(&config)
        };
        let servers = Some("registry.zookeeper.servers".to_owned());
        assert_eq!(with(|c| c.servers = String::new()), servers);
        assert_eq!(with(|c| c.servers = "a:2181,".to_owned()), servers);
        assert_eq!(with(|c| c.servers = "a:2181/chroot".to_owned()), servers);
        assert_eq!(with(|c| c.servers = "a".to_owned()), servers);
        assert_eq!(with(|c| c.servers = "a:zk".to_owned()), servers);
        assert_eq!(with(|c| c.servers = ":2181".to_owned()), servers);
        assert_eq!(with(|c| c.servers = "a:2181, b:2182".to_owned()), None);
        assert_eq!(
            with(|c| c.namespace = "console".to_owned()),
            Some("registry.zookeeper.namespace".to_owned())
        );
        assert_eq!(
            with(|c| c.session_timeout_ms = 0),
            Some("registry.zookeeper.session_timeout_ms".to_owned())
        );
        assert_eq!(
            with(|c| c.connect_timeout_ms = 0),
            Some("registry.zookeeper.connect_timeout_ms".to_owned())
        );
        assert_eq!(
            with(|c| c.digest = Secret::new("no-colon")),
            Some("registry.zookeeper.digest".to_owned())
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let parsed: Result<ZookeeperConfig, _> =
            serde_json::from_value(serde_json::json!({ "servers": "a:1", "sesion_timeout_ms": 5 }));
        assert!(parsed.is_err(), "a misspelt key must not be ignored");
    }
}
