//! The `"zookeeper"` entry of the plugin factory registry.

use registry_api::{RegistryFactory, parse_config};

use crate::client::ZookeeperRegistry;
use crate::config::ZookeeperConfig;
use crate::error::BACKEND;

/// Builds an unconnected [`ZookeeperRegistry`] from the `registry.zookeeper` section: unknown
/// keys and bad values are rejected with the key named; no I/O happens.
fn create(config: &serde_json::Value) -> registry_api::Result<Box<dyn registry_api::Registry>> {
    // A missing section means all defaults.
    let config: ZookeeperConfig = match config {
        serde_json::Value::Null => ZookeeperConfig::default(),
        section => parse_config(BACKEND, section)?,
    };
    Ok(Box::new(ZookeeperRegistry::new(config)?))
}

inventory::submit! {
    RegistryFactory { name: BACKEND, create }
}

#[cfg(test)]
mod tests {
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
            (json!({ "servers": 5 }), "registry.zookeeper"),
            (json!({ "sevrers": "a:1" }), "registry.zookeeper"),
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
}
