//! The configuration as the operator meets it: loaded from YAML and the environment, and
//! refused with one line that names the key and where its value came from.

use std::io::Write;

use super::*;

fn load(yaml: &str, env: &[(&str, &str)]) -> Result<ConsoleConfig, ConfigError> {
    let mut file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    file.write_all(yaml.as_bytes()).unwrap();
    let env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ConsoleConfig::load_with_env(Some(file.path()), env)
}

/// The key an invalid configuration is refused for, and the one-line message.
fn error_line(yaml: &str, env: &[(&str, &str)]) -> (String, String) {
    let error = load(yaml, env).expect_err("the configuration should be refused");
    let ConfigError::Key { key, .. } = &error else {
        panic!("expected an error naming a key, got {error}");
    };
    assert!(!error.to_string().contains('\n'), "one line: {error}");
    (key.clone(), error.to_string())
}

#[test]
fn no_file_gives_the_embedded_default() {
    let config = ConsoleConfig::load_with_env(None, vec![]).unwrap();
    assert_eq!(config.registry.kind, "standalone");
    assert_eq!(config.database.url, "sqlite://data/console.db");
    assert_eq!(config.node.data_dir, PathBuf::from("data"));
    assert_eq!(config.node_id(10000), "127.0.0.1:10000");
}

#[test]
fn environment_overrides_keys() {
    let config = load(
        "server: { port: 1 }\n",
        &[
            ("CONSOLE__SERVER__PORT", "9090"),
            ("CONSOLE__NODE__ID", "n1"),
        ],
    )
    .unwrap();
    assert_eq!(config.server.port, 9090);
    assert_eq!(config.node_id(9090), "n1");
}

#[test]
fn a_non_numeric_port_names_the_key_and_file() {
    let (key, line) = error_line("server:\n  port: abc\n", &[]);
    assert_eq!(key, "server.port");
    assert!(line.contains("abc") && line.contains(".yaml"), "{line}");
    let (key, line) = error_line("{}", &[("CONSOLE__SERVER__PORT", "http")]);
    assert_eq!(key, "server.port");
    assert!(
        line.contains("environment variable CONSOLE__SERVER__PORT"),
        "{line}"
    );
}

#[test]
fn an_unknown_key_is_named() {
    let (key, line) = error_line("server:\n  prot: 1\n", &[]);
    assert_eq!(key, "server.prot");
    assert!(line.contains("unknown key"), "{line}");
    let (key, _) = error_line("sever: {}\n", &[]);
    assert_eq!(key, "sever");
}

#[test]
fn a_missing_value_is_named() {
    let (key, line) = error_line("server:\n  port:\n", &[]);
    assert_eq!(key, "server.port");
    assert!(line.contains("missing value"), "{line}");
}

#[test]
fn an_unknown_registry_type_names_the_known_types() {
    let (key, line) = error_line("registry:\n  type: nope\n", &[]);
    assert_eq!(key, "registry.type");
    assert!(
        line.contains("known types: ") && line.contains("standalone"),
        "{line}"
    );
}

#[test]
fn bad_database_url_is_named_without_its_password() {
    let (key, line) = error_line("database:\n  url: postgres://u:hunter2@h/db\n", &[]);
    assert_eq!(key, "database.url");
    assert!(!line.contains("hunter2"), "{line}");
}

#[test]
fn secrets_never_reach_debug_output() {
    let config = load(
        "server: { auth_token: tok-secret }\ndatabase: { url: 'mysql://root:db-secret@h:3306/c' }\nregistry: { mysql: { password: my-secret }, zookeeper: { digest: 'u:zk-secret' } }\n",
        &[],
    )
    .unwrap();
    let printed = format!("{config:?}");
    for secret in ["tok-secret", "db-secret", "my-secret", "zk-secret"] {
        assert!(!printed.contains(secret), "{secret} leaked: {printed}");
    }
}

// The `registry` section, loaded as the console loads it: its backends' sections are checked by
// their factories, and errors still name the key and where its value came from.

fn yaml(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

#[test]
fn defaults_pick_the_standalone_registry() {
    let loaded = load::load_with_env::<ConsoleConfig>(None, Some(vec![])).unwrap();
    assert_eq!(loaded.value.registry.kind, "standalone");
    assert_eq!(loaded.value.registry.validate(), Ok(()));
    assert_eq!(loaded.source_of("registry.type"), "the built-in defaults");
}

#[test]
fn an_unknown_registry_key_is_named_with_its_file() {
    let file = yaml("registry:\n  zookeeper:\n    servers: a:1\n    sesion_timeout_ms: 5\n");
    let error = ConsoleConfig::load_with_env(Some(file.path()), vec![])
        .expect_err("misspelt key must fail");
    let ConfigError::Key {
        key,
        message,
        origin,
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
    assert_eq!(origin, &file.path().display().to_string());
    assert!(!error.to_string().contains('\n'), "one line: {error}");
}

#[test]
fn an_unknown_registry_section_is_named_with_the_known_ones() {
    let (key, line) = error_line("registry:\n  zookeper:\n    servers: a:1\n", &[]);
    assert_eq!(key, "registry.zookeper");
    assert!(line.contains("unknown key"), "{line}");
    assert!(
        line.contains("`zookeeper`") && line.contains("`mysql`"),
        "{line}"
    );
}

#[test]
fn a_bad_registry_number_is_named_with_its_file() {
    let file = yaml("registry:\n  mysql:\n    heartbeat_interval_ms: soon\n");
    let error = ConsoleConfig::load_with_env(Some(file.path()), vec![])
        .expect_err("a word is not a number");
    let ConfigError::Key {
        key,
        message,
        origin,
    } = &error
    else {
        panic!("expected a key error, got {error:?}");
    };
    assert_eq!(key, "registry.mysql.heartbeat_interval_ms");
    assert!(message.contains("soon"), "{message}");
    assert_eq!(origin, &file.path().display().to_string());
}

#[test]
fn a_missing_registry_value_is_named() {
    let (key, line) = error_line("registry:\n  mysql:\n    heartbeat_interval_ms:\n", &[]);
    assert_eq!(key, "registry.mysql.heartbeat_interval_ms");
    assert!(line.contains("missing value"), "{line}");
}

#[test]
fn the_environment_overrides_a_registry_key_and_is_named_when_bad() {
    let config = load(
        "registry:\n  type: zookeeper\n",
        &[("CONSOLE__REGISTRY__ZOOKEEPER__SESSION_TIMEOUT_MS", "4000")],
    )
    .unwrap();
    assert_eq!(
        config.registry.section("zookeeper").unwrap()["session_timeout_ms"],
        4000
    );

    let error = load(
        "{}",
        &[("CONSOLE__REGISTRY__MYSQL__SESSION_TIMEOUT_MS", "x")],
    )
    .expect_err("bad override");
    let ConfigError::Key { key, origin, .. } = &error else {
        panic!("expected a key error, got {error:?}");
    };
    assert_eq!(key, "registry.mysql.session_timeout_ms");
    assert_eq!(
        origin,
        "environment variable CONSOLE__REGISTRY__MYSQL__SESSION_TIMEOUT_MS"
    );
}

#[test]
fn a_registry_check_names_the_key_and_its_file() {
    let file = yaml(
        "registry:\n  type: mysql\n  mysql:\n    heartbeat_interval_ms: 1000\n    session_timeout_ms: 2500\n",
    );
    let error =
        ConsoleConfig::load_with_env(Some(file.path()), vec![]).expect_err("2500 < 3 x 1000");
    let ConfigError::Key {
        key,
        message,
        origin,
    } = &error
    else {
        panic!("expected a key error, got {error:?}");
    };
    assert_eq!(key, "registry.mysql.session_timeout_ms");
    assert!(message.contains("3 heartbeats"), "{message}");
    assert_eq!(origin, &file.path().display().to_string());
}

// Environment values are strings; only numeric keys read them as numbers (issue 12, finding 8).

#[test]
fn environment_strings_stay_strings() {
    for token in ["00012345", "12345678901234567890123", "1e3", "true"] {
        let config = load("{}", &[("CONSOLE__SERVER__AUTH_TOKEN", token)]).unwrap();
        assert_eq!(config.server.auth_token.expose(), token);
    }
    let config = load(
        "{}",
        &[
            ("CONSOLE__NODE__ID", "007"),
            ("CONSOLE__REGISTRY__MYSQL__PASSWORD", "000123"),
            ("CONSOLE__REGISTRY__MYSQL__USERNAME", "42"),
            ("CONSOLE__REGISTRY__ZOOKEEPER__DIGEST", "u:0001"),
        ],
    )
    .unwrap();
    assert_eq!(config.node_id(10000), "007");
    let mysql = config.registry.section("mysql").unwrap();
    assert_eq!(mysql["password"], "000123");
    assert_eq!(mysql["username"], "42");
    assert_eq!(
        config.registry.section("zookeeper").unwrap()["digest"],
        "u:0001"
    );
}

#[test]
fn environment_numbers_are_read_for_numeric_keys_only() {
    let config = load(
        "{}",
        &[
            ("CONSOLE__SERVER__PORT", "09090"),
            ("CONSOLE__MONITOR__INTERVAL_MS", "250"),
            ("CONSOLE__REGISTRY__MYSQL__HEARTBEAT_INTERVAL_MS", "0200"),
            ("CONSOLE__REGISTRY__MYSQL__SESSION_TIMEOUT_MS", "1000"),
        ],
    )
    .unwrap();
    assert_eq!(config.server.port, 9090);
    assert_eq!(config.monitor.interval_ms, 250);
    let mysql = config.registry.section("mysql").unwrap();
    assert_eq!(mysql["heartbeat_interval_ms"], 200);
    assert_eq!(mysql["session_timeout_ms"], 1000);
}

#[test]
fn a_secret_written_as_a_number_is_refused() {
    let (key, line) = error_line("server:\n  auth_token: 00012345\n", &[]);
    assert_eq!(key, "server.auth_token");
    assert!(line.contains("expected a string"), "{line}");
    let (key, line) = error_line("registry:\n  mysql:\n    password: 12345\n", &[]);
    assert_eq!(key, "registry.mysql.password");
    assert!(line.contains("expected a string"), "{line}");
    let config = load("server:\n  auth_token: \"00012345\"\n", &[]).unwrap();
    assert_eq!(config.server.auth_token.expose(), "00012345");
}

#[test]
fn a_section_that_is_not_a_mapping_is_named() {
    for (yaml, section) in [
        ("server: [1, 2]\n", "server"),
        ("node: 5\n", "node"),
        ("monitor: [1000]\n", "monitor"),
        ("database: text\n", "database"),
        (
            "registry:\n  zookeeper: [\"a:1\", \"/ns\"]\n",
            "registry.zookeeper",
        ),
        ("registry:\n  mysql: 1\n", "registry.mysql"),
    ] {
        let (key, line) = error_line(yaml, &[]);
        assert_eq!(key, section, "{yaml}: {line}");
        assert!(line.contains("a mapping of keys"), "{yaml}: {line}");
    }
}

#[test]
fn a_password_with_slashes_is_never_repeated() {
    for (yaml, key) in [
        (
            "database:\n  url: 'postgres://u:pa/ss@h/db'\n",
            "database.url",
        ),
        ("database:\n  url: 'u:pa/ss@h/db'\n", "database.url"),
        (
            "database:\n  url: 'postgres://u:pa:ss@x/y@h/db'\n",
            "database.url",
        ),
        (
            "registry:\n  type: mysql\n  mysql:\n    url: 'mysql://u:pa/ss@h:3306/db'\n",
            "registry.mysql.url",
        ),
        (
            "registry:\n  type: mysql\n  mysql:\n    url: 'postgres://u:pa/ss@h/db'\n",
            "registry.mysql.url",
        ),
    ] {
        let (named, line) = error_line(yaml, &[]);
        assert_eq!(named, key, "{line}");
        assert!(!line.contains("pa/ss") && !line.contains("pa:ss"), "{line}");
    }
}

// Listening beyond loopback needs a token (issue 12, finding 6); the advertised address is
// never an unspecified one (finding 14).

#[test]
fn a_non_loopback_host_needs_a_token() {
    for host in ["0.0.0.0", "::", "192.0.2.7", "example.org"] {
        let (key, line) = error_line("{}", &[("CONSOLE__SERVER__HOST", host)]);
        assert_eq!(key, "server.auth_token", "{host}: {line}");
        assert!(line.contains("server.allow_unauthenticated"), "{line}");
    }
    for host in ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"] {
        let config = load("{}", &[("CONSOLE__SERVER__HOST", host)]).unwrap();
        assert!(config.server.is_loopback(), "{host}");
    }
    let with_token = [
        ("CONSOLE__SERVER__HOST", "192.0.2.7"),
        ("CONSOLE__SERVER__AUTH_TOKEN", "t"),
    ];
    assert!(load("{}", &with_token).is_ok());
    let opted_out = load(
        "server: { host: 192.0.2.7, allow_unauthenticated: true }\n",
        &[],
    )
    .unwrap();
    assert!(opted_out.server.auth_token.is_empty());
}

#[test]
fn the_advertised_host_is_never_unspecified() {
    let config = load("server: { host: 192.0.2.7, auth_token: t }\n", &[]).unwrap();
    assert_eq!(config.server.advertised_host, "192.0.2.7");
    assert_eq!(config.node_id(10000), "192.0.2.7:10000");
    let config = load(
        "server: { host: 0.0.0.0, auth_token: t, advertised_host: console-1.example }\n",
        &[],
    )
    .unwrap();
    assert_eq!(config.node_id(10000), "console-1.example:10000");
    for unspecified in ["0.0.0.0", "::", "[::]"] {
        let (key, line) = error_line(
            "server: { host: 0.0.0.0, auth_token: t }\n",
            &[("CONSOLE__SERVER__ADVERTISED_HOST", unspecified)],
        );
        assert_eq!(key, "server.advertised_host", "{line}");
    }
    // Bound to every interface, the node advertises the machine's own address (or refuses to
    // start without one, naming the key).
    match load("server: { host: 0.0.0.0, auth_token: t }\n", &[]) {
        Ok(config) => {
            let advertised: std::net::IpAddr = config.server.advertised_host.parse().unwrap();
            assert!(!advertised.is_unspecified() && !advertised.is_loopback());
            assert!(!config.node_id(10000).starts_with("0.0.0.0"));
        }
        Err(ConfigError::Key { key, .. }) => assert_eq!(key, "server.advertised_host"),
        Err(other) => panic!("{other}"),
    }
}

#[test]
fn connection_limits_of_zero_are_named() {
    for key in ["header_read_timeout_ms", "max_connections"] {
        let (named, line) = error_line(&format!("server:\n  {key}: 0\n"), &[]);
        assert_eq!(named, format!("server.{key}"));
        assert!(line.contains("greater than 0"), "{line}");
    }
    let config = load("", &[("CONSOLE__SERVER__MAX_CONNECTIONS", "64")]).unwrap();
    assert_eq!(config.server.max_connections, 64);
    assert_eq!(config.server.header_read_timeout_ms, 10_000, "the default");
}

#[test]
fn load_aware_ownership_keys_are_checked_and_named() {
    let config = load(
        "node: { capacity: 4 }\ndispatch: { assignment: bounded, epsilon: 0.25 }\n",
        &[],
    )
    .unwrap();
    assert_eq!(config.node.capacity, 4);
    assert_eq!(config.dispatch.kind().unwrap(), AssignmentKind::Bounded);
    assert_eq!(config.dispatch.epsilon().unwrap().get(), 0.25);
    assert_eq!(config.dispatch.describe(), "bounded(epsilon=0.25)");
    let defaults = load("{}", &[]).unwrap();
    assert_eq!(defaults.node.capacity, 1);
    assert_eq!(
        defaults.dispatch.kind().unwrap(),
        AssignmentKind::Rendezvous
    );
    assert_eq!(defaults.dispatch.epsilon().unwrap().get(), 0.1);
    assert_eq!(defaults.dispatch.describe(), "rendezvous");
    let env = load(
        "{}",
        &[
            ("CONSOLE__DISPATCH__ASSIGNMENT", "bounded"),
            ("CONSOLE__NODE__CAPACITY", "2"),
        ],
    )
    .unwrap();
    assert_eq!(env.dispatch.kind().unwrap(), AssignmentKind::Bounded);
    assert_eq!(env.node.capacity, 2);

    for (yaml, expected_key, mention) in [
        ("node: { capacity: 0 }\n", "node.capacity", "1 to 65535"),
        ("node: { capacity: 70000 }\n", "node.capacity", "70000"),
        (
            "dispatch: { assignment: ring }\n",
            "dispatch.assignment",
            "\"bounded\"",
        ),
        ("dispatch: { epsilon: -1 }\n", "dispatch.epsilon", "-1"),
    ] {
        let (key, line) = error_line(yaml, &[]);
        assert_eq!(key, expected_key, "{yaml}");
        assert!(line.contains(mention), "{yaml}: {line}");
    }
}
