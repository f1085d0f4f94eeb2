//! The `noop` executor: an app "runs" from its start until its stop, and nothing else happens.
//!
//! It exists so that the cluster benchmark measures coordination (claiming, ordering, failover)
//! rather than `fork`/`exec`. The console registers it only when `CONSOLE_BENCHMARK_EXECUTOR=noop`
//! is set (see `docs/BENCHMARKS.md`); it is never available by default.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{AppRef, Executor, ExecutorError, Handle, Liveness};

/// What a `noop` start records: when it "started" (milliseconds since the Unix epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoopHandle {
    pub started_at: i64,
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
        previous: Option<&Handle>,
    ) -> Result<Handle, ExecutorError> {
        if let Some(previous @ Handle::Noop(_)) = previous {
            return Ok(previous.clone());
        }
        let started_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Ok(Handle::Noop(NoopHandle { started_at }))
    }

    async fn stop(&self, _app: &AppRef<'_>, _handle: &Handle) -> Result<(), ExecutorError> {
        Ok(())
    }

    async fn probe(&self, _app: &AppRef<'_>, handle: &Handle) -> Liveness {
        match handle {
            Handle::Noop(_) => Liveness::Alive,
            other => Liveness::Unknown {
                error: format!("not a noop handle: {other:?}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn starts_nothing_and_stays_alive_until_stopped() {
        let spec = json!({});
        let app = AppRef {
            id: 1,
            name: "bench",
            spec: &spec,
        };
        let handle = NoopExecutor.start(&app, None).await.unwrap();
        assert!(matches!(handle, Handle::Noop(_)));
        assert_eq!(NoopExecutor.probe(&app, &handle).await, Liveness::Alive);
        assert_eq!(
            NoopExecutor.start(&app, Some(&handle)).await.unwrap(),
            handle,
            "a repeated start adopts"
        );
        NoopExecutor.stop(&app, &handle).await.unwrap();
        assert!(NoopExecutor.validate_spec(&json!([])).is_err());
    }
}
