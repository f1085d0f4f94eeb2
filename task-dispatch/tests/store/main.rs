//! Store tests, each on MariaDB (`mysql_*`) and SQLite (`sqlite_*`), each in its own database.
//!
//! | module | what |
//! |---|---|
//! | `apps` | apps and the submission of tasks |
//! | `claims` | claiming and running tasks through the state machine |
//! | `hosts` | host affinity: the host an app's copy may run on, and what it refuses |
//! | `leases` | node sessions and app leases, fencing |
//! | `maintenance` | monitoring, the purge, the baseline's full scan |
//! | `owner_batches` | the owner's reads, adoptions, claims and outcomes of many apps at once |
//! | `savepoints` | the savepoint action: the app stays RUNNING, whatever the outcome |
//! | `schema` | connecting, migrations, indexes |
//! | `submissions` | group commit: batches answer as lone submissions, concurrent batches stay legal |
//! | `views` | filtered pages, task history, counts by state, the change feed |
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;

mod apps;
mod claims;
mod hosts;
mod leases;
mod maintenance;
mod owner_batches;
mod savepoints;
mod schema;
mod submissions;
mod views;

use serde_json::json;
use task_dispatch::{
    Adoption, AppPlacement, Claim, NewApp, NodeLease, Outcome, Phase, Store, Task,
};

pub(crate) fn new_app(name: &str) -> NewApp {
    NewApp {
        name: name.to_owned(),
        executor: "process".to_owned(),
        spec: json!({"command": ["sh", "-c", "sleep 1000"]}),
        weight: 1,
    }
}

/// The app ids of a read that answers placements.
pub(crate) fn ids(placements: Vec<AppPlacement>) -> Vec<i64> {
    placements
        .into_iter()
        .map(|placement| placement.id)
        .collect()
}

/// Registers `node`, adopts `app_id` for it (nobody else live) and returns its lease.
pub(crate) async fn own(store: &Store, node: &str, app_id: i64) -> NodeLease {
    let lease = store.register_node(node).await.unwrap();
    match store
        .adopt_app(&lease, app_id, None, |_| false)
        .await
        .unwrap()
    {
        Adoption::Adopted(_) => lease,
        other => panic!("adoption of {app_id} by {node}: {other:?}"),
    }
}

/// `node` registers and adopts app `app_id` from `dead`, its holder taken for dead; panics
/// unless it adopts.
pub(crate) async fn take_over(
    store: &Store,
    dead: &NodeLease,
    node: &str,
    app_id: i64,
) -> NodeLease {
    let next = store.register_node(node).await.unwrap();
    let dead = dead.node_id.clone();
    assert!(matches!(
        store
            .adopt_app(&next, app_id, None, |n| n != dead)
            .await
            .unwrap(),
        Adoption::Adopted(_)
    ));
    next
}

/// Claims the app's next task and expects it to be runnable.
pub(crate) async fn claim_next(
    store: &Store,
    lease: &NodeLease,
    app_id: i64,
) -> (Task, task_dispatch::App, &'static [Phase]) {
    let task = store
        .next_task(app_id)
        .await
        .unwrap()
        .expect("a task to claim");
    match store.claim_task(lease, &task, 3, None).await.unwrap() {
        Claim::Run { task, app, phases } => (task, *app, phases),
        Claim::Finished(task) => panic!("task finished at claim: {task:?}"),
    }
}

/// Runs the app's next task through every phase with success.
pub(crate) async fn run_next_ok(
    store: &Store,
    lease: &NodeLease,
    app_id: i64,
) -> (Task, task_dispatch::App) {
    let (task, mut app, phases) = claim_next(store, lease, app_id).await;
    for (i, phase) in phases.iter().enumerate() {
        if i > 0 {
            app = store.enter_phase(lease, &app, *phase, None).await.unwrap();
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
