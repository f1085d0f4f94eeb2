//! Loading the YAML configuration with environment overrides, and saying exactly which key is
//! wrong and where it came from.
//!
//! Sources, later ones winning: the struct's defaults, the YAML file (if any), then environment
//! variables `CONSOLE__<SECTION>__<KEY>` (for example `CONSOLE__SERVER__PORT=9090`). An
//! environment value is a string: it is read as a number only where the key is numeric (the
//! type of the field, or of the default of a registry backend's key), so
//! `CONSOLE__NODE__ID=007` stays `007` and a token of digits keeps its leading zeros. Every
//! failure is one line that names the key and its source, whether serde found it while loading
//! or a check found it afterwards ([`Loaded::error`], [`plain_message`]):
//!
//! ```text
//! server.port: invalid type: string "abc", expected u16 (from /etc/console/console.yaml)
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use std::marker::PhantomData;

use config::{Config, Environment, File, FileFormat, Source};
use serde::de::{self, DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// The prefix of environment overrides; `__` separates it and each level of keys.
const ENV_PREFIX: &str = "CONSOLE";
const ENV_SEPARATOR: &str = "__";

/// Why the configuration could not be loaded. `Display` is the one line to show the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file is missing, unreadable or not valid YAML.
    #[error("cannot read configuration file {}: {message}", path.display())]
    File {
        /// The file as given.
        path: PathBuf,
        /// Why it could not be read.
        message: String,
    },

    /// A key is unknown, missing or has a bad value.
    #[error("{key}: {message} (from {origin})")]
    Key {
        /// The dotted key, e.g. `server.port`.
        key: String,
        /// What is wrong with it.
        message: String,
        /// The file or variable the value came from.
        origin: String,
    },
}

impl ConfigError {
    /// An error about `key`, found after loading (for checks that serde cannot express).
    pub(crate) fn key(
        key: impl Into<String>,
        message: impl Into<String>,
        origin: impl Into<String>,
    ) -> Self {
        Self::Key {
            key: key.into(),
            message: message.into(),
            origin: origin.into(),
        }
    }
}

/// A loaded configuration: the typed value plus where each key came from.
pub(crate) struct Loaded<T> {
    pub(crate) value: T,
    raw: Config,
    file: Option<PathBuf>,
}

impl<T> Loaded<T> {
    /// Where `key` was set: the file, the environment variable, or the built-in default.
    pub(crate) fn source_of(&self, key: &str) -> String {
        source_of(&self.raw, self.file.as_deref(), key)
    }

    /// An error about `key` that names where its value came from.
    pub(crate) fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::key(key, message, self.source_of(key))
    }
}

impl<T: fmt::Debug> fmt::Debug for Loaded<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loaded")
            .field("value", &self.value)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

/// Loads `T` from the defaults, `file` (YAML) and the environment.
///
/// `T` should use `#[serde(default, deny_unknown_fields)]` on every struct so that a missing file
/// gives the embedded defaults and a misspelt key is an error rather than silently ignored.
///
/// # Notable errors
/// [`ConfigError::File`] for an unreadable or malformed file; [`ConfigError::Key`] naming the
/// first bad key and its source.
pub(crate) fn load<T: DeserializeOwned>(file: Option<&Path>) -> Result<Loaded<T>, ConfigError> {
    load_with_env(file, None)
}

/// Like [`load`], with the environment given explicitly (for tests) instead of the process's.
pub(crate) fn load_with_env<T: DeserializeOwned>(
    file: Option<&Path>,
    env: Option<Vec<(String, String)>>,
) -> Result<Loaded<T>, ConfigError> {
    let mut builder = Config::builder();
    if let Some(file) = file {
        if !file.is_file() {
            return Err(ConfigError::File {
                path: file.to_owned(),
                message: "no such file".to_owned(),
            });
        }
        builder = builder.add_source(File::from(file).format(FileFormat::Yaml).required(true));
    }
    let mut environment = Environment::with_prefix(ENV_PREFIX)
        .prefix_separator(ENV_SEPARATOR)
        .separator(ENV_SEPARATOR)
        .try_parsing(false);
    if let Some(vars) = env {
        environment = environment.source(Some(vars.into_iter().collect()));
    }
    let raw = builder
        .add_source(environment)
        .build()
        .map_err(|error| ConfigError::File {
            path: file.map(Path::to_owned).unwrap_or_default(),
            message: error.to_string(),
        })?;
    match serde_path_to_error::deserialize::<_, T>(raw.clone()) {
        Ok(value) => Ok(Loaded {
            value,
            raw,
            file: file.map(Path::to_owned),
        }),
        Err(error) => Err(describe(&raw, file, error)),
    }
}

/// Deserializes a section of the file (`server: {...}`) from a mapping only: serde's derived
/// structs also take a list, field by field, so `server: [1, 2]` would otherwise be read as
/// host `1` and port `2`. Use as `#[serde(deserialize_with = "section")]`.
pub(crate) fn section<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct MapOnly<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for MapOnly<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a mapping of keys")
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(de::value::MapAccessDeserializer::new(map))
        }
    }

    deserializer.deserialize_map(MapOnly(PhantomData))
}

/// Turns a deserialization error into "key: message (from source)".
fn describe(
    raw: &Config,
    file: Option<&Path>,
    error: serde_path_to_error::Error<config::ConfigError>,
) -> ConfigError {
    let path = error.path().to_string();
    let inner = error.into_inner();
    let message = match &inner {
        // An empty YAML value (`port:`) arrives as a unit value.
        config::ConfigError::Type {
            unexpected,
            expected,
            ..
        } if unexpected.to_string() == "unit value" => {
            format!("missing value, expected {expected}")
        }
        config::ConfigError::Type {
            unexpected,
            expected,
            ..
        } => format!("invalid value: {unexpected}, expected {expected}"),
        other => other.to_string(),
    };
    let (key, message) = plain_message(if path == "." { String::new() } else { path }, message);
    let origin = source_of(raw, file, &key);
    ConfigError::Key {
        key,
        message,
        origin,
    }
}

/// `key` and serde's `message` about it as the operator reads them: an unknown field is named
/// itself (serde may report it at its parent's path) and called an unknown key; an empty value
/// (`null`) is a missing value.
pub(crate) fn plain_message(mut key: String, message: String) -> (String, String) {
    if let Some((field, rest)) = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'))
    {
        if key.rsplit('.').next() != Some(field) {
            key = if key.is_empty() {
                field.to_owned()
            } else {
                format!("{key}.{field}")
            };
        }
        return (key, format!("unknown key{rest}"));
    }
    if let Some(expected) = message.strip_prefix("invalid type: null, expected ") {
        return (key, format!("missing value, expected {expected}"));
    }
    // serde_json's word for what the config loader calls an invalid value.
    match message.strip_prefix("invalid type: ") {
        Some(rest) => (key, format!("invalid value: {rest}")),
        None => (key, message),
    }
}

/// Where the value of `key` came from: the environment variable, the file, or the default.
fn source_of(raw: &Config, file: Option<&Path>, key: &str) -> String {
    let env_name = format!(
        "{ENV_PREFIX}{ENV_SEPARATOR}{}",
        key.to_uppercase().replace('.', ENV_SEPARATOR)
    );
    // `get_table`/`collect` keep each value's origin (a typed `get` would not).
    let origin = match key.rsplit_once('.') {
        Some((parent, leaf)) => raw
            .get_table(parent)
            .ok()
            .and_then(|t| t.get(leaf).cloned()),
        None => raw.collect().ok().and_then(|t| t.get(key).cloned()),
    };
    match origin.as_ref().and_then(config::Value::origin) {
        Some("the environment") => format!("environment variable {env_name}"),
        // The crate records the file relative to the working directory; name it as given.
        Some(origin) => file.map_or_else(|| origin.to_owned(), |f| f.display().to_string()),
        None => "the built-in defaults".to_owned(),
    }
}
