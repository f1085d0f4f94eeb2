//! Host affinity in the store (issue 12, finding 5): the host a copy of an app may run on is
//! recorded before the copy starts and cleared once it is known gone; adoption, deletion and
//! new starts respect it.

use serde_json::json;
use task_dispatch::{
    Action, Adoption, App, AppPlacement, AppState, Claim, Error, HostId, NodeLease, Outcome, Phase,
    Store, Task,
};

use crate::common;
use crate::on_both_backends;
use crate::{new_app, own};

fn host(name: &str) -> HostId {
    HostId::new(name)
}

/// Claims the app's next task as `lease` on `pin` through the claim of a known app (one
/// statement on MySQL) and expects it to run.
async fn claim_pinned(
    store: &Store,
    lease: &NodeLease,
    app: &App,
    pin: &HostId,
) -> (Task, App, &'static [Phase]) {
    let task = store.next_task(app.id).await.unwrap().expect("a task");
    match store
        .claim_task_of(lease, &task, app, 3, Some(pin))
        .await
        .unwrap()
    {
        Claim::Run { task, app, phases } => (task, *app, phases),
        Claim::Finished(task) => panic!("refused: {task:?}"),
    }
}

async fn finish(
    store: &Store,
    lease: &NodeLease,
    task: &Task,
    app: &App,
    phase: Phase,
    outcome: Outcome,
) -> App {
    store
        .finish_task(lease, task, app, phase, outcome)
        .await
        .unwrap()
        .1
}

fn started() -> Outcome {
    Outcome::Succeeded {
        handle: Some(json!({"pid": 42})),
    }
}

async fn a_start_pins_the_app_until_a_stop_or_a_dead_probe(db: &common::TestDb) {
    let store = db.store().await;
    let created = store.create_app(new_app("pinned")).await.unwrap();
    assert_eq!(created.host, None);
    let lease = own(&store, "n1", created.id).await;
    let h1 = host("vm/3d12");
    let app = store.get_app(created.id).await.unwrap();

    // Pinned by the claim, before the executor runs: a retry after a crash between the start
    // and its record goes to the same host.
    store
        .submit_task(app.id, Action::Start, None)
        .await
        .unwrap();
    let (task, starting, _) = claim_pinned(&store, &lease, &app, &h1).await;
    assert_eq!(starting.host.as_ref(), Some(&h1));
    assert_eq!(store.get_app(app.id).await.unwrap(), starting);
    let running = finish(&store, &lease, &task, &starting, Phase::Start, started()).await;
    assert_eq!(running.host.as_ref(), Some(&h1));
    assert_eq!(
        store.active_apps().await.unwrap(),
        [AppPlacement::new(app.id, Some(h1.clone()))]
    );

    // A stop does not pin; once it succeeded no copy is left.
    store.submit_task(app.id, Action::Stop, None).await.unwrap();
    assert_eq!(
        store.apps_with_unfinished_tasks().await.unwrap(),
        [AppPlacement::new(app.id, Some(h1.clone()))]
    );
    assert_eq!(
        store
            .apps_with_unfinished_tasks_among(&[app.id, 99_999])
            .await
            .unwrap(),
        [AppPlacement::new(app.id, Some(h1.clone()))]
    );
    let (task, stopping, _) = claim_pinned(&store, &lease, &running, &h1).await;
    assert_eq!(stopping.host.as_ref(), Some(&h1));
    let stopped = finish(
        &store,
        &lease,
        &task,
        &stopping,
        Phase::Stop,
        Outcome::Succeeded { handle: None },
    )
    .await;
    assert_eq!(
        (stopped.state, stopped.host.clone()),
        (AppState::Stopped, None)
    );
    assert_eq!(store.get_app(app.id).await.unwrap(), stopped);

    // Started again, then found dead by the monitor: unpinned, any node may start it.
    store
        .submit_task(app.id, Action::Start, None)
        .await
        .unwrap();
    let (task, starting, _) = claim_pinned(&store, &lease, &stopped, &h1).await;
    let running = finish(&store, &lease, &task, &starting, Phase::Start, started()).await;
    let dead = store
        .mark_app_dead(&lease, &running, "process 42 exited")
        .await
        .unwrap();
    assert_eq!((dead.state, dead.host.clone()), (AppState::Failed, None));
    assert_eq!(store.get_app(app.id).await.unwrap(), dead);
}
on_both_backends!(a_start_pins_the_app_until_a_stop_or_a_dead_probe =>
    mysql_a_start_pins_the_app_until_a_stop_or_a_dead_probe,
    sqlite_a_start_pins_the_app_until_a_stop_or_a_dead_probe);

async fn a_restart_pins_its_start_and_failures_keep_what_may_run(db: &common::TestDb) {
    let store = db.store().await;
    let app = store.create_app(new_app("restarted")).await.unwrap();
    let lease = own(&store, "n1", app.id).await;
    let (h1, h2) = (host("h1"), host("h2"));
    let app = store.get_app(app.id).await.unwrap();
    store
        .submit_task(app.id, Action::Start, None)
        .await
        .unwrap();
    let (task, starting, _) = claim_pinned(&store, &lease, &app, &h1).await;
    let running = finish(&store, &lease, &task, &starting, Phase::Start, started()).await;

    // The stop of a restart keeps the pin; entering its start pins to the caller's host.
    store
        .submit_task(app.id, Action::Restart, None)
        .await
        .unwrap();
    let (task, stopping, phases) = claim_pinned(&store, &lease, &running, &h1).await;
    assert_eq!(phases, [Phase::Stop, Phase::Start]);
    assert_eq!(stopping.host.as_ref(), Some(&h1));
    let starting = store
        .enter_phase(&lease, &stopping, Phase::Start, Some(&h2))
        .await
        .unwrap();
    assert_eq!(
        (starting.handle.clone(), starting.host.clone()),
        (None, Some(h2))
    );
    // The start fails with no handle: nothing was started, nothing stays pinned.
    let failed = finish(
        &store,
        &lease,
        &task,
        &starting,
        Phase::Start,
        Outcome::Failed {
            error: "no such file".into(),
        },
    )
    .await;
    assert_eq!(
        (failed.state, failed.host.clone()),
        (AppState::Failed, None)
    );

    // Started again; then a stop fails: the copy may still run, the pin stays.
    store
        .submit_task(app.id, Action::Start, None)
        .await
        .unwrap();
    let (task, starting, _) = claim_pinned(&store, &lease, &failed, &h1).await;
    let running = finish(&store, &lease, &task, &starting, Phase::Start, started()).await;
    store.submit_task(app.id, Action::Stop, None).await.unwrap();
    let (task, stopping, _) = claim_pinned(&store, &lease, &running, &h1).await;
    let stuck = finish(
        &store,
        &lease,
        &task,
        &stopping,
        Phase::Stop,
        Outcome::Failed {
            error: "still running after SIGKILL".into(),
        },
    )
    .await;
    assert_eq!(
        (stuck.state, stuck.host.clone(), stuck.handle.is_some()),
        (AppState::Failed, Some(h1), true)
    );
}
on_both_backends!(a_restart_pins_its_start_and_failures_keep_what_may_run =>
    mysql_a_restart_pins_its_start_and_failures_keep_what_may_run,
    sqlite_a_restart_pins_its_start_and_failures_keep_what_may_run);

/// A RUNNING app pinned to h1 whose holder died: a node on h2 leaves it (and its holder)
/// alone; a node on h1 fences the holder and takes it.
async fn only_a_node_on_the_apps_host_adopts_it(db: &common::TestDb) {
    let store = db.store().await;
    let app = store.create_app(new_app("failover")).await.unwrap();
    let dead = own(&store, "n1", app.id).await;
    let h1 = host("h1");
    let app = store.get_app(app.id).await.unwrap();
    store
        .submit_task(app.id, Action::Start, None)
        .await
        .unwrap();
    let (task, starting, _) = claim_pinned(&store, &dead, &app, &h1).await;
    finish(&store, &dead, &task, &starting, Phase::Start, started()).await;

    let elsewhere = store.register_node("n2").await.unwrap();
    for on in [Some(host("h2")), None] {
        assert_eq!(
            store
                .adopt_app(&elsewhere, app.id, on.as_ref(), |node| node != "n1")
                .await
                .unwrap(),
            Adoption::OnOtherHost(h1.clone())
        );
    }
    assert_eq!(
        store.node_epoch("n1").await.unwrap(),
        Some(dead.epoch),
        "nobody fenced the holder"
    );
    assert_eq!(
        store.get_app(app.id).await.unwrap().lease,
        Some(dead.clone())
    );

    let same_host = store.register_node("n3").await.unwrap();
    let Adoption::Adopted(adopted) = store
        .adopt_app(&same_host, app.id, Some(&h1), |node| node != "n1")
        .await
        .unwrap()
    else {
        panic!("n3 on h1 takes the app");
    };
    assert_eq!(
        (adopted.state, adopted.lease, adopted.host),
        (AppState::Running, Some(same_host), Some(h1))
    );
    assert_eq!(store.node_epoch("n1").await.unwrap(), Some(dead.epoch + 1));
}
on_both_backends!(only_a_node_on_the_apps_host_adopts_it =>
    mysql_only_a_node_on_the_apps_host_adopts_it, sqlite_only_a_node_on_the_apps_host_adopts_it);

/// A FAILED app whose copy may still run on h1: it cannot be deleted, and cannot be started
/// while h1 is unreachable; a stop is accepted (a node on h1 runs it), and once it ran the app
/// can be deleted.
async fn an_app_that_may_still_run_is_neither_deleted_nor_started_elsewhere(db: &common::TestDb) {
    let store = db.store().await;
    let app = store.create_app(new_app("stuck")).await.unwrap();
    let lease = own(&store, "n1", app.id).await;
    let h1 = host("h1");
    let app = store.get_app(app.id).await.unwrap();
    store
        .submit_task(app.id, Action::Start, None)
        .await
        .unwrap();
    let (task, starting, _) = claim_pinned(&store, &lease, &app, &h1).await;
    let running = finish(&store, &lease, &task, &starting, Phase::Start, started()).await;
    store.submit_task(app.id, Action::Stop, None).await.unwrap();
    let (task, stopping, _) = claim_pinned(&store, &lease, &running, &h1).await;
    let stuck = finish(
        &store,
        &lease,
        &task,
        &stopping,
        Phase::Stop,
        Outcome::Failed {
            error: "still running".into(),
        },
    )
    .await;
    assert_eq!(stuck.state, AppState::Failed);

    let refused = store.delete_app(app.id).await.unwrap_err();
    assert!(
        matches!(&refused, Error::MayStillRun { id, host } if *id == app.id && *host == h1),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("h1"), "{refused}");
    for action in [Action::Start, Action::Restart] {
        let refused = store
            .submit_task_if_reachable(app.id, action, None, |_| false)
            .await
            .unwrap_err();
        assert!(
            matches!(&refused, Error::HostUnreachable { id, host } if *id == app.id && *host == h1),
            "{action}: {refused:?}"
        );
    }
    assert_eq!(
        store.next_task(app.id).await.unwrap(),
        None,
        "nothing queued"
    );
    let stop = store
        .submit_task_if_reachable(app.id, Action::Stop, None, |_| false)
        .await
        .unwrap();
    assert_eq!(stop.host, Some(h1.clone()));
    let (task, stopping, _) = claim_pinned(&store, &lease, &stuck, &h1).await;
    finish(
        &store,
        &lease,
        &task,
        &stopping,
        Phase::Stop,
        Outcome::Succeeded { handle: None },
    )
    .await;
    store.delete_app(app.id).await.unwrap();
}
on_both_backends!(an_app_that_may_still_run_is_neither_deleted_nor_started_elsewhere =>
    mysql_an_app_that_may_still_run_is_neither_deleted_nor_started_elsewhere,
    sqlite_an_app_that_may_still_run_is_neither_deleted_nor_started_elsewhere);
