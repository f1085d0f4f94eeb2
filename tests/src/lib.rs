//! The cluster test harness: real `console-server` processes on loopback, against a real
//! ZooKeeper and a real MariaDB, killed with real signals.
//!
//! A test builds a [`Cluster`] from [`Options`] (registry kind, node count, timings), drives it
//! through each node's [`Api`], and synchronises on conditions with deadlines ([`wait`]), never
//! on fixed sleeps. The acceptance tests of the clustered console are in `tests/acceptance/`.
//!
//! The generic test helpers (waiting, the TCP proxy, ZooKeeper namespaces and the private
//! server, MariaDB databases, free ports) live in the `test-support` crate; [`wait`] and
//! [`services`] re-export the ones `cluster-bench` uses.
//!
//! # The binary
//! [`binary::console_server`] builds `console-server` once per test process with the `cargo`
//! that runs the tests and takes the path from cargo's build report (or uses
//! `CONSOLE_SERVER_BIN`). See [`binary`].
//!
//! # Isolation and teardown
//! Every cluster has its own run directory, task-store database, and registry namespace or
//! database; nodes listen on free loopback ports and have explicit ids `n1`, `n2`, ... Every
//! process the test causes carries the run's tag, so teardown (on drop, also after a panic)
//! kills all of them, including apps that outlive their console by design. See [`cluster`] and
//! [`processes`].
//!
//! # Services and environment
//! | variable | meaning |
//! |---|---|
//! | `CONSOLE_TEST_ZK` | ZooKeeper, default `127.0.0.1:2181` (`deploy/zookeeper.sh start`) |
//! | `CONSOLE_TEST_MYSQL_URL` | MariaDB, default `mysql://root@127.0.0.1:3306` (`deploy/mariadb.sh start`) |
//! | `CONSOLE_SERVER_BIN` | a prebuilt `console-server` to test instead of building one |
//! | `CLUSTER_TESTS_PARALLEL` | clusters alive at once per test process (default 2) |
//! | `CLUSTER_TESTS_LOG` | `RUST_LOG` of the nodes (default `info`) |
//! | `CLUSTER_TESTS_KEEP` | keep run directories after passing tests too |

pub mod api;
pub mod binary;
pub mod cluster;
pub mod node;
pub mod processes;

pub use api::{Answer, Api, App, Body, Id, NodeInfo, Task};
pub use cluster::{Cluster, NodeProxies, Options, RegistryKind};
pub use test_support::wait;
pub use wait::{eventually, holds_for, poll_until};

/// The shared services, as `test_support` gives them.
pub mod services {
    pub use test_support::mariadb::MariaDb;
    pub use test_support::zookeeper::servers as zookeeper_servers;
}
