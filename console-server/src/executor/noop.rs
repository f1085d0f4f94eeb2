//! The `noop` executor: an app "runs" from its start until its stop, and nothing else happens.
//!
//! It exists so that the cluster benchmark measures coordination (claiming, ordering, failover)
//! rather than `fork`/`exec`. The console registers it only when `CONSOLE_BENCHMARK_EXECUTOR=noop`
//! is set (see `docs/BENCHMARKS.md`); it is never available by default.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use task_dispatch::unix_millis_at;

use super::{AppRef, Executor, ExecutorError, Handle, Liveness, TaskRef};

/// What a `noop` start records: when `start` was called, in milliseconds and in microseconds
/// since the Unix epoch (one reading of the clock). The cluster benchmark reads
/// `started_at_us` back to measure submit-to-start latency on the same host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoopHandle {
    pub started_at: i64,
    /// 0 in handles recorded before this field existed.
    #[serde(default)]
    pub started_at_us: i64,
}

/// Starts nothing; every app it "started" stays alive until stopped.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopExecutor;

#[async_trait]
impl Executor for NoopExecutor {
    fn name(&self) -> &'static str {
        "noop"
    }

    fn validate_spec(&self, spec: &serde_json::Value) -> Result<(), ExecutorError> {
        if spec.is_object() {
            Ok(())
        } else {
            Err(ExecutorError::InvalidSpec {
                reason: "spec must be a JSON object".to_owned(),
            })
        }
    }

    async fn start(
        &self,
        _app: &AppRef<'_>,
        _task: TaskRef<'_>,
        previous: Option<&Handle>,
    ) -> Result<Handle, ExecutorError> {
        if let Some(previous @ Handle::Noop(_)) = previous {
            return Ok(previous.clone());
        }
        // One reading of the clock for both fields.
        let now = std::time::SystemTime::now();
        let since_epoch = now
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Ok(Handle::Noop(NoopHandle {
            started_at: unix_millis_at(now),
            started_at_us: i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX),
        }))
    }

    async fn stop(
        &self,
        _app: &AppRef<'_>,
        _task: TaskRef<'_>,
        _handle: &Handle,
    ) -> Result<(), ExecutorError> {
        Ok(())
    }

    async fn probe(&self, _app: &AppRef<'_>, handle: &Handle) -> Liveness {
        match handle {
            Handle::Noop(_) => Liveness::Alive,
            other => Liveness::Unknown {
                reason: format!("not a noop handle: {other:?}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const TASK: TaskRef<'static> = TaskRef::first(1);

    #[tokio::test]
    async fn starts_nothing_and_stays_alive_until_stopped() {
        let spec = json!({});
        let app = AppRef {
            id: 1,
            name: "bench",
            spec: &spec,
        };
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let handle = NoopExecutor.start(&app, TASK, None).await.unwrap();
        let Handle::Noop(noop) = &handle else {
            panic!("not a noop handle: {handle:?}");
        };
        let before_us = i64::try_from(before.as_micros()).unwrap();
        assert!(
            noop.started_at_us >= before_us,
            "{noop:?} before {before_us}"
        );
        assert_eq!(
            noop.started_at,
            noop.started_at_us / 1000,
            "one clock reading"
        );
        assert_eq!(NoopExecutor.probe(&app, &handle).await, Liveness::Alive);
        assert_eq!(
            NoopExecutor.start(&app, TASK, Some(&handle)).await.unwrap(),
            handle,
            "a repeated start adopts"
        );
        NoopExecutor.stop(&app, TASK, &handle).await.unwrap();
        assert!(NoopExecutor.validate_spec(&json!([])).is_err());
    }

    #[test]
    fn handles_recorded_without_microseconds_still_read() {
        let handle: Handle = serde_json::from_value(
            json!({"executor": "noop", "started_at": 1_700_000_000_000_i64}),
        )
        .unwrap();
        assert_eq!(
            handle,
            Handle::Noop(NoopHandle {
                started_at: 1_700_000_000_000,
                started_at_us: 0
            })
        );
    }
}
