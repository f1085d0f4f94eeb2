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
