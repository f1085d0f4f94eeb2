//! `registry.mysql` in the YAML configuration.

use registry_api::{RegistryError, Secret};
use serde::{Deserialize, Serialize};

/// Settings of the MySQL/MariaDB backend (`registry.mysql`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MysqlConfig {
    /// `mysql://host:port/database`; credentials go in `username`/`password`.
    pub url: String,
    pub username: String,
    pub password: Secret,
    /// How often a client proves it is alive (and polls for events).
    pub heartbeat_interval_ms: u64,
    /// A client whose last heartbeat is older than this (by the database's clock) is dead.
    /// At least three heartbeat intervals.
    pub session_timeout_ms: u64,
    /// Prefix of every table the backend creates.
    pub table_prefix: String,
}

impl Default for MysqlConfig {
    fn default() -> Self {
        Self {
            url: "mysql://127.0.0.1:3306/console".to_owned(),
            username: "root".to_owned(),
            password: Secret::default(),
            heartbeat_interval_ms: 1_000,
            session_timeout_ms: 5_000,
            table_prefix: "registry_".to_owned(),
        }
    }
}

impl MysqlConfig {
    /// Checks the values that deserialization cannot, naming the offending key.
    pub fn validate(&self) -> Result<(), RegistryError> {
        let bad = |key: &str, message: String| {
            Err(RegistryError::Config {
                key: format!("registry.mysql.{key}"),
                message,
            })
        };
        if !self.url.starts_with("mysql://") && !self.url.starts_with("mariadb://") {
            return bad(
                "url",
                format!("expected mysql://host:port/database, got {:?}", self.url),
            );
        }
        if self.heartbeat_interval_ms == 0 {
            return bad("heartbeat_interval_ms", "must be greater than 0".to_owned());
        }
        if self.session_timeout_ms < 3 * self.heartbeat_interval_ms {
            return bad(
                "session_timeout_ms",
                format!(
                    "{} ms is shorter than 3 heartbeats ({} ms each); a single late heartbeat would end the session",
                    self.session_timeout_ms, self.heartbeat_interval_ms
                ),
            );
        }
        if !self
            .table_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return bad(
                "table_prefix",
                format!(
                    "only letters, digits and '_' are allowed, got {:?}",
                    self.table_prefix
                ),
            );
        }
        Ok(())
    }
}
