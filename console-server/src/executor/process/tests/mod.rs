//! The process executor against real processes: `sh` and `sleep`, started, signalled, killed.
//!
//! Every test waits for real conditions with a deadline and kills what it started when it ends,
//! even on failure ([`KillOnDrop`]).

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use serde_json::{Value, json};
use test_support::eventually;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::exits::EXIT_STATUSES_KEPT;
use super::*;

const DEADLINE: Duration = Duration::from_secs(10);
/// The task of the executor calls in these tests (the process executor only logs it).
const TASK: TaskRef<'static> = TaskRef::first(1);
const HELPER_VAR: &str = "CONSOLE_EXECUTOR_TEST_HELPER";
const HANDLE_LINE: &str = "EXECUTOR_TEST_HANDLE ";

/// A temporary log directory and marker directory, and an executor writing into it.
struct Fixture {
    dir: tempfile::TempDir,
    executor: ProcessExecutor,
}

impl Fixture {
    fn new(grace: Duration) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let executor = ProcessExecutor::new(dir.path().join("apps"), &test_cluster_id())
            .unwrap()
            .with_stop_grace(grace);
        Self { dir, executor }
    }

    fn marker(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A cluster id of its own for every executor a test makes: keys never meet across tests.
fn test_cluster_id() -> String {
    format!("test-{}", uuid::Uuid::new_v4())
}

/// A spec running `script` under `sh -c`, with the marker file as `$1`.
fn script_spec(script: &str, marker: &Path) -> Value {
    json!({"command": ["sh", "-c", script, "sh", marker]})
}

fn app(id: i64, spec: &Value) -> AppRef<'_> {
    AppRef {
        id,
        name: "test-app",
        spec,
    }
}

fn process(handle: &Handle) -> &ProcessHandle {
    match handle {
        Handle::Process(handle) => handle,
        other => panic!("expected a process handle, got {other:?}"),
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn dead_reason(executor: &ProcessExecutor, app: &AppRef<'_>, handle: &Handle) -> String {
    match executor.probe(app, handle).await {
        Liveness::Dead { reason } => reason,
        other => format!("not dead: {other:?}"),
    }
}

/// Waits until the process named by `handle` has left /proc or exited (a zombie).
async fn wait_until_exited(handle: &ProcessHandle) {
    let pid = i32::try_from(handle.pid).unwrap();
    eventually(
        &format!("process {pid} has exited"),
        DEADLINE,
        async || match proc_stat::read(pid).unwrap() {
            None => true,
            Some(stat) => stat.start_time_ticks != handle.start_time_ticks || stat.has_exited(),
        },
    )
    .await;
}

/// SIGKILLs the process groups it guards when dropped, if they still are the same processes.
#[derive(Default)]
struct KillOnDrop {
    handles: Vec<ProcessHandle>,
    /// Files into which an app wrote its own pid (`echo $$`), for apps whose handle may never
    /// reach the test.
    pid_files: Vec<PathBuf>,
    /// App keys: every process carrying one is killed, whatever handle reached the test.
    keys: Vec<String>,
}

impl KillOnDrop {
    fn guard(&mut self, handle: &Handle) {
        self.handles.push(process(handle).clone());
    }

    fn guard_pid_file(&mut self, path: PathBuf) {
        self.pid_files.push(path);
    }

    fn guard_app(&mut self, executor: &ProcessExecutor, app_id: i64) {
        self.keys.push(executor.app_key(app_id));
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let from_handles = self.handles.iter().filter_map(|handle| {
            let pid = i32::try_from(handle.pid).ok()?;
            let stat = proc_stat::read(pid).ok()??;
            (stat.start_time_ticks == handle.start_time_ticks).then_some(pid)
        });
        let from_pid_files = self.pid_files.iter().filter_map(|path| {
            std::fs::read_to_string(path)
                .ok()?
                .trim()
                .parse::<i32>()
                .ok()
        });
        let from_keys = self
            .keys
            .iter()
            .flat_map(|key| members::carrying_key(key).unwrap_or_default())
            .map(|process| process.pid);
        for pid in from_handles
            .chain(from_pid_files)
            .chain(from_keys)
            .collect::<Vec<_>>()
        {
            let Ok(Some(stat)) = proc_stat::read(pid) else {
                continue;
            };
            // The whole group if the app leads one (it should), else the process alone.
            let target = if stat.pgrp == pid { -pid } else { pid };
            if pid > 1 && u32::try_from(pid).is_ok_and(|pid| pid != std::process::id()) {
                // SAFETY: kill(2) has no memory-safety preconditions; the target is the app.
                unsafe { libc::kill(target, libc::SIGKILL) };
            }
        }
    }
}

#[tokio::test]
async fn process_start_probe_log_and_graceful_stop() {
    let fixture = Fixture::new(Duration::from_secs(60));
    let marker = fixture.marker("marker");
    let workdir = fixture.marker("workdir");
    std::fs::create_dir(&workdir).unwrap();
    let spec = json!({
        "command": ["sh", "-c",
            "echo \"hello from app $CONSOLE_APP_ID, $GREETING, in $(pwd)\"; \
             echo started >> \"$1\"; exec sleep 300",
            "sh", marker],
        "env": {"GREETING": "hi there"},
        "cwd": workdir,
    });
    let app = app(7, &spec);
    let mut guard = KillOnDrop::default();

    let handle = fixture.executor.start(&app, TASK, None).await.unwrap();
    guard.guard(&handle);
    let started = process(&handle);
    assert_eq!(started.log_path, fixture.executor.log_path(7));
    assert_eq!(fixture.executor.probe(&app, &handle).await, Liveness::Alive);

    eventually("the marker has a line", DEADLINE, async || {
        lines(&marker) == ["started"]
    })
    .await;
    let expected = format!("hello from app 7, hi there, in {}", workdir.display());
    eventually("the app's output is in its log", DEADLINE, async || {
        lines(&started.log_path).contains(&expected)
    })
    .await;

    // A session and process group of its own, not the test's.
    let pid = i32::try_from(started.pid).unwrap();
    let stat = proc_stat::read(pid).unwrap().unwrap();
    let own = proc_stat::read(i32::try_from(std::process::id()).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!((stat.session, stat.pgrp), (pid, pid));
    assert_ne!(stat.session, own.session);

    // The grace period is a minute, so a SIGTERM death proves that SIGKILL was not needed.
    fixture.executor.stop(&app, TASK, &handle).await.unwrap();
    eventually("probe explains the SIGTERM death", DEADLINE, async || {
        dead_reason(&fixture.executor, &app, &handle).await
            == format!("process {pid} was killed by SIGTERM")
    })
    .await;
    // Reaped: not even a zombie is left.
    eventually("the process has left /proc", DEADLINE, async || {
        proc_stat::read(pid)
            .unwrap()
            .is_none_or(|stat| stat.start_time_ticks != started.start_time_ticks)
    })
    .await;
    // Stopping again is success.
    fixture.executor.stop(&app, TASK, &handle).await.unwrap();
}

#[tokio::test]
async fn process_stop_sigkills_the_group_after_the_grace_period() {
    let grace = Duration::from_millis(300);
    let fixture = Fixture::new(grace);
    let marker = fixture.marker("marker");
    let child_pid_file = fixture.marker("child.pid");
    // Both the shell and its background child ignore SIGTERM.
    let spec = json!({
        "command": ["sh", "-c",
            "trap '' TERM; sleep 300 & echo $! > \"$2\"; echo started >> \"$1\"; wait",
            "sh", marker, child_pid_file],
    });
    let app = app(8, &spec);
    let mut guard = KillOnDrop::default();

    let handle = fixture.executor.start(&app, TASK, None).await.unwrap();
    guard.guard(&handle);
    eventually("the trap is set", DEADLINE, async || {
        lines(&marker) == ["started"]
    })
    .await;
    let child_pid: i32 = lines(&child_pid_file)[0].parse().unwrap();
    let child = proc_stat::read(child_pid).unwrap().unwrap();
    assert_eq!(child.pgrp, i32::try_from(process(&handle).pid).unwrap());

    let began = Instant::now();
    fixture.executor.stop(&app, TASK, &handle).await.unwrap();
    assert!(
        began.elapsed() >= grace,
        "SIGKILL came before the grace period ended"
    );
    let pid = process(&handle).pid;
    eventually("probe explains the SIGKILL death", DEADLINE, async || {
        dead_reason(&fixture.executor, &app, &handle).await
            == format!("process {pid} was killed by SIGKILL")
    })
    .await;
    // The background child was killed with the group (it may linger as a zombie of init).
    assert!(
        proc_stat::read(child_pid)
            .unwrap()
            .is_none_or(|stat| stat.has_exited()
                || stat.start_time_ticks != child.start_time_ticks),
        "the group's other member survived stop"
    );
}

#[tokio::test]
async fn process_probe_explains_an_exit_on_its_own() {
    let fixture = Fixture::new(Duration::from_secs(5));
    let marker = fixture.marker("marker");
    let spec = script_spec("echo started >> \"$1\"; exit 3", &marker);
    let app = app(9, &spec);
    let mut guard = KillOnDrop::default();

    let handle = fixture.executor.start(&app, TASK, None).await.unwrap();
    guard.guard(&handle);
    let pid = process(&handle).pid;
    eventually("probe explains the exit", DEADLINE, async || {
        dead_reason(&fixture.executor, &app, &handle).await
            == format!("process {pid} exited with status 3")
    })
    .await;
    assert_eq!(lines(&marker), ["started"]);
    // Stopping a dead app is success.
    fixture.executor.stop(&app, TASK, &handle).await.unwrap();
}

#[tokio::test]
async fn process_reused_pid_is_reported_dead_and_never_signalled() {
    let fixture = Fixture::new(Duration::from_secs(5));
    let spec = script_spec("exec sleep 300", &fixture.marker("unused"));
    let app = app(10, &spec);

    // This test process, named with a start time that is not its own.
    let me = proc_stat::read(i32::try_from(std::process::id()).unwrap())
        .unwrap()
        .unwrap();
    let reused = Handle::Process(ProcessHandle {
        pid: std::process::id(),
        start_time_ticks: me.start_time_ticks + 1,
        boot_id: fixture.executor.host.boot_id.clone(),
        host: fixture.executor.host.host_name.clone(),
        machine_id: fixture.executor.host.machine_id.clone(),
        app_key: fixture.executor.app_key(10),
        log_path: fixture.executor.log_path(10),
    });
    assert_eq!(
        fixture.executor.probe(&app, &reused).await,
        Liveness::Dead {
            reason: format!(
                "pid {} now belongs to another process (start time differs)",
                std::process::id()
            )
        }
    );
    fixture.executor.stop(&app, TASK, &reused).await.unwrap();

    // A real app in its own group, named with a wrong start time by another app's handle (for
    // the same app, its key would rightly find the process: a copy of that app runs).
    let mut guard = KillOnDrop::default();
    let handle = fixture.executor.start(&app, TASK, None).await.unwrap();
    guard.guard(&handle);
    let other_spec = json!({"command": ["true"]});
    let other_app = AppRef {
        id: 99,
        ..self::app(99, &other_spec)
    };
    let mut wrong = process(&handle).clone();
    wrong.start_time_ticks += 1;
    wrong.app_key = fixture.executor.app_key(99);
    let wrong = Handle::Process(wrong);
    assert!(
        dead_reason(&fixture.executor, &other_app, &wrong)
            .await
            .contains("now belongs to another process")
    );
    fixture
        .executor
        .stop(&other_app, TASK, &wrong)
        .await
        .unwrap();
    assert_eq!(fixture.executor.probe(&app, &handle).await, Liveness::Alive);

    // Had `stop` sent SIGTERM, the kernel would already have fixed SIGTERM as the cause of death
    // (a fatal signal takes effect when sent); so a SIGKILL death proves that nothing was sent.
    drop(guard);
    let pid = process(&handle).pid;
    eventually("probe explains the SIGKILL death", DEADLINE, async || {
        dead_reason(&fixture.executor, &app, &handle).await
            == format!("process {pid} was killed by SIGKILL")
    })
    .await;
}

#[tokio::test]
async fn process_start_adopts_an_alive_previous_instance() {
    let fixture = Fixture::new(Duration::from_secs(5));
    let marker = fixture.marker("marker");
    let spec = script_spec("echo started >> \"$1\"; exec sleep 300", &marker);
    let app = app(11, &spec);
    let log = fixture.executor.log_path(11);
    let starts = || {
        lines(&log)
            .iter()
            .filter(|line| line.starts_with("[console] starting app 11 "))
            .count()
    };
    let mut guard = KillOnDrop::default();

    let first = fixture.executor.start(&app, TASK, None).await.unwrap();
    guard.guard(&first);
    eventually("the first instance ran", DEADLINE, async || {
        lines(&marker).len() == 1
    })
    .await;

    let adopted = fixture
        .executor
        .start(&app, TASK, Some(&first))
        .await
        .unwrap();
    assert_eq!(adopted, first);
    assert_eq!(starts(), 1, "adopting must not start a process");
    assert_eq!(lines(&marker), ["started"]);

    // Once the previous instance is dead, `start` starts a new one.
    fixture.executor.stop(&app, TASK, &first).await.unwrap();
    let second = fixture
        .executor
        .start(&app, TASK, Some(&first))
        .await
        .unwrap();
    guard.guard(&second);
    assert_ne!(second, first);
    assert_eq!(starts(), 2);
    eventually("the second instance ran", DEADLINE, async || {
        lines(&marker).len() == 2
    })
    .await;
    assert_eq!(fixture.executor.probe(&app, &second).await, Liveness::Alive);
    fixture.executor.stop(&app, TASK, &second).await.unwrap();
}

#[tokio::test]
async fn process_handles_from_another_boot_are_dead() {
    let fixture = Fixture::new(Duration::from_secs(5));
    let marker = fixture.marker("marker");
    let spec = script_spec("echo started >> \"$1\"; exec sleep 300", &marker);
    let app = app(12, &spec);
    let mut guard = KillOnDrop::default();
    let handle = fixture.executor.start(&app, TASK, None).await.unwrap();
    guard.guard(&handle);
    eventually("the app ran", DEADLINE, async || {
        lines(&marker) == ["started"]
    })
    .await;

    // Another boot of this host: the process is gone, whatever now holds the pid.
    let mut other_boot = process(&handle).clone();
    other_boot.boot_id = "00000000-0000-0000-0000-000000000000".to_owned();
    let other_boot = Handle::Process(other_boot);
    assert!(
        dead_reason(&fixture.executor, &app, &other_boot)
            .await
            .starts_with("handle from another boot of this host")
    );
    fixture
        .executor
        .stop(&app, TASK, &other_boot)
        .await
        .unwrap();
    assert_eq!(fixture.executor.probe(&app, &handle).await, Liveness::Alive);

    fixture.executor.stop(&app, TASK, &handle).await.unwrap();
}

#[tokio::test]
async fn process_invalid_handles_are_refused_without_signalling() {
    let fixture = Fixture::new(Duration::from_secs(5));
    let spec = json!({"command": ["true"]});
    let app = app(13, &spec);
    let me = proc_stat::read(i32::try_from(std::process::id()).unwrap())
        .unwrap()
        .unwrap();
    let handle_for = |pid: u32, start_time_ticks: u64| {
        Handle::Process(ProcessHandle {
            pid,
            start_time_ticks,
            boot_id: fixture.executor.host.boot_id.clone(),
            host: fixture.executor.host.host_name.clone(),
            machine_id: fixture.executor.host.machine_id.clone(),
            app_key: fixture.executor.app_key(13),
            log_path: fixture.executor.log_path(13),
        })
    };

    for pid in [0, 1, u32::MAX] {
        let handle = handle_for(pid, 1);
        assert_eq!(
            fixture.executor.stop(&app, TASK, &handle).await,
            Err(ExecutorError::InvalidHandle {
                reason: format!("pid {pid} cannot be an app's process")
            })
        );
        assert!(matches!(
            fixture.executor.probe(&app, &handle).await,
            Liveness::Unknown { .. }
        ));
        assert!(matches!(
            fixture.executor.start(&app, TASK, Some(&handle)).await,
            Err(ExecutorError::Undetermined { .. })
        ));
    }

    // The test process itself, correctly named: never an app of this executor.
    let myself = handle_for(std::process::id(), me.start_time_ticks);
    assert!(matches!(
        fixture.executor.stop(&app, TASK, &myself).await,
        Err(ExecutorError::InvalidHandle { .. })
    ));
}

#[tokio::test]
async fn process_start_errors_are_specific() {
    let fixture = Fixture::new(Duration::from_secs(5));

    let spec = json!({"command": []});
    assert_eq!(
        fixture.executor.start(&app(14, &spec), TASK, None).await,
        Err(ExecutorError::InvalidSpec {
            reason: "spec.command must be a non-empty array of strings".to_owned()
        })
    );

    let spec = json!({"command": ["/nonexistent/program"]});
    let error = fixture
        .executor
        .start(&app(14, &spec), TASK, None)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ExecutorError::Spawn { program, reason }
            if program == "/nonexistent/program" && reason.contains("No such file")),
        "{error:?}"
    );

    let spec = json!({"command": ["true"], "cwd": "/nonexistent/dir"});
    assert_eq!(
        fixture.executor.start(&app(14, &spec), TASK, None).await,
        Err(ExecutorError::Spawn {
            program: "true".to_owned(),
            reason: "working directory /nonexistent/dir is not a directory".to_owned()
        })
    );

    // A log directory that cannot be created (its parent is a file).
    let file = fixture.marker("a-file");
    std::fs::write(&file, "").unwrap();
    let executor = ProcessExecutor::new(file.join("apps"), &test_cluster_id()).unwrap();
    let spec = json!({"command": ["true"]});
    assert!(matches!(
        executor.start(&app(14, &spec), TASK, None).await,
        Err(ExecutorError::LogFile { .. })
    ));
}

#[test]
fn process_handle_json_shape() {
    let handle = Handle::Process(ProcessHandle {
        pid: 1234,
        start_time_ticks: 5678,
        boot_id: "b".to_owned(),
        host: "h".to_owned(),
        machine_id: "m".to_owned(),
        app_key: "c/7".to_owned(),
        log_path: PathBuf::from("/data/apps/7.log"),
    });
    let value = serde_json::to_value(&handle).unwrap();
    assert_eq!(
        value,
        json!({"executor": "process", "pid": 1234, "start_time_ticks": 5678,
               "boot_id": "b", "host": "h", "machine_id": "m", "app_key": "c/7",
               "log_path": "/data/apps/7.log"})
    );
    assert_eq!(serde_json::from_value::<Handle>(value).unwrap(), handle);
    // Handles recorded before the machine id and the key existed still read.
    let old = json!({"executor": "process", "pid": 1234, "start_time_ticks": 5678,
                     "boot_id": "b", "host": "h", "log_path": "/data/apps/7.log"});
    let Handle::Process(old) = serde_json::from_value::<Handle>(old).unwrap() else {
        panic!("not a process handle");
    };
    assert_eq!((old.machine_id.as_str(), old.app_key.as_str()), ("", ""));
    assert!(serde_json::from_value::<Handle>(json!({"executor": "flink"})).is_err());
}

#[test]
fn process_exit_statuses_forget_the_oldest() {
    let mut statuses = ExitStatuses::default();
    let handle = |pid| ProcessHandle {
        pid,
        start_time_ticks: 1,
        boot_id: String::new(),
        host: String::new(),
        machine_id: String::new(),
        app_key: String::new(),
        log_path: PathBuf::new(),
    };
    let total = u32::try_from(EXIT_STATUSES_KEPT).unwrap() + 2;
    for pid in 0..total {
        statuses.record(&handle(pid), ExitStatus::from_raw(0));
    }
    assert_eq!(statuses.by_process.len(), EXIT_STATUSES_KEPT);
    assert_eq!(statuses.get(&handle(0)), None);
    assert_eq!(
        statuses.get(&handle(total - 1)),
        Some(ExitStatus::from_raw(0))
    );
}

/// The name libtest knows the helper by.
fn helper_test_name() -> String {
    let module = module_path!()
        .split_once("::")
        .map_or(module_path!(), |(_crate, module)| module);
    format!("{module}::process_helper_console_that_starts_an_app")
}

/// Plays a console in a child process: starts an app (config in [`HELPER_VAR`]), prints its
/// handle, and waits to be killed. Does nothing when run without that variable.
#[test]
#[ignore = "helper process of process_app_survives_the_console_being_sigkilled"]
fn process_helper_console_that_starts_an_app() {
    let Ok(config) = std::env::var(HELPER_VAR) else {
        return;
    };
    let config: Value = serde_json::from_str(&config).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let executor = ProcessExecutor::new(
            config["log_dir"].as_str().unwrap(),
            config["cluster_id"].as_str().unwrap(),
        )
        .unwrap();
        let app = app(15, &config["spec"]);
        let handle = executor.start(&app, TASK, None).await.unwrap();
        println!("{HANDLE_LINE}{}", serde_json::to_string(&handle).unwrap());
        std::future::pending::<()>().await;
    });
}

#[tokio::test]
async fn process_app_survives_the_console_being_sigkilled() {
    let fixture = Fixture::new(Duration::from_secs(5));
    let marker = fixture.marker("marker");
    let pid_file = fixture.marker("app.pid");
    let spec = json!({"command": ["sh", "-c",
        "echo $$ > \"$2\"; echo started >> \"$1\"; exec sleep 300",
        "sh", marker, pid_file]});
    let config = json!({"log_dir": fixture.dir.path().join("apps"), "spec": spec,
                        "cluster_id": fixture.executor.cluster_id});
    let mut guard = KillOnDrop::default();
    guard.guard_pid_file(pid_file);

    let mut console = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            helper_test_name().as_str(),
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_VAR, config.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(console.stdout.take().unwrap()).lines();
    let handle_json = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = stdout.next_line().await.unwrap() {
            // libtest prints "test <name> ... " on the same line first.
            if let Some((_, json)) = line.split_once(HANDLE_LINE) {
                return json.to_owned();
            }
        }
        panic!("the helper console exited without printing a handle");
    })
    .await
    .unwrap();
    let handle: Handle = serde_json::from_str(&handle_json).unwrap();
    guard.guard(&handle);
    let started = process(&handle).clone();
    let pid = i32::try_from(started.pid).unwrap();
    eventually("the app ran", DEADLINE, async || {
        lines(&marker) == ["started"]
    })
    .await;

    // SIGKILL the console that started the app; the app lives on in its own session.
    console.kill().await.unwrap();
    let app = app(15, &spec);
    assert_eq!(fixture.executor.probe(&app, &handle).await, Liveness::Alive);
    let stat = proc_stat::read(pid).unwrap().unwrap();
    assert_eq!((stat.session, stat.pgrp), (pid, pid));

    // Another console (this test's executor) adopts it without starting a second instance...
    let adopted = fixture
        .executor
        .start(&app, TASK, Some(&handle))
        .await
        .unwrap();
    assert_eq!(adopted, handle);
    assert_eq!(lines(&marker), ["started"]);
    // ...and can stop it although it is not its child.
    fixture.executor.stop(&app, TASK, &adopted).await.unwrap();
    wait_until_exited(&started).await;
    assert!(
        dead_reason(&fixture.executor, &app, &handle)
            .await
            .starts_with(&format!("process {pid} exited"))
    );
}

mod conformance;
mod forking;
mod guard;
mod hosts;
