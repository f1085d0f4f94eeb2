//! The one error type of the executors.

use std::path::PathBuf;
use std::time::Duration;

/// What can go wrong when starting or stopping an app.
///
/// `Clone + PartialEq + Eq` so that tests compare errors directly; new variants may be added.
///
/// # Notable errors
/// - [`ExecutorError::InvalidSpec`] is the user's mistake (HTTP 400); its message names the field.
/// - [`ExecutorError::InvalidHandle`] means a stored handle is corrupt; nothing was signalled.
/// - [`ExecutorError::Undetermined`] and [`ExecutorError::ForeignHost`] are
///   [refusals](ExecutorError::is_refusal): the executor did nothing because it could not tell
///   whether the app runs; acting could duplicate or orphan it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExecutorError {
    /// The app's spec is not valid for this executor. `reason` names the field, e.g.
    /// `spec.command must be a non-empty array of strings`.
    #[error("invalid spec: {reason}")]
    InvalidSpec { reason: String },

    /// A stored handle cannot be acted on (for instance it names pid 0, 1 or the console itself).
    #[error("invalid handle: {reason}")]
    InvalidHandle { reason: String },

    /// The per-app log file or its directory could not be created or opened.
    #[error("cannot open app log file {}: {reason}", path.display())]
    LogFile { path: PathBuf, reason: String },

    /// The command could not be started (program not found, not executable, bad `cwd`, ...).
    #[error("cannot start {program:?}: {reason}")]
    Spawn { program: String, reason: String },

    /// Reading `/proc` failed for a reason other than the process being gone.
    #[error("cannot read {}: {reason}", path.display())]
    Proc { path: PathBuf, reason: String },

    /// Sending a signal failed (for instance the process belongs to another user).
    #[error("cannot send {signal} to process {pid}: {reason}")]
    Signal {
        pid: u32,
        signal: &'static str,
        reason: String,
    },

    /// The process group was still alive `waited` after SIGTERM and SIGKILL (for instance stuck in
    /// uninterruptible sleep).
    #[error("process {pid} still running {waited:?} after SIGTERM and SIGKILL")]
    StillRunning { pid: u32, waited: Duration },

    /// The handle names a process on another host: this node can neither stop nor replace it.
    /// The hosts are described with their machine ids: `host "a" (machine id 3d12…)`.
    #[error("on another host: process {pid} runs on {handle_host}, this node on {this_host}")]
    ForeignHost {
        pid: u32,
        handle_host: String,
        this_host: String,
    },

    /// `start` was given a previous handle whose liveness could not be established, so starting a
    /// second instance could duplicate the app.
    #[error("cannot tell whether the previous instance still runs: {reason}")]
    Undetermined { reason: String },

    /// The host-level start lock (see the process executor) cannot be used.
    #[error("cannot use the start lock {}: {reason}", path.display())]
    StartLock { path: PathBuf, reason: String },

    /// A Flink call failed or Flink refused (the `flink` executor); `reason` says which and why.
    #[error("Flink: {reason}")]
    Flink { reason: String },

    /// The executor does not do what was asked (a savepoint of a `process` app); nothing was
    /// done.
    #[error("the {executor} executor does not support {operation}")]
    Unsupported {
        executor: &'static str,
        operation: &'static str,
    },

    /// The executor cannot be set up as configured; `what` names the setting.
    #[error("{what}: {reason}")]
    Setup { what: String, reason: String },
}

impl ExecutorError {
    /// Whether the executor refused to act because a copy of the app may be running where it
    /// cannot see: on another host ([`ExecutorError::ForeignHost`]) or where its state could not
    /// be read ([`ExecutorError::Undetermined`]).
    ///
    /// # Notable behaviors
    /// Nothing was started, stopped or signalled. The app may still run, so its state must not
    /// change: the dispatcher keeps such a task as refused (the app stays as it was, never
    /// FAILED), and the same call may succeed later, from a node that can see the app.
    #[must_use]
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::ForeignHost { .. } | Self::Undetermined { .. })
    }
}
