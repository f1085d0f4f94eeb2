//! The registry conformance kit, in full (SIGKILL crash case and unreachable server included),
//! against a real MariaDB/MySQL: each case in a database of its own.

mod common;

use common::MysqlEnvironment;

registry_api::registry_conformance_tests!(MysqlEnvironment);
