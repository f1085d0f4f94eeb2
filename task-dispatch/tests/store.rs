//! Store tests, each on MariaDB (`mysql_*`) and SQLite (`sqlite_*`), each in its own database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use serde_json::json;
use task_dispatch::{
    Action, Adoption, AppState, Claim, Entity, Error, NewApp, NodeLease, Outcome, Phase, Store,
    Task, TaskStatus,
};

fn new_app(name: &str) -> NewApp {
    NewApp {
        name: name.to_owned(),
        executor: "process".to_owned(),
        spec: json!({"command": ["sh", "-c", "sleep 1000"]}),
    }
}

/// Registers `node`, adopts `app_id` for it (nobody else live) and returns its lease.
async fn own(store: &Store, node: &str, app_id: i64) -> NodeLease {
    let lease = store.register_node(node).await.unwrap();
    match store.adopt_app(&lease, app_id, |_| false).await.unwrap() {
        Adoption::Adopted(_) => lease,
        other => panic!("adoption of {app_id} by {node}: {other:?}"),
    }
}

/// Claims the app's next task and expects it to be runnable.
async fn claim_next(
    store: &Store,
    lease: &NodeLease,
    app_id: i64,
) -> (Task, task_dispatch::App, &'static [Phase]) {
    let task = store
        .next_task(app_id)
        .await
        .unwrap()
        .expect("a task to claim");
    match store.claim_task(lease, &task, 3).await.unwrap() {
        Claim::Run { task, app, phases } => (task, *app, phases),
        Claim::Finished(task) => panic!("task finished at claim: {task:?}"),
    }
}

/// Runs the app's next task through every phase with success.
async fn run_next_ok(store: &Store, lease: &NodeLease, app_id: i64) -> (Task, task_dispatch::App) {
    let (task, mut app, phases) = claim_next(store, lease, app_id).await;
    for (i, phase) in phases.iter().enumerate() {
        if i > 0 {
            app = store.enter_phase(lease, &app, *phase).await.unwrap();
        }
        if i + 1 == phases.len() {
            let handle = Some(json!({"pid": 42}));
            return store
                .finish_task(lease, &task, &app, *phase, Outcome::Succeeded { handle })
                .await
                .unwrap();
        }
    }
    unreachable!("an action has at least one phase")
}

// ---------------------------------------------------------------------------------------------

async fn connect_migrates_once_and_reconnects(db: &common::TestDb) {
    let first = db.store().await;
    let app = first.create_app(new_app("a")).await.unwrap();
    first.close().await;
    // Migrations already applied: connecting again keeps the data.
    let second = db.store().await;
    assert_eq!(second.get_app(app.id).await.unwrap().name, "a");
}
on_both_backends!(connect_migrates_once_and_reconnects =>
    mysql_connect_migrates_once_and_reconnects, sqlite_connect_migrates_once_and_reconnects);

async fn apps_create_get_list_page(db: &common::TestDb) {
    let store = db.store().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let app = store
            .create_app(new_app(&format!("app-{i}")))
            .await
            .unwrap();
        assert_eq!(app.state, AppState::Created);
        assert_eq!(app.version, 1);
        ids.push(app.id);
    }
    let got = store.get_app(ids[2]).await.unwrap();
    assert_eq!(got.name, "app-2");
    assert_eq!(got.spec, json!({"command": ["sh", "-c", "sleep 1000"]}));
    assert_eq!(got.lease, None);

    let page1 = store.list_apps(1, 2).await.unwrap();
    let page3 = store.list_apps(3, 2).await.unwrap();
    let page4 = store.list_apps(4, 2).await.unwrap();
    assert_eq!(page1.total, 5);
    assert_eq!(
        page1.items.iter().map(|a| a.id).collect::<Vec<_>>(),
        ids[..2]
    );
    assert_eq!(
        page3.items.iter().map(|a| a.id).collect::<Vec<_>>(),
        ids[4..]
    );
    assert!(page4.items.is_empty());

    assert!(matches!(
        store.get_app(ids[4] + 1000).await,
        Err(Error::NotFound {
            entity: Entity::App,
            ..
        })
    ));
    assert!(matches!(
        store.list_apps(0, 10).await,
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        store.list_apps(1, 1001).await,
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        store.create_app(new_app(" ")).await,
        Err(Error::InvalidInput(_))
    ));
    let long = "x".repeat(256);
    assert!(matches!(
        store.create_app(new_app(&long)).await,
        Err(Error::InvalidInput(_))
    ));
    // Non-ASCII names are stored as given.
    let unicode = store.create_app(new_app("流处理-app")).await.unwrap();
    assert_eq!(store.get_app(unicode.id).await.unwrap().name, "流处理-app");
}
on_both_backends!(apps_create_get_list_page =>
    mysql_apps_create_get_list_page, sqlite_apps_create_get_list_page);

async fn delete_is_refused_while_active(db: &common::TestDb) {
    let store = db.store().await;
    let app = store.create_app(new_app("d")).await.unwrap();
    let start = store
        .submit_task(app.id, Action::Start, None)
        .await
        .unwrap()
        .task;

    // A queued task blocks the delete even though the app is CREATED.
    let refused = store.delete_app(app.id).await.unwrap_err();
    assert!(
        matches!(
            refused,
            Error::AppActive {
                state: AppState::Created,
                unfinished_tasks: true,
                ..
            }
        ),
        "{refused:?}"
    );

    let lease = own(&store, "n1", app.id).await;
    run_next_ok(&store, &lease, app.id).await;
    assert!(matches!(
        store.delete_app(app.id).await,
        Err(Error::AppActive {
            state: AppState::Running,
            unfinished_tasks: false,
            ..
        })
    ));

    store.submit_task(app.id, Action::Stop, None).await.unwrap();
    let (_, stopped) = run_next_ok(&store, &lease, app.id).await;
    assert_eq!(stopped.state, AppState::Stopped);
    store.delete_app(app.id).await.unwrap();
    assert!(matches!(
        store.get_app(app.id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.delete_app(app.id).await,
        Err(Error::NotFound { .. })
    ));
    // Its tasks stay readable.
    assert_eq!(
        store.get_task(start.id).await.unwrap().status,
        TaskStatus::Succeeded
    );
}
on_both_backends!(delete_is_refused_while_active =>
    mysql_delete_is_refused_while_active, sqlite_delete_is_refused_while_active);

async fn submit_checks_the_projected_state(db: &common::TestDb) {
    let store = db.store().await;
    let app = store.create_app(new_app("p")).await.unwrap();
    assert!(matches!(
        store.submit_task(app.id, Action::Stop, None).await,
        Err(Error::IllegalTransition {
            from: AppState::Created,
            action: Action::Stop
        })
    ));
    assert!(matches!(
        store.check_action(app.id, Action::Restart).await,
        Err(Error::IllegalTransition {
            from: AppState::Created,
            action: Action::Restart
        })
    ));
    store
        .submit_task(app.id, Action::Start, None)
        .await
        .unwrap();
    // Once the start is queued, a second start is refused against the RUNNING it leads to...
    assert!(matches!(
        store.submit_task(app.id, Action::Start, None).await,
        Err(Error::IllegalTransition {
            from: AppState::Running,
            action: Action::Start
        })
    ));
    // ...and a stop is accepted.
    store.submit_task(app.id, Action::Stop, None).await.unwrap();
    store.check_action(app.id, Action::Start).await.unwrap();
    assert!(matches!(
        store.submit_task(app.id + 999, Action::Start, None).await,
        Err(Error::NotFound {
            entity: Entity::App,
            ..
        })
    ));
    assert!(matches!(
        store.get_task(123_456).await,
        Err(Error::NotFound {
            entity: Entity::Task,
            ..
        })
    ));
}
on_both_backends!(submit_checks_the_projected_state =>
    mysql_submit_checks_the_projected_state, sqlite_submit_checks_the_projected_state);

async fn idempotency_key_returns_the_first_task(db: &common::TestDb) {
    let store = db.store().await;
    let app = store.create_app(new_app("i")).await.unwrap();
    let first = store
        .submit_task(app.id, Action::Start, Some("k-1"))
        .await
        .unwrap();
    assert!(first.created);
    let again = store
        .submit_task(app.id, Action::Start, Some("k-1"))
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.task, first.task);
    // Same key, different request: refused, nothing inserted.
    assert!(matches!(
        store.submit_task(app.id, Action::Stop, Some("k-1")).await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        store.submit_task(app.id, Action::Start, Some("")).await,
        Err(Error::InvalidInput(_))
    ));

    // Concurrent repeats of a new key: one insert, everyone gets its task.
    let other = store.create_app(new_app("i2")).await.unwrap();
    let mut handles = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            store
                .submit_task(other.id, Action::Start, Some("k-2"))
                .await
                .unwrap()
        }));
    }
    let mut created = 0;
    let mut ids = std::collections::BTreeSet::new();
    for handle in handles {
        let submitted = handle.await.unwrap();
        created += usize::from(submitted.created);
        ids.insert(submitted.task.id);
    }
    assert_eq!((created, ids.len()), (1, 1));
    assert_eq!(
        store.apps_with_unfinished_tasks().await.unwrap(),
        vec![app.id, other.id]
    );
}
on_both_backends!(idempotency_key_returns_the_first_task =>
    mysql_idempotency_key_returns_the_first_task, sqlite_idempotency_key_returns_the_first_task);

async fn claim_run_finish_through_the_state_machine(db: &common::TestDb) {
    let store = db.store().await;
    let app = store.create_app(new_app("c")).await.unwrap();
    let lease = own(&store, "n1", app.id).await;
    store
        .submit_task(app.id, Action::Start, None)
        .await
        .unwrap();

    let (task, starting, phases) = claim_next(&store, &lease, app.id).await;
    assert_eq!(phases, [Phase::Start]);
    assert_eq!((task.status, task.attempts), (TaskStatus::Running, 1));
    assert_eq!(task.claim(), Some(lease.clone()));
    assert_eq!(starting.state, AppState::Starting);
    assert_eq!(
        store.get_app(app.id).await.unwrap().state,
        AppState::Starting
    );
    assert_eq!(store.active_app_ids().await.unwrap(), vec![app.id]);

    let handle = json!({"pid": 7, "start_time": 99});
    let (done, running) = store
        .finish_task(
            &lease,
            &task,
            &starting,
            Phase::Start,
            Outcome::Succeeded {
                handle: Some(handle.clone()),
            },
        )
        .await
        .unwrap();
    assert_eq!(done.status, TaskStatus::Succeeded);
    assert_eq!(store.get_task(task.id).await.unwrap(), done);
    assert_eq!(store.get_app(app.id).await.unwrap(), running);
    assert_eq!(
        (running.state, running.handle),
        (AppState::Running, Some(handle))
    );

    // Restart: stop then start, the app passing STOPPING then STARTING.
    store
        .submit_task(app.id, Action::Restart, None)
        .await
        .unwrap();
    let (task, stopping, phases) = claim_next(&store, &lease, app.id).await;
    assert_eq!(phases, [Phase::Stop, Phase::Start]);
    assert_eq!(stopping.state, AppState::Stopping);
    let starting = store
        .enter_phase(&lease, &stopping, Phase::Start)
        .await
        .unwrap();
    assert_eq!(store.get_app(app.id).await.unwrap(), starting);
    assert_eq!(
        (starting.state, starting.handle.clone()),
        (AppState::Starting, None)
    );

    // A failed start: task FAILED with the error, app FAILED with it as last_error.
    let (failed, app_failed) = store
        .finish_task(
            &lease,
            &task,
            &starting,
            Phase::Start,
            Outcome::Failed {
                error: "exec: no such file".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(failed.status, TaskStatus::Failed);
    assert_eq!(
        store.get_task(task.id).await.unwrap().error.as_deref(),
        Some("exec: no such file")
    );
    assert_eq!(app_failed.state, AppState::Failed);
    assert_eq!(
        store.get_app(app.id).await.unwrap().last_error.as_deref(),
        Some("exec: no such file")
    );
    assert!(store.apps_with_unfinished_tasks().await.unwrap().is_empty());
}
on_both_backends!(claim_run_finish_through_the_state_machine =>
    mysql_claim_run_finish_through_the_state_machine, sqlite_claim_run_finish_through_the_state_machine);

async fn an_illegal_action_fails_its_task_at_claim(db: &common::TestDb) {
    let store = db.store().await;
    let app = store.create_app(new_app("x")).await.unwrap();
    let lease = own(&store, "n1", app.id).await;
    store
        .submit_task(app.id, Action::Start, None)
        .await
        .unwrap();
    // Two starts racing past the early check: the second one is only caught when it runs.
    db.execute(format!(
        "INSERT INTO tasks (app_id, action, status, attempts, version, created_at, updated_at) \
         VALUES ({}, 'start', 'PENDING', 0, 1, 0, 0)",
        app.id
    ))
    .await;
    run_next_ok(&store, &lease, app.id).await;
    let second = store.next_task(app.id).await.unwrap().unwrap();
    let Claim::Finished(failed) = store.claim_task(&lease, &second, 3).await.unwrap() else {
        panic!("an illegal start must not run");
    };
    assert_eq!(failed.status, TaskStatus::Failed);
    assert_eq!(
        failed.error.as_deref(),
        Some("cannot start an app that is RUNNING")
    );
    assert_eq!(store.get_task(second.id).await.unwrap(), failed);
    assert_eq!(
        store.get_app(app.id).await.unwrap().state,
        AppState::Running
    );
}
on_both_backends!(an_illegal_action_fails_its_task_at_claim =>
    mysql_an_illegal_action_fails_its_task_at_claim, sqlite_an_illegal_action_fails_its_task_at_claim);

async fn a_new_session_fences_the_old_ones_writes(db: &common::TestDb) {
    let store = db.store().await;
    let app = store.create_app(new_app("f")).await.unwrap();
    let old = own(&store, "n1", app.id).await;
    assert_eq!(old.epoch, 1);
    store
        .submit_task(app.id, Action::Start, None)
        .await
        .unwrap();
    let (task, starting, _) = claim_next(&store, &old, app.id).await;

    // n1 loses its session and registers again: the old session's writes are refused.
    let new = store.register_node("n1").await.unwrap();
    assert_eq!(new.epoch, 2);
    let late = store
        .finish_task(
            &old,
            &task,
            &starting,
            Phase::Start,
            Outcome::Succeeded { handle: None },
        )
        .await
        .unwrap_err();
    assert!(matches!(late, Error::Fenced { epoch: 1, .. }), "{late:?}");
    assert!(matches!(
        store.check_epoch(&old).await,
        Err(Error::Fenced { .. })
    ));
    assert_eq!(
        store.get_task(task.id).await.unwrap().status,
        TaskStatus::Running
    );

    // The new session adopts the app (its own node id) and re-claims the orphaned task,
    // resuming the phase the app shows.
    assert!(matches!(
        store.adopt_app(&new, app.id, |_| true).await.unwrap(),
        Adoption::Adopted(_)
    ));
    let (again, app_now, phases) = claim_next(&store, &new, app.id).await;
    assert_eq!((again.id, again.attempts), (task.id, 2));
    assert_eq!(phases, [Phase::Start]);
    assert_eq!(app_now.state, AppState::Starting);
    let (done, _) = store
        .finish_task(
            &new,
            &again,
            &app_now,
            Phase::Start,
            Outcome::Succeeded { handle: None },
        )
        .await
        .unwrap();
    assert_eq!(done.status, TaskStatus::Succeeded);
}
on_both_backends!(a_new_session_fences_the_old_ones_writes =>
    mysql_a_new_session_fences_the_old_ones_writes, sqlite_a_new_session_fences_the_old_ones_writes);

async fn adoption_waits_for_live_holders_and_fences_dead_ones(db: &common::TestDb) {
    let store = db.store().await;
    let app = store.create_app(new_app("a")).await.unwrap();
    let a = own(&store, "a", app.id).await;
    let b = store.register_node("b").await.unwrap();

    // a is live: b must wait.
    assert_eq!(
        store.adopt_app(&b, app.id, |_| true).await.unwrap(),
        Adoption::HeldBy(a.clone())
    );
    // a releases it (ownership moved while a is alive): b takes it, a stays unfenced.
    assert!(store.release_app(&a, app.id).await.unwrap());
    assert!(!store.release_app(&a, app.id).await.unwrap());
    assert!(matches!(
        store.adopt_app(&b, app.id, |_| true).await.unwrap(),
        Adoption::Adopted(_)
    ));
    store.check_epoch(&a).await.unwrap();

    // b dies without releasing: a (membership says b is gone) takes over and fences b.
    let Adoption::Adopted(adopted) = store
        .adopt_app(&a, app.id, |node| node != "b")
        .await
        .unwrap()
    else {
        panic!("a dead holder must not block adoption");
    };
    assert_eq!(adopted.lease, Some(a.clone()));
    assert_eq!(store.get_app(app.id).await.unwrap().lease, Some(a.clone()));
    assert!(matches!(
        store.check_epoch(&b).await,
        Err(Error::Fenced { .. })
    ));
    assert_eq!(store.node_epoch("b").await.unwrap(), Some(b.epoch + 1));
    // Adopting again is a no-op.
    assert!(matches!(
        store.adopt_app(&a, app.id, |_| true).await.unwrap(),
        Adoption::Adopted(_)
    ));
    // b comes back with a new session; fencing an old epoch again changes nothing.
    let b2 = store.register_node("b").await.unwrap();
    assert_eq!(b2.epoch, b.epoch + 2);
    assert!(!store.fence_node(&b).await.unwrap());
    store.check_epoch(&b2).await.unwrap();

    store.delete_app(app.id).await.unwrap();
    assert_eq!(
        store.adopt_app(&a, app.id, |_| true).await.unwrap(),
        Adoption::Gone
    );
    assert!(matches!(
        store.register_node("").await,
        Err(Error::InvalidInput(_))
    ));
}
on_both_backends!(adoption_waits_for_live_holders_and_fences_dead_ones =>
    mysql_adoption_waits_for_live_holders_and_fences_dead_ones,
    sqlite_adoption_waits_for_live_holders_and_fences_dead_ones);

async fn claims_need_the_lease_and_give_up_after_max_attempts(db: &common::TestDb) {
    let store = db.store().await;
    let app = store.create_app(new_app("m")).await.unwrap();
    store
        .submit_task(app.id, Action::Start, None)
        .await
        .unwrap();
    let stranger = store.register_node("stranger").await.unwrap();
    let pending = store.next_task(app.id).await.unwrap().unwrap();
    assert!(matches!(
        store.claim_task(&stranger, &pending, 3).await,
        Err(Error::NotOwner { holder: None, .. })
    ));
    // Nothing was written by the refused claim.
    assert_eq!(store.get_task(pending.id).await.unwrap(), pending);

    // Three owners in turn die while running it.
    let mut lease = own(&store, "n0", app.id).await;
    claim_next(&store, &lease, app.id).await;
    for i in 1..3 {
        let next = store.register_node(&format!("n{i}")).await.unwrap();
        let dead = lease.node_id.clone();
        assert!(matches!(
            store.adopt_app(&next, app.id, |n| n != dead).await.unwrap(),
            Adoption::Adopted(_)
        ));
        let (task, _, _) = claim_next(&store, &next, app.id).await;
        assert_eq!(task.attempts, i + 1);
        lease = next;
    }
    let last = store.register_node("n3").await.unwrap();
    let dead = lease.node_id.clone();
    store.adopt_app(&last, app.id, |n| n != dead).await.unwrap();
    let task = store.next_task(app.id).await.unwrap().unwrap();
    // A stale read of the task is refused (its version moved on).
    assert!(matches!(
        store.claim_task(&last, &pending, 3).await,
        Err(Error::Conflict(_))
    ));
    let Claim::Finished(abandoned) = store.claim_task(&last, &task, 3).await.unwrap() else {
        panic!("a fourth claim must give up");
    };
    assert_eq!(abandoned.status, TaskStatus::Failed);
    assert!(
        abandoned
            .error
            .as_deref()
            .unwrap()
            .starts_with("abandoned after 3 attempts")
    );
    let app = store.get_app(app.id).await.unwrap();
    assert_eq!(app.state, AppState::Failed);
    assert_eq!(app.last_error, abandoned.error);
}
on_both_backends!(claims_need_the_lease_and_give_up_after_max_attempts =>
    mysql_claims_need_the_lease_and_give_up_after_max_attempts,
    sqlite_claims_need_the_lease_and_give_up_after_max_attempts);

async fn monitoring_marks_a_dead_running_app_failed(db: &common::TestDb) {
    let store = db.store().await;
    let app = store.create_app(new_app("mon")).await.unwrap();
    let lease = own(&store, "n1", app.id).await;
    let created = store.get_app(app.id).await.unwrap();
    assert!(matches!(
        store.mark_app_dead(&lease, &created, "gone").await,
        Err(Error::Conflict(_))
    ));
    store
        .submit_task(app.id, Action::Start, None)
        .await
        .unwrap();
    let (_, running) = run_next_ok(&store, &lease, app.id).await;
    let dead = store
        .mark_app_dead(&lease, &running, "process 42 exited")
        .await
        .unwrap();
    assert_eq!(dead.state, AppState::Failed);
    assert_eq!(store.get_app(app.id).await.unwrap(), dead);
    // A second probe acting on the stale copy loses.
    assert!(matches!(
        store.mark_app_dead(&lease, &running, "again").await,
        Err(Error::Conflict(_))
    ));
}
on_both_backends!(monitoring_marks_a_dead_running_app_failed =>
    mysql_monitoring_marks_a_dead_running_app_failed, sqlite_monitoring_marks_a_dead_running_app_failed);

async fn purge_deletes_only_old_finished_tasks(db: &common::TestDb) {
    let store = db.store().await;
    let app = store.create_app(new_app("purge")).await.unwrap();
    let lease = own(&store, "n1", app.id).await;
    store
        .submit_task(app.id, Action::Start, None)
        .await
        .unwrap();
    let (finished, _) = run_next_ok(&store, &lease, app.id).await;
    let pending = store
        .submit_task(app.id, Action::Stop, None)
        .await
        .unwrap()
        .task;
    assert_eq!(
        store.count_unfinished_tasks().await.unwrap(),
        [(TaskStatus::Pending, 1), (TaskStatus::Running, 0)]
    );
    let finished_at = finished
        .finished_at
        .expect("a finished task has finished_at");
    // Nothing finished before the cutoff: nothing goes.
    assert_eq!(
        store.purge_finished_tasks(finished_at, 100).await.unwrap(),
        0
    );
    // A cutoff after it: the finished task goes, the pending one stays.
    assert_eq!(
        store
            .purge_finished_tasks(finished_at + 1, 100)
            .await
            .unwrap(),
        1
    );
    assert!(matches!(
        store.get_task(finished.id).await,
        Err(Error::NotFound {
            entity: Entity::Task,
            ..
        })
    ));
    assert_eq!(
        store.get_task(pending.id).await.unwrap().status,
        TaskStatus::Pending
    );
    assert_eq!(store.purge_finished_tasks(i64::MAX, 100).await.unwrap(), 0);
}
on_both_backends!(purge_deletes_only_old_finished_tasks =>
    mysql_purge_deletes_only_old_finished_tasks, sqlite_purge_deletes_only_old_finished_tasks);

async fn full_scan_baseline_finds_the_same_apps(db: &common::TestDb) {
    let store = db.store().await;
    let busy = store.create_app(new_app("busy")).await.unwrap();
    let done = store.create_app(new_app("done")).await.unwrap();
    let lease = own(&store, "n1", done.id).await;
    store
        .submit_task(done.id, Action::Start, None)
        .await
        .unwrap();
    run_next_ok(&store, &lease, done.id).await;
    store
        .submit_task(busy.id, Action::Start, None)
        .await
        .unwrap();
    let indexed = store.apps_with_unfinished_tasks().await.unwrap();
    assert_eq!(indexed, [busy.id]);
    assert_eq!(
        store
            .apps_with_unfinished_tasks_by_full_scan()
            .await
            .unwrap(),
        indexed
    );
}
on_both_backends!(full_scan_baseline_finds_the_same_apps =>
    mysql_full_scan_baseline_finds_the_same_apps, sqlite_full_scan_baseline_finds_the_same_apps);

async fn concurrent_submissions_are_checked_against_each_other(db: &common::TestDb) {
    let store = db.store().await;
    let app = store.create_app(new_app("race")).await.unwrap();
    // Separate connections (separate stores), as separate nodes would use.
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(db.store().await);
    }
    let submits = (0..20).map(|i| {
        let store = stores[i % stores.len()].clone();
        async move { store.submit_task(app.id, Action::Start, None).await }
    });
    let outcomes = futures::future::join_all(submits).await;
    let accepted = outcomes.iter().filter(|o| o.is_ok()).count();
    assert_eq!(
        accepted, 1,
        "only the first of 20 concurrent starts is allowed: {outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .all(|o| o.is_ok() || matches!(o, Err(Error::IllegalTransition { .. }))),
        "the others are refused as illegal: {outcomes:?}"
    );
}
on_both_backends!(concurrent_submissions_are_checked_against_each_other =>
    mysql_concurrent_submissions_are_checked_against_each_other,
    sqlite_concurrent_submissions_are_checked_against_each_other);

// --- one backend only -----------------------------------------------------------------------

#[tokio::test]
async fn sqlite_creates_the_missing_parent_directory() {
    let db = common::TestDb::sqlite().await;
    let path = db.url.trim_start_matches("sqlite://").to_owned();
    assert!(!std::path::Path::new(&path).exists());
    let store = db.store().await;
    assert!(std::path::Path::new(&path).exists());
    store.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn unsupported_and_unreachable_urls_fail_clearly() {
    let err = Store::connect("postgres://u:secret@h/db")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnsupportedUrl(_)));
    assert!(!err.to_string().contains("secret"), "{err}");
    let err = Store::connect("mysql://root@127.0.0.1:1/nothing")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Database(_)), "{err:?}");
}

const DIGITS: &str = "(SELECT 0 d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 \
     UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 \
     UNION ALL SELECT 8 UNION ALL SELECT 9)";

/// The dispatcher's queries read through their indexes, not the whole task table.
/// Nodes of a new cluster start together on an empty database: exactly one migrates, the
/// others wait for it (sqlx's own migration lock does not wait on MariaDB).
#[tokio::test]
async fn mysql_nodes_starting_together_migrate_once() {
    let db = common::TestDb::mysql().await;
    let connects = (0..6).map(|_| Store::connect(&db.url));
    for outcome in futures::future::join_all(connects).await {
        outcome.expect("every node connects while another migrates");
    }
    db.cleanup().await;
}

#[tokio::test]
async fn mysql_dispatcher_queries_use_indexes() {
    let db = common::TestDb::mysql().await;
    let store = db.store().await;
    let app = store.create_app(new_app("e")).await.unwrap();
    // A history of 10,000 finished tasks, as a long-lived cluster has, and one unfinished.
    db.execute(format!(
        "INSERT INTO tasks (app_id, action, status, attempts, version, created_at, updated_at) \
         SELECT {} + (a.d + 10 * b.d + 100 * c.d + 1000 * e.d) % 50, 'start', 'SUCCEEDED', \
             1, 2, 0, 0 \
         FROM {DIGITS} a, {DIGITS} b, {DIGITS} c, {DIGITS} e",
        app.id
    ))
    .await;
    store
        .submit_task(app.id, Action::Start, None)
        .await
        .unwrap();
    db.execute("ANALYZE TABLE tasks".to_owned()).await;
    let mut conn = <sqlx::mysql::MySqlConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    for query in [
        "SELECT DISTINCT app_id FROM tasks WHERE status IN ('PENDING', 'RUNNING') ORDER BY app_id",
        "SELECT id FROM tasks WHERE app_id = 1 AND status IN ('PENDING', 'RUNNING') ORDER BY id LIMIT 1",
    ] {
        let plan: Vec<(Option<String>, Option<String>, Option<String>)> =
            sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN {query}")))
                .fetch_all(&mut conn)
                .await
                .unwrap()
                .into_iter()
                .map(|row: sqlx::mysql::MySqlRow| {
                    use sqlx::Row;
                    (row.get("type"), row.get("key"), row.get("rows"))
                })
                .collect();
        for (access, key, rows) in plan {
            assert_ne!(access.as_deref(), Some("ALL"), "{query}: full scan");
            assert!(key.is_some(), "{query}: no index");
            // EXPLAIN's `rows` is a VARCHAR on MariaDB.
            let rows: u64 = rows.expect("EXPLAIN gives a row estimate").parse().unwrap();
            assert!(rows < 100, "{query}: reads {rows} rows");
        }
    }
    drop(conn);
    db.cleanup().await;
}

/// The same on SQLite: every step of the plan is a SEARCH through an index, never a SCAN.
#[tokio::test]
async fn sqlite_dispatcher_queries_use_indexes() {
    let db = common::TestDb::sqlite().await;
    let store = db.store().await;
    let app = store.create_app(new_app("e")).await.unwrap();
    store
        .submit_task(app.id, Action::Start, None)
        .await
        .unwrap();
    let mut conn = <sqlx::sqlite::SqliteConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    for query in [
        "SELECT DISTINCT app_id FROM tasks WHERE status IN ('PENDING', 'RUNNING') ORDER BY app_id",
        "SELECT id FROM tasks WHERE app_id = 1 AND status IN ('PENDING', 'RUNNING') ORDER BY id LIMIT 1",
        "SELECT id FROM apps WHERE state IN ('STARTING', 'RUNNING', 'STOPPING') ORDER BY id",
    ] {
        let details: Vec<String> =
            sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {query}")))
                .fetch_all(&mut conn)
                .await
                .unwrap()
                .into_iter()
                .map(|row: sqlx::sqlite::SqliteRow| {
                    use sqlx::Row;
                    row.get::<String, _>("detail")
                })
                .collect();
        assert!(
            details.iter().any(|d| d.starts_with("SEARCH")),
            "{query}: {details:?}"
        );
        assert!(
            !details.iter().any(|d| d.starts_with("SCAN")),
            "{query}: {details:?}"
        );
    }
    drop(conn);
    store.close().await;
    db.cleanup().await;
}

/// The worker's claim with the app it holds gives what the reading claim gives; with a stale
/// app it reads again (never acts on the stale view) and still refuses what it must.
async fn claim_of_a_known_app_matches_the_reading_claim(db: &common::TestDb) {
    let store = db.store().await;
    let app = store.create_app(new_app("known")).await.unwrap();
    let lease = own(&store, "n1:1", app.id).await;
    let held = store.get_app(app.id).await.unwrap();
    let start = store
        .submit_task(app.id, Action::Start, None)
        .await
        .unwrap()
        .task;
    let Claim::Run {
        task,
        app: claimed,
        phases,
    } = store.claim_task_of(&lease, &start, &held, 3).await.unwrap()
    else {
        panic!("a start of a CREATED app runs");
    };
    assert_eq!(phases, [Phase::Start]);
    assert_eq!((task.status, task.attempts), (TaskStatus::Running, 1));
    assert_eq!(claimed.state, AppState::Starting);
    assert_eq!(
        *claimed,
        store.get_app(app.id).await.unwrap(),
        "the returned app is the stored one"
    );
    assert_eq!(
        task,
        store.get_task(start.id).await.unwrap(),
        "the returned task is the stored one"
    );
    let (done, running) = store
        .finish_task(
            &lease,
            &task,
            &claimed,
            Phase::Start,
            Outcome::Succeeded {
                handle: Some(json!({"pid": 7})),
            },
        )
        .await
        .unwrap();
    assert_eq!(done, store.get_task(start.id).await.unwrap());
    assert_eq!(running, store.get_app(app.id).await.unwrap());
    assert_eq!(running.state, AppState::Running);

    // A stale view (the CREATED app of before): the claim reads the rows again and plans the
    // stop from RUNNING, not from the stale state.
    let stop = store
        .submit_task(app.id, Action::Stop, None)
        .await
        .unwrap()
        .task;
    let Claim::Run {
        app: stopping,
        phases,
        ..
    } = store.claim_task_of(&lease, &stop, &held, 3).await.unwrap()
    else {
        panic!("a stop of a RUNNING app runs");
    };
    assert_eq!(phases, [Phase::Stop]);
    assert_eq!(stopping.state, AppState::Stopping);
    assert_eq!(*stopping, store.get_app(app.id).await.unwrap());

    // A finish against a stale app version writes nothing.
    let claimed_stop = store.get_task(stop.id).await.unwrap();
    assert!(matches!(
        store
            .finish_task(
                &lease,
                &claimed_stop,
                &running,
                Phase::Stop,
                Outcome::Succeeded { handle: None }
            )
            .await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(
        store.get_task(stop.id).await.unwrap(),
        claimed_stop,
        "nothing written"
    );

    // Another session's lease: refused, nothing written.
    let stranger = store.register_node("n2:1").await.unwrap();
    let start_again = store.get_task(stop.id).await.unwrap();
    assert!(
        store
            .claim_task_of(&stranger, &start_again, &stopping, 3)
            .await
            .is_err()
    );
    assert_eq!(store.get_task(stop.id).await.unwrap(), start_again);
    store.close().await;
}
on_both_backends!(claim_of_a_known_app_matches_the_reading_claim =>
    mysql_claim_of_a_known_app_matches_the_reading_claim,
    sqlite_claim_of_a_known_app_matches_the_reading_claim);
