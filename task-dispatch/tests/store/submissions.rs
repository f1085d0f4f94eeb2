//! Group commit (issue 15): a batch of submissions answers each one as a lone submission would,
//! and batches written concurrently through two stores (two nodes) keep every app's queue a
//! legal sequence in submission order, answer the rest 409, and use each idempotency key once.

use std::collections::{BTreeMap, BTreeSet};

use task_dispatch::state::projected;
use task_dispatch::{Action, AppState, Error, Store, Submission, Submitted};

use crate::common;
use crate::new_app;
use crate::on_both_backends;

fn submission(app_id: i64, action: Action, key: Option<&str>) -> Submission {
    Submission {
        app_id,
        action,
        idempotency_key: key.map(str::to_owned),
        params: None,
    }
}

/// The actions of the app's tasks, oldest first.
async fn queue_of(store: &Store, app: i64) -> Vec<Action> {
    let page = store.tasks_of_app(app, 1, 200).await.unwrap();
    page.items
        .into_iter()
        .rev()
        .map(|task| task.action)
        .collect()
}

/// An answer reduced to what a caller tells apart: created or repeated (with the task's action
/// and app), or the kind of refusal.
fn outcome(answer: &Result<Submitted, Error>) -> String {
    match answer {
        Ok(submitted) => format!(
            "{} {} of app {}",
            if submitted.created {
                "queued"
            } else {
                "repeat"
            },
            submitted.task.action,
            submitted.task.app_id
        ),
        Err(Error::IllegalTransition { from, action }) => format!("409 {action} from {from}"),
        Err(Error::NotFound { .. }) => "404".to_owned(),
        Err(Error::Conflict(_)) => "409 key reused".to_owned(),
        Err(Error::InvalidInput(_)) => "400".to_owned(),
        Err(other) => format!("other: {other}"),
    }
}

async fn a_batch_answers_as_lone_submissions_would(db: &common::TestDb) {
    let batched = db.store().await;
    let a = batched.create_app(new_app("a")).await.unwrap().id;
    let b = batched.create_app(new_app("b")).await.unwrap().id;
    let batch = vec![
        submission(a, Action::Start, None),
        submission(a, Action::Start, None), // 409: a start is queued
        submission(a, Action::Stop, Some("k1")),
        submission(b, Action::Stop, None), // 409: b was never started
        submission(a, Action::Stop, Some("k1")), // a repeat within the batch
        submission(b, Action::Start, Some("k1")), // the key again, another request: 409
        submission(999_999, Action::Start, None), // 404
        submission(a, Action::Restart, Some("")), // 400
        submission(b, Action::Start, Some("k2")),
        submission(a, Action::Start, None),
    ];
    let answers = batched.submit_tasks(&batch, |_| true).await;
    let got: Vec<String> = answers.iter().map(outcome).collect();
    assert_eq!(
        got,
        [
            format!("queued start of app {a}"),
            "409 start from RUNNING".to_owned(),
            format!("queued stop of app {a}"),
            "409 stop from CREATED".to_owned(),
            format!("repeat stop of app {a}"),
            "409 key reused".to_owned(),
            "404".to_owned(),
            "400".to_owned(),
            format!("queued start of app {b}"),
            format!("queued start of app {a}"),
        ]
    );
    let first_k1 = answers[2].as_ref().unwrap().task.id;
    assert_eq!(
        answers[4].as_ref().unwrap().task.id,
        first_k1,
        "the repeat answers the first task"
    );

    // The queue of `a`, in id order, is the accepted submissions in batch order.
    assert_eq!(
        queue_of(&batched, a).await,
        [Action::Start, Action::Stop, Action::Start]
    );
    // And a repeat in a later batch answers the same task.
    let again = batched
        .submit_tasks(
            &[
                submission(a, Action::Stop, Some("k1")),
                submission(b, Action::Stop, None),
            ],
            |_| true,
        )
        .await;
    assert_eq!(again[0].as_ref().unwrap().task.id, first_k1);
    assert!(!again[0].as_ref().unwrap().created);
    assert_eq!(outcome(&again[1]), format!("queued stop of app {b}"));
}
on_both_backends!(a_batch_answers_as_lone_submissions_would =>
    mysql_a_batch_answers_as_lone_submissions_would, sqlite_a_batch_answers_as_lone_submissions_would);

/// The actions one "node" submits: starts, stops and restarts of the apps in a pseudo-random
/// mix of its own, and every fourth one a keyed request that the other node sends too.
fn mixed_batches(node: u64, apps: &[i64]) -> Vec<Vec<Submission>> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ node;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..12)
        .map(|round| {
            (0..24)
                .map(|i| {
                    let actions = [Action::Start, Action::Stop, Action::Restart];
                    if i % 4 == 0 {
                        // The same keyed request from both nodes.
                        let app = apps[(round * 7 + i) % apps.len()];
                        let action = actions[(round + i) % 3];
                        let key = format!("r{round}-i{i}");
                        submission(app, action, Some(&key))
                    } else {
                        let app = apps[(next() % apps.len() as u64) as usize];
                        submission(app, actions[(next() % 3) as usize], None)
                    }
                })
                .collect()
        })
        .collect()
}

async fn concurrent_batches_keep_every_queue_legal(db: &common::TestDb) {
    let setup = db.store().await;
    let mut apps = Vec::new();
    for name in ["p", "q", "r", "s"] {
        apps.push(setup.create_app(new_app(name)).await.unwrap().id);
    }
    let nodes: Vec<Store> = vec![db.store().await, db.store().await];
    let mut runs = Vec::new();
    for (index, store) in nodes.into_iter().enumerate() {
        let batches = mixed_batches(index as u64 + 1, &apps);
        runs.push(tokio::spawn(async move {
            let mut answered = Vec::new();
            for batch in batches {
                let answers = store.submit_tasks(&batch, |_| true).await;
                answered.extend(batch.into_iter().zip(answers));
            }
            answered
        }));
    }
    let mut answered = Vec::new();
    for run in runs {
        answered.extend(run.await.unwrap());
    }

    let mut by_key: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    let mut created = 0;
    for (submission, answer) in &answered {
        match answer {
            Ok(submitted) => {
                assert_eq!(submitted.task.app_id, submission.app_id);
                assert_eq!(submitted.task.action, submission.action);
                created += usize::from(submitted.created);
                if let Some(key) = &submission.idempotency_key {
                    by_key
                        .entry(key.clone())
                        .or_default()
                        .insert(submitted.task.id);
                }
            }
            Err(Error::IllegalTransition { .. }) => {}
            Err(other) => panic!("{submission:?}: unexpected {other}"),
        }
    }
    for (key, tasks) in &by_key {
        assert_eq!(
            tasks.len(),
            1,
            "key {key} answered with several tasks: {tasks:?}"
        );
    }
    // Every app's queue, in id order, is a legal sequence from CREATED; together the queues
    // hold exactly the tasks answered as created.
    let mut queued = 0;
    for app in &apps {
        let actions = queue_of(&setup, *app).await;
        queued += actions.len();
        projected(AppState::Created, actions.iter().copied())
            .unwrap_or_else(|refused| panic!("app {app} queued {actions:?}: {refused}"));
    }
    assert_eq!(
        queued, created,
        "tasks in the table and answers that created one"
    );
    assert!(created > 4, "only {created} accepted: the mix tests little");
}
on_both_backends!(concurrent_batches_keep_every_queue_legal =>
    mysql_concurrent_batches_keep_every_queue_legal, sqlite_concurrent_batches_keep_every_queue_legal);
