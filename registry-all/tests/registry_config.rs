#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Loading `registry` sections from YAML and building the named backend.

use std::io::Write;

use registry_all::RegistryConfig;
use registry_all::settings::{self, ConfigError};
use registry_api::RegistryError;
use serde::Deserialize;

/// A configuration with only a `registry` section, as an application would embed it.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct AppConfig {
    registry: RegistryConfig,
}

fn yaml(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .suffix(".yaml")
        .tempfile()
        .expect("temp file");
    file.write_all(text.as_bytes()).expect("write yaml");
    file
}

fn load(text: &str, env: &[(&str, &str)]) -> Result<AppConfig, ConfigError> {
    let file = yaml(text);
    let env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    settings::load_with_env::<AppConfig>(Some(file.path()), Some(env)).map(|loaded| loaded.value)
}

#[test]
fn defaults_pick_the_standalone_registry() {
    let loaded = settings::load_with_env::<AppConfig>(None, Some(vec![])).expect("defaults load");
    assert_eq!(loaded.value.registry.kind, "standalone");
    assert_eq!(loaded.value.registry.validate(), Ok(()));
    assert_eq!(loaded.source_of("registry.type"), "the built-in defaults");
}

#[test]
fn unknown_type_names_the_known_types() {
    let config = load("registry:\n  type: nope\n", &[]).expect("nope parses as a string");
    let error = config
        .registry
        .validate()
        .expect_err("nope is not a backend");
    assert!(matches!(&error, RegistryError::UnknownType { name, .. } if name == "nope"));
    let text = error.to_string();
    for known in ["standalone", "zookeeper", "mysql"] {
        assert!(text.contains(known), "{text:?} should list {known}");
    }
    let built = registry_all::build(&config.registry).expect_err("nope cannot be built");
    assert_eq!(built, error);
}

#[test]
fn unknown_key_is_named_with_its_file() {
    let file = yaml("registry:\n  zookeeper:\n    servers: a:1\n    sesion_timeout_ms: 5\n");
    let error = settings::load_with_env::<AppConfig>(Some(file.path()), Some(vec![]))
        .expect_err("misspelt key must fail");
    let ConfigError::Key {
        key,
        message,
        origin: source,
    } = &error
    else {
        panic!("expected a key error, got {error:?}");
    };
    assert_eq!(key, "registry.zookeeper.sesion_timeout_ms");
    assert!(message.starts_with("unknown key"), "{message}");
    assert!(
        message.contains("session_timeout_ms"),
        "the message should list the valid keys: {message}"
    );
    assert_eq!(source, &file.path().display().to_string());
    assert!(!error.to_string().contains('\n'), "one line: {error}");
}

#[test]
fn bad_number_is_named_with_its_file() {
    let error = load(
        "registry:\n  mysql:\n    heartbeat_interval_ms: soon\n",
        &[],
    )
    .expect_err("a word is not a number");
    let ConfigError::Key { key, message, .. } = &error else {
        panic!("expected a key error, got {error:?}");
    };
    assert_eq!(key, "registry.mysql.heartbeat_interval_ms");
    assert!(message.contains("soon"), "{message}");
}

#[test]
fn environment_overrides_the_file_and_is_named_when_bad() {
    let config = load(
        "registry:\n  type: zookeeper\n",
        &[("CONSOLE__REGISTRY__ZOOKEEPER__SESSION_TIMEOUT_MS", "4000")],
    )
    .expect("valid override");
    assert_eq!(config.registry.zookeeper.session_timeout_ms, 4000);

    let error = load(
        "{}",
        &[("CONSOLE__REGISTRY__MYSQL__SESSION_TIMEOUT_MS", "x")],
    )
    .expect_err("bad override");
    let ConfigError::Key {
        key,
        origin: source,
        ..
    } = &error
    else {
        panic!("expected a key error, got {error:?}");
    };
    assert_eq!(key, "registry.mysql.session_timeout_ms");
    assert_eq!(
        source,
        "environment variable CONSOLE__REGISTRY__MYSQL__SESSION_TIMEOUT_MS"
    );
}

#[test]
fn session_timeout_shorter_than_three_heartbeats_is_refused() {
    let config = load(
        "registry:\n  type: mysql\n  mysql:\n    heartbeat_interval_ms: 1000\n    session_timeout_ms: 2500\n",
        &[],
    )
    .expect("parses");
    let error = config.registry.validate().expect_err("2500 < 3 x 1000");
    let RegistryError::Config { key, message } = &error else {
        panic!("expected a config error, got {error:?}");
    };
    assert_eq!(key, "registry.mysql.session_timeout_ms");
    assert!(message.contains("3 heartbeats"), "{message}");
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let config = load(
        "registry:\n  mysql:\n    password: hunter2\n  zookeeper:\n    digest: user:hunter2\n",
        &[],
    )
    .expect("parses");
    let printed = format!("{config:?}");
    assert!(!printed.contains("hunter2"), "{printed}");
    assert_eq!(config.registry.mysql.password.expose(), "hunter2");
}

#[tokio::test]
async fn standalone_is_what_connect_builds_by_default() {
    let registry = registry_all::connect(&RegistryConfig::default())
        .await
        .expect("standalone connects");
    assert_eq!(registry.backend(), "standalone");
    assert_eq!(
        registry.connection_state(),
        Some(registry_api::ConnectionState::Connected)
    );
}
