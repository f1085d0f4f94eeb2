//! OS processes the tests cause: finding them in `/proc`, checking one is alive, killing them.
//!
//! Apps started by the `process` executor run detached in their own session and outlive the
//! console, so the harness has to find them itself. Every app a test creates carries the
//! environment variable [`RUN_TAG_VAR`]`=<the test's temp dir>` (set through the app's
//! `spec.env`, inherited by everything the app starts); teardown kills every process whose
//! environment or command line holds that tag. A run also holds a [`RunLock`]; when a test
//! process dies before its teardown, the first cluster of the next test process kills what the
//! ended run left behind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

/// The environment variable that marks a process as caused by one test run.
pub const RUN_TAG_VAR: &str = "CLUSTER_TEST_RUN";

/// A process seen in `/proc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: i32,
    /// `/proc/<pid>/environ`, entry by entry.
    pub environ: Vec<String>,
    pub cmdline: Vec<String>,
}

impl ProcessInfo {
    /// The value of environment variable `name`, if set.
    pub fn env(&self, name: &str) -> Option<&str> {
        self.environ
            .iter()
            .find_map(|entry| entry.strip_prefix(name)?.strip_prefix('='))
    }
}

fn split_nul(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|byte| *byte == 0)
        .filter(|part| !part.is_empty())
        .map(|part| String::from_utf8_lossy(part).into_owned())
        .collect()
}

/// Every live (non-zombie) process whose environment or command line we may read.
pub fn all_processes() -> Vec<ProcessInfo> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| is_alive(*pid))
        .filter_map(|pid| {
            // Processes of other users, or gone meanwhile, cannot be read: not ours anyway.
            let environ = fs::read(format!("/proc/{pid}/environ")).ok()?;
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            Some(ProcessInfo {
                pid,
                environ: split_nul(&environ),
                cmdline: split_nul(&cmdline),
            })
        })
        .collect()
}

/// The processes tagged with run `tag`: [`RUN_TAG_VAR`]`=tag` in the environment, or `tag` in
/// the command line.
pub fn tagged(tag: &str) -> Vec<ProcessInfo> {
    all_processes()
        .into_iter()
        .filter(|process| {
            process.env(RUN_TAG_VAR) == Some(tag)
                || process.cmdline.iter().any(|arg| arg.contains(tag))
        })
        .collect()
}

/// The state letter of `/proc/<pid>/stat` and the start time (clock ticks since boot).
fn stat(pid: i32) -> Option<(char, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain anything: parse after the last ')'.
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state); starttime is field 22.
    let state = fields.first()?.chars().next()?;
    let start_time = fields.get(19)?.parse().ok()?;
    Some((state, start_time))
}

/// Whether `pid` exists and has not exited (a zombie counts as exited).
pub fn is_alive(pid: i32) -> bool {
    matches!(stat(pid), Some((state, _)) if !matches!(state, 'Z' | 'X' | 'x'))
}

/// Whether `pid` is stopped by a signal (SIGSTOP, or a failpoint that raised it): state `T`.
pub fn is_stopped(pid: i32) -> bool {
    matches!(stat(pid), Some(('T', _)))
}

/// Whether the process `pid` that started at `start_time_ticks` still runs (not a reused pid).
pub fn is_alive_since(pid: i32, start_time_ticks: u64) -> bool {
    matches!(stat(pid), Some((state, start)) if !matches!(state, 'Z' | 'X' | 'x') && start == start_time_ticks)
}

/// Sends `signal` to `pid`; a process that is gone already is fine.
pub fn signal(pid: i32, signal: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions; pid > 1 is checked by the callers'
    // sources (pids read from /proc or from our own children).
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Waits until `pid` has exited, at most `timeout`; answers whether it did.
pub fn wait_gone(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while is_alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// SIGKILLs every process tagged with `tag` and its process group (apps lead their own group),
/// until none is left; answers how many were killed.
pub fn kill_tagged(tag: &str) -> usize {
    let mut killed = 0;
    // A few rounds: a dying shell may have forked a child we did not see in the first scan.
    for _ in 0..10 {
        let found = tagged(tag);
        if found.is_empty() {
            break;
        }
        for process in &found {
            if process.pid > 1 {
                signal(-process.pid, libc::SIGKILL);
                signal(process.pid, libc::SIGKILL);
            }
        }
        killed += found.len();
        for process in &found {
            wait_gone(process.pid, Duration::from_secs(2));
        }
    }
    killed
}

/// The mark of a run in progress: an exclusive `flock` on `<run dir>/.running`, held while the
/// value lives and released by the kernel when the test process dies, however it dies.
#[derive(Debug)]
pub struct RunLock {
    _file: fs::File,
}

const RUN_LOCK_FILE: &str = ".running";

impl RunLock {
    /// Takes the lock of `run_dir`.
    ///
    /// # Panics
    /// When the file cannot be created or is locked already.
    pub fn acquire(run_dir: &Path) -> Self {
        let path = run_dir.join(RUN_LOCK_FILE);
        let file = fs::File::create(&path)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", path.display()));
        assert!(
            try_lock(&file),
            "{} is locked by another run",
            path.display()
        );
        Self { _file: file }
    }
}

/// Takes an exclusive `flock` on `file` without waiting; answers whether it got it.
fn try_lock(file: &fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock(2) on a file descriptor we own; no memory is passed.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Whether the run of `run_dir` has ended: its directory is gone, or nobody holds its
/// [`RunLock`] any more.
fn run_has_ended(run_dir: &Path) -> bool {
    match fs::File::open(run_dir.join(RUN_LOCK_FILE)) {
        // Locked by us just now means unlocked by everyone else; closing the file releases it.
        Ok(file) => try_lock(&file),
        Err(_) => !run_dir.exists(),
    }
}

/// Kills processes left behind by earlier runs under `parent` that ended without their teardown
/// (the test process was killed): those tagged with a run whose [`RunLock`] nobody holds. Runs
/// in progress hold their lock, in this process or another, so they are never touched.
pub fn kill_orphans_of_ended_runs(parent: &Path) {
    for process in all_processes() {
        let Some(tag) = process.env(RUN_TAG_VAR) else {
            continue;
        };
        let run_dir = Path::new(tag);
        if run_dir.starts_with(parent) && process.pid > 1 && run_has_ended(run_dir) {
            eprintln!(
                "killing pid {} left behind by a test run that ended without its teardown ({})",
                process.pid,
                run_dir.display()
            );
            signal(-process.pid, libc::SIGKILL);
            signal(process.pid, libc::SIGKILL);
        }
    }
}
