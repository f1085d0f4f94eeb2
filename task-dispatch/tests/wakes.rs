//! Wake-ups are hints: a wake for an app id that does not exist, or has no unfinished task,
//! must cost the node neither memory nor a query per id (issue 12, finding 13).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::TestDb;
use common::fake::{FakeActions, World};
use serde_json::json;
use task_dispatch::{
    Action, AppId, Dispatcher, DispatcherConfig, NewApp, PollOnly, Ring, RingKind, TaskStatus,
};
use test_support::eventually;

/// How many made-up ids the burst wakes.
const MADE_UP: AppId = 2000;

/// A burst of wake-ups for ids that do not exist (half of them owned by this node in its
/// view, half by a peer) leaves the tracked set as it was, starts no worker, and costs a
/// bounded number of reads of the task index; a real task queued behind the burst still runs.
async fn made_up_wakes_are_neither_tracked_nor_read_one_by_one(db: &TestDb) {
    let store = db.store().await;
    let live = ["n1", "n2"];
    let ring = Ring::new(RingKind::default(), live).unwrap();
    let mut mine = None;
    while mine.is_none() {
        let app = store
            .create_app(NewApp {
                name: "real".into(),
                executor: "process".into(),
                spec: json!({"command": ["sleep", "1000"]}),
                weight: 1,
            })
            .await
            .unwrap();
        mine = (ring.owner_of_app(app.id) == Some("n1")).then_some(app.id);
    }
    let mine = mine.unwrap();
    let world = World::new(13, 0, 0);
    let mut config = DispatcherConfig::new("n1");
    // Only the poll at start-up and those the wakes cause: the count below is theirs.
    config.poll_interval = Duration::from_secs(3600);
    let actions = Arc::new(FakeActions {
        node: "n1".into(),
        world: world.clone(),
    });
    let dispatcher = Dispatcher::start(config, store.clone(), actions, Arc::new(PollOnly))
        .await
        .unwrap();
    dispatcher.nodes_changed(live);
    eventually("n1 is ready", Duration::from_secs(10), || {
        let ready = dispatcher.is_ready();
        async move { ready }
    })
    .await;
    let stats = dispatcher.stats();
    let (workers_before, polls_before) = (
        stats.workers_started.load(Relaxed),
        stats.polls.load(Relaxed),
    );

    let first_made_up = mine + 1_000_000;
    let made_up = first_made_up..first_made_up + MADE_UP;
    assert!(
        made_up
            .clone()
            .any(|id| ring.owner_of_app(id) == Some("n1"))
            && made_up
                .clone()
                .any(|id| ring.owner_of_app(id) == Some("n2")),
        "the made-up ids are split between the nodes"
    );
    for id in made_up {
        dispatcher.wake(id);
    }
    // Queued behind the burst (its wake follows the others): once it ran, every wake of the
    // burst has been handled.
    let start = dispatcher.submit(mine, Action::Start, None).await.unwrap();
    eventually(
        "the real start queued behind the burst ran",
        Duration::from_secs(30),
        || {
            let store = store.clone();
            async move {
                let status = store.get_task(start.task.id).await.unwrap().status;
                if status == TaskStatus::Succeeded {
                    Ok(())
                } else {
                    Err(format!("the task is {status}"))
                }
            }
        },
    )
    .await;

    assert_eq!(
        dispatcher.tracked_apps(),
        1,
        "only the real app is tracked after {MADE_UP} made-up wakes"
    );
    assert_eq!(
        stats.workers_started.load(Relaxed) - workers_before,
        1,
        "a worker for the real app only (each worker reads its app)"
    );
    let reads = stats.polls.load(Relaxed) - polls_before;
    assert!(
        reads < MADE_UP as u64 / 20,
        "{reads} reads of the task index for {MADE_UP} made-up wakes"
    );
    dispatcher.shutdown().await;
    store.close().await;
}

on_both_backends!(
    made_up_wakes_are_neither_tracked_nor_read_one_by_one =>
    mysql_made_up_wakes_are_neither_tracked_nor_read_one_by_one,
    sqlite_made_up_wakes_are_neither_tracked_nor_read_one_by_one
);
