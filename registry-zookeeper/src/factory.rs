//! The `"zookeeper"` entry of the plugin factory registry.

use std::time::Duration;

use registry_api::{BackendConfig, RegistryFactory, parse_config, section_defaults};

use crate::client::ZookeeperRegistry;
use crate::config::ZookeeperConfig;
use crate::error::BACKEND;

impl BackendConfig for ZookeeperConfig {
    fn validate(&self) -> registry_api::Result<()> {
        ZookeeperConfig::validate(self)
    }

    fn connect_timeout(&self) -> Option<Duration> {
        Some(ZookeeperConfig::connect_timeout(self))
    }

    /// An unconnected [`ZookeeperRegistry`]; no I/O happens.
    fn build(&self) -> registry_api::Result<Box<dyn registry_api::Registry>> {
        Ok(Box::new(ZookeeperRegistry::new(self.clone())?))
    }
}

inventory::submit! {
    RegistryFactory {
        name: BACKEND,
        defaults: section_defaults::<ZookeeperConfig>,
        // Unknown keys and bad values are rejected with the key named.
        parse: |section| Ok(Box::new(parse_config::<ZookeeperConfig>(BACKEND, section)?)),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use registry_api::RegistryError;
    use serde_json::json;

    #[test]
    fn the_factory_is_registered_and_checks_its_section() {
        assert!(registry_api::known_types().contains(&"zookeeper"));
        let registry = registry_api::create(
            "zookeeper",
            &json!({ "servers": "127.0.0.1:2181", "namespace": "/c", "session_timeout_ms": 2000 }),
        )
        .expect("a valid section");
        assert_eq!(registry.backend(), "zookeeper");
        assert_eq!(
            registry.connection_state(),
            None,
            "the factory does not connect"
        );
        for (section, key) in [
            (json!({ "servers": 5 }), "registry.zookeeper.servers"),
            (json!({ "sevrers": "a:1" }), "registry.zookeeper.sevrers"),
            (
                json!({ "namespace": "no-slash" }),
                "registry.zookeeper.namespace",
            ),
        ] {
            match registry_api::create("zookeeper", &section) {
                Err(RegistryError::Config { key: got, .. }) => assert_eq!(got, key, "{section}"),
                other => panic!("{section}: expected a Config error, got {other:?}"),
            }
        }
    }

    #[test]
    fn the_section_names_its_defaults_and_connect_timeout() {
        let factory = registry_api::factory("zookeeper").expect("linked");
        let defaults = (factory.defaults)();
        assert_eq!(defaults["servers"], "127.0.0.1:2181");
        assert_eq!(defaults["connect_timeout_ms"], 15_000);
        let parsed = (factory.parse)(&json!({ "connect_timeout_ms": 1234 })).expect("parses");
        assert_eq!(parsed.connect_timeout(), Some(Duration::from_millis(1234)));
        let printed = format!("{:?}", (factory.parse)(&json!({ "digest": "u:hunter2" })));
        assert!(!printed.contains("hunter2"), "{printed}");
    }
}
