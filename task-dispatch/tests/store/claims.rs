//! Claiming a task and running it through the state machine: phases, illegal actions, the
//! lease a claim needs, attempts, and the claim with a known app against the reading claim.

use serde_json::json;
use task_dispatch::{Action, AppState, Claim, Error, Outcome, Phase, TaskStatus};

use crate::common;
use crate::on_both_backends;
use crate::{claim_next, ids, new_app, own, run_next_ok, take_over};

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
    assert_eq!(ids(store.active_apps().await.unwrap()), vec![app.id]);

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
        .enter_phase(&lease, &stopping, Phase::Start, None)
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

/// A refusal (the executor did nothing and cannot tell what the app is doing) fails the task but
/// puts the app back where it was, handle and all: "unknown" is never "failed".
async fn a_refused_action_leaves_the_app_as_it_was(db: &common::TestDb) {
    let store = db.store().await;
    let app = store.create_app(new_app("r")).await.unwrap();
    let lease = own(&store, "n1", app.id).await;
    store
        .submit_task(app.id, Action::Start, None)
        .await
        .unwrap();
    let (_, running) = run_next_ok(&store, &lease, app.id).await;
    assert_eq!(running.state, AppState::Running);

    store.submit_task(app.id, Action::Stop, None).await.unwrap();
    let (task, stopping, phases) = claim_next(&store, &lease, app.id).await;
    assert_eq!(
        (phases, stopping.state),
        ([Phase::Stop].as_slice(), AppState::Stopping)
    );
    let (refused, back) = store
        .finish_task(
            &lease,
            &task,
            &stopping,
            Phase::Stop,
            Outcome::Refused {
                error: "on another host: cannot reach it".into(),
                state: AppState::Running,
            },
        )
        .await
        .unwrap();
    assert_eq!(refused.status, TaskStatus::Failed);
    assert_eq!(
        refused.error.as_deref(),
        Some("on another host: cannot reach it")
    );
    let stored = store.get_app(app.id).await.unwrap();
    assert_eq!(stored, back);
    assert_eq!(
        (stored.state, stored.handle, stored.last_error.as_deref()),
        (
            AppState::Running,
            running.handle,
            Some("on another host: cannot reach it")
        )
    );
    // Still RUNNING: it can be stopped again once the executor answers.
    store.submit_task(app.id, Action::Stop, None).await.unwrap();
}
on_both_backends!(a_refused_action_leaves_the_app_as_it_was =>
    mysql_a_refused_action_leaves_the_app_as_it_was, sqlite_a_refused_action_leaves_the_app_as_it_was);

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
    let Claim::Finished(failed) = store.claim_task(&lease, &second, 3, None).await.unwrap() else {
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
        store.claim_task(&stranger, &pending, 3, None).await,
        Err(Error::NotOwner { holder: None, .. })
    ));
    // Nothing was written by the refused claim.
    assert_eq!(store.get_task(pending.id).await.unwrap(), pending);

    // Three owners in turn die while running it.
    let mut lease = own(&store, "n0", app.id).await;
    claim_next(&store, &lease, app.id).await;
    for i in 1..3 {
        let next = take_over(&store, &lease, &format!("n{i}"), app.id).await;
        let (task, _, _) = claim_next(&store, &next, app.id).await;
        assert_eq!(task.attempts, i + 1);
        lease = next;
    }
    let last = store.register_node("n3").await.unwrap();
    let dead = lease.node_id.clone();
    store
        .adopt_app(&last, app.id, None, |n| n != dead)
        .await
        .unwrap();
    let task = store.next_task(app.id).await.unwrap().unwrap();
    // A stale read of the task is refused (its version moved on).
    assert!(matches!(
        store.claim_task(&last, &pending, 3, None).await,
        Err(Error::Conflict(_))
    ));
    let Claim::Finished(abandoned) = store.claim_task(&last, &task, 3, None).await.unwrap() else {
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
    } = store
        .claim_task_of(&lease, &start, &held, 3, None)
        .await
        .unwrap()
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
    } = store
        .claim_task_of(&lease, &stop, &held, 3, None)
        .await
        .unwrap()
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
            .claim_task_of(&stranger, &start_again, &stopping, 3, None)
            .await
            .is_err()
    );
    assert_eq!(store.get_task(stop.id).await.unwrap(), start_again);
    store.close().await;
}
on_both_backends!(claim_of_a_known_app_matches_the_reading_claim =>
    mysql_claim_of_a_known_app_matches_the_reading_claim,
    sqlite_claim_of_a_known_app_matches_the_reading_claim);
