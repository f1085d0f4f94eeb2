//! The console's configuration: the YAML of DESIGN.md, environment overrides, validation.
//!
//! Every key has a default, so a missing file gives the embedded default: one node, the
//! `standalone` registry, SQLite under `./data`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use registry_all::RegistryConfig;
use registry_all::settings::{self, ConfigError, Loaded};
use registry_api::{RegistryError, Secret};
use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    pub server: ServerConfig,
    pub node: NodeConfig,
    pub database: DatabaseConfig,
    pub registry: RegistryConfig,
    pub monitor: MonitorConfig,
}

/// `server`: where the HTTP API listens.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    /// When set, every `/api` call needs `Authorization: Bearer <token>`.
    pub auth_token: Secret,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: 10000,
            auth_token: Secret::default(),
        }
    }
}

/// `node`: this node's identity in the cluster and its local files.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// The node id; empty means `host:port`. Unique in the cluster; no `/`.
    pub id: String,
    /// Where the node keeps local files: the per-app log files of the process executor
    /// (`<data_dir>/apps/<app id>.log`).
    pub data_dir: PathBuf,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            id: String::new(),
            data_dir: PathBuf::from("data"),
        }
    }
}

/// `database`: where apps and tasks are stored.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://path` or `mysql://user:pass@host:3306/db`.
    pub url: String,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://data/console.db".to_owned(),
        }
    }
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url(&self.url))
            .finish()
    }
}

/// `monitor`: how often the owner of an app checks that it still runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorConfig {
    pub interval_ms: u64,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self { interval_ms: 1000 }
    }
}

impl MonitorConfig {
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }
}

impl ConsoleConfig {
    /// Loads the configuration from `file` (or the embedded default) and the `CONSOLE__…`
    /// environment, and validates it.
    ///
    /// # Notable errors
    /// One [`ConfigError`] naming the first bad key and the file or variable it came from.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::validated(settings::load(file)?)
    }

    /// Like [`ConsoleConfig::load`] with an explicit environment, for tests.
    pub fn load_with_env(
        file: Option<&Path>,
        env: Vec<(String, String)>,
    ) -> Result<Self, ConfigError> {
        Self::validated(settings::load_with_env(file, Some(env))?)
    }

    fn validated(loaded: Loaded<Self>) -> Result<Self, ConfigError> {
        let config = &loaded.value;
        if config.server.host.trim().is_empty() {
            return Err(loaded.error("server.host", "must not be empty"));
        }
        let url = &config.database.url;
        if !(url.starts_with("sqlite:")
            || url.starts_with("mysql://")
            || url.starts_with("mariadb://"))
        {
            return Err(loaded.error(
                "database.url",
                format!(
                    "expected sqlite://path or mysql://user:pass@host:port/db, got {:?}",
                    redact_url(url)
                ),
            ));
        }
        if config.node.id.contains('/') || config.node.id.chars().any(char::is_control) {
            return Err(loaded.error(
                "node.id",
                format!(
                    "must not contain '/' or control characters, got {:?}",
                    config.node.id
                ),
            ));
        }
        if config.node.data_dir.as_os_str().is_empty() {
            return Err(loaded.error("node.data_dir", "must not be empty"));
        }
        if config.monitor.interval_ms == 0 {
            return Err(loaded.error("monitor.interval_ms", "must be greater than 0"));
        }
        if let Err(error) = config.registry.validate() {
            let key = match &error {
                RegistryError::Config { key, .. } => key.clone(),
                _ => "registry.type".to_owned(),
            };
            let message = match error {
                RegistryError::Config { message, .. } => message,
                other => other.to_string(),
            };
            return Err(loaded.error(&key, message));
        }
        Ok(loaded.value)
    }

    /// This node's id: `node.id`, or `host:port` when empty.
    pub fn node_id(&self, bound_port: u16) -> String {
        if self.node.id.is_empty() {
            format!("{}:{bound_port}", self.server.host)
        } else {
            self.node.id.clone()
        }
    }
}

/// `url` with any password replaced by `***`, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn load(yaml: &str, env: &[(&str, &str)]) -> Result<ConsoleConfig, ConfigError> {
        let mut file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        file.write_all(yaml.as_bytes()).unwrap();
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ConsoleConfig::load_with_env(Some(file.path()), env)
    }

    /// The key an invalid configuration is refused for, and the one-line message.
    fn error_line(yaml: &str, env: &[(&str, &str)]) -> (String, String) {
        let error = load(yaml, env).expect_err("the configuration should be refused");
        let ConfigError::Key { key, .. } = &error else {
            panic!("expected an error naming a key, got {error}");
        };
        assert!(!error.to_string().contains('\n'), "one line: {error}");
        (key.clone(), error.to_string())
    }

    #[test]
    fn no_file_gives_the_embedded_default() {
        let config = ConsoleConfig::load_with_env(None, vec![]).unwrap();
        assert_eq!(config.registry.kind, "standalone");
        assert_eq!(config.database.url, "sqlite://data/console.db");
        assert_eq!(config.node.data_dir, PathBuf::from("data"));
        assert_eq!(config.node_id(10000), "127.0.0.1:10000");
    }

    #[test]
    fn environment_overrides_keys() {
        let config = load(
            "server: { port: 1 }\n",
            &[
                ("CONSOLE__SERVER__PORT", "9090"),
                ("CONSOLE__NODE__ID", "n1"),
            ],
        )
        .unwrap();
        assert_eq!(config.server.port, 9090);
        assert_eq!(config.node_id(9090), "n1");
    }

    #[test]
    fn a_non_numeric_port_names_the_key_and_file() {
        let (key, line) = error_line("server:\n  port: abc\n", &[]);
        assert_eq!(key, "server.port");
        assert!(line.contains("abc") && line.contains(".yaml"), "{line}");
        let (key, line) = error_line("{}", &[("CONSOLE__SERVER__PORT", "http")]);
        assert_eq!(key, "server.port");
        assert!(
            line.contains("environment variable CONSOLE__SERVER__PORT"),
            "{line}"
        );
    }

    #[test]
    fn an_unknown_key_is_named() {
        let (key, line) = error_line("server:\n  prot: 1\n", &[]);
        assert_eq!(key, "server.prot");
        assert!(line.contains("unknown key"), "{line}");
        let (key, _) = error_line("sever: {}\n", &[]);
        assert_eq!(key, "sever");
    }

    #[test]
    fn a_missing_value_is_named() {
        let (key, line) = error_line("server:\n  port:\n", &[]);
        assert_eq!(key, "server.port");
        assert!(line.contains("missing value"), "{line}");
    }

    #[test]
    fn an_unknown_registry_type_names_the_known_types() {
        let (key, line) = error_line("registry:\n  type: nope\n", &[]);
        assert_eq!(key, "registry.type");
        assert!(
            line.contains("known types: ") && line.contains("standalone"),
            "{line}"
        );
    }

    #[test]
    fn bad_database_url_is_named_without_its_password() {
        let (key, line) = error_line("database:\n  url: postgres://u:hunter2@h/db\n", &[]);
        assert_eq!(key, "database.url");
        assert!(!line.contains("hunter2"), "{line}");
    }

    #[test]
    fn secrets_never_reach_debug_output() {
        let config = load(
            "server: { auth_token: tok-secret }\ndatabase: { url: 'mysql://root:db-secret@h:3306/c' }\nregistry: { mysql: { password: my-secret }, zookeeper: { digest: 'u:zk-secret' } }\n",
            &[],
        )
        .unwrap();
        let printed = format!("{config:?}");
        for secret in ["tok-secret", "db-secret", "my-secret", "zk-secret"] {
            assert!(!printed.contains(secret), "{secret} leaked: {printed}");
        }
    }
}
