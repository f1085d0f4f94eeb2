//! How an app's recorded process ended, in words: from the exit statuses the executor reaped.

use std::collections::{HashMap, VecDeque};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use super::ProcessHandle;

/// How many exit statuses of reaped processes are remembered for `Liveness::Dead` reasons.
pub(super) const EXIT_STATUSES_KEPT: usize = 1024;

/// Exit statuses of processes this executor reaped, keyed by pid and start time; the oldest are
/// forgotten beyond [`EXIT_STATUSES_KEPT`].
#[derive(Debug, Default)]
pub(super) struct ExitStatuses {
    order: VecDeque<(u32, u64)>,
    pub(super) by_process: HashMap<(u32, u64), ExitStatus>,
}

impl ExitStatuses {
    pub(super) fn record(&mut self, handle: &ProcessHandle, status: ExitStatus) {
        let key = (handle.pid, handle.start_time_ticks);
        if self.by_process.insert(key, status).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > EXIT_STATUSES_KEPT {
            if let Some(oldest) = self.order.pop_front() {
                self.by_process.remove(&oldest);
            }
        }
    }

    pub(super) fn get(&self, handle: &ProcessHandle) -> Option<ExitStatus> {
        self.by_process
            .get(&(handle.pid, handle.start_time_ticks))
            .copied()
    }
}

/// "process 42 exited with status 3", "process 42 was killed by SIGTERM", ...
pub(super) fn describe_exit(pid: u32, status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        format!("process {pid} exited with status {code}")
    } else if let Some(signal) = status.signal() {
        let core = if status.core_dumped() {
            " (core dumped)"
        } else {
            ""
        };
        format!("process {pid} was killed by {}{core}", signal_name(signal))
    } else {
        format!("process {pid} exited ({status})")
    }
}

fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        other => return format!("signal {other}"),
    };
    name.to_owned()
}
