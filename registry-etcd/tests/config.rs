//! `registry.etcd`: defaults, the key named in every error, the factory, secrets kept out of
//! `Debug`. No server needed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use registry_api::{Registry, RegistryError, Secret};
use registry_etcd::{EtcdConfig, EtcdRegistry};
use serde_json::json;

fn key_of(change: impl FnOnce(&mut EtcdConfig)) -> Option<String> {
    let mut config = EtcdConfig::default();
    change(&mut config);
    match config.validate() {
        Ok(()) => None,
        Err(RegistryError::Config { key, .. }) => Some(key),
        Err(other) => panic!("expected a Config error, got {other:?}"),
    }
}

#[test]
fn etcd_config_bad_values_name_their_key() {
    assert_eq!(key_of(|_| {}), None);
    assert_eq!(key_of(|c| c.endpoints = "a:1, b:2".to_owned()), None);
    for endpoints in ["", "a", "a:x", ":1", "a:1,", "http://a:1", "a:0"] {
        let key = key_of(|c| c.endpoints = endpoints.to_owned());
        assert_eq!(
            key.as_deref(),
            Some("registry.etcd.endpoints"),
            "{endpoints:?}"
        );
    }
    let key = key_of(|c| c.namespace = "rel".to_owned());
    assert_eq!(key.as_deref(), Some("registry.etcd.namespace"));
    let key = key_of(|c| c.session_timeout_ms = 999);
    assert_eq!(key.as_deref(), Some("registry.etcd.session_timeout_ms"));
    let key = key_of(|c| c.password = Secret::new("p"));
    assert_eq!(key.as_deref(), Some("registry.etcd.username"));
}

#[test]
fn etcd_config_the_session_timeout_is_rounded_up_to_whole_seconds() {
    let config = EtcdConfig {
        session_timeout_ms: 1500,
        ..EtcdConfig::default()
    };
    let registry = EtcdRegistry::new(config).unwrap();
    assert_eq!(registry.session_timeout(), Duration::from_secs(2));
}

#[test]
fn etcd_the_factory_is_registered_and_checks_its_section() {
    let section = json!({ "endpoints": "127.0.0.1:2379", "session_timeout_ms": 2000 });
    let registry = registry_api::create("etcd", &section).expect("a valid section");
    assert_eq!(
        (registry.backend(), registry.connection_state()),
        ("etcd", None)
    );
    let error = registry_api::create("etcd", &json!({ "endpoint": "a:1" })).expect_err("misspelt");
    assert!(
        matches!(&error, RegistryError::Config { key, .. } if key == "registry.etcd.endpoint"),
        "{error:?}"
    );
    let defaults = (registry_api::factory("etcd").expect("linked").defaults)();
    assert_eq!(
        defaults,
        json!({ "endpoints": "127.0.0.1:2379", "namespace": "/console", "session_timeout_ms": 10000,
                "username": "", "password": "" })
    );
    let parsed = registry_api::parse_config::<EtcdConfig>(
        "etcd",
        &json!({ "username": "u", "password": "hunter2" }),
    );
    let printed = format!("{parsed:?}");
    assert!(!printed.contains("hunter2"), "{printed}");
}
