//! The savepoint action (added, issue 13): claimed and finished with the app RUNNING
//! throughout; a failure fails the task only; a re-claim resumes it, and giving up on it leaves
//! the app running; refused unless the app runs.

use serde_json::json;
use task_dispatch::{Action, AppState, Claim, Error, Outcome, Phase, TaskStatus};

use crate::common;
use crate::on_both_backends;
use crate::{claim_next, new_app, own, run_next_ok, take_over};

async fn a_savepoint_keeps_the_app_running(db: &common::TestDb) {
    let store = db.store().await;
    let app = store.create_app(new_app("sp")).await.unwrap();
    let lease = own(&store, "n1", app.id).await;
    let refused = store.submit_task(app.id, Action::Savepoint, None).await;
    assert!(
        matches!(
            refused,
            Err(Error::IllegalTransition {
                from: AppState::Created,
                action: Action::Savepoint
            })
        ),
        "{refused:?}"
    );
    store
        .submit_task(app.id, Action::Start, None)
        .await
        .unwrap();
    let (_, running) = run_next_ok(&store, &lease, app.id).await;
    let handle = running.handle.clone();
    assert_eq!(handle, Some(json!({"pid": 42})));

    // Success: RUNNING before, during and after, the handle kept.
    store
        .submit_task(app.id, Action::Savepoint, None)
        .await
        .unwrap();
    let (task, during, phases) = claim_next(&store, &lease, app.id).await;
    assert_eq!(phases, [Phase::Savepoint]);
    assert_eq!((during.state, &during.handle), (AppState::Running, &handle));
    let (done, after) = store
        .finish_task(
            &lease,
            &task,
            &during,
            Phase::Savepoint,
            Outcome::Succeeded { handle: None },
        )
        .await
        .unwrap();
    assert_eq!(done.status, TaskStatus::Succeeded);
    assert_eq!(store.get_app(app.id).await.unwrap(), after);
    assert_eq!((after.state, &after.handle), (AppState::Running, &handle));

    // Failure, claimed as the worker claims (with the app it holds): the task fails, the app
    // runs on with the error as its last error.
    let task = store
        .submit_task(app.id, Action::Savepoint, None)
        .await
        .unwrap()
        .task;
    let Claim::Run {
        task, app: during, ..
    } = store
        .claim_task_of(&lease, &task, &after, 3, None)
        .await
        .unwrap()
    else {
        panic!("a savepoint of a RUNNING app runs");
    };
    assert_eq!(during.state, AppState::Running);
    let (failed, after) = store
        .finish_task(
            &lease,
            &task,
            &during,
            Phase::Savepoint,
            Outcome::Failed {
                error: "Flink: savepoint failed".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(failed.status, TaskStatus::Failed);
    assert_eq!(store.get_app(app.id).await.unwrap(), after);
    assert_eq!(
        (after.state, &after.handle, after.last_error.as_deref()),
        (AppState::Running, &handle, Some("Flink: savepoint failed"))
    );

    // The owner dies while running one: the next owner resumes it; giving up on it after too
    // many attempts leaves the app RUNNING.
    store
        .submit_task(app.id, Action::Savepoint, None)
        .await
        .unwrap();
    claim_next(&store, &lease, app.id).await;
    let next = take_over(&store, &lease, "n2", app.id).await;
    let (resumed, _, phases) = claim_next(&store, &next, app.id).await;
    assert_eq!(
        (phases, resumed.attempts),
        ([Phase::Savepoint].as_slice(), 2)
    );
    let last = take_over(&store, &next, "n3", app.id).await;
    let task = store.next_task(app.id).await.unwrap().unwrap();
    let Claim::Finished(abandoned) = store.claim_task(&last, &task, 2, None).await.unwrap() else {
        panic!("a third claim with max_attempts 2 gives up");
    };
    assert_eq!(abandoned.status, TaskStatus::Failed);
    let app = store.get_app(app.id).await.unwrap();
    assert_eq!((app.state, &app.handle), (AppState::Running, &handle));
}
on_both_backends!(a_savepoint_keeps_the_app_running =>
    mysql_a_savepoint_keeps_the_app_running, sqlite_a_savepoint_keeps_the_app_running);
