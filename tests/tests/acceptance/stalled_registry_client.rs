//! Issue 12, finding 4: a MySQL-registry client stopped in the middle of a registry write,
//! holding its transaction's locks, costs its peers nothing beyond its own expiry.
//!
//! Node `n3` runs with the registry's test failpoint: its second write of its own entry (the
//! first registers it, the second publishes its load once it owns apps) raises SIGSTOP on
//! itself inside the transaction, after its locking reads. Its peers must keep their sessions
//! (`/readyz` 200 at every poll, the same registry client rows), purge it soon after its
//! session expires (killing its database connection, which frees its locks), and take its apps.
//! Resumed, `n3` finds its session gone, builds a new one and rejoins; no app ever runs twice.
//! Before the fix every write locked one shared row across round trips and heartbeats shared
//! the connection with writes: the peers' purge of `n3` waited for that row, their heartbeats
//! behind it, and both lost their sessions.

use cluster_tests::{Cluster, Options, RegistryKind, processes};
use test_support::wait;
use tokio::time::Instant;

use crate::{SETTLE, ms};

/// The registry's failpoint (`registry-mysql/src/failpoint.rs`).
const STOP_IN_WRITE_VAR: &str = "CONSOLE_TEST_MYSQL_STOP_IN_WRITE";

#[tokio::test]
async fn mysql_a_client_stopped_inside_a_registry_write_costs_its_peers_nothing() {
    crate::timed(
        "mysql_a_client_stopped_inside_a_registry_write_costs_its_peers_nothing",
        stopped_inside_a_write(),
    )
    .await;
}

async fn stopped_inside_a_write() {
    let options = Options::new(RegistryKind::Mysql, 2);
    let session = options.session_timeout;
    let mut cluster = Cluster::start(options).await;
    let stalled = cluster
        .add_node_with_env(&[(STOP_IN_WRITE_VAR, "/nodes/console/n3@2")])
        .await;
    let stalled_id = cluster.node(stalled).id.clone();
    let pid = cluster.node(stalled).pid().expect("n3 runs");
    let peers = [cluster.api(0), cluster.api(1)];
    let before = crate::checks::registry_sessions(&cluster).await;

    // n3 gains apps to start, publishes its load, and stops inside that write.
    let created = cluster.create_marker_apps(9).await;
    cluster.submit_starts(&created, &[0, 1]).await;
    let mut copies = crate::checks::Copies::default();
    let created_at = Instant::now();
    let stopped = loop {
        if processes::is_stopped(pid) {
            break Instant::now();
        }
        assert!(cluster.node(stalled).is_running(), "n3 exited");
        assert!(
            Instant::now() < created_at + SETTLE,
            "n3 never reached its failpoint:\n{}",
            cluster.log_reports(30)
        );
        tokio::time::sleep(wait::POLL_INTERVAL).await;
    };

    // Its peers keep their sessions while they purge it.
    let purged = loop {
        copies.record(&cluster, &created);
        for (index, api) in peers.iter().enumerate() {
            assert!(
                matches!(api.ready().await, Ok(true)),
                "n{} stopped acting {} ms after n3 stopped inside a registry write:\n{}",
                index + 1,
                ms(stopped.elapsed()),
                cluster.log_reports(30)
            );
        }
        if !crate::checks::registry_sessions(&cluster)
            .await
            .contains_key(&stalled_id)
        {
            break Instant::now();
        }
        assert!(
            stopped.elapsed() < SETTLE,
            "n3's session was never purged:\n{}",
            cluster.log_reports(30)
        );
        tokio::time::sleep(wait::POLL_INTERVAL).await;
    };
    let killed = (0..2).any(|peer| {
        std::fs::read_to_string(cluster.node(peer).log_path()).is_ok_and(|log| {
            log.contains("killed the database connection of an expired registry session")
        })
    });
    assert!(killed, "a peer killed n3's connection before purging it");
    let after = crate::checks::registry_sessions(&cluster).await;
    for peer in ["n1", "n2"] {
        assert_eq!(
            after.get(peer),
            before.get(peer),
            "{peer} kept its registry session"
        );
    }

    // Every app runs, once; the peers own (and have adopted) n3's.
    cluster.wait_running(&created, SETTLE).await;
    let survivor = cluster.api(0);
    let apps = cluster_tests::eventually("the peers adopted n3's apps", SETTLE, || async {
        let apps = survivor.apps().await?;
        let pending: Vec<String> = apps
            .iter()
            .filter(|app| {
                app.owner.as_deref().is_none_or(|owner| owner == stalled_id)
                    || app.owner != app.adopted_by
            })
            .map(|app| format!("{} owner {:?}", app.name, app.owner))
            .collect();
        if pending.is_empty() {
            Ok(apps)
        } else {
            Err(format!("not adopted: {pending:?}"))
        }
    })
    .await;

    // Resumed, n3 finds its connection killed and its session gone, and rejoins harmlessly.
    processes::signal(pid, libc::SIGCONT);
    let resumed = Instant::now();
    loop {
        copies.record(&cluster, &created);
        if matches!(cluster.api(stalled).ready().await, Ok(true))
            && crate::checks::owners_are_live(&cluster, true).await.is_ok()
        {
            break;
        }
        assert!(
            resumed.elapsed() < SETTLE,
            "n3 did not come back after SIGCONT:\n{}",
            cluster.log_reports(30)
        );
        tokio::time::sleep(wait::POLL_INTERVAL).await;
    }
    cluster.wait_converged(SETTLE).await;
    copies.record(&cluster, &created);
    eprintln!(
        "measured: MySQL registry, session {} ms: n3 stopped inside a registry write; purged {} ms later ({} ms beyond its session timeout); peers kept their sessions; n3 back {} ms after SIGCONT; most copies of any app: {}",
        ms(session),
        ms(purged - stopped),
        ms((purged - stopped).saturating_sub(session)),
        ms(resumed.elapsed()),
        copies.worst()
    );
    for app in &apps {
        assert_eq!(
            cluster.marker_lines(&app.name),
            1,
            "{} started exactly once",
            app.name
        );
    }
    copies.assert_single();
}
