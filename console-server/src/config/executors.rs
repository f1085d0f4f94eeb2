//! `executors`: settings of the executors that need any (added, issue 13).
//!
//! ```yaml
//! executors:
//!   flink:
//!     rest_url: "http://127.0.0.1:8081"   # empty: the flink executor is off
//!     savepoint_dir: "/var/lib/console/savepoints"   # empty: Flink's own default
//!     retention: 5                        # savepoints kept per app (the newest), at least 1
//! ```

use serde::Deserialize;

/// `executors`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutorsConfig {
    pub flink: FlinkConfig,
}

/// `executors.flink`: the Flink session cluster that `flink` apps run on.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlinkConfig {
    /// The REST endpoint of the session cluster, `http://host:port`. Empty: no `flink`
    /// executor (apps asking for it are refused at create).
    pub rest_url: String,
    /// Where savepoints go, as a path both Flink and this node can read: each app's under
    /// `<savepoint_dir>/app-<id>/`, which is also where a start looks for the newest to restore.
    /// Empty: Flink's `execution.checkpointing.savepoint-dir`, and starts restore nothing.
    pub savepoint_dir: String,
    /// How many of an app's savepoints are kept (the newest); never fewer than one.
    pub retention: u32,
}

impl Default for FlinkConfig {
    fn default() -> Self {
        Self {
            rest_url: String::new(),
            savepoint_dir: String::new(),
            retention: 5,
        }
    }
}

impl FlinkConfig {
    /// The key and message of the first invalid setting.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !self.rest_url.is_empty() {
            let url = reqwest::Url::parse(&self.rest_url).map_err(|error| {
                (
                    "executors.flink.rest_url",
                    format!("{:?} is not a URL: {error}", self.rest_url),
                )
            })?;
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                return Err((
                    "executors.flink.rest_url",
                    format!(
                        "{:?} must be an http:// or https:// URL with a host",
                        self.rest_url
                    ),
                ));
            }
        }
        if !self.savepoint_dir.is_empty()
            && !std::path::Path::new(&self.savepoint_dir).is_absolute()
        {
            return Err((
                "executors.flink.savepoint_dir",
                format!(
                    "{:?} must be an absolute path (Flink resolves it too)",
                    self.savepoint_dir
                ),
            ));
        }
        if self.retention == 0 {
            return Err((
                "executors.flink.retention",
                "must be at least 1 (the newest savepoint is always kept)".to_owned(),
            ));
        }
        Ok(())
    }
}
