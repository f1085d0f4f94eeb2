//! The `registry` section: `type` plus one section per backend, keyed by its factory's name.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use registry_api::{BackendConfig, RegistryError, RegistryFactory};
use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// The backend used when `registry.type` is not set.
const DEFAULT_TYPE: &str = "standalone";

/// How long [`crate::connect`] waits for a backend without a connect timeout of its own.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The `registry` section of the configuration:
///
/// ```yaml
/// registry:
///   type: zookeeper                     # one of registry_api::known_types()
///   zookeeper: { servers: "zk1:2181" }  # registry.<name>: the section of backend <name>
///   mysql: { url: "mysql://db:3306/console" }
/// ```
///
/// Every linked backend has a section, starting from its factory's defaults; the keys a
/// configuration gives replace those defaults. A section name that no linked backend has is
/// refused with the list of known ones.
///
/// # Notable behaviors
/// Deserializing checks only the section names. [`RegistryConfig::validate`] reads every
/// section through its backend's factory (unknown keys, types) and checks the selected one's
/// values. `Debug` prints the sections as their backends read them, secrets hidden.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// The backend to use (`registry.type`): one of [`registry_api::known_types`].
    pub kind: String,
    /// `registry.<name>` of every linked backend, by name.
    sections: BTreeMap<String, Value>,
}

impl Default for RegistryConfig {
    /// The `standalone` backend, every section at its defaults.
    fn default() -> Self {
        Self {
            kind: DEFAULT_TYPE.to_owned(),
            sections: factories()
                .map(|factory| (factory.name.to_owned(), (factory.defaults)()))
                .collect(),
        }
    }
}

impl RegistryConfig {
    /// The section of backend `name` (`registry.<name>`) as configured, defaults included; None
    /// when no linked backend is called `name`.
    pub fn section(&self, name: &str) -> Option<&Value> {
        self.sections.get(name)
    }

    /// Checks `registry.type`, reads every section through its backend's factory, and checks
    /// the values of the selected one.
    ///
    /// # Notable errors
    /// [`RegistryError::UnknownType`] listing the linked backends; [`RegistryError::Config`]
    /// naming the offending key (an unknown key too, with a message that lists the valid
    /// ones).
    pub fn validate(&self) -> Result<(), RegistryError> {
        registry_api::factory(&self.kind)?;
        for (name, section) in &self.sections {
            let config = parse(name, section)?;
            if *name == self.kind {
                config.validate()?;
            }
        }
        Ok(())
    }

    /// The selected backend's section as its factory read it, checked.
    ///
    /// # Notable errors
    /// As [`RegistryConfig::validate`].
    pub fn backend(&self) -> Result<Box<dyn BackendConfig>, RegistryError> {
        self.validate()?;
        let config = parse(&self.kind, self.section(&self.kind).unwrap_or(&Value::Null))?;
        Ok(config)
    }
}

/// Reads `section` through the factory of backend `name`.
fn parse(name: &str, section: &Value) -> Result<Box<dyn BackendConfig>, RegistryError> {
    (registry_api::factory(name)?.parse)(section)
}

fn factories() -> impl Iterator<Item = &'static RegistryFactory> {
    registry_api::known_types()
        .into_iter()
        .filter_map(|name| registry_api::factory(name).ok())
}

/// The keys `registry` accepts: `type` and one per linked backend.
fn known_keys() -> &'static [&'static str] {
    static KEYS: OnceLock<Vec<&'static str>> = OnceLock::new();
    KEYS.get_or_init(|| {
        std::iter::once("type")
            .chain(registry_api::known_types())
            .collect()
    })
}

/// `given` over `defaults`: each key given replaces the default's; a section that is not a map
/// (`null`, a number) replaces the defaults whole, for the factory to accept or refuse.
fn overlay(defaults: &mut Value, given: Value) {
    match (defaults, given) {
        (Value::Object(defaults), Value::Object(given)) => defaults.extend(given),
        (defaults, given) => *defaults = given,
    }
}

impl<'de> Deserialize<'de> for RegistryConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Sections;

        impl<'de> Visitor<'de> for Sections {
            type Value = RegistryConfig;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("struct RegistryConfig")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut config = RegistryConfig::default();
                while let Some(key) = map.next_key::<String>()? {
                    if key == "type" {
                        config.kind = map.next_value()?;
                    } else if let Some(defaults) = config.sections.get_mut(&key) {
                        overlay(defaults, map.next_value()?);
                    } else {
                        return Err(de::Error::unknown_field(&key, known_keys()));
                    }
                }
                Ok(config)
            }
        }

        deserializer.deserialize_map(Sections)
    }
}

impl Serialize for RegistryConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1 + self.sections.len()))?;
        map.serialize_entry("type", &self.kind)?;
        for (name, section) in &self.sections {
            map.serialize_entry(name, section)?;
        }
        map.end()
    }
}

impl fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("RegistryConfig");
        out.field("type", &self.kind);
        for (name, section) in &self.sections {
            // Only what the backend read is printed: its types hide their secrets.
            match parse(name, section) {
                Ok(config) => out.field(name, &config),
                Err(_) => out.field(name, &format_args!("<invalid>")),
            };
        }
        out.finish()
    }
}
