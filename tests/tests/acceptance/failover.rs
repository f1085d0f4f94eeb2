//! Scenarios 2 and 4: a node dies (SIGKILL) or leaves (SIGTERM) and its apps move to the
//! others without restarting.

use std::collections::BTreeSet;
use std::time::Duration;

use cluster_tests::processes;
use cluster_tests::{App, Options, RegistryKind};
use test_support::wait::{eventually, poll_until};
use tokio::time::Instant;

use crate::checks::{cluster_with_running_apps, owned_apps_add_up, owned_by, owners_are_live};
use crate::{LOAD_PUBLISHED, label, ms};

/// 2. SIGKILL one node: within the session timeout + 2 s every app's owner is a live node, all
///    still RUNNING, no marker gained a line; then killing an adopted app's process turns it
///    FAILED within two monitor intervals.
async fn sigkilled_node_is_taken_over(kind: RegistryKind) {
    let (mut cluster, apps, baseline) = cluster_with_running_apps(Options::new(kind, 3), 30).await;
    let victim = 1;
    let victim_id = cluster.node(victim).id.clone();
    let victim_apps: Vec<App> = owned_by(&apps, &victim_id).into_iter().cloned().collect();
    assert!(!victim_apps.is_empty(), "{victim_id} owns no app: {apps:?}");

    let killed_at = cluster.kill(victim).await;
    let bound = cluster.session_timeout() + Duration::from_secs(2);
    let outcome = poll_until(bound.saturating_sub(killed_at.elapsed()), || {
        owners_are_live(&cluster, true)
    })
    .await;
    let (after, seen_at) = match outcome {
        Ok(found) => found,
        Err(timed_out) => panic!(
            "owners not all live within {bound:?} of the SIGKILL of {victim_id}: {}",
            timed_out.last
        ),
    };
    let failover = seen_at - killed_at;
    eprintln!(
        "measured: {} test 2: every owner live {} ms after SIGKILL of {victim_id} (bound {} ms)",
        label(kind),
        ms(failover),
        ms(bound)
    );
    baseline.check_unchanged(&cluster, &after).unwrap();
    let adopted_at = Instant::now();
    eventually(
        "the survivors' owned_apps add up to 30",
        LOAD_PUBLISHED,
        || owned_apps_add_up(&cluster, 30),
    )
    .await;
    eprintln!(
        "measured: {} test 2: owned_apps add up to 30 {} ms after SIGKILL",
        label(kind),
        ms(adopted_at.elapsed() + failover)
    );

    // The new owner monitors the adopted app: kill its process behind the console's back.
    let adopted = after
        .iter()
        .find(|app| victim_apps.iter().any(|old| old.id == app.id))
        .expect("an app of the killed node")
        .clone();
    let new_owner = adopted.owner.clone().expect("an owner");
    let pid = adopted.pid().expect("a pid");
    processes::signal(pid, libc::SIGKILL);
    assert!(
        processes::wait_gone(pid, Duration::from_secs(5)),
        "{}'s process {pid} survived SIGKILL",
        adopted.name
    );
    let died_at = Instant::now();
    let bound = cluster.monitor_interval() * 2;
    let api = cluster.live_apis()[0].1.clone();
    let outcome = poll_until(bound.saturating_sub(died_at.elapsed()), || {
        let api = api.clone();
        let id = adopted.id.clone();
        async move {
            let app = api.app(&id).await?;
            if app.state == "FAILED" {
                Ok(app)
            } else {
                Err(format!("{} is {}", app.name, app.state))
            }
        }
    })
    .await;
    let (failed, seen_at) = match outcome {
        Ok(found) => found,
        Err(timed_out) => panic!(
            "{} (adopted by {new_owner}) not FAILED within {bound:?} of its process's death: {}",
            adopted.name, timed_out.last
        ),
    };
    eprintln!(
        "measured: {} test 2: adopted app FAILED {} ms after its process died (bound {} ms); last_error {:?}",
        label(kind),
        ms(seen_at - died_at),
        ms(bound),
        failed.last_error
    );
    assert!(
        failed
            .last_error
            .as_deref()
            .is_some_and(|error| !error.is_empty()),
        "a FAILED app says why: {failed:?}"
    );
    assert_eq!(cluster.marker_lines(&adopted.name), 1, "not restarted");
    let others: Vec<App> = owners_are_live(&cluster, false)
        .await
        .unwrap()
        .into_iter()
        .filter(|app| app.id != adopted.id)
        .collect();
    let mut others_baseline = baseline.clone();
    others_baseline.apps.remove(&adopted.id.0);
    others_baseline.check_unchanged(&cluster, &others).unwrap();

    // The killed node comes back under its id and takes its share again, restarting nothing.
    let restarted_at = Instant::now();
    cluster.restart(victim).await;
    let counts = eventually(
        "owned_apps add up to the 29 running apps over three nodes again",
        LOAD_PUBLISHED,
        || owned_apps_add_up(&cluster, 29),
    )
    .await;
    eprintln!(
        "measured: {} test 2: {victim_id} restarted and owned_apps settled after {} ms: {counts:?}",
        label(kind),
        ms(restarted_at.elapsed())
    );
    let back: Vec<App> = owners_are_live(&cluster, false)
        .await
        .unwrap()
        .into_iter()
        .filter(|app| app.id != adopted.id)
        .collect();
    others_baseline.check_unchanged(&cluster, &back).unwrap();
    for app in &victim_apps {
        let now = back.iter().find(|now| now.id == app.id);
        if let Some(now) = now {
            assert_eq!(
                now.owner.as_deref(),
                Some(victim_id.as_str()),
                "{} is owned by the restarted {victim_id} again (the ring is a function of the live set)",
                app.name
            );
        }
    }
}

each_registry!(sigkilled_node_is_taken_over => zk_sigkilled_node_apps_are_adopted_and_monitored, mysql_sigkilled_node_apps_are_adopted_and_monitored, etcd_sigkilled_node_apps_are_adopted_and_monitored);

/// 4. SIGTERM one node: it exits 0, its apps are owned by live nodes within 1 s of its exit,
///    none restarts.
async fn sigterm_hands_apps_over(kind: RegistryKind) {
    let (mut cluster, apps, baseline) = cluster_with_running_apps(Options::new(kind, 3), 30).await;
    let leaving = 2;
    let leaving_id = cluster.node(leaving).id.clone();
    assert!(
        !owned_by(&apps, &leaving_id).is_empty(),
        "{leaving_id} owns no app"
    );
    let survivors: Vec<(String, cluster_tests::Api)> = cluster
        .live_apis()
        .into_iter()
        .filter(|(id, _)| *id != leaving_id)
        .collect();
    let survivor_ids: BTreeSet<String> = survivors.iter().map(|(id, _)| id.clone()).collect();

    // Watch the survivors from the moment of the signal, so a hand-over before the exit counts.
    let watch = tokio::spawn(async move {
        poll_until(Duration::from_secs(30), || {
            let survivors = survivors.clone();
            let survivor_ids = survivor_ids.clone();
            async move {
                for (node, api) in &survivors {
                    for app in api.apps().await? {
                        let owner = app.owner.clone().unwrap_or_default();
                        if !survivor_ids.contains(&owner) || app.state != "RUNNING" {
                            return Err(format!(
                                "node {node}: {} is {} owned by {owner:?}",
                                app.name, app.state
                            ));
                        }
                    }
                }
                Ok(())
            }
        })
        .await
    });
    let signalled_at = Instant::now();
    let (status, exited_at) = cluster.terminate(leaving, Duration::from_secs(20)).await;
    let outcome = watch.await.unwrap();
    let ((), handed_over_at) = outcome.unwrap_or_else(|timed_out| {
        panic!(
            "the survivors did not own every app within 30 s of the SIGTERM: {}",
            timed_out.last
        )
    });
    assert!(status.success(), "{leaving_id} exited with {status}");
    let (relation, gap) = if handed_over_at >= exited_at {
        ("after", handed_over_at - exited_at)
    } else {
        ("before", exited_at - handed_over_at)
    };
    eprintln!(
        "measured: {} test 4: {leaving_id} exited 0 {} ms after SIGTERM; survivors owned every app {} ms {relation} its exit (bound 1000 ms after)",
        label(kind),
        ms(exited_at - signalled_at),
        ms(gap)
    );
    assert!(
        handed_over_at <= exited_at + Duration::from_secs(1),
        "the hand-over finished {} ms after the exit of {leaving_id} (bound 1000 ms)",
        ms(gap)
    );
    let after = owners_are_live(&cluster, true).await.unwrap();
    baseline.check_unchanged(&cluster, &after).unwrap();
    eventually(
        "the survivors' owned_apps add up to 30",
        LOAD_PUBLISHED,
        || owned_apps_add_up(&cluster, 30),
    )
    .await;
    baseline
        .check_unchanged(&cluster, &owners_are_live(&cluster, true).await.unwrap())
        .unwrap();
}

each_registry!(sigterm_hands_apps_over => zk_sigterm_hands_apps_over_within_a_second, mysql_sigterm_hands_apps_over_within_a_second, etcd_sigterm_hands_apps_over_within_a_second);
