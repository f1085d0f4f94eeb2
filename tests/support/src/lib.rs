//! What the tests of every crate share; a dev-dependency only, never published.
//!
//! | module | what |
//! |---|---|
//! | [`wait`] | [`eventually`]: poll a condition until it holds or a deadline passes (never a fixed sleep); [`wait::poll_until`], [`wait::holds_for`] |
//! | [`proxy`] | [`proxy::TcpProxy`]: a loopback proxy a test switches between pass, cut and black hole |
//! | [`zookeeper`] | the shared test server, a [`zookeeper::Namespace`] deleted on drop, a [`zookeeper::PrivateZookeeper`] a test may stop, a [`zookeeper::PrivateEnsemble`] whose leader a test may kill |
//! | [`etcd`] | the shared test server, a [`etcd::Namespace`] deleted on drop, a [`etcd::PrivateEtcd`] a test may stop |
//! | [`flink`] | the shared Flink session cluster's URL, the example job's jar, a [`flink::PrivateFlink`] a test may kill |
//! | [`mariadb`] | the shared test server, a [`mariadb::TestDatabase`] dropped on drop |
//! | [`ports`] | [`ports::free_port`] |
//! | [`console_env`] | the `CONSOLE__…` configuration of a standalone console started inside a test |
//! | [`signing`] | node-to-node signatures (`/internal/*`), made from the documented format |
//!
//! # Services
//! | variable | default | started by |
//! |---|---|---|
//! | `CONSOLE_TEST_ZK` | `127.0.0.1:2181` | `deploy/zookeeper.sh start` |
//! | `CONSOLE_TEST_ETCD` | `127.0.0.1:2379` | `deploy/etcd.sh start` |
//! | `CONSOLE_TEST_FLINK_URL` | `http://127.0.0.1:8081` | `deploy/flink.sh start` |
//! | `CONSOLE_TEST_MYSQL_URL` | `mysql://root@127.0.0.1:3306` | `deploy/mariadb.sh start` |
//!
//! A service that does not answer fails the test with a message naming the script that starts
//! it; nothing is skipped.
//!
//! # Notable behaviors
//! Every namespace and database is private to one test (a random name) and is removed when its
//! guard is dropped, also when the test panics. Cleanup is best effort: it reports on stderr and
//! never panics.

pub mod console_env;
pub mod etcd;
pub mod flink;
pub mod mariadb;
pub mod ports;
pub mod proxy;
pub mod signing;
pub mod wait;
pub mod zookeeper;

mod deploy_script;
mod teardown;

pub use wait::eventually;

/// A random token of 12 lowercase hex digits, for names nobody else uses.
pub fn unique_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}
