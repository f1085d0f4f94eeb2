//! The `"mysql"` entry of the plugin factory registry.

use std::time::Duration;

use registry_api::{BackendConfig, RegistryFactory, parse_config, section_defaults};

use crate::config::MysqlConfig;
use crate::registry::MysqlRegistry;

/// The backend's name: `registry.type: mysql`, section `registry.mysql`.
const NAME: &str = "mysql";

impl BackendConfig for MysqlConfig {
    fn validate(&self) -> registry_api::Result<()> {
        MysqlConfig::validate(self)
    }

    /// None: connecting waits for the caller's default.
    fn connect_timeout(&self) -> Option<Duration> {
        None
    }

    /// An unconnected [`MysqlRegistry`]; no I/O happens.
    fn build(&self) -> registry_api::Result<Box<dyn registry_api::Registry>> {
        Ok(Box::new(MysqlRegistry::new(self.clone())?))
    }
}

inventory::submit! {
    RegistryFactory {
        name: NAME,
        defaults: section_defaults::<MysqlConfig>,
        // Unknown keys and bad values are rejected with the key named.
        parse: |section| Ok(Box::new(parse_config::<MysqlConfig>(NAME, section)?)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn the_section_names_its_defaults_and_hides_the_password() {
        let factory = registry_api::factory("mysql").expect("linked");
        let defaults = (factory.defaults)();
        assert_eq!(defaults["heartbeat_interval_ms"], 1_000);
        assert_eq!(defaults["table_prefix"], "registry_");
        let parsed = (factory.parse)(&json!({ "password": "hunter2" })).expect("parses");
        assert_eq!(parsed.connect_timeout(), None);
        assert!(!format!("{parsed:?}").contains("hunter2"));
        let short = (factory.parse)(&json!({ "session_timeout_ms": 2500 })).expect("parses");
        let error = short
            .validate()
            .expect_err("2500 ms < 3 heartbeats of 1000 ms");
        assert!(
            matches!(&error, registry_api::RegistryError::Config { key, .. }
                if key == "registry.mysql.session_timeout_ms"),
            "{error:?}"
        );
    }
}
