//! The plugin factory registry: backends announce themselves by name with `inventory`.
//!
//! A backend crate submits one [`RegistryFactory`]:
//!
//! ```text
//! inventory::submit! {
//!     registry_api::RegistryFactory {
//!         name: "zookeeper",
//!         create: |config| Ok(Box::new(ZookeeperRegistry::new(serde_json::from_value(config.clone())?)?)),
//!     }
//! }
//! ```
//!
//! and any program that links the crate can build it with [`create`].

use std::fmt;

use crate::error::{RegistryError, Result};
use crate::registry::Registry;

/// A named constructor of a registry backend.
pub struct RegistryFactory {
    /// The type name used in configuration (`registry.type`).
    pub name: &'static str,
    /// Builds an unconnected client from the backend's configuration section. It does no I/O;
    /// [`Registry::connect`] does.
    pub create: fn(&serde_json::Value) -> Result<Box<dyn Registry>>,
}

impl fmt::Debug for RegistryFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryFactory")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

inventory::collect!(RegistryFactory);

/// The names of every backend linked into this program, sorted.
pub fn known_types() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = inventory::iter::<RegistryFactory>
        .into_iter()
        .map(|factory| factory.name)
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Builds an unconnected client of the backend called `name`.
///
/// # Notable errors
/// - [`RegistryError::UnknownType`] listing the known names when no backend is called `name`.
/// - [`RegistryError::Config`] when the backend rejects `config`.
pub fn create(name: &str, config: &serde_json::Value) -> Result<Box<dyn Registry>> {
    match inventory::iter::<RegistryFactory>
        .into_iter()
        .find(|factory| factory.name == name)
    {
        Some(factory) => (factory.create)(config),
        None => Err(RegistryError::UnknownType {
            name: name.to_owned(),
            known: known_types().into_iter().map(str::to_owned).collect(),
        }),
    }
}

/// Deserializes a backend's configuration section, naming the offending key on failure.
/// For use inside [`RegistryFactory::create`].
pub fn parse_config<T: serde::de::DeserializeOwned>(
    section: &str,
    config: &serde_json::Value,
) -> Result<T> {
    T::deserialize(config).map_err(|error| RegistryError::Config {
        key: format!("registry.{section}"),
        message: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_type_lists_the_known_ones() {
        let error = create("nope", &serde_json::Value::Null).expect_err("nope is not a backend");
        let RegistryError::UnknownType { name, known } = &error else {
            panic!("expected UnknownType, got {error:?}");
        };
        assert_eq!(name, "nope");
        assert!(known.contains(&"standalone".to_owned()), "{known:?}");
        assert!(
            error.to_string().contains("known types: standalone"),
            "{error}"
        );
    }

    #[test]
    fn standalone_is_built_by_name() {
        let registry = create("standalone", &serde_json::json!({})).expect("standalone exists");
        assert_eq!(registry.backend(), "standalone");
    }
}
