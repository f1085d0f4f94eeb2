//! Every registry backend, linked in one place, and the configuration that picks one.
//!
//! `registry.type` in the YAML names the backend (`standalone`, `zookeeper`, `mysql`); its
//! section (`registry.zookeeper`, `registry.mysql`) configures it. [`connect`] builds and connects
//! the named backend through the plugin factories of [`registry_api`], so this crate is also
//! where a new backend is added: a dependency, a field in [`RegistryConfig`], one line in
//! [`RegistryConfig::section`].
//!
//! [`settings`] loads any `serde` configuration type from YAML plus `CONSOLE__…` environment
//! overrides with errors that name the key and its source.

pub mod settings;

use std::time::Duration;

use registry_api::{Registry, RegistryError};
pub use registry_mysql::MysqlConfig;
pub use registry_zookeeper::ZookeeperConfig;
use serde::{Deserialize, Serialize};

/// The `registry` section of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// The backend to use: one of [`registry_api::known_types`].
    #[serde(rename = "type")]
    pub kind: String,
    pub zookeeper: ZookeeperConfig,
    pub mysql: MysqlConfig,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            kind: "standalone".to_owned(),
            zookeeper: ZookeeperConfig::default(),
            mysql: MysqlConfig::default(),
        }
    }
}

/// How long [`connect`] waits for a backend without a `connect_timeout_ms` of its own.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

impl RegistryConfig {
    /// The selected backend's section as the factory receives it.
    ///
    /// # Notable errors
    /// [`RegistryError::UnknownType`] listing the linked backends.
    pub fn section(&self) -> Result<serde_json::Value, RegistryError> {
        let section = match self.kind.as_str() {
            "standalone" => Ok(serde_json::Value::Null),
            "zookeeper" => serde_json::to_value(&self.zookeeper),
            "mysql" => serde_json::to_value(&self.mysql),
            _ => return Err(unknown_type(&self.kind)),
        };
        section.map_err(|error| RegistryError::Config {
            key: format!("registry.{}", self.kind),
            message: error.to_string(),
        })
    }

    /// Checks `registry.type` and the selected section, naming the offending key.
    pub fn validate(&self) -> Result<(), RegistryError> {
        if !registry_api::known_types().contains(&self.kind.as_str()) {
            return Err(unknown_type(&self.kind));
        }
        match self.kind.as_str() {
            "zookeeper" => self.zookeeper.validate(),
            "mysql" => self.mysql.validate(),
            _ => Ok(()),
        }
    }

    /// How long [`connect`] waits for the first session.
    pub fn connect_timeout(&self) -> Duration {
        match self.kind.as_str() {
            "zookeeper" => Duration::from_millis(self.zookeeper.connect_timeout_ms),
            _ => DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

fn unknown_type(name: &str) -> RegistryError {
    RegistryError::UnknownType {
        name: name.to_owned(),
        known: registry_api::known_types()
            .into_iter()
            .map(str::to_owned)
            .collect(),
    }
}

/// Builds the configured backend without connecting it.
///
/// # Notable errors
/// [`RegistryError::UnknownType`] and [`RegistryError::Config`] naming the offending key.
pub fn build(config: &RegistryConfig) -> Result<Box<dyn Registry>, RegistryError> {
    config.validate()?;
    registry_api::create(&config.kind, &config.section()?)
}

/// Builds the configured backend and connects it, waiting at most
/// [`RegistryConfig::connect_timeout`].
///
/// # Notable errors
/// Those of [`build`], and [`RegistryError::ConnectTimeout`] naming why the backend could not be
/// reached.
pub async fn connect(config: &RegistryConfig) -> Result<Box<dyn Registry>, RegistryError> {
    let registry = build(config)?;
    registry.connect(config.connect_timeout()).await?;
    Ok(registry)
}
