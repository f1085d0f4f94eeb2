//! The console's configuration: the YAML of DESIGN.md, environment overrides, validation.
//!
//! Every key has a default, so a missing file gives the embedded default: one node, the
//! `standalone` registry, SQLite under `./data`. `load.rs` reads the file and the environment
//! and names the key and source of every error; this file holds the sections and the checks
//! serde cannot express. The `registry` section is `registry-all`'s, checked by the backends'
//! factories.

mod executors;
pub use executors::ExecutorsConfig;
mod load;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use registry_all::RegistryConfig;
use registry_api::{RegistryError, Secret};
use serde::Deserialize;
use task_dispatch::{AssignmentError, AssignmentKind, Epsilon, MAX_CAPACITY, redact_url};

use crate::node::host;
pub use executors::FlinkConfig;
pub use load::ConfigError;
use load::Loaded;

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    #[serde(deserialize_with = "load::section")]
    pub server: ServerConfig,
    #[serde(deserialize_with = "load::section")]
    pub node: NodeConfig,
    #[serde(deserialize_with = "load::section")]
    pub database: DatabaseConfig,
    #[serde(deserialize_with = "load::section")]
    pub registry: RegistryConfig,
    #[serde(deserialize_with = "load::section")]
    pub monitor: MonitorConfig,
    #[serde(deserialize_with = "load::section")]
    pub cluster: ClusterConfig,
    /// Added, issue 13.
    #[serde(deserialize_with = "load::section")]
    pub executors: ExecutorsConfig,
    /// Added, issue 16.
    #[serde(deserialize_with = "load::section")]
    pub dispatch: DispatchConfig,
}

/// `dispatch`: how the apps are split between the nodes; the same on every node of a cluster.
/// Added, issue 16.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DispatchConfig {
    /// `rendezvous` (every app counts one; the default) or `bounded` (no node owns more than
    /// `(1 + epsilon) ×` its fair share of the apps' weight, by `node.capacity`).
    pub assignment: String,
    /// The slack of the `bounded` assignment, 0 to 1,000,000. Default 0.1.
    pub epsilon: f64,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            assignment: "rendezvous".to_owned(),
            epsilon: 0.1,
        }
    }
}

impl DispatchConfig {
    /// The assignment named by `assignment`.
    ///
    /// # Notable errors
    /// An unknown name (checked at start-up).
    pub fn kind(&self) -> Result<AssignmentKind, AssignmentError> {
        self.assignment.parse()
    }

    /// What a node publishes about it, for its peers to compare: `rendezvous` or
    /// `bounded(epsilon=<ε>)`.
    pub fn describe(&self) -> String {
        match (self.kind(), self.epsilon()) {
            (Ok(AssignmentKind::Bounded), Ok(epsilon)) => format!("bounded(epsilon={epsilon})"),
            (Ok(kind), _) => kind.to_string(),
            (Err(_), _) => self.assignment.clone(),
        }
    }

    /// `epsilon` as the dispatcher takes it.
    ///
    /// # Notable errors
    /// A negative, non-finite or too large value (checked at start-up).
    pub fn epsilon(&self) -> Result<Epsilon, AssignmentError> {
        Epsilon::new(self.epsilon)
    }
}

/// `cluster`: what the nodes of one cluster share. Added, issue 12.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// The key that signs node-to-node calls (`/internal/*`), the same on every node. Empty: a
    /// random key drawn once and kept in the task database, which every node can read.
    pub secret: Secret,
}

/// `server`: where the HTTP API listens, and how peers and users reach it.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// The address to listen on. Anything but a loopback address needs `auth_token` (or
    /// `allow_unauthenticated`): the API runs commands.
    pub host: String,
    pub port: u16,
    /// When set, every `/api` call needs `Authorization: Bearer <token>`.
    pub auth_token: Secret,
    /// The address peers reach this node on (its registry entry, the default node id). Empty:
    /// `host`, or the machine's primary address when `host` is unspecified (`0.0.0.0`, `::`).
    /// Never an unspecified address. Added, issue 12.
    pub advertised_host: String,
    /// Serve a non-loopback `host` without `auth_token`: anyone who reaches the port can run
    /// commands. Off by default; a warning is logged at start-up when on. Added, issue 12.
    pub allow_unauthenticated: bool,
    /// A connection must deliver a request's headers within this many milliseconds of waiting
    /// for them (also the idle keep-alive timeout), or it is closed. Never applied to a
    /// response being sent (event streams stay open). Added, issue 12.
    pub header_read_timeout_ms: u64,
    /// The most client connections served at once; more wait in the accept queue. Lowered at
    /// start-up, with a warning, to leave descriptors for the node's own connections. Added,
    /// issue 12.
    pub max_connections: usize,
    /// How long a request may take before it is answered 503; the actions (start, stop,
    /// restart, bulk), which must say whether they queued a task, are not cut. Added, issue 12.
    pub request_timeout_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: 10000,
            auth_token: Secret::default(),
            advertised_host: String::new(),
            allow_unauthenticated: false,
            header_read_timeout_ms: 10_000,
            max_connections: 1024,
            request_timeout_ms: 30_000,
        }
    }
}

impl ServerConfig {
    /// Whether `host` only accepts connections from this machine.
    pub fn is_loopback(&self) -> bool {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        host.eq_ignore_ascii_case("localhost")
            || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

/// Whether `host` is an IP address that means "every interface" (`0.0.0.0`, `::`).
fn is_unspecified(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified())
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
    /// The node's share of the apps' weight under `dispatch.assignment: bounded`, relative to
    /// the other nodes' (1 to 65,535; default 1). Published in the node's registry entry.
    /// Added, issue 16.
    pub capacity: u32,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            id: String::new(),
            data_dir: PathBuf::from("data"),
            capacity: 1,
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
        Self::validated(load::load(file)?)
    }

    /// Like [`ConsoleConfig::load`] with an explicit environment, for tests.
    pub fn load_with_env(
        file: Option<&Path>,
        env: Vec<(String, String)>,
    ) -> Result<Self, ConfigError> {
        Self::validated(load::load_with_env(file, Some(env))?)
    }

    fn validated(mut loaded: Loaded<Self>) -> Result<Self, ConfigError> {
        let config = &loaded.value;
        if config.server.host.trim().is_empty() {
            return Err(loaded.error("server.host", "must not be empty"));
        }
        let server = &config.server;
        if !server.is_loopback() && server.auth_token.is_empty() && !server.allow_unauthenticated {
            return Err(loaded.error(
                "server.auth_token",
                format!(
                    "must be set to listen on {:?}, which is not a loopback address (anyone who reaches it could run commands); set server.allow_unauthenticated: true to serve without one",
                    server.host
                ),
            ));
        }
        if is_unspecified(&server.advertised_host) {
            return Err(loaded.error(
                "server.advertised_host",
                format!(
                    "{:?} is not an address peers can reach; name this node's own address",
                    server.advertised_host
                ),
            ));
        }
        if server.advertised_host.is_empty() {
            let advertised = if is_unspecified(&server.host) {
                match host::primary_address() {
                    Some(address) => address.to_string(),
                    None => {
                        return Err(loaded.error(
                            "server.advertised_host",
                            format!(
                                "server.host {:?} listens on every interface and this machine has no primary address to advertise; set server.advertised_host",
                                server.host
                            ),
                        ));
                    }
                }
            } else {
                server.host.clone()
            };
            loaded.value.server.advertised_host = advertised;
        }
        let config = &loaded.value;
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
        if config.server.header_read_timeout_ms == 0 {
            return Err(loaded.error("server.header_read_timeout_ms", "must be greater than 0"));
        }
        if config.server.request_timeout_ms == 0 {
            return Err(loaded.error("server.request_timeout_ms", "must be greater than 0"));
        }
        if config.server.max_connections == 0 {
            return Err(loaded.error("server.max_connections", "must be greater than 0"));
        }
        if config.monitor.interval_ms == 0 {
            return Err(loaded.error("monitor.interval_ms", "must be greater than 0"));
        }
        if !(1..=MAX_CAPACITY).contains(&config.node.capacity) {
            return Err(loaded.error(
                "node.capacity",
                format!("must be 1 to {MAX_CAPACITY}, got {}", config.node.capacity),
            ));
        }
        if let Err(error) = config.dispatch.kind() {
            return Err(loaded.error("dispatch.assignment", error.to_string()));
        }
        if let Err(error) = config.dispatch.epsilon() {
            return Err(loaded.error("dispatch.epsilon", error.to_string()));
        }
        if let Err((key, message)) = config.executors.flink.check() {
            return Err(loaded.error(key, message));
        }
        if let Err(error) = config.registry.validate() {
            let (key, message) = match error {
                RegistryError::Config { key, message } => load::plain_message(key, message),
                other => ("registry.type".to_owned(), other.to_string()),
            };
            return Err(loaded.error(&key, message));
        }
        Ok(loaded.value)
    }

    /// This node's id: `node.id`, or `advertised_host:port` when empty.
    pub fn node_id(&self, bound_port: u16) -> String {
        if self.node.id.is_empty() {
            format!("{}:{bound_port}", self.server.advertised_host)
        } else {
            self.node.id.clone()
        }
    }
}
