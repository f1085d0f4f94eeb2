//! Self-tests of the harness pieces the acceptance tests rely on: the binary and the process
//! sweep. Real parts only. (The proxy, the service guards and the messages for a missing service
//! are tested in `test-support`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use cluster_tests::binary;
use cluster_tests::processes::{self, RUN_TAG_VAR};

#[test]
fn the_binary_is_built_and_runs() {
    let path = binary::console_server();
    let output = Command::new(path).arg("--version").output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("console-server"));
}

/// Starts `sleep` in a session of its own (like an app), with `tag` in its environment if given.
fn detached_sleep(tag: Option<&str>) -> std::process::Child {
    let mut command = Command::new("sleep");
    command
        .arg("1000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    if let Some(tag) = tag {
        command.env(RUN_TAG_VAR, tag);
    }
    command.spawn().unwrap()
}

#[test]
fn the_sweep_kills_tagged_processes_only() {
    let run = tempfile::tempdir().unwrap();
    let tag = run.path().display().to_string();
    let mut tagged = detached_sleep(Some(&tag));
    let mut untagged = detached_sleep(None);
    let tagged_pid = i32::try_from(tagged.id()).unwrap();
    let untagged_pid = i32::try_from(untagged.id()).unwrap();

    let found: Vec<i32> = processes::tagged(&tag).iter().map(|p| p.pid).collect();
    assert_eq!(found, vec![tagged_pid]);
    assert_eq!(processes::kill_tagged(&tag), 1);
    assert!(!processes::is_alive(tagged_pid));
    assert!(
        processes::is_alive(untagged_pid),
        "an untagged process is left alone"
    );

    untagged.kill().unwrap();
    let _ = untagged.wait();
    let _ = tagged.wait();
}

#[test]
fn the_sweep_spares_runs_in_progress_and_kills_what_ended_runs_left() {
    let run = tempfile::tempdir().unwrap();
    let tag = run.path().display().to_string();
    let lock = processes::RunLock::acquire(run.path());
    let mut app = detached_sleep(Some(&tag));
    let pid = i32::try_from(app.id()).unwrap();

    processes::kill_orphans_of_ended_runs(&std::env::temp_dir());
    assert!(processes::is_alive(pid), "the run holds its lock: spared");
    drop(lock);
    processes::kill_orphans_of_ended_runs(&std::env::temp_dir());
    assert!(
        processes::wait_gone(pid, Duration::from_secs(5)),
        "the run ended: killed"
    );
    let _ = app.wait();
}
