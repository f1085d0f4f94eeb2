//! `registry.mysql` in the YAML configuration.

use std::str::FromStr;

use registry_api::{RegistryError, Secret};
use serde::{Deserialize, Serialize};
use sqlx::mysql::MySqlConnectOptions;

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
        if let Some(problem) = url_problem(&self.url) {
            return bad("url", problem);
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

/// What is wrong with `registry.mysql.url`, if anything, said without repeating the URL: one
/// that breaks the rules may hold a password (the reason for the first rule), and a password
/// with `/`, `:` or `@` in it splits the URL where nobody expects.
pub(crate) fn url_problem(url: &str) -> Option<String> {
    let Some(rest) = url
        .strip_prefix("mysql://")
        .or_else(|| url.strip_prefix("mariadb://"))
    else {
        let scheme = url.split_once("://").map_or("none", |(scheme, _)| scheme);
        return Some(format!(
            "expected mysql://host:port/database, got a URL with the scheme {scheme:?}"
        ));
    };
    // Any `@` before the query belongs to user info, wherever a `/` in a password would make
    // a URL parser end the authority.
    if rest.split('?').next().unwrap_or_default().contains('@') {
        return Some(
            "credentials in the URL are not allowed; put them in registry.mysql.username and registry.mysql.password".to_owned(),
        );
    }
    match MySqlConnectOptions::from_str(&format!("mysql://{rest}")) {
        Err(error) => Some(format!(
            "not a MySQL URL ({error}); expected mysql://host:port/database"
        )),
        Ok(options) if options.get_database().is_none_or(str::is_empty) => {
            Some("names no database; expected mysql://host:port/database".to_owned())
        }
        Ok(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_url_is_described_without_being_repeated() {
        for (url, why) in [
            ("mysql://u:pa/ss@h:3306/db", "credentials"),
            ("mysql://u:p@ss@h/db", "credentials"),
            ("mysql://u:pa:ss@h/db", "credentials"),
            ("mysql://u:s3cr/t@h", "credentials"),
            ("postgres://u:pa/ss@h/db", "scheme \"postgres\""),
            ("u:pa/ss@h/db", "scheme \"none\""),
            ("mysql://h:3306", "no database"),
            ("mysql://h:p0rtx/db", "not a MySQL URL"),
        ] {
            let problem = url_problem(url).unwrap_or_else(|| panic!("{url} was accepted"));
            assert!(problem.contains(why), "{url}: {problem}");
            for secret in ["pa/ss", "ss@", "s3cr", "p@ss", "pa:ss", "p0rtx"] {
                assert!(!problem.contains(secret), "{url}: {problem}");
            }
        }
        assert_eq!(url_problem("mysql://127.0.0.1:3306/console"), None);
        assert_eq!(url_problem("mariadb://db/console?ssl-mode=disabled"), None);
    }
}
