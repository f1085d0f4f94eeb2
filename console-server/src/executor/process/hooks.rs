//! Test hooks: points where a test pauses or observes the executor.

use std::sync::Arc;

/// Points where tests pause or observe the executor, to drive races deterministically.
#[derive(Clone, Default)]
pub(super) struct TestHooks {
    /// Runs with the start lock held, after the guard found no copy, right before the spawn.
    pub before_spawn: Option<Arc<dyn Fn() + Send + Sync>>,
    /// Runs each time the start lock is found held by another start.
    pub lock_busy: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl TestHooks {
    pub(super) fn before_spawn(&self) {
        if let Some(hook) = &self.before_spawn {
            hook();
        }
    }

    pub(super) fn lock_busy(&self) {
        if let Some(hook) = &self.lock_busy {
            hook();
        }
    }
}

impl std::fmt::Debug for TestHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestHooks")
            .field("before_spawn", &self.before_spawn.is_some())
            .field("lock_busy", &self.lock_busy.is_some())
            .finish()
    }
}
