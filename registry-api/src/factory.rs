//! The plugin factory registry: backends announce themselves by name with `inventory`.
//!
//! A backend crate submits one [`RegistryFactory`]; its section of the configuration
//! (`registry.<name>`) is a serde type that implements [`BackendConfig`]:
//!
//! ```text
//! inventory::submit! {
//!     registry_api::RegistryFactory {
//!         name: "zookeeper",
//!         defaults: registry_api::section_defaults::<ZookeeperConfig>,
//!         parse: |section| Ok(Box::new(registry_api::parse_config::<ZookeeperConfig>("zookeeper", section)?)),
//!     }
//! }
//! ```
//!
//! Any program that links the crate can then build it with [`create`], or read and check its
//! section first through [`factory`] (which is what `registry-all` does with the YAML).

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{RegistryError, Result};
use crate::registry::Registry;
use crate::standalone::StandaloneRegistry;

/// A named constructor of a registry backend.
pub struct RegistryFactory {
    /// The type name used in configuration (`registry.type`); the backend's section is
    /// `registry.<name>`.
    pub name: &'static str,
    /// The backend's section with every key at its default (an empty object for a backend
    /// without settings): the shape of the section, and what a configuration that leaves a
    /// key out gets. [`section_defaults`] gives it for a serde type.
    pub defaults: fn() -> serde_json::Value,
    /// Reads a section: unknown keys and values of the wrong type are refused with
    /// [`RegistryError::Config`] naming the key ([`parse_config`] does this for a serde type);
    /// missing keys take their defaults, `null` means all defaults. No I/O, and no checks
    /// beyond the types: those are [`BackendConfig::validate`].
    pub parse: fn(&serde_json::Value) -> Result<Box<dyn BackendConfig>>,
}

impl fmt::Debug for RegistryFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryFactory")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A backend's section of the configuration, as its [`RegistryFactory`] read it.
///
/// `Debug` is what a program logs of the configuration: secrets inside print as
/// [`Secret`](crate::Secret) does.
pub trait BackendConfig: fmt::Debug + Send + Sync {
    /// Checks the values that deserialization cannot (ranges, formats, combinations).
    ///
    /// # Notable errors
    /// [`RegistryError::Config`] naming the offending key (`registry.<name>.<key>`).
    fn validate(&self) -> Result<()>;

    /// How long connecting may wait for the first session, if the backend has a setting for
    /// it; the caller's default otherwise.
    fn connect_timeout(&self) -> Option<Duration>;

    /// Builds an unconnected client. It does no I/O; [`Registry::connect`] does.
    ///
    /// # Notable errors
    /// Those of [`BackendConfig::validate`].
    fn build(&self) -> Result<Box<dyn Registry>>;
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

/// The factory of the backend called `name`.
///
/// # Notable errors
/// [`RegistryError::UnknownType`] listing the known names when no backend is called `name`.
pub fn factory(name: &str) -> Result<&'static RegistryFactory> {
    inventory::iter::<RegistryFactory>
        .into_iter()
        .find(|factory| factory.name == name)
        .ok_or_else(|| RegistryError::UnknownType {
            name: name.to_owned(),
            known: known_types().into_iter().map(str::to_owned).collect(),
        })
}

/// Builds an unconnected client of the backend called `name` from its section: parsed,
/// checked, built.
///
/// # Notable errors
/// - [`RegistryError::UnknownType`] listing the known names when no backend is called `name`.
/// - [`RegistryError::Config`] when the backend rejects `config`, naming the key.
pub fn create(name: &str, config: &serde_json::Value) -> Result<Box<dyn Registry>> {
    let config = (factory(name)?.parse)(config)?;
    config.validate()?;
    config.build()
}

/// Deserializes the section of backend `name` into `T`, naming the offending key
/// (`registry.<name>.<key>`, an unknown one too, with serde's message that lists the valid
/// ones). `null` gives `T`'s defaults. For use in [`RegistryFactory::parse`].
///
/// # Notable errors
/// [`RegistryError::Config`].
pub fn parse_config<T: DeserializeOwned + Default>(
    name: &str,
    config: &serde_json::Value,
) -> Result<T> {
    if config.is_null() {
        return Ok(T::default());
    }
    serde_path_to_error::deserialize(config).map_err(|error| {
        let path = error.path().to_string();
        RegistryError::Config {
            key: if path == "." {
                format!("registry.{name}")
            } else {
                format!("registry.{name}.{path}")
            },
            message: error.into_inner().to_string(),
        }
    })
}

/// `T::default()` as a section, for [`RegistryFactory::defaults`].
pub fn section_defaults<T: Default + Serialize>() -> serde_json::Value {
    // A struct of plain values and strings always serializes; an empty section otherwise.
    serde_json::to_value(T::default()).unwrap_or_else(|_| serde_json::json!({}))
}

/// The section of the in-process `standalone` registry: it has no settings.
#[derive(Debug, Clone, Copy, Default)]
struct StandaloneConfig;

impl BackendConfig for StandaloneConfig {
    fn validate(&self) -> Result<()> {
        Ok(())
    }

    fn connect_timeout(&self) -> Option<Duration> {
        None
    }

    fn build(&self) -> Result<Box<dyn Registry>> {
        Ok(Box::new(StandaloneRegistry::new()))
    }
}

inventory::submit! {
    RegistryFactory {
        name: "standalone",
        defaults: || serde_json::json!({}),
        parse: |section| match section {
            serde_json::Value::Null => Ok(Box::new(StandaloneConfig)),
            serde_json::Value::Object(map) if map.is_empty() => Ok(Box::new(StandaloneConfig)),
            _ => Err(RegistryError::Config {
                key: "registry.standalone".to_owned(),
                message: "the standalone registry takes no settings".to_owned(),
            }),
        },
    }
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

    #[test]
    fn standalone_takes_no_settings() {
        let error = create("standalone", &serde_json::json!({"x": 1})).expect_err("no settings");
        assert!(
            matches!(&error, RegistryError::Config { key, .. } if key == "registry.standalone"),
            "{error:?}"
        );
        assert_eq!(
            (factory("standalone").unwrap().defaults)(),
            serde_json::json!({})
        );
    }

    #[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Section {
        timeout_ms: u64,
        name: String,
    }

    #[test]
    fn parse_config_names_the_key_and_fills_defaults() {
        let wrong = parse_config::<Section>("demo", &serde_json::json!({"timeout_ms": "soon"}))
            .expect_err("a word is not a number");
        assert!(
            matches!(&wrong, RegistryError::Config { key, message }
                if key == "registry.demo.timeout_ms" && message.contains("soon")),
            "{wrong:?}"
        );
        let unknown = parse_config::<Section>("demo", &serde_json::json!({"nmae": "x"}))
            .expect_err("a misspelt key");
        assert!(
            matches!(&unknown, RegistryError::Config { key, message }
                if key == "registry.demo.nmae" && message.contains("unknown field `nmae`")),
            "{unknown:?}"
        );
        let parsed: Section = parse_config("demo", &serde_json::Value::Null).expect("defaults");
        assert_eq!(parsed.timeout_ms, 0);
        assert_eq!(
            section_defaults::<Section>(),
            serde_json::json!({"timeout_ms": 0, "name": ""})
        );
    }
}
