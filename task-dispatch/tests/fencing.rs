//! Executor side effects are fenced (issue 12, finding 2): a node acts on an app only while its
//! session is current, checked right before every executor call, and a task is never claimed
//! to wait for an action permit afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::fake::{FakeActions, World};
use serde_json::json;
use task_dispatch::{
    Action, AppId, Dispatcher, DispatcherConfig, NewApp, NodeLease, Phase, PollOnly, Store, TaskId,
    TaskStatus,
};
use test_support::eventually;
use test_support::wait::holds_for;

async fn create_app(store: &Store, name: &str) -> AppId {
    store
        .create_app(NewApp {
            name: name.into(),
            executor: "process".into(),
            spec: json!({"command": ["sleep", "1000"]}),
            weight: 1,
        })
        .await
        .unwrap()
        .id
}

async fn status(store: &Store, task: TaskId) -> TaskStatus {
    store.get_task(task).await.unwrap().status
}

/// n1 has one action permit, taken by a slow start of app A. A start of app B queues behind it:
/// B's task stays PENDING (nothing is claimed to wait for a permit). Meanwhile n1's session is
/// fenced, as a peer that believed n1 dead would. When A's call returns, n1 never starts B
/// under the fenced epoch: B runs only after n1 registered again, under its new epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_a_session_fenced_while_its_task_waited_for_a_permit_never_acts() {
    let db = common::TestDb::mysql().await;
    let client = db.store().await;
    let (a, b) = (
        create_app(&client, "a").await,
        create_app(&client, "b").await,
    );
    let world = World::new(2, 0, 0);
    let mut config = DispatcherConfig::new("n1");
    config.max_parallel_actions = 1;
    config.lease_retry_interval = Duration::from_millis(100);
    let actions = Arc::new(FakeActions {
        node: "n1".into(),
        world: world.clone(),
    });
    let n1 = Dispatcher::start(config, db.store().await, actions, Arc::new(PollOnly))
        .await
        .unwrap();
    n1.nodes_changed(["n1"]);
    eventually("n1 is ready", Duration::from_secs(10), || {
        let ready = n1.is_ready();
        async move { ready }
    })
    .await;

    world.hold(a);
    n1.submit(a, Action::Start, None).await.unwrap();
    eventually(
        "n1 is starting A with its only permit",
        Duration::from_secs(10),
        || {
            let busy = world.in_flight_on("n1").contains(&a);
            async move { busy }
        },
    )
    .await;
    let reads = n1.stats().task_queue_reads.load(Relaxed);
    let start_b = n1.submit(b, Action::Start, None).await.unwrap().task;
    eventually("B's worker found its task", Duration::from_secs(10), || {
        let read = n1.stats().task_queue_reads.load(Relaxed) > reads;
        async move { read }
    })
    .await;
    holds_for(
        "B's task waits for the permit unclaimed",
        Duration::from_millis(300),
        || async {
            match status(&client, start_b.id).await {
                TaskStatus::Pending => Ok(()),
                other => Err(format!("B's task is {other} while A holds the only permit")),
            }
        },
    )
    .await;

    let fenced = client.node_epoch("n1").await.unwrap().unwrap();
    let lease = NodeLease {
        node_id: "n1".into(),
        epoch: fenced,
    };
    assert!(client.fence_node(&lease).await.unwrap(), "n1 fenced");
    world.release(a);
    eventually(
        "B started once n1 acts again",
        Duration::from_secs(20),
        || {
            let client = client.clone();
            async move {
                match status(&client, start_b.id).await {
                    TaskStatus::Succeeded => Ok(()),
                    other => Err(format!("B's task is {other}")),
                }
            }
        },
    )
    .await;
    let starts_of_b: Vec<Option<i64>> = world
        .calls()
        .iter()
        .filter(|call| call.app_id == b && call.phase == Phase::Start)
        .map(|call| call.epoch)
        .collect();
    assert_eq!(starts_of_b.len(), 1, "B started once: {starts_of_b:?}");
    assert!(
        starts_of_b[0].is_some_and(|epoch| epoch > fenced),
        "B started under the fenced epoch {fenced}: {starts_of_b:?}"
    );
    let task = client.get_task(start_b.id).await.unwrap();
    assert_eq!(task.attempts, 1, "claimed once, after the permit: {task:?}");
    n1.shutdown().await;
    db.cleanup().await;
}
