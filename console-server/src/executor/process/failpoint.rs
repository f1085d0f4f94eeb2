//! Failure injection for the cluster tests, switched on by a test-only environment variable and
//! off by default.
//!
//! `CONSOLE_TEST_KILL_AFTER_SPAWN=<app name>` ([`KILL_AFTER_SPAWN_VAR`]): the console SIGKILLs
//! itself right after it spawned the process of the app of that name, before `start` returns,
//! so before the dispatcher can record the handle. The cluster tests use it to check that the
//! next owner adopts that copy instead of starting a second one (issue 12, finding 2). It is
//! read once, when the executor is built, and logged as a warning; never set it in production.

/// The variable that names the app after whose spawn the console kills itself.
pub const KILL_AFTER_SPAWN_VAR: &str = "CONSOLE_TEST_KILL_AFTER_SPAWN";

/// The failpoints this process was started with.
#[derive(Debug, Clone, Default)]
pub(super) struct Failpoints {
    kill_after_spawn: Option<String>,
}

impl Failpoints {
    /// Reads [`KILL_AFTER_SPAWN_VAR`].
    pub(super) fn from_env() -> Self {
        let kill_after_spawn = std::env::var(KILL_AFTER_SPAWN_VAR)
            .ok()
            .filter(|name| !name.is_empty());
        if let Some(app) = &kill_after_spawn {
            tracing::warn!(%app, "test failpoint {KILL_AFTER_SPAWN_VAR} is set: this node kills itself right after it spawns that app");
        }
        Self { kill_after_spawn }
    }

    /// Runs right after the process of app `app_name` was spawned.
    pub(super) fn after_spawn(&self, app_name: &str) {
        if self.kill_after_spawn.as_deref() == Some(app_name) {
            tracing::warn!(app = %app_name, "test failpoint: killing this node before the start is recorded");
            // SAFETY: kill(2) of this very process; no memory is passed.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
    }
}
