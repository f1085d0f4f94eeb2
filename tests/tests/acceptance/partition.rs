//! Issue 12, finding 3: a node cut off from its registry stops acting before the registry may
//! have expired its session, counted from the last exchange the registry answered, not from
//! when the node noticed the trouble.
//!
//! MySQL registry through the cluster's proxy, which is switched to black hole (packets
//! swallowed, nothing closed: the way a partition looks). The test reads each node's last
//! heartbeat from the registry tables directly (not through the proxy) and watches each node's
//! `/readyz` until it answers 503; a node that still acts after its `last heartbeat + session
//! timeout` would act while its peers may already have taken its apps.

use std::collections::BTreeMap;
use std::time::Duration;

use cluster_tests::{Cluster, Options, RegistryKind};
use sqlx::Row;
use test_support::mariadb::TestDatabase;
use test_support::wait;
use tokio::time::Instant;

use crate::{SETTLE, ms};

/// Each node's last heartbeat, as an instant of this process's clock (the database runs on the
/// same machine): the session's client row joined with the node's registry entry.
async fn last_heartbeats(cluster: &Cluster) -> BTreeMap<String, Instant> {
    let database = cluster.registry_database().expect("a MySQL registry");
    let mut conn = TestDatabase::attach(database).connect().await;
    let asked = Instant::now();
    let rows = sqlx::query(
        "SELECT CAST(d.path AS CHAR), \
                TIMESTAMPDIFF(MICROSECOND, c.heartbeat_at, UTC_TIMESTAMP(6)) \
         FROM registry_data d JOIN registry_clients c ON d.owner = c.id \
         WHERE d.path LIKE '/nodes/console/%'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    rows.into_iter()
        .map(|row| {
            let path: String = row.get(0);
            let age_us: i64 = row.get(1);
            let id = path.rsplit('/').next().unwrap_or_default().to_owned();
            let age = Duration::from_micros(u64::try_from(age_us).unwrap_or(0));
            (id, asked - age)
        })
        .collect()
}

async fn black_holed_nodes_stop_before_their_sessions_may_expire() {
    let options = Options::new(RegistryKind::Mysql, 2).database_proxy();
    let session = options.session_timeout;
    let cluster = Cluster::start(options).await;
    let apis = cluster.live_apis();

    cluster.proxy().black_hole();
    let holed = Instant::now();
    let mut stopped: BTreeMap<String, Instant> = BTreeMap::new();
    while stopped.len() < apis.len() {
        assert!(
            holed.elapsed() < SETTLE,
            "nodes still acting {SETTLE:?} into the partition: {:?}",
            apis.iter()
                .filter(|(id, _)| !stopped.contains_key(id))
                .map(|(id, _)| id)
                .collect::<Vec<_>>()
        );
        for (id, api) in &apis {
            if !stopped.contains_key(id) && matches!(api.ready().await, Ok(false)) {
                stopped.insert(id.clone(), Instant::now());
            }
        }
        tokio::time::sleep(wait::POLL_INTERVAL).await;
    }
    let heartbeats = last_heartbeats(&cluster).await;
    cluster.proxy().pass();

    let mut report = Vec::new();
    for (id, stopped_at) in &stopped {
        let last = heartbeats
            .get(id)
            .unwrap_or_else(|| panic!("no registry entry of {id}: {heartbeats:?}"));
        let may_expire = *last + session;
        // Positive: the node stopped this long before the registry could expire its session.
        let margin = may_expire.checked_duration_since(*stopped_at);
        report.push(format!(
            "{id}: last heartbeat {} ms before the hole, stopped {} ms after it, {} ms before its session could expire",
            ms(holed.saturating_duration_since(*last)),
            ms(stopped_at.saturating_duration_since(holed)),
            margin.map_or_else(
                || format!("-{}", ms(stopped_at.duration_since(may_expire))),
                |margin| ms(margin).to_string()
            )
        ));
        assert!(
            margin.is_some(),
            "{id} still acted after its session may have expired (session {session:?}): {}",
            report.join("; ")
        );
    }
    eprintln!(
        "measured (black hole, MySQL, session {session:?}): {}",
        report.join("; ")
    );
}

#[tokio::test]
async fn mysql_black_holed_nodes_stop_before_their_sessions_may_expire() {
    crate::timed(
        "mysql_black_holed_nodes_stop_before_their_sessions_may_expire",
        black_holed_nodes_stop_before_their_sessions_may_expire(),
    )
    .await;
}

/// A node paused with SIGSTOP past its session timeout, then resumed: its peers take its apps
/// over (attaching, never restarting), and the resumed node, whose session is gone, neither
/// acts on them nor starts anything. Checked from the processes themselves at every poll: at
/// most one copy of each app at any instant; and every app keeps its first process and was
/// started once.
async fn paused_node_is_taken_over_and_comes_back_harmless(kind: RegistryKind) {
    let (mut cluster, apps, baseline) =
        crate::checks::cluster_with_running_apps(Options::new(kind, 3), 12).await;
    let victim = 1;
    let victim_id = cluster.node(victim).id.clone();
    let pid = cluster.node(victim).pid().expect("the node runs");
    let held = crate::checks::owned_by(&apps, &victim_id).len();
    assert!(held > 0, "{victim_id} owns no app");
    let survivor = cluster.api(0);
    let mut copies = crate::checks::Copies::default();

    // SAFETY: kill only sends a signal to the node's process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let paused = Instant::now();
    loop {
        copies.record(&cluster, &apps);
        let now = survivor.apps().await.unwrap_or_default();
        if now.len() == apps.len()
            && now.iter().all(|app| {
                app.owner.as_deref().is_some_and(|owner| owner != victim_id)
                    && app.owner == app.adopted_by
            })
        {
            break;
        }
        assert!(
            paused.elapsed() < SETTLE,
            "the peers did not take {victim_id}'s apps: {now:?}"
        );
        tokio::time::sleep(wait::POLL_INTERVAL).await;
    }
    let taken_over = paused.elapsed();
    // Stay paused one more session timeout: the old session is surely expired.
    let until = Instant::now() + cluster.session_timeout();
    while Instant::now() < until {
        copies.record(&cluster, &apps);
        tokio::time::sleep(wait::POLL_INTERVAL).await;
    }
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    let resumed = Instant::now();
    crate::checks::until_rejoined(&mut cluster, victim, &apps, &mut copies, "SIGCONT").await;
    let settled = survivor.apps().await.unwrap();
    eprintln!(
        "measured: {kind:?} SIGSTOP of {victim_id} ({held} apps): all taken over {} ms after the pause; cluster converged {} ms after SIGCONT; most copies of any app at any poll: {}",
        ms(taken_over),
        ms(resumed.elapsed()),
        copies.worst()
    );
    copies.assert_single();
    baseline
        .check_unchanged(&cluster, &settled)
        .unwrap_or_else(|error| panic!("after the pause: {error}"));
}

each_registry!(paused_node_is_taken_over_and_comes_back_harmless => zk_paused_node_is_taken_over_and_comes_back_harmless, mysql_paused_node_is_taken_over_and_comes_back_harmless, etcd_paused_node_is_taken_over_and_comes_back_harmless);
