//! Group commit end to end (issue 15): two dispatchers take mixed, concurrent submissions for
//! the same apps through their batching path (submissions in shared transactions, the owner's
//! reads, claims and outcomes in shared statements) and every per-app guarantee holds: one
//! action at a time in submission order, 409 for an action the projected state refuses, one
//! task per `Idempotency-Key`. On MariaDB and SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::fake::{FakeActions, InProcessNotifier, World};
use futures::future::join_all;
use serde_json::json;
use task_dispatch::state::projected;
use task_dispatch::{
    Action, AppId, AppState, Dispatcher, DispatcherConfig, Error, NewApp, Store, Submitted,
    TaskStatus,
};
use test_support::eventually;

const NODES: [&str; 2] = ["n1:1", "n2:1"];

async fn start_nodes(url: &str, world: &Arc<World>) -> Vec<Dispatcher> {
    let notifier = Arc::new(InProcessNotifier::default());
    let mut nodes = Vec::new();
    for id in NODES {
        let mut config = DispatcherConfig::new(id);
        config.poll_interval = Duration::from_millis(500);
        config.lease_retry_interval = Duration::from_millis(100);
        let actions = Arc::new(FakeActions {
            node: id.to_owned(),
            world: world.clone(),
        });
        let store = Store::connect(url).await.unwrap();
        let dispatcher = Dispatcher::start(config, store, actions, notifier.clone())
            .await
            .unwrap();
        notifier
            .nodes
            .lock()
            .unwrap()
            .insert(id.to_owned(), dispatcher.clone());
        nodes.push(dispatcher);
    }
    for node in &nodes {
        node.nodes_changed(NODES);
    }
    for node in &nodes {
        eventually("the node is ready", Duration::from_secs(10), || {
            let ready = node.is_ready();
            async move { ready }
        })
        .await;
    }
    nodes
}

/// One request: through which node, for which app, what, with which key.
#[derive(Debug, Clone)]
struct Request {
    node: usize,
    app: AppId,
    action: Action,
    key: Option<String>,
}

/// Sends `requests` all at once (each caller its own future) and pairs them with the answers.
async fn send(
    nodes: &[Dispatcher],
    requests: Vec<Request>,
) -> Vec<(Request, Result<Submitted, Error>)> {
    let calls = requests.iter().map(|r| {
        let node = nodes[r.node].clone();
        let r = r.clone();
        async move { node.submit(r.app, r.action, r.key.as_deref()).await }
    });
    let answers = join_all(calls).await;
    requests.into_iter().zip(answers).collect()
}

fn request(node: usize, app: AppId, action: Action, key: Option<String>) -> Request {
    Request {
        node,
        app,
        action,
        key,
    }
}

async fn concurrent_mixed_actions_keep_every_app_guarantee(db: &common::TestDb) {
    let world = World::new(11, 0, 2);
    let nodes = start_nodes(&db.url, &world).await;
    let client = db.store().await;
    let mut apps = Vec::new();
    for i in 0..6 {
        let app = client
            .create_app(NewApp {
                name: format!("gc-{i}"),
                executor: "process".into(),
                spec: json!({"command": ["sleep", "1000"]}),
                weight: 1,
            })
            .await
            .unwrap();
        apps.push(app.id);
    }
    let mut answered = Vec::new();

    // Round 1: every fresh app started twice at once, through both nodes: one start is queued,
    // the other refused (409: a start is already queued), whichever the database saw first.
    let round: Vec<Request> = apps
        .iter()
        .flat_map(|&app| [0, 1].map(|node| request(node, app, Action::Start, None)))
        .collect();
    let first = send(&nodes, round).await;
    for app in &apps {
        let answers: Vec<&Result<Submitted, Error>> = first
            .iter()
            .filter(|(r, _)| r.app == *app)
            .map(|(_, a)| a)
            .collect();
        let queued = answers.iter().filter(|a| a.is_ok()).count();
        let refused = answers
            .iter()
            .filter(|a| matches!(a, Err(Error::IllegalTransition { .. })))
            .count();
        assert_eq!(
            (queued, refused),
            (1, 1),
            "app {app}: two concurrent starts answered {answers:?}"
        );
    }
    answered.extend(first);

    // Rounds 2-4: a seeded mix of start, stop and restart through both nodes, every third one
    // keyed and sent through both nodes at once (one task for the key, whatever arrives first).
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |bound: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % bound as u64) as usize
    };
    let actions = [Action::Start, Action::Stop, Action::Restart];
    for round in 2..=4 {
        let mut requests = Vec::new();
        for i in 0..30 {
            let app = apps[next(apps.len())];
            let action = actions[next(actions.len())];
            if i % 3 == 0 {
                let key = format!("round{round}-{i}");
                for node in [0, 1] {
                    requests.push(request(node, app, action, Some(key.clone())));
                }
            } else {
                requests.push(request(next(2), app, action, None));
            }
        }
        answered.extend(send(&nodes, requests).await);
    }

    // Every answer is a task or a 409; one task per key, created once.
    let mut by_key: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    let mut created_by_key: BTreeMap<String, usize> = BTreeMap::new();
    let mut created: BTreeMap<AppId, BTreeSet<i64>> = BTreeMap::new();
    for (r, answer) in &answered {
        match answer {
            Ok(submitted) => {
                assert_eq!(
                    (submitted.task.app_id, submitted.task.action),
                    (r.app, r.action),
                    "{r:?}"
                );
                if submitted.created {
                    created.entry(r.app).or_default().insert(submitted.task.id);
                }
                if let Some(key) = &r.key {
                    by_key
                        .entry(key.clone())
                        .or_default()
                        .insert(submitted.task.id);
                    *created_by_key.entry(key.clone()).or_default() +=
                        usize::from(submitted.created);
                }
            }
            Err(Error::IllegalTransition { .. }) => {}
            Err(other) => panic!("{r:?}: unexpected {other}"),
        }
    }
    for (key, tasks) in &by_key {
        assert_eq!(
            tasks.len(),
            1,
            "key {key} answered several tasks: {tasks:?}"
        );
        assert_eq!(
            created_by_key[key], 1,
            "key {key} created {tasks:?} more than once"
        );
    }
    let refusals = answered.iter().filter(|(_, a)| a.is_err()).count();
    assert!(
        refusals > apps.len(),
        "only {refusals} refusals: the mix tests little"
    );

    // Every task runs; all succeed (the fake never fails here).
    eventually("every task finished", Duration::from_secs(60), || async {
        let counts = client.count_unfinished_tasks().await.unwrap();
        counts.iter().all(|(_, n)| *n == 0)
    })
    .await;

    let calls = world.calls();
    assert!(
        world.overlaps.lock().unwrap().is_empty(),
        "two calls at once for one app: {:?}",
        world.overlaps.lock().unwrap()
    );
    for app in &apps {
        let tasks = client.tasks_of_app(*app, 1, 200).await.unwrap().items;
        let mut tasks: Vec<_> = tasks.into_iter().collect();
        tasks.sort_by_key(|t| t.id);
        // The table holds exactly the tasks answered as created, each SUCCEEDED, and their
        // actions in id order are a legal sequence from CREATED.
        let ids: BTreeSet<i64> = tasks.iter().map(|t| t.id).collect();
        assert_eq!(
            ids,
            created.get(app).cloned().unwrap_or_default(),
            "app {app}"
        );
        for task in &tasks {
            assert_eq!(task.status, TaskStatus::Succeeded, "{task:?}");
        }
        let sequence: Vec<Action> = tasks.iter().map(|t| t.action).collect();
        let expected = projected(AppState::Created, sequence.iter().copied())
            .unwrap_or_else(|refused| panic!("app {app} queued {sequence:?}: {refused}"));
        assert_eq!(
            client.get_app(*app).await.unwrap().state,
            expected,
            "app {app}"
        );
        // The executor was called for the app's tasks in id order, one task after the other.
        let mut called: Vec<i64> = Vec::new();
        let mut app_calls: Vec<_> = calls.iter().filter(|c| c.app_id == *app).collect();
        app_calls.sort_by_key(|c| c.seq);
        for call in app_calls {
            if called.last() != Some(&call.task_id) {
                called.push(call.task_id);
            }
        }
        let in_order: Vec<i64> = tasks
            .iter()
            .filter(|t| calls.iter().any(|c| c.task_id == t.id))
            .map(|t| t.id)
            .collect();
        assert_eq!(
            called, in_order,
            "app {app}: executor calls out of task order"
        );
    }

    // The submissions went through group commit: fewer transactions than submissions.
    let batches: u64 = nodes
        .iter()
        .map(|n| n.stats().submission_batches.load(Relaxed))
        .sum();
    assert!(
        batches < answered.len() as u64,
        "{batches} transactions for {} submissions",
        answered.len()
    );
    for node in &nodes {
        node.shutdown().await;
    }
}
on_both_backends!(concurrent_mixed_actions_keep_every_app_guarantee =>
    mysql_concurrent_mixed_actions_keep_every_app_guarantee,
    sqlite_concurrent_mixed_actions_keep_every_app_guarantee);
