//! The acceptance tests of the clustered console (issue 6), each for the ZooKeeper, the MySQL and
//! the etcd registry: real `console-server` processes, real ZooKeeper, MariaDB and etcd, real
//! signals.
//!
//! Each scenario is one `async fn(RegistryKind)`; [`each_registry!`] turns it into a `zk_...`, a
//! `mysql_...` and an `etcd_...` test. Timing bounds are the acceptance criteria themselves; every measured
//! duration is printed as a `measured:` line (see it with `--nocapture`).
//!
//! | module | scenarios |
//! |---|---|
//! | `membership` | 1. 30 apps spread over three nodes; 3. a joining node takes apps |
//! | `failover` | 2. a SIGKILLed node's apps are adopted; 4. SIGTERM hands apps over |
//! | `concurrent_starts` | 5. concurrent starts start one process |
//! | `outage` | 6. the registry goes away and comes back |
//! | `bad_input` | 7. bad input changes nothing |
//! | `forged_notices` | issue 12, finding 1: forged node-to-node calls change nothing |
//! | `node_partitions` | issue 12: one node cut from its registry only, or from its database only |
//! | `database_clock` | issue 12, finding 16: a step of the database's clock ends no MySQL-registry session (MySQL only) |
//! | `stalled_registry_client` | issue 12, finding 4: a MySQL-registry client stopped inside a write costs its peers nothing (MySQL only) |
//! | `load_aware` | issue 16: the bounded-load assignment keeps owned weights within the bound, before and after a SIGKILL (MySQL and ZooKeeper); nodes configured to split the apps otherwise are reported |
//! | `host_affinity` | issue 12, finding 5: a `process` app waits, unowned, for a node on its host |
//! | `zookeeper_ensemble` | issue 12: the leader of a three-server ZooKeeper ensemble SIGKILLed under a running cluster; nothing restarts, fails or loses its session (ZooKeeper only) |
//! | `checks` | what the scenarios check on a running cluster |
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cluster_tests::RegistryKind;
use tokio::time::Instant;

/// How long 30 apps may take to reach RUNNING, or a cluster to settle after a change.
const SETTLE: Duration = Duration::from_secs(60);

/// How long `owned_apps` (published by each node about once a second) may take to add up.
const LOAD_PUBLISHED: Duration = Duration::from_secs(10);

/// Turns a scenario into one test per registry.
macro_rules! each_registry {
    ($scenario:ident => $zk:ident, $mysql:ident, $etcd:ident) => {
        #[tokio::test]
        async fn $zk() {
            $crate::timed(
                stringify!($zk),
                $scenario(cluster_tests::RegistryKind::Zookeeper),
            )
            .await;
        }

        #[tokio::test]
        async fn $mysql() {
            $crate::timed(
                stringify!($mysql),
                $scenario(cluster_tests::RegistryKind::Mysql),
            )
            .await;
        }

        #[tokio::test]
        async fn $etcd() {
            $crate::timed(
                stringify!($etcd),
                $scenario(cluster_tests::RegistryKind::Etcd),
            )
            .await;
        }
    };
}

/// Runs a scenario and prints how long it took, teardown included.
async fn timed(name: &str, scenario: impl std::future::Future<Output = ()>) {
    let started = Instant::now();
    scenario.await;
    eprintln!("measured: {name} passed in {} ms", ms(started.elapsed()));
}

fn label(kind: RegistryKind) -> &'static str {
    match kind {
        RegistryKind::Zookeeper => "zk",
        RegistryKind::Mysql => "mysql",
        RegistryKind::Etcd => "etcd",
    }
}

fn ms(duration: Duration) -> u128 {
    duration.as_millis()
}

mod bad_input;
mod checks;
mod concurrent_starts;
mod database_clock;
mod failover;
mod forged_notices;
mod host_affinity;
mod load_aware;
mod membership;
mod node_partitions;
mod outage;
mod partition;
mod slow_database;
mod stalled_registry_client;
mod zookeeper_ensemble;
