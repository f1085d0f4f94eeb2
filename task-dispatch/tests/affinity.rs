//! Host affinity through the dispatcher (issue 12, finding 5): an app tied to the host that
//! started it is owned only by nodes on that host. When its node dies and no other node runs on
//! that host, the app keeps its state and its lease, nobody is fenced, and starts are refused;
//! a node that comes up on the host takes it over.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::fake::{FakeActions, World};
use serde_json::json;
use task_dispatch::{
    Action, AppId, AppState, Dispatcher, DispatcherConfig, Error, HostId, LiveNode, NewApp,
    PollOnly, Ring, RingKind, Store, TaskId, TaskStatus, Unowned,
};
use test_support::eventually;
use test_support::wait::holds_for;

async fn dispatcher(id: &str, host: &HostId, url: &str, world: &Arc<World>) -> Dispatcher {
    let mut config = DispatcherConfig::new(id);
    config.host = Some(host.clone());
    config.poll_interval = Duration::from_millis(200);
    config.monitor_interval = Duration::from_millis(100);
    config.lease_retry_interval = Duration::from_millis(100);
    let actions = Arc::new(FakeActions {
        node: id.to_owned(),
        world: world.clone(),
    });
    let store = Store::connect(url).await.unwrap();
    Dispatcher::start(config, store, actions, Arc::new(PollOnly))
        .await
        .unwrap()
}

async fn succeeded(store: &Store, task: TaskId) {
    eventually("the task succeeded", Duration::from_secs(20), || {
        let store = store.clone();
        async move {
            let task = store.get_task(task).await.unwrap();
            if task.status == TaskStatus::Succeeded {
                Ok(())
            } else {
                Err(format!("{task:?}"))
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_an_app_pinned_to_a_dead_hosts_node_waits_for_a_node_on_that_host() {
    let db = common::TestDb::mysql().await;
    let client = db.store().await;
    let (h1, h2) = (HostId::new("h1"), HostId::new("h2"));
    let ring = Ring::new(RingKind::default(), ["n1", "n2"]).unwrap();
    let mut app: Option<AppId> = None;
    while app.is_none() {
        let created = client
            .create_app(NewApp {
                name: "pinned".into(),
                executor: "process".into(),
                spec: json!({"command": ["sleep", "1000"]}),
                weight: 1,
            })
            .await
            .unwrap();
        app = (ring.owner_of_app(created.id) == Some("n1")).then_some(created.id);
    }
    let app = app.unwrap();
    let world = World::new(12, 0, 0);
    world.host_bound.store(true, Relaxed);
    let n1 = dispatcher("n1", &h1, &db.url, &world).await;
    let n2 = dispatcher("n2", &h2, &db.url, &world).await;
    let both = [
        LiveNode::new("n1", Some(h1.clone())),
        LiveNode::new("n2", Some(h2.clone())),
    ];
    n1.nodes_changed(both.clone());
    n2.nodes_changed(both.clone());
    eventually("both are ready", Duration::from_secs(10), || {
        let ready = n1.is_ready() && n2.is_ready();
        async move { ready }
    })
    .await;
    let start = n2.submit(app, Action::Start, None).await.unwrap().task;
    succeeded(&client, start.id).await;
    let running = client.get_app(app).await.unwrap();
    assert_eq!(
        running.host.as_ref(),
        Some(&h1),
        "pinned to its starter's host"
    );
    let holder = running.lease.clone().expect("n1 holds the lease");
    assert_eq!(holder.node_id, "n1");

    // n1 dies (nothing released) and the registry tells n2.
    drop(n1);
    n2.nodes_changed([both[1].clone()]);
    eventually("n2 sees n1 gone", Duration::from_secs(10), || {
        let gone = n2.live_nodes() == ["n2"];
        async move { gone }
    })
    .await;
    assert_eq!(
        n2.owner(&running),
        Err(Unowned::NoLiveNodeOnHost(h1.clone()))
    );
    holds_for(
        "n2 leaves the app to h1: no adoption, no fencing, no call, no FAILED",
        Duration::from_millis(600),
        || async {
            let now = client.get_app(app).await.unwrap();
            let epoch = client.node_epoch("n1").await.unwrap();
            let calls = world.calls().len();
            if now.state == AppState::Running
                && now.lease.as_ref() == Some(&holder)
                && epoch == Some(holder.epoch)
                && calls == 1
            {
                Ok(())
            } else {
                Err(format!("{now:?}, n1 epoch {epoch:?}, {calls} calls"))
            }
        },
    )
    .await;
    let refused = n2.submit(app, Action::Restart, None).await.unwrap_err();
    assert!(
        matches!(&refused, Error::HostUnreachable { host, .. } if *host == h1),
        "{refused:?}"
    );
    let stop = n2.submit(app, Action::Stop, None).await.unwrap().task;

    // A node comes up on h1: it owns the app, fences the dead holder and runs the stop.
    let n3 = dispatcher("n3", &h1, &db.url, &world).await;
    let now = [both[1].clone(), LiveNode::new("n3", Some(h1.clone()))];
    n2.nodes_changed(now.clone());
    n3.nodes_changed(now);
    succeeded(&client, stop.id).await;
    let stopped = client.get_app(app).await.unwrap();
    assert_eq!(
        (
            stopped.state,
            stopped.host,
            stopped.lease.map(|l| l.node_id)
        ),
        (AppState::Stopped, None, Some("n3".to_owned()))
    );
    assert_eq!(
        client
            .get_task(stop.id)
            .await
            .unwrap()
            .claimed_by
            .as_deref(),
        Some("n3")
    );
    assert!(
        world.calls().iter().all(|call| call.node != "n2"),
        "n2 never acted on the app"
    );
    for node in [n2, n3] {
        node.shutdown().await;
    }
    db.cleanup().await;
}
