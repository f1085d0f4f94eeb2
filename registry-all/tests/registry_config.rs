#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The `registry` section: backends found through their factories, sections checked by them,
//! and building the named backend. (Loading it from YAML and the environment is the console's:
//! `console-server/src/config/`.)

use registry_all::RegistryConfig;
use registry_api::RegistryError;
use serde_json::json;

fn config(section: serde_json::Value) -> RegistryConfig {
    serde_json::from_value(section).expect("the section names known backends")
}

/// The key and message of a [`RegistryError::Config`].
fn config_error(error: RegistryError) -> (String, String) {
    match error {
        RegistryError::Config { key, message } => (key, message),
        other => panic!("expected a config error, got {other:?}"),
    }
}

/// Every `registry-<name>` dependency of this crate is linked (build.rs) and known by its
/// factory as `<name>`, beside the built-in `standalone`.
#[test]
fn every_backend_dependency_is_known_through_its_factory() {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .expect("registry-all's manifest");
    let dependencies = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .expect("a [dependencies] table");
    let mut expected: Vec<&str> = dependencies
        .lines()
        .filter_map(|line| line.trim().strip_prefix("registry-"))
        .filter_map(|rest| rest.split(['.', ' ', '=']).next())
        .filter(|name| *name != "api")
        .collect();
    expected.push("standalone");
    expected.sort_unstable();
    assert!(
        expected.contains(&"zookeeper") && expected.contains(&"mysql"),
        "{expected:?}"
    );
    assert_eq!(registry_api::known_types(), expected);
}

#[test]
fn defaults_pick_the_standalone_registry() {
    let config = RegistryConfig::default();
    assert_eq!(config.kind, "standalone");
    assert_eq!(config.validate(), Ok(()));
    assert_eq!(config, self::config(json!({})));
}

#[test]
fn unknown_type_names_the_known_types() {
    let config = config(json!({ "type": "nope" }));
    let error = config.validate().expect_err("nope is not a backend");
    assert!(matches!(&error, RegistryError::UnknownType { name, .. } if name == "nope"));
    let text = error.to_string();
    for known in ["standalone", "zookeeper", "mysql"] {
        assert!(text.contains(known), "{text:?} should list {known}");
    }
    let built = registry_all::build(&config).expect_err("nope cannot be built");
    assert_eq!(built, error);
}

#[test]
fn an_unknown_section_is_refused_with_the_known_ones() {
    let error = serde_json::from_value::<RegistryConfig>(json!({ "zookeper": {} }))
        .expect_err("no backend is called zookeper")
        .to_string();
    assert!(error.contains("unknown field `zookeper`"), "{error}");
    for known in ["type", "standalone", "zookeeper", "mysql"] {
        assert!(
            error.contains(&format!("`{known}`")),
            "{error} should list {known}"
        );
    }
}

#[test]
fn sections_start_from_their_backends_defaults() {
    let config = config(json!({ "type": "zookeeper", "zookeeper": { "servers": "a:1" } }));
    let zookeeper = config.section("zookeeper").unwrap();
    assert_eq!(zookeeper["servers"], "a:1");
    assert_eq!(zookeeper["session_timeout_ms"], 10_000);
    assert_eq!(
        config.section("mysql").unwrap()["table_prefix"],
        "registry_"
    );
    assert_eq!(config.section("nope"), None);
    assert_eq!(config.validate(), Ok(()));
}

#[test]
fn an_unknown_key_is_named_with_the_valid_ones() {
    let config = config(json!({ "zookeeper": { "servers": "a:1", "sesion_timeout_ms": 5 } }));
    let (key, message) = config_error(config.validate().expect_err("misspelt key must fail"));
    assert_eq!(key, "registry.zookeeper.sesion_timeout_ms");
    assert!(
        message.contains("unknown field `sesion_timeout_ms`"),
        "{message}"
    );
    assert!(
        message.contains("session_timeout_ms"),
        "the message should list the valid keys: {message}"
    );
}

#[test]
fn a_bad_value_in_any_section_is_named() {
    // Not the selected backend: its section is still read, as a typo there is a typo.
    let config = config(json!({ "mysql": { "heartbeat_interval_ms": "soon" } }));
    let (key, message) = config_error(config.validate().expect_err("a word is not a number"));
    assert_eq!(key, "registry.mysql.heartbeat_interval_ms");
    assert!(message.contains("soon"), "{message}");
}

#[test]
fn session_timeout_shorter_than_three_heartbeats_is_refused() {
    let config = config(json!({
        "type": "mysql",
        "mysql": { "heartbeat_interval_ms": 1000, "session_timeout_ms": 2500 },
    }));
    let (key, message) = config_error(config.validate().expect_err("2500 < 3 x 1000"));
    assert_eq!(key, "registry.mysql.session_timeout_ms");
    assert!(message.contains("3 heartbeats"), "{message}");
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let config = config(json!({
        "mysql": { "password": "hunter2" },
        "zookeeper": { "digest": "user:hunter2" },
    }));
    let printed = format!("{config:?}");
    assert!(!printed.contains("hunter2"), "{printed}");
    assert!(printed.contains("session_timeout_ms"), "{printed}");
    assert_eq!(config.section("mysql").unwrap()["password"], "hunter2");
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
