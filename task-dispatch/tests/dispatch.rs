//! Dispatchers in one process against a real database, each simulated node on a runtime of its
//! own so that it can be killed (its tasks dropped on the floor) like a crashed process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::fake::{FakeActions, InProcessNotifier, World};
use serde_json::json;
use task_dispatch::{
    Action, AppId, AppState, Dispatcher, DispatcherConfig, Error, NewApp, Phase, Store, TaskId,
    TaskStatus,
};
use test_support::eventually;
use test_support::wait::holds_for;

/// One simulated console node: a dispatcher on a runtime of its own.
struct Node {
    id: String,
    runtime: Option<tokio::runtime::Runtime>,
    dispatcher: Dispatcher,
}

impl Node {
    async fn start(
        id: &str,
        url: &str,
        world: &Arc<World>,
        notifier: &Arc<InProcessNotifier>,
    ) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(id)
            .enable_all()
            .build()
            .unwrap();
        let mut config = DispatcherConfig::new(id);
        config.poll_interval = Duration::from_millis(500);
        config.monitor_interval = Duration::from_millis(200);
        config.lease_retry_interval = Duration::from_millis(100);
        let actions = Arc::new(FakeActions {
            node: id.to_owned(),
            world: world.clone(),
        });
        let (url, notifier_dyn) = (url.to_owned(), notifier.clone());
        let dispatcher = runtime
            .spawn(async move {
                let store = Store::connect(&url).await.unwrap();
                Dispatcher::start(config, store, actions, notifier_dyn)
                    .await
                    .unwrap()
            })
            .await
            .unwrap();
        notifier
            .nodes
            .lock()
            .unwrap()
            .insert(id.to_owned(), dispatcher.clone());
        Self {
            id: id.to_owned(),
            runtime: Some(runtime),
            dispatcher,
        }
    }

    /// Runs a future on this node's runtime (as its HTTP handlers would).
    async fn run<F, T>(&self, future: F) -> T
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.runtime.as_ref().unwrap().spawn(future).await.unwrap()
    }

    /// Kills the node: its runtime stops and every task on it is dropped, mid-call or not.
    async fn kill(mut self, notifier: &InProcessNotifier) {
        notifier.nodes.lock().unwrap().remove(&self.id);
        let runtime = self.runtime.take().unwrap();
        tokio::task::spawn_blocking(move || runtime.shutdown_timeout(Duration::from_secs(10)))
            .await
            .unwrap();
    }

    async fn stop(self) {
        let dispatcher = self.dispatcher.clone();
        self.run(async move { dispatcher.shutdown().await }).await;
        let runtime = self.runtime;
        tokio::task::spawn_blocking(move || drop(runtime))
            .await
            .unwrap();
    }
}

/// Feeds every node the live set, as their registry would, and waits until they all see it.
async fn set_live(nodes: &[&Node], live: &[&str]) {
    for node in nodes {
        node.dispatcher.nodes_changed(live.iter().copied());
    }
    let mut expected: Vec<String> = live.iter().map(|s| (*s).to_owned()).collect();
    expected.sort();
    for node in nodes {
        eventually(
            "the node sees the new live set",
            Duration::from_secs(10),
            || {
                let seen = node.dispatcher.live_nodes() == expected;
                async move { seen }
            },
        )
        .await;
    }
}

async fn create_apps(store: &Store, count: usize) -> Vec<AppId> {
    let mut ids = Vec::new();
    for i in 0..count {
        let app = store
            .create_app(NewApp {
                name: format!("app-{i}"),
                executor: "process".into(),
                spec: json!({"command": ["sleep", "1000"]}),
                weight: 1,
            })
            .await
            .unwrap();
        ids.push(app.id);
    }
    ids
}

async fn unfinished_tasks(url: &str) -> i64 {
    use sqlx::Connection;
    let mut conn = sqlx::mysql::MySqlConnection::connect(url).await.unwrap();
    sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE status IN ('PENDING', 'RUNNING')")
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

async fn app_state(store: &Store, app: AppId) -> AppState {
    store.get_app(app).await.unwrap().state
}

async fn task_status(store: &Store, task: TaskId) -> TaskStatus {
    store.get_task(task).await.unwrap().status
}

/// The acceptance test of issue 5: 4 dispatchers on one MariaDB database, 2,000 tasks over 200
/// apps with random start/stop/restart, one dispatcher killed mid-run (and, beyond the issue,
/// a fifth joining later, so that apps also move away from live, busy owners).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_four_dispatchers_run_2000_tasks_while_one_is_killed() {
    let db = common::TestDb::mysql().await;
    let client = db.store().await;
    let apps = create_apps(&client, 200).await;
    // 5% of executor calls fail; calls take 0 to 20 ms.
    let world = World::new(0x5eed_1234, 50, 20);
    let notifier = Arc::new(InProcessNotifier::default());
    let ids = ["n1", "n2", "n3", "n4"];
    let mut nodes = Vec::new();
    for id in ids {
        nodes.push(Node::start(id, &db.url, &world, &notifier).await);
    }
    set_live(&nodes.iter().collect::<Vec<_>>(), &ids).await;

    let mut accepted: Vec<TaskId> = Vec::new();
    let mut refused = 0;
    let mut killed = false;
    let mut killed_in_flight: Vec<AppId> = Vec::new();
    while accepted.len() < 2000 {
        // Half-way, kill n2 in the middle of an executor call: one of its apps is held (its
        // calls do not return) and given a task, and n2 dies while running it.
        if accepted.len() >= 1000 && !killed {
            let target = apps
                .iter()
                .copied()
                .find(|&app| nodes[1].dispatcher.owner_of(app).as_deref() == Some("n2"))
                .expect("n2 owns some of 200 apps");
            world.hold(target);
            let d = nodes[0].dispatcher.clone();
            let task = nodes[0]
                .run(async move {
                    for action in [Action::Stop, Action::Start, Action::Restart] {
                        if let Ok(submitted) = d.submit(target, action, None).await {
                            return submitted.task.id;
                        }
                    }
                    panic!("app {target} accepts neither stop, start nor restart");
                })
                .await;
            accepted.push(task);
            eventually(
                "n2 is acting on the held app",
                Duration::from_secs(30),
                || {
                    let busy = world.in_flight_on("n2").contains(&target);
                    async move { busy }
                },
            )
            .await;
            let n2 = nodes.remove(1);
            n2.kill(&notifier).await;
            world.release(target);
            assert!(
                world.in_flight_on("n2").is_empty(),
                "a killed node's calls are dropped"
            );
            killed_in_flight = world
                .calls()
                .iter()
                .filter(|c| c.node == "n2" && !c.completed)
                .map(|c| c.app_id)
                .collect();
            assert!(killed_in_flight.contains(&target));
            set_live(&nodes.iter().collect::<Vec<_>>(), &["n1", "n3", "n4"]).await;
            killed = true;
            continue;
        }
        // At three quarters, n5 joins: apps move away from nodes that may be acting on them,
        // which must finish and release before n5 takes over.
        if accepted.len() >= 1500 && killed && nodes.len() == 3 {
            nodes.push(Node::start("n5", &db.url, &world, &notifier).await);
            set_live(&nodes.iter().collect::<Vec<_>>(), &["n1", "n3", "n4", "n5"]).await;
        }
        // A burst of 1 to 5 random actions for one app, back to back, so that tasks queue up
        // behind the one running. Some carry an idempotency key and are sent twice.
        let app = apps[world.random(apps.len() as u64) as usize];
        let burst: Vec<(Action, Option<String>)> = (0..=world.random(5))
            .map(|i| {
                let action = match world.random(10) {
                    0..=4 => Action::Start,
                    5..=8 => Action::Stop,
                    _ => Action::Restart,
                };
                let key = (world.random(10) == 0).then(|| format!("key-{}-{i}", accepted.len()));
                (action, key)
            })
            .collect();
        let via = &nodes[world.random(nodes.len() as u64) as usize];
        let dispatcher = via.dispatcher.clone();
        let results = via
            .run(async move {
                let mut results = Vec::new();
                for (action, key) in burst {
                    let first = dispatcher.submit(app, action, key.as_deref()).await;
                    if let (Ok(first), Some(key)) = (&first, &key) {
                        let again = dispatcher.submit(app, action, Some(key)).await.unwrap();
                        assert_eq!((again.task.id, again.created), (first.task.id, false));
                    }
                    results.push(first);
                }
                results
            })
            .await;
        for result in results {
            match result {
                Ok(submitted) => accepted.push(submitted.task.id),
                Err(Error::IllegalTransition { .. }) => refused += 1,
                Err(e) => panic!("submit failed: {e}"),
            }
        }
    }
    assert!(killed);

    eventually("every task is finished", Duration::from_secs(300), || {
        let url = db.url.clone();
        async move { unfinished_tasks(&url).await == 0 }
    })
    .await;

    // 1. Every task ended SUCCEEDED or FAILED, a failure with its reason.
    let mut tasks = BTreeMap::new();
    for &id in &accepted {
        let task = client.get_task(id).await.unwrap();
        match task.status {
            TaskStatus::Succeeded => {}
            TaskStatus::Failed => assert!(
                task.error.as_deref().is_some_and(|e| !e.trim().is_empty()),
                "task {id} failed without a reason"
            ),
            other => panic!("task {id} ended {other}"),
        }
        tasks.insert(id, task);
    }
    // 2. No app ever had two executor calls at once, across all nodes.
    let overlaps = world.overlaps.lock().unwrap().clone();
    assert!(overlaps.is_empty(), "concurrent actions: {overlaps:#?}");
    // 3. Per app, executor calls happened in task-id order (= submission order).
    let calls = world.calls();
    let mut last_task: BTreeMap<AppId, TaskId> = BTreeMap::new();
    let mut sorted = calls.clone();
    sorted.sort_by_key(|c| c.seq);
    for call in &sorted {
        let last = last_task.entry(call.app_id).or_default();
        assert!(
            call.task_id >= *last,
            "app {}: task {} ran after task {}",
            call.app_id,
            call.task_id,
            last
        );
        *last = call.task_id;
    }
    // Every task that succeeded completed each of its phases; the others ran at most up to
    // the failing call.
    for (id, task) in &tasks {
        let phases: BTreeSet<Phase> = calls
            .iter()
            .filter(|c| c.task_id == *id && c.completed && !c.failed)
            .map(|c| c.phase)
            .collect();
        if task.status == TaskStatus::Succeeded {
            let expected: BTreeSet<Phase> = match task.action {
                Action::Start => [Phase::Start].into(),
                Action::Stop => [Phase::Stop].into(),
                Action::Restart => [Phase::Stop, Phase::Start].into(),
                Action::Savepoint => [Phase::Savepoint].into(),
            };
            assert_eq!(phases, expected, "task {id}");
        }
    }
    // 4. The calls the killed node had in flight were run again by the new owners.
    for app in &killed_in_flight {
        let orphan = calls
            .iter()
            .find(|c| c.node == "n2" && c.app_id == *app && !c.completed)
            .expect("the killed call is recorded as never completed");
        let task = &tasks[&orphan.task_id];
        assert!(
            task.attempts >= 2,
            "task {} was not claimed again: {task:?}",
            task.id
        );
        assert!(
            calls.iter().any(|c| c.task_id == task.id && c.node != "n2"),
            "task {} never ran elsewhere",
            task.id
        );
    }
    // 5. The app states agree with the world: a RUNNING app runs, a STOPPED one does not.
    for &app in &apps {
        let state = app_state(&client, app).await;
        match state {
            AppState::Running => {
                assert!(world.is_running(app), "app {app} RUNNING but not running")
            }
            AppState::Stopped | AppState::Created => {
                assert!(!world.is_running(app), "app {app} {state} but running")
            }
            AppState::Failed => {}
            other => panic!("app {app} left {other}"),
        }
    }
    let per_node: BTreeMap<String, usize> = calls.iter().fold(BTreeMap::new(), |mut m, c| {
        *m.entry(c.node.clone()).or_default() += 1;
        m
    });
    eprintln!(
        "accepted {} tasks ({} refused at submit), {} executor calls per node {per_node:?}, \
         killed mid-call on apps {killed_in_flight:?}",
        accepted.len(),
        refused,
        calls.len()
    );
    for node in nodes {
        node.stop().await;
    }
    db.cleanup().await;
}

/// A standalone node on SQLite: start, monitor finds the app dead, restart, stop, delete.
#[tokio::test]
async fn sqlite_standalone_node_runs_actions_and_monitors() {
    let db = common::TestDb::sqlite().await;
    let store = db.store().await;
    let world = World::new(7, 0, 5);
    let mut config = DispatcherConfig::new("solo:10000");
    config.monitor_interval = Duration::from_millis(50);
    let actions = Arc::new(FakeActions {
        node: "solo:10000".into(),
        world: world.clone(),
    });
    let dispatcher = Dispatcher::start(
        config,
        store.clone(),
        actions,
        Arc::new(task_dispatch::PollOnly),
    )
    .await
    .unwrap();
    assert!(!dispatcher.is_ready());
    dispatcher.nodes_changed(["solo:10000"]);
    eventually("the node is ready", Duration::from_secs(5), || {
        let ready = dispatcher.is_ready();
        async move { ready }
    })
    .await;
    let app = create_apps(&store, 1).await[0];
    assert_eq!(dispatcher.owner_of(app).as_deref(), Some("solo:10000"));

    let start = dispatcher
        .submit(app, Action::Start, None)
        .await
        .unwrap()
        .task;
    eventually("the start succeeded", Duration::from_secs(10), || async {
        task_status(&store, start.id).await == TaskStatus::Succeeded
    })
    .await;
    let running = store.get_app(app).await.unwrap();
    assert_eq!(running.state, AppState::Running);
    assert_eq!(
        running.handle,
        Some(json!({"pid": 1000 + app, "node": "solo:10000"}))
    );
    assert_eq!(
        running.lease.as_ref().map(|l| l.node_id.as_str()),
        Some("solo:10000")
    );

    // At rest the worker probes its running app (every 50 ms here) without reading the task
    // queue: idle load is one poll per interval per node, whatever the number of apps.
    let reads_before = dispatcher.stats().task_queue_reads.load(Relaxed);
    let probes_before = world.probes_by("solo:10000");
    eventually("ten more probes", Duration::from_secs(10), || {
        let probes = world.probes_by("solo:10000");
        async move { probes >= probes_before + 10 }
    })
    .await;
    assert_eq!(
        dispatcher.stats().task_queue_reads.load(Relaxed),
        reads_before,
        "monitor ticks read the task queue"
    );

    // A savepoint runs with the app RUNNING, and it stays so with its handle.
    let savepoint = dispatcher
        .submit(app, Action::Savepoint, None)
        .await
        .unwrap()
        .task;
    eventually(
        "the savepoint succeeded",
        Duration::from_secs(10),
        || async { task_status(&store, savepoint.id).await == TaskStatus::Succeeded },
    )
    .await;
    let after = store.get_app(app).await.unwrap();
    assert_eq!(
        (after.state, &after.handle),
        (AppState::Running, &running.handle)
    );

    // The process dies: the monitor marks the app FAILED with the reason.
    world.crash(app);
    eventually(
        "the monitor found the app dead",
        Duration::from_secs(10),
        || async { app_state(&store, app).await == AppState::Failed },
    )
    .await;
    let failed = store.get_app(app).await.unwrap();
    assert_eq!(
        failed.last_error,
        Some(format!("process of app {app} is gone"))
    );
    assert_eq!(
        dispatcher
            .stats()
            .apps_found_dead
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    let restart = dispatcher
        .submit(app, Action::Restart, None)
        .await
        .unwrap()
        .task;
    let stop = dispatcher
        .submit(app, Action::Stop, None)
        .await
        .unwrap()
        .task;
    eventually("restart and stop ran", Duration::from_secs(10), || async {
        task_status(&store, stop.id).await == TaskStatus::Succeeded
    })
    .await;
    assert_eq!(task_status(&store, restart.id).await, TaskStatus::Succeeded);
    assert_eq!(app_state(&store, app).await, AppState::Stopped);
    assert!(!world.is_running(app));
    let phases: Vec<(TaskId, Phase)> = world.calls().iter().map(|c| (c.task_id, c.phase)).collect();
    assert_eq!(
        phases,
        [
            (start.id, Phase::Start),
            (savepoint.id, Phase::Savepoint),
            (restart.id, Phase::Stop),
            (restart.id, Phase::Start),
            (stop.id, Phase::Stop)
        ]
    );
    // An action refused early: 409 material.
    assert!(matches!(
        dispatcher.submit(app, Action::Stop, None).await,
        Err(Error::IllegalTransition {
            from: AppState::Stopped,
            action: Action::Stop
        })
    ));
    dispatcher.shutdown().await;
    assert_eq!(
        store.get_app(app).await.unwrap().lease,
        None,
        "shutdown releases leases"
    );
    store.delete_app(app).await.unwrap();
    store.close().await;
    db.cleanup().await;
}

/// A node joins: the apps that move to it are adopted as they are (no restart), monitored by
/// it, and their next tasks run there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_a_joining_node_adopts_running_apps_without_restarting_them() {
    let db = common::TestDb::mysql().await;
    let client = db.store().await;
    let apps = create_apps(&client, 30).await;
    let world = World::new(11, 0, 2);
    let notifier = Arc::new(InProcessNotifier::default());
    let n1 = Node::start("n1", &db.url, &world, &notifier).await;
    let n2 = Node::start("n2", &db.url, &world, &notifier).await;
    set_live(&[&n1, &n2], &["n1", "n2"]).await;
    for &app in &apps {
        let d = n1.dispatcher.clone();
        n1.run(async move { d.submit(app, Action::Start, None).await.unwrap() })
            .await;
    }
    eventually("every app runs", Duration::from_secs(30), || async {
        let mut all = true;
        for &app in &apps {
            all &= app_state(&client, app).await == AppState::Running;
        }
        all
    })
    .await;

    let n3 = Node::start("n3", &db.url, &world, &notifier).await;
    set_live(&[&n1, &n2, &n3], &["n1", "n2", "n3"]).await;
    let moved: Vec<AppId> = apps
        .iter()
        .copied()
        .filter(|&app| n3.dispatcher.owner_of(app).as_deref() == Some("n3"))
        .collect();
    assert!(!moved.is_empty(), "some apps move to the new node");
    eventually(
        "n3 holds the leases of its apps",
        Duration::from_secs(30),
        || async {
            let mut all = true;
            for &app in &moved {
                let lease = client.get_app(app).await.unwrap().lease;
                all &= lease.is_some_and(|l| l.node_id == "n3");
            }
            all
        },
    )
    .await;
    let probes = world.probes_by("n3");
    eventually("n3 monitors them", Duration::from_secs(10), || {
        let more = world.probes_by("n3") > probes;
        async move { more }
    })
    .await;
    for &app in &moved {
        assert_eq!(
            world.starts_by("n3", app),
            0,
            "app {app} was restarted on adoption"
        );
        assert_eq!(app_state(&client, app).await, AppState::Running);
    }
    // Only the moved apps changed hands: the others kept their lease holders.
    for &app in apps.iter().filter(|a| !moved.contains(a)) {
        let holder = client.get_app(app).await.unwrap().lease.unwrap().node_id;
        assert_eq!(n1.dispatcher.owner_of(app), Some(holder));
    }
    // The next task of a moved app runs on n3.
    let app = moved[0];
    let d = n1.dispatcher.clone();
    let stop = n1
        .run(async move { d.submit(app, Action::Stop, None).await.unwrap() })
        .await
        .task;
    eventually("the stop ran", Duration::from_secs(10), || async {
        task_status(&client, stop.id).await == TaskStatus::Succeeded
    })
    .await;
    let ran_on: Vec<String> = world
        .calls()
        .into_iter()
        .filter(|c| c.task_id == stop.id)
        .map(|c| c.node)
        .collect();
    assert_eq!(ran_on, ["n3"]);
    for node in [n1, n2, n3] {
        node.stop().await;
    }
    db.cleanup().await;
}

/// Session loss: the node drops its in-flight call at once; a peer takes the app over (fencing
/// the old session) and runs the task again; the node comes back with a new epoch and adopts
/// the app again without restarting it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_a_node_that_loses_its_session_stops_at_once_and_a_peer_takes_over() {
    let db = common::TestDb::mysql().await;
    let client = db.store().await;
    let apps = create_apps(&client, 10).await;
    let world = World::new(5, 0, 0);
    let notifier = Arc::new(InProcessNotifier::default());
    let n1 = Node::start("n1", &db.url, &world, &notifier).await;
    let n2 = Node::start("n2", &db.url, &world, &notifier).await;
    set_live(&[&n1, &n2], &["n1", "n2"]).await;
    let app = apps
        .iter()
        .copied()
        .find(|&app| n1.dispatcher.owner_of(app).as_deref() == Some("n1"))
        .expect("n1 owns one of ten apps");
    world.hold(app);
    let d = n1.dispatcher.clone();
    let start = n1
        .run(async move { d.submit(app, Action::Start, None).await.unwrap() })
        .await
        .task;
    eventually("n1 is starting the app", Duration::from_secs(10), || {
        let busy = world.in_flight_on("n1").contains(&app);
        async move { busy }
    })
    .await;
    let epoch = client.node_epoch("n1").await.unwrap().unwrap();

    n1.dispatcher.session_lost();
    eventually("n1 dropped its call", Duration::from_secs(5), || {
        let idle = world.in_flight_on("n1").is_empty();
        async move { idle }
    })
    .await;
    assert!(!n1.dispatcher.is_ready());
    assert!(
        world.calls().iter().all(|c| !c.completed),
        "the dropped call never returned"
    );

    // The registry tells n2 that n1 is gone: n2 fences n1's session and runs the task again.
    world.release(app);
    set_live(&[&n2], &["n2"]).await;
    eventually(
        "the start succeeded on n2",
        Duration::from_secs(10),
        || async { task_status(&client, start.id).await == TaskStatus::Succeeded },
    )
    .await;
    let task = client.get_task(start.id).await.unwrap();
    assert_eq!((task.attempts, task.claimed_by.as_deref()), (2, Some("n2")));
    assert_eq!(
        client.node_epoch("n1").await.unwrap(),
        Some(epoch + 1),
        "n2 fenced n1"
    );

    // n1 comes back: a new epoch; the app returns to it and is adopted as it is.
    n1.dispatcher.session_restored(["n1", "n2"]);
    set_live(&[&n2], &["n1", "n2"]).await;
    eventually(
        "n1 holds the app again",
        Duration::from_secs(10),
        || async {
            client
                .get_app(app)
                .await
                .unwrap()
                .lease
                .is_some_and(|l| l.node_id == "n1" && l.epoch == epoch + 2)
        },
    )
    .await;
    assert_eq!(world.starts_by("n1", app), 1, "only the dropped attempt");
    assert_eq!(app_state(&client, app).await, AppState::Running);
    assert!(n1.dispatcher.is_ready());
    for node in [n1, n2] {
        node.stop().await;
    }
    db.cleanup().await;
}

/// Ownership moves away from a live node in the middle of an action: the new owner waits until
/// the old one has finished it and released the lease; nobody is fenced, nothing runs twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_a_busy_live_owner_finishes_its_action_before_handing_over() {
    let db = common::TestDb::mysql().await;
    let client = db.store().await;
    let apps = create_apps(&client, 20).await;
    let world = World::new(9, 0, 0);
    let notifier = Arc::new(InProcessNotifier::default());
    let n1 = Node::start("n1", &db.url, &world, &notifier).await;
    set_live(&[&n1], &["n1"]).await;
    // An app that n1 owns alone and that moves to n2 when it joins.
    let probe_ring =
        task_dispatch::Ring::new(task_dispatch::RingKind::default(), ["n1", "n2"]).unwrap();
    let app = apps
        .iter()
        .copied()
        .find(|&app| probe_ring.owner_of_app(app) == Some("n2"))
        .expect("one of twenty apps moves");
    world.hold(app);
    let d = n1.dispatcher.clone();
    let (start, stop) = n1
        .run(async move {
            let start = d.submit(app, Action::Start, None).await.unwrap().task;
            let stop = d.submit(app, Action::Stop, None).await.unwrap().task;
            (start, stop)
        })
        .await;
    eventually("n1 is starting the app", Duration::from_secs(10), || {
        let busy = world.in_flight_on("n1").contains(&app);
        async move { busy }
    })
    .await;
    let n1_epoch = client.node_epoch("n1").await.unwrap();

    let n2 = Node::start("n2", &db.url, &world, &notifier).await;
    set_live(&[&n1, &n2], &["n1", "n2"]).await;
    // Give n2 time to (wrongly) take over: several lease retries. Taking over now would show
    // as an overlapping call at once.
    holds_for(
        "n2 waits while n1 acts",
        Duration::from_millis(500),
        || async {
            let holder = client.get_app(app).await.unwrap().lease.map(|l| l.node_id);
            if holder.as_deref() == Some("n1") {
                Ok(())
            } else {
                Err(format!("the lease is {holder:?}"))
            }
        },
    )
    .await;
    world.release(app);
    eventually("the stop ran", Duration::from_secs(10), || async {
        task_status(&client, stop.id).await == TaskStatus::Succeeded
    })
    .await;
    let overlaps = world.overlaps.lock().unwrap().clone();
    assert!(overlaps.is_empty(), "{overlaps:#?}");
    let start = client.get_task(start.id).await.unwrap();
    assert_eq!(
        (start.status, start.attempts, start.claimed_by.as_deref()),
        (TaskStatus::Succeeded, 1, Some("n1"))
    );
    let stop = client.get_task(stop.id).await.unwrap();
    assert_eq!(stop.claimed_by.as_deref(), Some("n2"));
    assert_eq!(
        client.node_epoch("n1").await.unwrap(),
        n1_epoch,
        "nobody fenced n1"
    );
    assert_eq!(app_state(&client, app).await, AppState::Stopped);
    for node in [n1, n2] {
        node.stop().await;
    }
    db.cleanup().await;
}
