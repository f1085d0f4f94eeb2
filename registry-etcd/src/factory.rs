//! The `"etcd"` entry of the plugin factory registry.

use std::time::Duration;

use registry_api::{BackendConfig, RegistryFactory, parse_config, section_defaults};

use crate::client::EtcdRegistry;
use crate::config::EtcdConfig;
use crate::error::BACKEND;

impl BackendConfig for EtcdConfig {
    fn validate(&self) -> registry_api::Result<()> {
        EtcdConfig::validate(self)
    }

    fn connect_timeout(&self) -> Option<Duration> {
        None
    }

    /// An unconnected [`EtcdRegistry`]; no I/O happens.
    fn build(&self) -> registry_api::Result<Box<dyn registry_api::Registry>> {
        Ok(Box::new(EtcdRegistry::new(self.clone())?))
    }
}

inventory::submit! {
    RegistryFactory {
        name: BACKEND,
        defaults: section_defaults::<EtcdConfig>,
        parse: |section| Ok(Box::new(parse_config::<EtcdConfig>(BACKEND, section)?)),
    }
}

#[cfg(test)]
mod tests {
    use registry_api::RegistryError;
    use serde_json::json;

    #[test]
    fn the_factory_is_registered_and_checks_its_section() {
        let registry = registry_api::create(
            "etcd",
            &json!({ "endpoints": "127.0.0.1:2379", "session_timeout_ms": 2000 }),
        )
        .expect("a valid section");
        assert_eq!(
            (registry.backend(), registry.connection_state()),
            ("etcd", None)
        );
        let error =
            registry_api::create("etcd", &json!({ "endpoint": "a:1" })).expect_err("misspelt");
        assert!(
            matches!(&error, RegistryError::Config { key, .. } if key == "registry.etcd.endpoint"),
            "{error:?}"
        );
        let defaults = (registry_api::factory("etcd").expect("linked").defaults)();
        assert_eq!(defaults["endpoints"], "127.0.0.1:2379");
        assert_eq!(defaults["namespace"], "/console");
        let printed = format!(
            "{:?}",
            registry_api::parse_config::<crate::EtcdConfig>(
                "etcd",
                &json!({ "username": "u", "password": "hunter2" })
            )
        );
        assert!(!printed.contains("hunter2"), "{printed}");
    }
}
