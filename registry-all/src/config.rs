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

/// `given` over `defaults`: each key given replaces the default's. A section that is not a map
/// (`null`, a number, a list) replaces the defaults whole, for the factory to refuse.
///
/// A string given for a key whose default is a number or a boolean is read as one when it
/// parses: environment variables are always strings, and only the defaults say which keys are
/// numeric. Every other string stays a string (`"007"` for a name is not 7).
fn overlay(defaults: &mut Value, given: Value) {
    match (defaults, given) {
        (Value::Object(defaults), Value::Object(given)) => {
            for (key, value) in given {
                let value = match defaults.get(&key) {
                    Some(default) => typed_like(default, value),
                    None => value,
                };
                defaults.insert(key, value);
            }
        }
        (defaults, given) => *defaults = given,
    }
}

/// `value` read as the type of `default` when it is a string that parses as that type.
fn typed_like(default: &Value, value: Value) -> Value {
    let Value::String(text) = &value else {
        return value;
    };
    let parsed = match default {
        Value::Number(_) => text
            .parse::<u64>()
            .map(Value::from)
            .or_else(|_| text.parse::<i64>().map(Value::from))
            .ok()
            .or_else(|| {
                text.parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
            }),
        Value::Bool(_) => text.parse::<bool>().ok().map(Value::Bool),
        _ => None,
    };
    parsed.unwrap_or(value)
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
                        let Section(given) = map.next_value()?;
                        overlay(defaults, given);
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

/// A backend's section as given: a mapping of keys, or nothing (`zookeeper:`, the defaults).
/// Anything else (`zookeeper: [1, 2]`) is refused here, where the error names the section, and
/// not handed to the factory, whose derived struct would take a list field by field.
struct Section(Value);

impl<'de> Deserialize<'de> for Section {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapOrNothing;

        impl<'de> Visitor<'de> for MapOrNothing {
            type Value = Section;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of keys")
            }

            fn visit_unit<E: de::Error>(self) -> Result<Section, E> {
                Ok(Section(Value::Null))
            }

            fn visit_none<E: de::Error>(self) -> Result<Section, E> {
                Ok(Section(Value::Null))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Section, A::Error> {
                let mut keys = serde_json::Map::new();
                while let Some((key, value)) = map.next_entry::<String, Value>()? {
                    keys.insert(key, value);
                }
                Ok(Section(Value::Object(keys)))
            }
        }

        deserializer.deserialize_map(MapOrNothing)
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
