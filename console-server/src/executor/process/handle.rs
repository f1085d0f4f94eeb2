//! What a `process` start records, and where the process it names is.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::super::ExecutorError;
use super::super::proc_stat::HostIdentity;

/// Where a process started by [`ProcessExecutor`](super::ProcessExecutor) is: what
/// [`Handle::Process`](super::super::Handle::Process) carries.
///
/// # Notable behaviors
/// Handles recorded before `machine_id` and `app_key` existed still read (both empty): the host
/// name alone names their machine, and their app is found by its session only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessHandle {
    /// The recorded process: the app's first process, or the oldest one found when an
    /// unrecorded copy was adopted. The app's session and process group id when it leads them.
    pub pid: u32,
    /// The process's start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start_time_ticks: u64,
    /// `/proc/sys/kernel/random/boot_id` of the boot the process was started in.
    pub boot_id: String,
    /// The host name of the machine the process was started on.
    pub host: String,
    /// The machine id (`/etc/machine-id`) of that machine; empty if it had none.
    #[serde(default)]
    pub machine_id: String,
    /// The `CONSOLE_APP_KEY` that the app's processes carry: `<cluster id>/<app id>`.
    #[serde(default)]
    pub app_key: String,
    /// The file the app's stdout and stderr go to.
    pub log_path: PathBuf,
}

impl ProcessHandle {
    /// The pid as `pid_t`, refusing values no app can have: 0 and 1 (in `kill(-pid)` they would
    /// mean "our own group" and "every process") and anything beyond `pid_t`.
    pub(super) fn checked_pid(&self) -> Result<i32, ExecutorError> {
        match i32::try_from(self.pid) {
            Ok(pid) if pid > 1 => Ok(pid),
            _ => Err(ExecutorError::InvalidHandle {
                reason: format!("pid {} cannot be an app's process", self.pid),
            }),
        }
    }

    /// Refuses a key that is not app `app_id`'s: acting on it would touch another app's
    /// processes.
    pub(super) fn check_key(&self, app_id: i64) -> Result<(), ExecutorError> {
        let suffix = format!("/{app_id}");
        if self.app_key.is_empty() || self.app_key.ends_with(&suffix) {
            Ok(())
        } else {
            Err(ExecutorError::InvalidHandle {
                reason: format!("app key {:?} is not app {app_id}'s", self.app_key),
            })
        }
    }

    /// Where the process is, as seen from `host`.
    pub(super) fn whereabouts(&self, host: &HostIdentity) -> Whereabouts {
        let same_machine = self.host == host.host_name
            && (self.machine_id.is_empty() || self.machine_id == host.machine_id);
        if !same_machine {
            Whereabouts::OtherHost
        } else if self.boot_id != host.boot_id {
            Whereabouts::PreviousBoot
        } else {
            Whereabouts::Here
        }
    }

    /// "host \"h\" (machine id m)", for messages.
    pub(super) fn describe_host(&self) -> String {
        describe_host(&self.host, &self.machine_id)
    }
}

/// "host \"h\" (machine id m)", for messages.
pub(super) fn describe_host(host_name: &str, machine_id: &str) -> String {
    if machine_id.is_empty() {
        format!("host {host_name:?}")
    } else {
        format!("host {host_name:?} (machine id {machine_id})")
    }
}

/// Where a handle's process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Whereabouts {
    /// On this machine, in this boot: `/proc` knows.
    Here,
    /// On this machine, in an earlier boot: certainly gone.
    PreviousBoot,
    /// On another machine: this node cannot know.
    OtherHost,
}
