//! Finding 7 of issue 12: apps whose first process exits while others run on (`sh -c 'server &
//! exit 0'`, daemonizing start scripts). Alive while any process of the app runs; stop leaves none.

use super::*;

/// The pid an app wrote into `path`, once it has.
async fn pid_in(path: &Path) -> i32 {
    eventually(
        &format!("{} holds a pid", path.display()),
        DEADLINE,
        async || {
            lines(path)
                .first()
                .and_then(|line| line.parse::<i32>().ok())
                .ok_or_else(|| format!("{:?}", lines(path)))
        },
    )
    .await
}

fn is_running(pid: i32) -> bool {
    proc_stat::read(pid)
        .unwrap()
        .is_some_and(|stat| !stat.has_exited())
}

#[tokio::test]
async fn process_forking_command_is_alive_while_its_child_runs() {
    let fixture = Fixture::new(Duration::from_secs(5));
    let child_pid_file = fixture.marker("child.pid");
    let spec = script_spec("sleep 2000 & echo $! > \"$1\"; exit 0", &child_pid_file);
    let app = app(21, &spec);
    let mut guard = KillOnDrop::default();
    guard.guard_app(&fixture.executor, 21);
    guard.guard_pid_file(child_pid_file.clone());

    let handle = fixture.executor.start(&app, TASK, None).await.unwrap();
    guard.guard(&handle);
    let child = pid_in(&child_pid_file).await;
    wait_until_exited(process(&handle)).await;
    assert!(is_running(child), "the background child runs on");

    // The shell that was recorded has exited; its child is the app now.
    assert_eq!(fixture.executor.probe(&app, &handle).await, Liveness::Alive);
    // A second start adopts the running app instead of starting another copy, and names the
    // process that runs.
    let again = fixture
        .executor
        .start(&app, TASK, Some(&handle))
        .await
        .unwrap();
    assert_eq!(process(&again).pid, child.unsigned_abs());
    let starts = lines(&fixture.executor.log_path(21))
        .iter()
        .filter(|line| line.starts_with("[console] starting app 21 "))
        .count();
    assert_eq!(starts, 1, "one copy");

    assert_eq!(fixture.executor.probe(&app, &again).await, Liveness::Alive);

    // Stop through the first handle reaches the child, and returns only once it is gone.
    fixture.executor.stop(&app, TASK, &handle).await.unwrap();
    assert!(!is_running(child), "stop left the child {child} running");
    for handle in [&handle, &again] {
        assert!(matches!(
            fixture.executor.probe(&app, handle).await,
            Liveness::Dead { .. }
        ));
    }
}

#[tokio::test]
async fn process_daemon_that_leaves_the_session_is_found_by_its_key() {
    let fixture = Fixture::new(Duration::from_secs(5));
    let daemon_pid_file = fixture.marker("daemon.pid");
    // Forks twice and calls setsid, like a daemonizing start script: the daemon leads a session
    // of its own, outside the app's.
    let spec = script_spec(
        "(setsid sleep 2000 & echo $! > \"$1\"); exit 0",
        &daemon_pid_file,
    );
    let app = app(22, &spec);
    let mut guard = KillOnDrop::default();
    guard.guard_app(&fixture.executor, 22);
    guard.guard_pid_file(daemon_pid_file.clone());

    let handle = fixture.executor.start(&app, TASK, None).await.unwrap();
    guard.guard(&handle);
    let daemon = pid_in(&daemon_pid_file).await;
    let app_pid = i32::try_from(process(&handle).pid).unwrap();
    eventually("the daemon has its own session", DEADLINE, async || {
        let stat = proc_stat::read(daemon).unwrap().unwrap();
        (stat.session == daemon && stat.pgrp == daemon && stat.session != app_pid)
            .then_some(())
            .ok_or_else(|| format!("{stat:?}"))
    })
    .await;
    wait_until_exited(process(&handle)).await;

    assert_eq!(fixture.executor.probe(&app, &handle).await, Liveness::Alive);
    // Answered from the remembered member, and still right when asked again.
    assert_eq!(fixture.executor.probe(&app, &handle).await, Liveness::Alive);

    fixture.executor.stop(&app, TASK, &handle).await.unwrap();
    assert!(!is_running(daemon), "stop left the daemon {daemon} running");
    assert!(matches!(
        fixture.executor.probe(&app, &handle).await,
        Liveness::Dead { .. }
    ));
}

#[tokio::test]
async fn process_probe_sees_the_death_of_the_last_child() {
    let fixture = Fixture::new(Duration::from_secs(5));
    let child_pid_file = fixture.marker("child.pid");
    let spec = script_spec("sleep 2000 & echo $! > \"$1\"; exit 0", &child_pid_file);
    let app = app(23, &spec);
    let mut guard = KillOnDrop::default();
    guard.guard_app(&fixture.executor, 23);
    guard.guard_pid_file(child_pid_file.clone());

    let handle = fixture.executor.start(&app, TASK, None).await.unwrap();
    guard.guard(&handle);
    let child = pid_in(&child_pid_file).await;
    wait_until_exited(process(&handle)).await;
    assert_eq!(fixture.executor.probe(&app, &handle).await, Liveness::Alive);

    // Killed behind the executor's back: the remembered member is gone, and so is the app.
    // SAFETY: kill(2) has no memory-safety preconditions; `child` is the app's own child.
    unsafe { libc::kill(child, libc::SIGKILL) };
    eventually("probe reports the app dead", DEADLINE, async || {
        matches!(
            fixture.executor.probe(&app, &handle).await,
            Liveness::Dead { .. }
        )
    })
    .await;
}
