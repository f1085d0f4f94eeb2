//! Scenario 6: the registry goes away and comes back; nothing restarts or fails.

use std::collections::BTreeMap;
use std::time::Duration;

use cluster_tests::{Cluster, Options, RegistryKind};
use test_support::wait::{self, eventually, holds_for, poll_until};
use tokio::time::Instant;

use crate::checks::{cluster_with_running_apps, owned_apps_add_up, owners_are_live};
use crate::{LOAD_PUBLISHED, SETTLE, label, ms};

/// Polls every node's `/readyz` in the background until stopped; answers, per node, how many
/// answers were not 200 (503, or no answer).
fn watch_readiness(
    apis: Vec<(String, cluster_tests::Api)>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<BTreeMap<String, usize>>,
) {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut not_ready: BTreeMap<String, usize> =
            apis.iter().map(|(id, _)| (id.clone(), 0)).collect();
        loop {
            for (id, api) in &apis {
                if !matches!(api.ready().await, Ok(true)) {
                    *not_ready.entry(id.clone()).or_default() += 1;
                }
            }
            tokio::select! {
                _ = &mut stopped => return not_ready,
                () = tokio::time::sleep(wait::POLL_INTERVAL) => {}
            }
        }
    });
    (stop, task)
}

/// How long the registry is away in scenario 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outage {
    /// Shorter than the point where nodes stop acting (2/3 of the session timeout).
    Short,
    /// Until every node has stopped acting (`/readyz` 503).
    PastFenceBound,
}

/// Cluster options for an outage test: ZooKeeper and etcd on a private server, MySQL through a
/// proxy.
///
/// Session timeouts: a ZooKeeper restart takes 1.5-4.5 s on two loaded cores, so a short
/// outage uses 8 s sessions (stays under both the session and the 5.3 s fence bound). Past the
/// fence bound, ZooKeeper uses 4 s sessions: the outage (2.7 s until the nodes stop acting, plus
/// the restart) is then about the session timeout, and a node comes back either on its old
/// session (the restarted server gives sessions a fresh timeout) or, when its client has given
/// up on it first, on a new one after the old one's entries are gone; both must restart nothing.
/// etcd is timed like ZooKeeper: a restarted etcd gives every lease a fresh TTL, so a node
/// comes back on its old lease or, when its client gave up on it first, on a new one.
/// MySQL sessions end by the database's clock: a short outage is a 500 ms cut with the usual 1 s
/// sessions; past the fence bound it uses 4 s sessions, the nodes stop acting after 2.7 s and
/// the cut ends before 4 s.
fn outage_options(kind: RegistryKind, outage: Outage) -> Options {
    let session = match (kind, outage) {
        (RegistryKind::Zookeeper | RegistryKind::Etcd, Outage::Short) => Duration::from_secs(8),
        (RegistryKind::Mysql, Outage::Short) => Duration::from_secs(1),
        (_, Outage::PastFenceBound) => Duration::from_secs(4),
    };
    let options = Options::new(kind, 3).session_timeout(session);
    match kind {
        RegistryKind::Zookeeper | RegistryKind::Etcd => options.private_server(),
        RegistryKind::Mysql => options.database_proxy(),
    }
}

/// Waits until every node answers `/readyz` with 503, for at most `timeout`.
async fn all_stop_acting(cluster: &Cluster, timeout: Duration) -> Result<(), String> {
    let apis = cluster.live_apis();
    poll_until(timeout, || {
        let apis = apis.clone();
        async move {
            for (id, api) in &apis {
                if api.ready().await? {
                    return Err(format!("{id} is still ready"));
                }
            }
            Ok(())
        }
    })
    .await
    .map(|_| ())
    .map_err(|timed_out| timed_out.last)
}

/// 6. The registry goes away and comes back: no app restarts or fails, and all nodes are ready
///    again afterwards.
///
/// ZooKeeper and etcd: a private server is stopped and started again with `deploy/zookeeper.sh`
/// or `deploy/etcd.sh`. MySQL:
/// the shared MariaDB stays up; a proxy between the nodes and it (registry and task store) is
/// cut and restored. [`Outage::Short`] is the acceptance test: away for less than the session
/// timeout (and less than the fence bound). [`Outage::PastFenceBound`] keeps it away until every
/// node has stopped acting (DESIGN.md "Fencing"), so the nodes must also resume; for MySQL that
/// is still within the session timeout (see [`outage_options`]).
async fn registry_outage(kind: RegistryKind, outage: Outage) {
    let (mut cluster, _apps, baseline) =
        cluster_with_running_apps(outage_options(kind, outage), 12).await;
    let session = cluster.session_timeout();
    let fence_bound = session * 2 / 3;
    let (stop_watching, watching) = watch_readiness(cluster.live_apis());
    let outage_started = Instant::now();
    let mut fenced = Ok(());
    match kind {
        RegistryKind::Zookeeper => {
            cluster.zookeeper().stop().await;
            if outage == Outage::PastFenceBound {
                fenced = all_stop_acting(&cluster, fence_bound + Duration::from_secs(2)).await;
            }
            cluster.zookeeper().resume().await;
        }
        RegistryKind::Etcd => {
            cluster.etcd().stop().await;
            if outage == Outage::PastFenceBound {
                fenced = all_stop_acting(&cluster, fence_bound + Duration::from_secs(2)).await;
            }
            cluster.etcd().resume().await;
        }
        RegistryKind::Mysql => {
            cluster.proxy().cut();
            match outage {
                Outage::Short => tokio::time::sleep(session / 2).await,
                Outage::PastFenceBound => {
                    fenced = all_stop_acting(&cluster, session * 3 / 4).await;
                }
            }
            cluster.proxy().pass();
        }
    }
    let outage_took = outage_started.elapsed();
    if let Err(last) = fenced {
        panic!(
            "not every node stopped acting within {} ms of losing the registry (fence bound {} ms): {last}",
            ms(outage_took),
            ms(fence_bound)
        );
    }
    let back_at = Instant::now();
    cluster.wait_converged(session + SETTLE).await;
    let ready_after = back_at.elapsed();
    stop_watching.send(()).unwrap();
    let not_ready = watching.await.unwrap();
    eprintln!(
        "measured: {} test 6 ({outage:?}): registry away for {} ms (session {} ms); all nodes ready {} ms after it was back; not-ready answers per node meanwhile: {not_ready:?}",
        label(kind),
        ms(outage_took),
        ms(session),
        ms(ready_after)
    );
    if outage == Outage::Short || kind == RegistryKind::Mysql {
        assert!(
            outage_took < session,
            "the outage took {} ms, not less than the {} ms session timeout",
            ms(outage_took),
            ms(session)
        );
    }
    let after = owners_are_live(&cluster, true).await.unwrap();
    baseline.check_unchanged(&cluster, &after).unwrap();
    eventually("owned_apps add up to 12", LOAD_PUBLISHED, || {
        owned_apps_add_up(&cluster, 12)
    })
    .await;
    // A late failure would show within a few monitor intervals: watch that long.
    let window = cluster.monitor_interval() * 4;
    holds_for("every app RUNNING in its first process", window, || async {
        let apps = owners_are_live(&cluster, true).await?;
        baseline.check_unchanged(&cluster, &apps)
    })
    .await;
}

async fn short_registry_outage(kind: RegistryKind) {
    registry_outage(kind, Outage::Short).await;
}

each_registry!(short_registry_outage => zk_short_registry_outage_restarts_nothing, mysql_short_registry_outage_restarts_nothing, etcd_short_registry_outage_restarts_nothing);

async fn registry_outage_past_fence_bound(kind: RegistryKind) {
    registry_outage(kind, Outage::PastFenceBound).await;
}

each_registry!(registry_outage_past_fence_bound => zk_registry_outage_past_the_fence_bound_restarts_nothing, mysql_registry_outage_past_the_fence_bound_restarts_nothing, etcd_registry_outage_past_the_fence_bound_restarts_nothing);
