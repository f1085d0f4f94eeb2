//! The registry conformance kit, in full (SIGKILL crash case and unreachable server included),
//! against a real MariaDB/MySQL: each case in a database of its own. The cases are
//! `mysql_conformance::<case>`, so `cargo test mysql_` runs them with every other MySQL test.

mod common;

mod mysql_conformance {
    registry_api::registry_conformance_tests!(super::common::MysqlEnvironment);
}
