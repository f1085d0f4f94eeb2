//! Finding 2 of issue 12, the executor's side: the host-level guard. A start whose outcome was
//! never recorded, or that races another console's start on the same host, finds the running
//! copy instead of making a second one; other clusters' apps with the same id are not touched.

use std::sync::mpsc;

use super::*;

/// The live processes that carry `executor`'s key for app `app_id`.
fn copies(executor: &ProcessExecutor, app_id: i64) -> Vec<i32> {
    members::carrying_key(&executor.app_key(app_id))
        .unwrap()
        .iter()
        .map(|process| process.pid)
        .collect()
}

/// Another console of the same cluster on this host: same cluster id, its own log directory.
fn second_console(fixture: &Fixture, hooks: TestHooks) -> ProcessExecutor {
    ProcessExecutor::new(
        fixture.dir.path().join("second"),
        &fixture.executor.cluster_id,
    )
    .unwrap()
    .with_stop_grace(Duration::from_secs(5))
    .with_hooks(hooks)
}

fn same_process(left: &Handle, right: &Handle) -> bool {
    let (left, right) = (process(left), process(right));
    (left.pid, left.start_time_ticks, &left.app_key)
        == (right.pid, right.start_time_ticks, &right.app_key)
}

#[tokio::test]
async fn process_start_adopts_a_copy_that_no_handle_recorded() {
    let fixture = Fixture::new(Duration::from_secs(5));
    let marker = fixture.marker("marker");
    let spec = script_spec("echo started >> \"$1\"; exec sleep 300", &marker);
    let app = app(41, &spec);
    let mut guard = KillOnDrop::default();
    guard.guard_app(&fixture.executor, 41);

    let first = fixture.executor.start(&app, TASK, None).await.unwrap();
    guard.guard(&first);
    // Its console died before recording `first`: the retried start has no previous handle.
    let retried = second_console(&fixture, TestHooks::default())
        .start(&app, TASK, None)
        .await
        .unwrap();
    assert!(
        same_process(&retried, &first),
        "{retried:?} is not {first:?}"
    );
    assert_eq!(copies(&fixture.executor, 41).len(), 1);
    // A recorded handle of an earlier instance, long gone, leads to the copy too.
    let mut earlier = process(&first).clone();
    earlier.start_time_ticks -= 1;
    let retried = fixture
        .executor
        .start(&app, TASK, Some(&Handle::Process(earlier)))
        .await
        .unwrap();
    assert!(
        same_process(&retried, &first),
        "{retried:?} is not {first:?}"
    );
    eventually("the copy ran once", DEADLINE, async || {
        lines(&marker) == ["started"]
    })
    .await;

    // The same app id in another cluster on this host is another app.
    let other_cluster = Fixture::new(Duration::from_secs(5));
    guard.guard_app(&other_cluster.executor, 41);
    let theirs = other_cluster
        .executor
        .start(&app, TASK, None)
        .await
        .unwrap();
    guard.guard(&theirs);
    assert_ne!(process(&theirs).pid, process(&first).pid);
    assert_eq!(copies(&fixture.executor, 41).len(), 1);
    assert_eq!(copies(&other_cluster.executor, 41).len(), 1);

    fixture.executor.stop(&app, TASK, &retried).await.unwrap();
    assert!(copies(&fixture.executor, 41).is_empty());
    assert_eq!(
        other_cluster.executor.probe(&app, &theirs).await,
        Liveness::Alive
    );
    other_cluster
        .executor
        .stop(&app, TASK, &theirs)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_concurrent_starts_on_one_host_make_one_copy() {
    let fixture = Fixture::new(Duration::from_secs(5));
    let marker = fixture.marker("marker");
    let spec = script_spec("echo started >> \"$1\"; exec sleep 300", &marker);
    let mut guard = KillOnDrop::default();
    guard.guard_app(&fixture.executor, 42);
    let key = fixture.executor.app_key(42);

    // The first console pauses with the start lock held, after it found no copy and before it
    // spawns: where a console that was fenced meanwhile would be.
    let (reached_tx, reached_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let go_rx = Mutex::new(go_rx);
    let first = second_console(
        &fixture,
        TestHooks {
            before_spawn: Some(Arc::new(move || {
                reached_tx.send(()).unwrap();
                go_rx.lock().unwrap().recv().unwrap();
            })),
            lock_busy: None,
        },
    );
    let first_spec = spec.clone();
    let (first_tx, first_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let first_thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let handle = runtime.block_on(first.start(&app(42, &first_spec), TASK, None));
        first_tx.send(handle).unwrap();
        // Keep the runtime (and the reaper of the child) until the test is done with it.
        let _ = done_rx.recv();
    });
    tokio::task::spawn_blocking(move || reached_rx.recv())
        .await
        .unwrap()
        .unwrap();

    // The second console must wait for the lock instead of spawning its own copy.
    let (busy_tx, mut busy_rx) = tokio::sync::mpsc::unbounded_channel();
    let second = Arc::new(
        ProcessExecutor::new(
            fixture.dir.path().join("third"),
            &fixture.executor.cluster_id,
        )
        .unwrap()
        .with_hooks(TestHooks {
            before_spawn: None,
            lock_busy: Some(Arc::new(move || {
                let _ = busy_tx.send(());
            })),
        }),
    );
    let second_spec = spec.clone();
    let mut second_start = tokio::spawn({
        let second = Arc::clone(&second);
        async move { second.start(&app(42, &second_spec), TASK, None).await }
    });
    tokio::select! {
        busy = tokio::time::timeout(DEADLINE, busy_rx.recv()) => {
            busy.expect("the second start neither waited nor finished").unwrap();
        }
        started = &mut second_start => {
            panic!("the second start did not wait for the first one's lock: {started:?}");
        }
    }

    go_tx.send(()).unwrap();
    let first_handle = tokio::task::spawn_blocking(move || first_rx.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    guard.guard(&first_handle);
    let second_handle = second_start.await.unwrap().unwrap();
    guard.guard(&second_handle);
    assert!(
        same_process(&first_handle, &second_handle),
        "{second_handle:?} is not {first_handle:?}"
    );
    eventually("the app ran once", DEADLINE, async || {
        lines(&marker) == ["started"]
    })
    .await;
    let found = members::carrying_key(&key).unwrap();
    assert_eq!(found.len(), 1, "one copy: {found:?}");
    second
        .stop(&app(42, &spec), TASK, &second_handle)
        .await
        .unwrap();
    done_tx.send(()).unwrap();
    tokio::task::spawn_blocking(move || first_thread.join())
        .await
        .unwrap()
        .unwrap();
}
