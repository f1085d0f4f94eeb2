//! The owner's statements for many apps at once (issue 15): each request is answered as the
//! single call would answer it, stale rows and fenced sessions included, and nothing is
//! written for a request whose conditions fail.

use task_dispatch::{
    Action, Adoption, App, AppState, Claim, ClaimRequest, Error, FinishRequest, NodeLease, Outcome,
    Phase, Store, TaskStatus,
};

use crate::common;
use crate::new_app;
use crate::on_both_backends;

/// Creates `count` apps and adopts them all for one session of `node`.
async fn owned_apps(store: &Store, node: &str, count: usize) -> (NodeLease, Vec<App>) {
    let lease = store.register_node(node).await.unwrap();
    let mut apps = Vec::new();
    for i in 0..count {
        let id = store
            .create_app(new_app(&format!("b{i}")))
            .await
            .unwrap()
            .id;
        match store.adopt_app(&lease, id, None, |_| false).await.unwrap() {
            Adoption::Adopted(app) => apps.push(app),
            other => panic!("adoption of {id}: {other:?}"),
        }
    }
    (lease, apps)
}

async fn batches_answer_as_single_calls(db: &common::TestDb) {
    let store = db.store().await;
    let (lease, apps) = owned_apps(&store, "n1", 4).await;
    for app in &apps {
        store
            .submit_task(app.id, Action::Start, None)
            .await
            .unwrap();
    }
    let ids: Vec<i64> = apps.iter().map(|a| a.id).chain([999_999]).collect();
    let queues = store.next_tasks_and_more(&ids).await;
    let mut tasks = Vec::new();
    for (id, queue) in ids.iter().zip(queues) {
        let (next, more) = queue.unwrap();
        assert!(!more, "app {id}: one task queued");
        if *id == 999_999 {
            assert!(next.is_none());
        } else {
            tasks.push(next.unwrap());
        }
    }

    // Claims: two as held, one with a stale view of its app (decided afresh: claimed), one
    // with a stale view of its task (refused: the task changed since it was read).
    let mut requests: Vec<ClaimRequest> = apps
        .iter()
        .zip(&tasks)
        .map(|(app, task)| ClaimRequest {
            task: task.clone(),
            app: app.clone(),
            pin: None,
        })
        .collect();
    requests[2].app.version -= 1;
    requests[3].task.version -= 1;
    let claims = store.claim_tasks_of(&lease, &requests, 3).await;
    let mut running = Vec::new();
    for (i, claim) in claims.into_iter().enumerate() {
        match (i, claim) {
            (0..=2, Ok(Claim::Run { task, app, phases })) => {
                assert_eq!(phases, [Phase::Start]);
                assert_eq!(task.status, TaskStatus::Running);
                assert_eq!(app.state, AppState::Starting);
                assert_eq!(store.get_app(app.id).await.unwrap(), *app, "claim {i}");
                assert_eq!(store.get_task(task.id).await.unwrap(), task, "claim {i}");
                running.push((task, *app));
            }
            (3, Err(Error::Conflict(_))) => {
                let task = store.get_task(tasks[3].id).await.unwrap();
                assert_eq!(task.status, TaskStatus::Pending, "nothing written");
            }
            (i, other) => panic!("claim {i}: {other:?}"),
        }
    }

    // Outcomes: two as claimed, one whose app changed since (refused, nothing written).
    let mut finishes: Vec<FinishRequest> = running
        .iter()
        .map(|(task, app)| FinishRequest {
            task: task.clone(),
            app: app.clone(),
            phase: Phase::Start,
            outcome: Outcome::Succeeded {
                handle: Some(serde_json::json!({"pid": app.id})),
            },
        })
        .collect();
    finishes[1].app.version += 5;
    let done = store.finish_tasks(&lease, &finishes).await;
    for (i, answer) in done.into_iter().enumerate() {
        let (task_id, app_id) = (finishes[i].task.id, finishes[i].app.id);
        match (i, answer) {
            (0 | 2, Ok((task, app))) => {
                assert_eq!(task.status, TaskStatus::Succeeded);
                assert_eq!(app.state, AppState::Running);
                assert_eq!(store.get_task(task_id).await.unwrap(), task, "outcome {i}");
                assert_eq!(store.get_app(app_id).await.unwrap(), app, "outcome {i}");
            }
            (1, Err(Error::Conflict(_))) => {
                let task = store.get_task(task_id).await.unwrap();
                assert_eq!(task.status, TaskStatus::Running, "nothing written");
                let app = store.get_app(app_id).await.unwrap();
                assert_eq!(app.state, AppState::Starting, "nothing written");
            }
            (i, other) => panic!("outcome {i}: {other:?}"),
        }
    }
}
on_both_backends!(batches_answer_as_single_calls =>
    mysql_batches_answer_as_single_calls, sqlite_batches_answer_as_single_calls);

async fn a_fenced_session_writes_nothing_in_a_batch(db: &common::TestDb) {
    let store = db.store().await;
    let (old, apps) = owned_apps(&store, "n1", 3).await;
    for app in &apps {
        store
            .submit_task(app.id, Action::Start, None)
            .await
            .unwrap();
    }
    let ids: Vec<i64> = apps.iter().map(|a| a.id).collect();
    let tasks: Vec<_> = store
        .next_tasks_and_more(&ids)
        .await
        .into_iter()
        .map(|queue| queue.unwrap().0.unwrap())
        .collect();
    // The node registers again: the old session is fenced.
    let new = store.register_node("n1").await.unwrap();
    let requests: Vec<ClaimRequest> = apps
        .iter()
        .zip(&tasks)
        .map(|(app, task)| ClaimRequest {
            task: task.clone(),
            app: app.clone(),
            pin: None,
        })
        .collect();
    for (i, claim) in store
        .claim_tasks_of(&old, &requests, 3)
        .await
        .into_iter()
        .enumerate()
    {
        assert!(
            matches!(claim, Err(Error::Fenced { .. })),
            "claim {i} by a fenced session: {claim:?}"
        );
    }
    for task in &tasks {
        let now = store.get_task(task.id).await.unwrap();
        assert_eq!(now, *task, "a fenced claim wrote nothing");
    }
    // The new session adopts the apps together (ours, from an older epoch) and finds a
    // deleted one gone.
    let adopted = store
        .adopt_apps(&new, &[ids[0], ids[1], 999_999], None, |_| true)
        .await;
    assert!(matches!(&adopted[0], Ok(Adoption::Adopted(app)) if app.lease.as_ref() == Some(&new)));
    assert!(matches!(&adopted[1], Ok(Adoption::Adopted(app)) if app.lease.as_ref() == Some(&new)));
    assert!(matches!(adopted[2], Ok(Adoption::Gone)), "{:?}", adopted[2]);
    assert_eq!(
        store.get_app(ids[0]).await.unwrap().lease,
        Some(new.clone())
    );
}
on_both_backends!(a_fenced_session_writes_nothing_in_a_batch =>
    mysql_a_fenced_session_writes_nothing_in_a_batch, sqlite_a_fenced_session_writes_nothing_in_a_batch);
