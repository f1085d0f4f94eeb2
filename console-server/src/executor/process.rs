//! The `process` executor: an app is an OS command line, started detached in its own session.
//!
//! # Notable behaviors
//! - The app is started with `setsid`: it leads a new session and process group, has no
//!   controlling terminal, and is neither signalled nor killed when the console dies (even by
//!   SIGKILL). Its stdin is `/dev/null`; stdout and stderr are appended to
//!   `<log_dir>/<app_id>.log`, after a `[console] starting app ...` line per start.
//! - The app gets the console's environment minus the console's own `CONSOLE_*` variables (they
//!   may carry secrets), plus the spec's `env`, plus `CONSOLE_APP_ID`, `CONSOLE_APP_NAME` and
//!   `CONSOLE_APP_KEY` (`<cluster id>/<app id>`), set last so that a spec cannot change them.
//! - **An app is all of its processes** ([`members`]): its session and process group, and every
//!   process that carries its key. It is alive while any of them runs, also after the first one
//!   exited; `stop` signals every one of them (SIGTERM, then SIGKILL after the grace period) and
//!   returns once none is left. `probe` and `stop` use the same definition.
//! - The console reaps the processes it started (a background task per process), so no zombie is
//!   left while it runs; it remembers their exit status to explain a death in [`Liveness::Dead`].
//! - **Host-level guard**: before it spawns, `start` takes the app's start lock, shared by every
//!   console on the host (`start_lock.rs`), and adopts a running copy of the app (a process
//!   carrying its key) if there is one. A start retried after its console died between the
//!   spawn and the record, or run by a console that was fenced meanwhile, finds the copy
//!   instead of making a second.
//! - A process is named by pid **and** start time (clock ticks since boot) **and** boot id **and**
//!   host (machine id and host name): a pid that now belongs to another process is never
//!   signalled, and a process of an earlier boot is dead.
//! - **A handle from another host is never dead**: `probe` answers [`Liveness::Unknown`], and
//!   `start` and `stop` refuse with [`ExecutorError::ForeignHost`] (a
//!   [refusal](ExecutorError::is_refusal)): this node can neither see, stop nor replace it.
//!
//! # Requirements
//! Linux (`/proc`, pidfds from 5.3 on, a plain `kill` before). Nodes and their apps run as the
//! same user (or the nodes as root): an app's processes are recognised by their environment,
//! which only that user can read.

mod exits;
mod failpoint;
mod handle;
#[cfg(test)]
mod hooks;
mod members;
mod signal;
mod spawn;
mod start_lock;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use self::exits::{ExitStatuses, describe_exit};
use self::failpoint::Failpoints;
pub use self::handle::ProcessHandle;
use self::handle::{Whereabouts, describe_host};
#[cfg(test)]
use self::hooks::TestHooks;
pub use self::members::APP_KEY_VAR;
use self::members::{Member, MemberCache, Membership};
use self::signal::Signal;
use self::start_lock::StartLocks;
use super::proc_stat::{self, HostIdentity};
use super::{AppRef, Executor, ExecutorError, Handle, Liveness, ProcessSpec, TaskRef};

mod logs;
pub use logs::{AppLogs, LogPlace, read_tail};

/// How long `stop` waits after SIGTERM before it sends SIGKILL, unless configured otherwise.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);

/// How long `stop` waits for the app's processes to vanish after SIGKILL before giving up.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// The longest pause between two scans while `stop` waits for the app's processes to go.
const STOP_POLL: Duration = Duration::from_millis(100);

/// Runs apps as detached OS processes on this host. See the [module documentation](self).
#[derive(Debug)]
pub struct ProcessExecutor {
    log_dir: PathBuf,
    cluster_id: String,
    stop_grace: Duration,
    host: HostIdentity,
    exit_statuses: Arc<Mutex<ExitStatuses>>,
    members: MemberCache,
    start_locks: StartLocks,
    failpoints: Failpoints,
    #[cfg(test)]
    hooks: TestHooks,
}

impl ProcessExecutor {
    /// An executor that writes app logs under `log_dir` (created on first start; made absolute
    /// now), tags apps with keys `<cluster_id>/<app id>`, and stops with [`DEFAULT_STOP_GRACE`].
    ///
    /// `cluster_id` must be the same on every node of a cluster and differ between clusters
    /// that share a host: app ids repeat across clusters, keys must not.
    ///
    /// # Notable errors
    /// [`ExecutorError::LogFile`] if `log_dir` cannot be made absolute or is not UTF-8 (handles
    /// are JSON); [`ExecutorError::Setup`] for an empty cluster id or one with control
    /// characters; [`ExecutorError::Proc`] if the host name or boot id cannot be read.
    pub fn new(log_dir: impl Into<PathBuf>, cluster_id: &str) -> Result<Self, ExecutorError> {
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
        if cluster_id.is_empty() || cluster_id.chars().any(char::is_control) {
            return Err(ExecutorError::Setup {
                what: "cluster id".to_owned(),
                reason: format!("{cluster_id:?} must be non-empty without control characters"),
            });
        }
        Ok(Self {
            log_dir,
            cluster_id: cluster_id.to_owned(),
            stop_grace: DEFAULT_STOP_GRACE,
            host: HostIdentity::current()?,
            exit_statuses: Arc::default(),
            members: MemberCache::default(),
            start_locks: StartLocks::for_this_user(),
            failpoints: Failpoints::from_env(),
            #[cfg(test)]
            hooks: TestHooks::default(),
        })
    }

    /// Sets how long `stop` waits after SIGTERM before it sends SIGKILL (tests shorten it).
    #[cfg(test)]
    pub fn with_stop_grace(mut self, grace: Duration) -> Self {
        self.stop_grace = grace;
        self
    }

    /// Sets the points where a test pauses or observes the executor.
    #[cfg(test)]
    fn with_hooks(mut self, hooks: TestHooks) -> Self {
        self.hooks = hooks;
        self
    }

    /// The log file of app `app_id`.
    pub fn log_path(&self, app_id: i64) -> PathBuf {
        self.log_dir.join(format!("{app_id}.log"))
    }

    /// The key that every process of app `app_id` carries in [`APP_KEY_VAR`].
    pub fn app_key(&self, app_id: i64) -> String {
        format!("{}/{app_id}", self.cluster_id)
    }

    /// The membership rules of `handle`'s app: the key it recorded and this node's key for the
    /// app (the same unless the cluster id changed).
    fn membership(
        &self,
        app: &AppRef<'_>,
        handle: &ProcessHandle,
    ) -> Result<Membership, ExecutorError> {
        let pid = handle.checked_pid()?;
        handle.check_key(app.id)?;
        let key = self.app_key(app.id);
        let mut keys = vec![key.as_str()];
        if !handle.app_key.is_empty() && handle.app_key != key {
            keys.push(&handle.app_key);
        }
        Membership::new(pid, handle, &keys)
    }

    /// Looks at the processes of the app a handle names, without side effects.
    fn observe(&self, app: &AppRef<'_>, handle: &ProcessHandle) -> Observed {
        let pid = match handle.checked_pid().and_then(|pid| {
            handle.check_key(app.id)?;
            Ok(pid)
        }) {
            Ok(pid) => pid,
            Err(error) => return Observed::Unknown(error.to_string()),
        };
        match handle.whereabouts(&self.host) {
            Whereabouts::Here => {}
            Whereabouts::PreviousBoot => {
                return Observed::Dead(format!(
                    "handle from another boot of this host (boot id {}): process {pid} is gone",
                    handle.boot_id
                ));
            }
            Whereabouts::OtherHost => return Observed::OtherHost,
        }
        let recorded = match proc_stat::read(pid) {
            Ok(recorded) => recorded,
            Err(error) => return Observed::Unknown(error.to_string()),
        };
        if recorded.is_some_and(|stat| {
            stat.start_time_ticks == handle.start_time_ticks && !stat.has_exited()
        }) || self.members.any_alive(handle)
        {
            return Observed::Alive;
        }
        match self.membership(app, handle).and_then(|rules| rules.scan()) {
            Err(error) => Observed::Unknown(error.to_string()),
            Ok(found) if !found.is_empty() => {
                self.members.remember(handle, found);
                Observed::Alive
            }
            Ok(_) => {
                self.members.forget(handle);
                Observed::Dead(match recorded {
                    Some(stat) if stat.start_time_ticks != handle.start_time_ticks => {
                        format!("pid {pid} now belongs to another process (start time differs)")
                    }
                    _ => self.exit_reason(handle),
                })
            }
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

    fn foreign_host(&self, handle: &ProcessHandle) -> ExecutorError {
        ExecutorError::ForeignHost {
            pid: handle.pid,
            handle_host: handle.describe_host(),
            this_host: describe_host(&self.host.host_name, &self.host.machine_id),
        }
    }

    /// The handle to record for an app found alive through `previous`: `previous` while its
    /// recorded process runs; once that one has exited, the running copy's first process, so
    /// that the record names a live process rather than a pid the kernel may hand out again.
    fn precise(
        &self,
        app: &AppRef<'_>,
        previous: &ProcessHandle,
        keys: &[String],
    ) -> Result<ProcessHandle, ExecutorError> {
        let recorded_runs = Member {
            pid: previous.checked_pid()?,
            start_time_ticks: previous.start_time_ticks,
        }
        .is_alive();
        if recorded_runs {
            return Ok(previous.clone());
        }
        Ok(self
            .find_copy(app, keys)?
            .unwrap_or_else(|| previous.clone()))
    }

    /// A running copy of the app that no handle names (a start whose outcome was never
    /// recorded): the oldest process carrying one of `keys`, preferring one that leads its own
    /// session (the copy's first process).
    ///
    /// # Notable errors
    /// [`ExecutorError::Undetermined`] when `/proc` cannot be scanned: without the scan a start
    /// could make a second copy.
    fn find_copy(
        &self,
        app: &AppRef<'_>,
        keys: &[String],
    ) -> Result<Option<ProcessHandle>, ExecutorError> {
        for key in keys {
            let found =
                members::carrying_key(key).map_err(|error| ExecutorError::Undetermined {
                    reason: format!("cannot look for a running copy of the app: {error}"),
                })?;
            let first = found
                .iter()
                .find(|process| process.stat.session == process.pid)
                .or(found.first());
            if let Some(first) = first {
                return Ok(Some(ProcessHandle {
                    pid: first.pid.unsigned_abs(),
                    start_time_ticks: first.stat.start_time_ticks,
                    boot_id: self.host.boot_id.clone(),
                    host: self.host.host_name.clone(),
                    machine_id: self.host.machine_id.clone(),
                    app_key: key.clone(),
                    log_path: self.log_path(app.id),
                }));
            }
        }
        Ok(None)
    }

    /// Sends `signal` to every process of the app, rescanning (new children, daemons) until none
    /// is left or `within` passes; `Ok(true)` once none is left. A process gets SIGTERM once;
    /// SIGKILL is repeated at every scan.
    async fn signal_until_gone(
        &self,
        rules: &Membership,
        signal: Signal,
        within: Duration,
        signalled: &mut HashSet<Member>,
    ) -> Result<bool, ExecutorError> {
        let deadline = Instant::now() + within;
        let mut pause = Duration::from_millis(5);
        loop {
            let found = rules.scan()?;
            if found.is_empty() {
                return Ok(true);
            }
            for member in found {
                if signalled.insert(member) || signal == Signal::Kill {
                    signal::send(member, signal)?;
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(STOP_POLL);
        }
    }
}

#[async_trait]
impl Executor for ProcessExecutor {
    fn name(&self) -> &'static str {
        "process"
    }

    /// A process can only be seen and signalled on its own host.
    fn is_host_bound(&self) -> bool {
        true
    }

    fn validate_spec(&self, spec: &serde_json::Value) -> Result<(), ExecutorError> {
        super::validate_spec(spec)
    }

    /// # Notable behaviors
    /// - With a `previous` handle: adopts the app if any of its processes is alive; refuses
    ///   with [`ExecutorError::ForeignHost`] for a process on another host and
    ///   [`ExecutorError::Undetermined`] when `/proc` cannot tell.
    /// - Otherwise, under the app's host-level start lock: adopts a running copy that carries
    ///   the app's key (started by a console that died before recording it, or by another
    ///   console on this host), else spawns.
    ///
    /// # Notable errors
    /// Besides the above: [`ExecutorError::InvalidSpec`], [`ExecutorError::Spawn`],
    /// [`ExecutorError::LogFile`], [`ExecutorError::StartLock`]; [`ExecutorError::Undetermined`]
    /// when another start of the app holds the lock for [`START_LOCK_WAIT`](start_lock::START_LOCK_WAIT).
    async fn start(
        &self,
        app: &AppRef<'_>,
        task: TaskRef<'_>,
        previous: Option<&Handle>,
    ) -> Result<Handle, ExecutorError> {
        let spec = ProcessSpec::parse(app.spec)?;
        let previous = match previous {
            None => None,
            Some(Handle::Process(previous)) => Some(previous),
            Some(other) => return Err(not_a_process(other)),
        };
        tracing::debug!(
            app_id = app.id,
            task = task.id,
            attempt = task.attempt,
            "start"
        );
        let mut keys = vec![self.app_key(app.id)];
        if let Some(previous) = previous {
            if !previous.app_key.is_empty() && previous.app_key != keys[0] {
                keys.push(previous.app_key.clone());
            }
            match self.observe(app, previous) {
                Observed::Alive => {
                    let adopted = self.precise(app, previous, &keys)?;
                    tracing::info!(app_id = app.id, pid = adopted.pid, "adopted running app");
                    return Ok(Handle::Process(adopted));
                }
                Observed::Dead(reason) => {
                    tracing::info!(app_id = app.id, %reason, "previous instance is dead");
                }
                Observed::OtherHost => return Err(self.foreign_host(previous)),
                Observed::Unknown(reason) => return Err(ExecutorError::Undetermined { reason }),
            }
        }

        // The host-level guard: under the app's start lock, adopt a copy nobody recorded
        // instead of starting a second one.
        let _lock = self
            .start_locks
            .acquire(&keys[0], || {
                #[cfg(test)]
                self.hooks.lock_busy();
            })
            .await?;
        // No await from here on: once the process exists, this returns its handle.
        if let Some(copy) = self.find_copy(app, &keys)? {
            tracing::warn!(
                app_id = app.id,
                pid = copy.pid,
                "adopted a running copy that no handle recorded"
            );
            return Ok(Handle::Process(copy));
        }
        #[cfg(test)]
        self.hooks.before_spawn();
        self.spawn(app, &spec).map(Handle::Process)
    }

    /// # Notable behaviors
    /// - Success without signalling anything when no process of the app is left, or the handle
    ///   is from a previous boot of this host.
    /// - SIGTERM to every process of the app, then, after the grace period, SIGKILL to those
    ///   left; processes that appear meanwhile (children, daemons) get the same. Returns once
    ///   none is left, or fails 5 s after the SIGKILL.
    ///
    /// # Notable errors
    /// [`ExecutorError::InvalidHandle`] (nothing signalled) for a pid that cannot be an app's,
    /// a key of another app, the console's own process or group, or a recorded process that
    /// neither leads its own session nor carries the app's key; [`ExecutorError::ForeignHost`];
    /// [`ExecutorError::Proc`]; [`ExecutorError::Signal`]; [`ExecutorError::StillRunning`].
    async fn stop(
        &self,
        app: &AppRef<'_>,
        task: TaskRef<'_>,
        handle: &Handle,
    ) -> Result<(), ExecutorError> {
        let Handle::Process(handle) = handle else {
            return Err(not_a_process(handle));
        };
        tracing::debug!(
            app_id = app.id,
            task = task.id,
            attempt = task.attempt,
            "stop"
        );
        let pid = handle.checked_pid()?;
        handle.check_key(app.id)?;
        match handle.whereabouts(&self.host) {
            Whereabouts::Here => {}
            Whereabouts::PreviousBoot => return Ok(()),
            Whereabouts::OtherHost => return Err(self.foreign_host(handle)),
        }
        let rules = self.membership(app, handle)?;
        if let Some(stat) = proc_stat::read(pid)?
            && stat.start_time_ticks == handle.start_time_ticks
        {
            let key = format!("{APP_KEY_VAR}={}", self.app_key(app.id));
            signal::refuse_foreign(pid, &stat, proc_stat::environ_contains(pid, key.as_bytes()))?;
        }

        let mut signalled = HashSet::new();
        let gone = self
            .signal_until_gone(&rules, Signal::Term, self.stop_grace, &mut signalled)
            .await?;
        if !gone {
            tracing::warn!(app_id = app.id, pid, grace = ?self.stop_grace, "app ignored SIGTERM; sending SIGKILL");
            let gone = self
                .signal_until_gone(&rules, Signal::Kill, KILL_WAIT, &mut signalled)
                .await?;
            if !gone {
                return Err(ExecutorError::StillRunning {
                    pid: handle.pid,
                    waited: self.stop_grace + KILL_WAIT,
                });
            }
        }
        self.members.forget(handle);
        if !signalled.is_empty() {
            tracing::info!(
                app_id = app.id,
                pid,
                processes = signalled.len(),
                "app stopped"
            );
        }
        Ok(())
    }

    async fn probe(&self, app: &AppRef<'_>, handle: &Handle) -> Liveness {
        let Handle::Process(handle) = handle else {
            return Liveness::Unknown {
                reason: not_a_process(handle).to_string(),
            };
        };
        match self.observe(app, handle) {
            Observed::Alive => Liveness::Alive,
            Observed::Dead(reason) => Liveness::Dead { reason },
            // Not dead: this node cannot see it. Marking it FAILED would let a new start or a
            // delete leave it running unmanaged.
            Observed::OtherHost => Liveness::Unknown {
                reason: self.foreign_host(handle).to_string(),
            },
            Observed::Unknown(reason) => Liveness::Unknown { reason },
        }
    }
}

/// What `/proc` says about the app a handle names.
enum Observed {
    Alive,
    /// Certainly not running on this host.
    Dead(String),
    /// On another host: this node cannot tell.
    OtherHost,
    Unknown(String),
}

/// The error for a handle that another executor made.
fn not_a_process(handle: &Handle) -> ExecutorError {
    ExecutorError::InvalidHandle {
        reason: format!("not a process handle: {handle:?}"),
    }
}

#[cfg(test)]
mod tests;
