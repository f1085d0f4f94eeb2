//! The executor conformance kit (`executor/kit/`) against the process executor: real processes,
//! counted from `/proc` by the key they carry, not through the executor.

use async_trait::async_trait;

use super::super::super::kit::Target;
use super::*;

/// The apps of the kit's cases have ids 1 to this.
const KIT_APPS: i64 = 16;

#[derive(Debug)]
struct ProcessTarget {
    _dir: tempfile::TempDir,
    executor: ProcessExecutor,
}

impl ProcessTarget {
    fn live_copies(&self, app_id: i64) -> Result<Vec<i32>, String> {
        members::carrying_key(&self.executor.app_key(app_id))
            .map(|found| found.iter().map(|process| process.pid).collect())
            .map_err(|error| error.to_string())
    }
}

#[async_trait]
impl Target for ProcessTarget {
    async fn create() -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|error| error.to_string())?;
        let executor = ProcessExecutor::new(dir.path().join("apps"), &test_cluster_id())
            .map_err(|error| error.to_string())?
            .with_stop_grace(Duration::from_secs(5));
        Ok(Self {
            _dir: dir,
            executor,
        })
    }

    fn executor(&self) -> &dyn Executor {
        &self.executor
    }

    fn long_running_spec(&self) -> Value {
        json!({"command": ["sleep", "300"]})
    }

    async fn copies(&self, app: &AppRef<'_>) -> Result<usize, String> {
        self.live_copies(app.id).map(|copies| copies.len())
    }

    async fn kill_behind_the_back(&self, app: &AppRef<'_>) -> Result<(), String> {
        for pid in self.live_copies(app.id)? {
            // SAFETY: kill(2) has no memory-safety preconditions; `pid` carries this test's key.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        crate::executor::kit::until_no_copies(self, app).await
    }

    fn foreign(&self, handle: &Handle) -> Handle {
        let mut foreign = process(handle).clone();
        foreign.host = "elsewhere.example".to_owned();
        Handle::Process(foreign)
    }

    fn undeterminable(&self, handle: &Handle) -> Handle {
        let mut unusable = process(handle).clone();
        unusable.pid = 0;
        Handle::Process(unusable)
    }

    async fn destroy(&self) {
        for app_id in 1..=KIT_APPS {
            for pid in self.live_copies(app_id).unwrap_or_default() {
                // SAFETY: kill(2) has no memory-safety preconditions; `pid` carries this test's key.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

mod process_conformance {
    crate::executor::kit::executor_conformance_tests!(super::ProcessTarget);
}
