//! The `process` executor: an app is an OS command line, started detached in its own session.
//!
//! # Notable behaviors
//! - The app is started with `setsid`: it leads a new session and process group, has no
//!   controlling terminal, and is neither signalled nor killed when the console dies (even by
//!   SIGKILL). Its stdin is `/dev/null`; stdout and stderr are appended to
//!   `<log_dir>/<app_id>.log`, after a `[console] starting app ...` line per start.
//! - The app gets the console's environment minus the console's own `CONSOLE_*` variables (they
//!   may carry secrets), plus `CONSOLE_APP_ID`, `CONSOLE_APP_NAME` and the spec's `env`.
//! - The console reaps the processes it started (a background task per process), so no zombie is
//!   left while it runs; it remembers their exit status to explain a death in [`Liveness::Dead`].
//! - A process is named by pid **and** start time (clock ticks since boot) **and** boot id: a pid
//!   that now belongs to another process is reported dead and is never signalled.
//! - `stop` signals the app's whole process group (the app's pid is its group id): SIGTERM, then
//!   SIGKILL after the grace period; it returns once no member of the group is left.

use std::collections::{HashMap, VecDeque};
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::proc_stat::{self, HostIdentity, ProcStat};
use super::{AppRef, Executor, ExecutorError, Handle, Liveness, ProcessSpec};

mod logs;
pub use logs::{AppLogs, LogPlace, read_tail};

/// How long `stop` waits after SIGTERM before it sends SIGKILL, unless configured otherwise.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);

/// How long `stop` waits for the process group to vanish after SIGKILL before giving up.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// How many exit statuses of reaped processes are remembered for [`Liveness::Dead`] reasons.
const EXIT_STATUSES_KEPT: usize = 1024;

/// Where a process started by [`ProcessExecutor`] is: what [`Handle::Process`] carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessHandle {
    /// The app's pid; also its process group id and session id.
    pub pid: u32,
    /// The process's start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start_time_ticks: u64,
    /// `/proc/sys/kernel/random/boot_id` of the boot the process was started in.
    pub boot_id: String,
    /// The host name of the machine the process was started on.
    pub host: String,
    /// The file the app's stdout and stderr go to.
    pub log_path: PathBuf,
}

impl ProcessHandle {
    /// The pid as `pid_t`, refusing values no app can have: 0 and 1 (in `kill(-pid)` they would
    /// mean "our own group" and "every process") and anything beyond `pid_t`.
    fn checked_pid(&self) -> Result<i32, ExecutorError> {
        match i32::try_from(self.pid) {
            Ok(pid) if pid > 1 => Ok(pid),
            _ => Err(ExecutorError::InvalidHandle {
                reason: format!("pid {} cannot be an app's process", self.pid),
            }),
        }
    }
}

/// Runs apps as detached OS processes on this host. See the [module documentation](self).
#[derive(Debug)]
pub struct ProcessExecutor {
    log_dir: PathBuf,
    stop_grace: Duration,
    host: HostIdentity,
    exit_statuses: Arc<Mutex<ExitStatuses>>,
}

impl ProcessExecutor {
    /// An executor that writes app logs under `log_dir` (created on first start; made absolute
    /// now) and stops with [`DEFAULT_STOP_GRACE`].
    ///
    /// # Notable errors
    /// [`ExecutorError::LogFile`] if `log_dir` cannot be made absolute or is not UTF-8 (handles
    /// are JSON); [`ExecutorError::Proc`] if the host name or boot id cannot be read.
    pub fn new(log_dir: impl Into<PathBuf>) -> Result<Self, ExecutorError> {
        let log_dir = log_dir.into();
        let log_dir = std::path::absolute(&log_dir).map_err(|error| ExecutorError::LogFile {
            path: log_dir.clone(),
            reason: error.to_string(),
        })?;
        if log_dir.to_str().is_none() {
            return Err(ExecutorError::LogFile {
                path: log_dir,
                reason: "the log directory's path is not valid UTF-8".to_owned(),
            });
        }
        Ok(Self {
            log_dir,
            stop_grace: DEFAULT_STOP_GRACE,
            host: HostIdentity::current()?,
            exit_statuses: Arc::default(),
        })
    }

    /// Sets how long `stop` waits after SIGTERM before it sends SIGKILL (tests shorten it).
    #[cfg(test)]
    pub fn with_stop_grace(mut self, grace: Duration) -> Self {
        self.stop_grace = grace;
        self
    }

    /// The log file of app `app_id`.
    pub fn log_path(&self, app_id: i64) -> PathBuf {
        self.log_dir.join(format!("{app_id}.log"))
    }

    /// Looks at the process a handle names, without side effects.
    fn observe(&self, handle: &ProcessHandle) -> Observed {
        let pid = match handle.checked_pid() {
            Ok(pid) => pid,
            Err(error) => return Observed::Unknown(error.to_string()),
        };
        match self.whereabouts(handle) {
            Whereabouts::Here => {}
            Whereabouts::PreviousBoot => {
                return Observed::Dead(format!(
                    "handle from another boot of this host (boot id {}): process {pid} is gone",
                    handle.boot_id
                ));
            }
            Whereabouts::OtherHost => return Observed::OtherHost,
        }
        match proc_stat::read(pid) {
            Err(error) => Observed::Unknown(error.to_string()),
            Ok(None) => Observed::Dead(self.exit_reason(handle)),
            Ok(Some(stat)) if stat.start_time_ticks != handle.start_time_ticks => Observed::Dead(
                format!("pid {pid} now belongs to another process (start time differs)"),
            ),
            Ok(Some(stat)) if stat.has_exited() => Observed::Dead(self.exit_reason(handle)),
            Ok(Some(_)) => Observed::Alive,
        }
    }

    fn whereabouts(&self, handle: &ProcessHandle) -> Whereabouts {
        // Both must match: containers on one kernel share the boot id but not the host name.
        if handle.host != self.host.host_name {
            Whereabouts::OtherHost
        } else if handle.boot_id != self.host.boot_id {
            Whereabouts::PreviousBoot
        } else {
            Whereabouts::Here
        }
    }

    fn foreign_host(&self, handle: &ProcessHandle) -> ExecutorError {
        ExecutorError::ForeignHost {
            pid: handle.pid,
            handle_host: handle.host.clone(),
            this_host: self.host.host_name.clone(),
        }
    }

    fn exit_reason(&self, handle: &ProcessHandle) -> String {
        let pid = handle.pid;
        let status = self
            .exit_statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(handle);
        match status {
            Some(status) => describe_exit(pid, status),
            None => format!("process {pid} exited"),
        }
    }

    /// Starts the app's command. Synchronous on purpose: once the process exists, nothing can
    /// cancel this before the handle is returned.
    fn spawn(&self, app: &AppRef<'_>, spec: &ProcessSpec) -> Result<ProcessHandle, ExecutorError> {
        let program = &spec.command[0];
        let spawn_error = |reason: String| ExecutorError::Spawn {
            program: program.clone(),
            reason,
        };
        if let Some(cwd) = &spec.cwd
            && !cwd.is_dir()
        {
            return Err(spawn_error(format!(
                "working directory {} is not a directory",
                cwd.display()
            )));
        }

        let log_path = self.log_path(app.id);
        let log_error = |error: io::Error| ExecutorError::LogFile {
            path: log_path.clone(),
            reason: error.to_string(),
        };
        std::fs::create_dir_all(&self.log_dir).map_err(|error| ExecutorError::LogFile {
            path: self.log_dir.clone(),
            reason: error.to_string(),
        })?;
        let mut stdout = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(log_error)?;
        let unix_time = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        writeln!(
            stdout,
            "[console] starting app {} {:?} at unix time {unix_time}: {:?}",
            app.id, app.name, spec.command
        )
        .map_err(log_error)?;
        let stderr = stdout.try_clone().map_err(log_error)?;

        let mut command = Command::new(program);
        command
            .args(&spec.command[1..])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        for (name, _) in std::env::vars_os() {
            if name.as_encoded_bytes().starts_with(b"CONSOLE_") {
                command.env_remove(name);
            }
        }
        command
            .env("CONSOLE_APP_ID", app.id.to_string())
            .env("CONSOLE_APP_NAME", app.name)
            .envs(&spec.env);
        if let Some(cwd) = &spec.cwd {
            command.current_dir(cwd);
        }
        // SAFETY: the hook runs in the forked child before exec, where only async-signal-safe
        // functions may be called; it calls setsid(2), which is one, and touches no shared state.
        unsafe {
            command.pre_exec(start_new_session);
        }
        let mut child = command
            .spawn()
            .map_err(|error| spawn_error(error.to_string()))?;

        // Until the reaper below waits for it, the child stays in /proc (as a zombie at worst).
        let stat = child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .ok_or_else(|| "the started process has no pid".to_owned())
            .and_then(|pid| match proc_stat::read(pid) {
                Ok(Some(stat)) => Ok((pid, stat)),
                Ok(None) => Err(format!("/proc/{pid}/stat vanished right after the start")),
                Err(error) => Err(error.to_string()),
            });
        let (pid, stat): (i32, ProcStat) = match stat {
            Ok(found) => found,
            Err(reason) => {
                // Without a handle nobody could stop it later: do not leave it running.
                if let Err(error) = child.start_kill() {
                    tracing::warn!(app_id = app.id, %error, "cannot kill an unidentified app process");
                }
                self.reap_in_background(app.id, None, child);
                return Err(spawn_error(reason));
            }
        };

        let handle = ProcessHandle {
            pid: pid.unsigned_abs(),
            start_time_ticks: stat.start_time_ticks,
            boot_id: self.host.boot_id.clone(),
            host: self.host.host_name.clone(),
            log_path,
        };
        tracing::info!(app_id = app.id, pid, "started app process");
        self.reap_in_background(app.id, Some(handle.clone()), child);
        Ok(handle)
    }

    /// Waits for a child in a background task so that it does not linger as a zombie, and
    /// remembers its exit status.
    fn reap_in_background(&self, app_id: i64, handle: Option<ProcessHandle>, mut child: Child) {
        let exit_statuses = Arc::clone(&self.exit_statuses);
        tokio::spawn(async move {
            match child.wait().await {
                Ok(status) => {
                    tracing::info!(app_id, %status, "app process exited");
                    if let Some(handle) = handle {
                        exit_statuses
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .record(&handle, status);
                    }
                }
                Err(error) => tracing::warn!(app_id, %error, "cannot wait for app process"),
            }
        });
    }

    /// Whether the process group that `handle` leads still has a member that has not exited.
    fn group_alive(&self, pid: i32, handle: &ProcessHandle) -> Result<bool, ExecutorError> {
        match proc_stat::read(pid)? {
            // Another process holds the pid, so ours is gone, and so is its group: the kernel does
            // not hand out a pid that still names a process group.
            Some(stat) if stat.start_time_ticks != handle.start_time_ticks => Ok(false),
            Some(stat) if !stat.has_exited() => Ok(true),
            // The leader exited; members it left in its group still belong to the app.
            _ => proc_stat::group_has_live_member(pid),
        }
    }

    /// Polls until the group is gone or `timeout` passes; `Ok(true)` if it is gone.
    async fn wait_until_gone(
        &self,
        pid: i32,
        handle: &ProcessHandle,
        timeout: Duration,
    ) -> Result<bool, ExecutorError> {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(5);
        loop {
            if !self.group_alive(pid, handle)? {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }
}

#[async_trait]
impl Executor for ProcessExecutor {
    fn name(&self) -> &'static str {
        "process"
    }

    fn validate_spec(&self, spec: &serde_json::Value) -> Result<(), ExecutorError> {
        super::validate_spec(spec)
    }

    /// # Notable behaviors
    /// With a `previous` handle: adopts the process if it is alive (same pid, start time, boot
    /// and host), starts a new one if it is certainly dead; fails with
    /// [`ExecutorError::ForeignHost`] for a process on another host and
    /// [`ExecutorError::Undetermined`] when `/proc` cannot tell.
    async fn start(
        &self,
        app: &AppRef<'_>,
        previous: Option<&Handle>,
    ) -> Result<Handle, ExecutorError> {
        let spec = ProcessSpec::parse(app.spec)?;
        if let Some(other @ Handle::Noop(_)) = previous {
            return Err(not_a_process(other));
        }
        if let Some(Handle::Process(previous)) = previous {
            match self.observe(previous) {
                Observed::Alive => {
                    tracing::info!(app_id = app.id, pid = previous.pid, "adopted running app");
                    return Ok(Handle::Process(previous.clone()));
                }
                Observed::Dead(reason) => {
                    tracing::info!(app_id = app.id, %reason, "previous instance is dead");
                }
                Observed::OtherHost => return Err(self.foreign_host(previous)),
                Observed::Unknown(reason) => return Err(ExecutorError::Undetermined { reason }),
            }
        }
        self.spawn(app, &spec).map(Handle::Process)
    }

    /// # Notable behaviors
    /// - Success without signalling anything when the process is gone, its pid belongs to
    ///   another process, or the handle is from a previous boot of this host.
    /// - Waits up to the grace period after SIGTERM, then SIGKILLs the group and waits up to 5 s.
    ///
    /// # Notable errors
    /// [`ExecutorError::InvalidHandle`] (nothing signalled) for a pid that cannot be an app's,
    /// the console's own process or group, or a process that does not lead its own session;
    /// [`ExecutorError::ForeignHost`]; [`ExecutorError::Signal`];
    /// [`ExecutorError::StillRunning`].
    async fn stop(&self, app: &AppRef<'_>, handle: &Handle) -> Result<(), ExecutorError> {
        let Handle::Process(handle) = handle else {
            return Err(not_a_process(handle));
        };
        let pid = handle.checked_pid()?;
        match self.whereabouts(handle) {
            Whereabouts::Here => {}
            Whereabouts::PreviousBoot => return Ok(()),
            Whereabouts::OtherHost => return Err(self.foreign_host(handle)),
        }
        if let Some(stat) = proc_stat::read(pid)? {
            if stat.start_time_ticks != handle.start_time_ticks {
                tracing::info!(app_id = app.id, pid, "pid reused; app process already gone");
                return Ok(());
            }
            refuse_foreign_leader(pid, &stat)?;
        }
        if !self.group_alive(pid, handle)? {
            return Ok(());
        }

        signal_group(pid, libc::SIGTERM, "SIGTERM")?;
        if self.wait_until_gone(pid, handle, self.stop_grace).await? {
            tracing::info!(app_id = app.id, pid, "app stopped by SIGTERM");
            return Ok(());
        }
        tracing::warn!(app_id = app.id, pid, grace = ?self.stop_grace, "app ignored SIGTERM; sending SIGKILL");
        signal_group(pid, libc::SIGKILL, "SIGKILL")?;
        if self.wait_until_gone(pid, handle, KILL_WAIT).await? {
            return Ok(());
        }
        Err(ExecutorError::StillRunning {
            pid: handle.pid,
            waited: self.stop_grace + KILL_WAIT,
        })
    }

    async fn probe(&self, _app: &AppRef<'_>, handle: &Handle) -> Liveness {
        let Handle::Process(handle) = handle else {
            return Liveness::Unknown {
                reason: not_a_process(handle).to_string(),
            };
        };
        match self.observe(handle) {
            Observed::Alive => Liveness::Alive,
            Observed::Dead(reason) => Liveness::Dead { reason },
            Observed::OtherHost => Liveness::Dead {
                reason: format!(
                    "handle from another host: process {} runs on {:?}, this console on {:?}",
                    handle.pid, handle.host, self.host.host_name
                ),
            },
            Observed::Unknown(reason) => Liveness::Unknown { reason },
        }
    }
}

/// What `/proc` says about a handle's process.
enum Observed {
    Alive,
    /// Certainly not running on this host.
    Dead(String),
    /// On another host: this node cannot tell.
    OtherHost,
    Unknown(String),
}

enum Whereabouts {
    Here,
    PreviousBoot,
    OtherHost,
}

/// Refuses to signal a group that this executor cannot have started: an app leads its own
/// session and group, and is never the console itself.
fn refuse_foreign_leader(pid: i32, stat: &ProcStat) -> Result<(), ExecutorError> {
    let reason = if stat.session != pid || stat.pgrp != pid {
        format!("process {pid} does not lead its own session, so this executor did not start it")
    } else if u32::try_from(pid).is_ok_and(|pid| pid == std::process::id()) {
        format!("process {pid} is the console itself")
    } else if own_process_group().is_some_and(|own| own == pid) {
        format!("process {pid} leads the console's own process group")
    } else {
        return Ok(());
    };
    Err(ExecutorError::InvalidHandle { reason })
}

fn own_process_group() -> Option<i32> {
    let me = i32::try_from(std::process::id()).ok()?;
    proc_stat::read(me).ok().flatten().map(|stat| stat.pgrp)
}

/// Sends `signal` to process group `pgid`; a group that no longer exists is not an error.
fn signal_group(pgid: i32, signal: libc::c_int, name: &'static str) -> Result<(), ExecutorError> {
    // SAFETY: kill(2) has no memory-safety preconditions; `pgid > 1` (checked_pid), so `-pgid`
    // names exactly one process group, never "all processes" or our own group by accident.
    if unsafe { libc::kill(-pgid, signal) } == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::ESRCH) {
        return Ok(());
    }
    Err(ExecutorError::Signal {
        pid: pgid.unsigned_abs(),
        signal: name,
        reason: error.to_string(),
    })
}

/// The `pre_exec` hook: makes the child a session (and process group) leader.
fn start_new_session() -> io::Result<()> {
    // SAFETY: setsid(2) has no memory-safety preconditions and is async-signal-safe.
    if unsafe { libc::setsid() } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn describe_exit(pid: u32, status: ExitStatus) -> String {
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

/// Exit statuses of processes this executor reaped, keyed by pid and start time; the oldest are
/// forgotten beyond [`EXIT_STATUSES_KEPT`].
#[derive(Debug, Default)]
struct ExitStatuses {
    order: VecDeque<(u32, u64)>,
    by_process: HashMap<(u32, u64), ExitStatus>,
}

impl ExitStatuses {
    fn record(&mut self, handle: &ProcessHandle, status: ExitStatus) {
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

    fn get(&self, handle: &ProcessHandle) -> Option<ExitStatus> {
        self.by_process
            .get(&(handle.pid, handle.start_time_ticks))
            .copied()
    }
}

#[cfg(test)]
mod tests;

/// The error for a handle that another executor made.
fn not_a_process(handle: &Handle) -> ExecutorError {
    ExecutorError::InvalidHandle {
        reason: format!("not a process handle: {handle:?}"),
    }
}
