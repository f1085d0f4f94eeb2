//! Issue 12, finding 16: the MySQL registry judges expiry by the database's clock, and a step
//! of that clock must not end live sessions. Every node runs with the registry's test failpoint
//! `CONSOLE_TEST_MYSQL_CLOCK_STEP=<offset>@<instant>`: from one wall-clock instant on, every
//! node's registry calls see the database's clock 30 s ahead, as after a step of the server's
//! clock. Before the fix every heartbeat found its own row expired (`expires_at >= now` failed)
//! and every node lost its session; now a heartbeat refreshes a row that merely looks expired
//! (only a purge ends a session) and each purger, seeing the clock move unlike its own, holds
//! purges until every live node has heartbeated under the new clock.

use std::collections::BTreeMap;
use std::time::Duration;

use cluster_tests::{Cluster, Options, RegistryKind};
use sqlx::Row;
use test_support::mariadb::TestDatabase;
use test_support::wait;
use tokio::time::Instant;

use crate::{SETTLE, ms};

/// The registry's failpoint (`registry-mysql/src/failpoint.rs`).
const CLOCK_STEP_VAR: &str = "CONSOLE_TEST_MYSQL_CLOCK_STEP";
/// How far the database's clock steps.
const STEP: Duration = Duration::from_secs(30);

/// Each node's registry session: node id → client row id.
async fn sessions(cluster: &Cluster) -> BTreeMap<String, i64> {
    let database = cluster.registry_database().expect("a MySQL registry");
    let mut conn = TestDatabase::attach(database).connect().await;
    let rows = sqlx::query(
        "SELECT CAST(path AS CHAR), owner FROM registry_data \
         WHERE path LIKE '/nodes/console/%' AND owner IS NOT NULL",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    rows.into_iter()
        .map(|row| {
            let path: String = row.get(0);
            (
                path.rsplit('/').next().unwrap_or_default().to_owned(),
                row.get(1),
            )
        })
        .collect()
}

#[tokio::test]
async fn mysql_a_database_clock_step_ends_no_session() {
    crate::timed("mysql_a_database_clock_step_ends_no_session", clock_step()).await;
}

async fn clock_step() {
    // The step starts when this file exists: once the cluster is up and its apps run.
    let trigger = tempfile::Builder::new()
        .prefix("clock-step-")
        .tempdir()
        .expect("a temp dir");
    let step_file = trigger.path().join("step");
    let options = Options::new(RegistryKind::Mysql, 3).env(
        CLOCK_STEP_VAR,
        &format!("{}@{}", STEP.as_millis(), step_file.display()),
    );
    let session = options.session_timeout;
    let (cluster, apps, baseline) = crate::checks::cluster_with_running_apps(options, 9).await;
    let before = sessions(&cluster).await;
    std::fs::write(&step_file, b"now").expect("write the trigger");
    let apis = cluster.live_apis();
    let detected = |cluster: &Cluster| {
        (0..cluster.len()).all(|node| {
            std::fs::read_to_string(cluster.node(node).log_path())
                .is_ok_and(|log| log.contains("the database's clock stepped"))
        })
    };
    // Until every node saw the step, and three session timeouts past it: every node ready at
    // every poll.
    let mut seen_at: Option<Instant> = None;
    let started = Instant::now();
    loop {
        for (id, api) in &apis {
            assert!(
                matches!(api.ready().await, Ok(true)),
                "{id} stopped acting around the database clock's step:\n{}",
                cluster.log_reports(30)
            );
        }
        if seen_at.is_none() && detected(&cluster) {
            seen_at = Some(Instant::now());
        }
        if seen_at.is_some_and(|at| at.elapsed() > session * 3) {
            break;
        }
        assert!(
            started.elapsed() < SETTLE,
            "the nodes never noticed the step:\n{}",
            cluster.log_reports(30)
        );
        tokio::time::sleep(wait::POLL_INTERVAL).await;
    }
    assert_eq!(
        sessions(&cluster).await,
        before,
        "every node kept its registry session"
    );
    let settled = cluster.api(0).apps().await.unwrap();
    baseline
        .check_unchanged(&cluster, &settled)
        .unwrap_or_else(|error| panic!("after the step: {error}"));
    eprintln!(
        "measured: MySQL registry, session {} ms: the database clock stepped {} s ahead; every node noticed it within {} ms and kept its session; {} apps untouched",
        ms(session),
        STEP.as_secs(),
        ms(seen_at.expect("seen") - started),
        apps.len()
    );
}
