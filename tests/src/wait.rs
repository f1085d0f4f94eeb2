//! Waiting for conditions: poll a probe at a short interval until it holds or a deadline passes.
//! The harness never sleeps a fixed time to let something happen.
//!
//! A probe is an async closure that answers `Ok(value)` when the condition holds and
//! `Err(observation)` when it does not yet; the last observation goes into the failure message,
//! so a timeout says what the cluster looked like, not just that it was late.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How often probes are polled: short against the timings measured (monitor 500 ms, sessions
/// 1-2 s), long enough not to load two cores with HTTP calls.
pub const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// A condition that did not hold in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedOut {
    pub waited: Duration,
    /// What the last probe saw.
    pub last: String,
}

/// Polls `probe` until it answers `Ok`, for at most `timeout`; answers the value and when it was
/// first seen.
///
/// The probe always runs at least once, and once more after the deadline has passed if the
/// previous run started before it (so a slow probe is not cut short).
pub async fn poll_until<T, F, Fut>(
    timeout: Duration,
    mut probe: F,
) -> Result<(T, Instant), TimedOut>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    let deadline = started + timeout;
    loop {
        let attempt = Instant::now();
        match probe().await {
            Ok(value) => return Ok((value, Instant::now())),
            Err(last) if attempt >= deadline => {
                return Err(TimedOut {
                    waited: started.elapsed(),
                    last,
                });
            }
            Err(_) => tokio::time::sleep(POLL_INTERVAL).await,
        }
    }
}

/// Like [`poll_until`], but panics with `what` and the last observation on timeout.
///
/// # Panics
/// When the condition does not hold within `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    match poll_until(timeout, probe).await {
        Ok((value, _)) => value,
        Err(timed_out) => panic!(
            "timed out after {:?} waiting until {what}; last seen: {}",
            timed_out.waited, timed_out.last
        ),
    }
}

/// Checks that `probe` keeps answering `Ok` for `window` (polled at [`POLL_INTERVAL`]): the way
/// to assert that something does *not* happen, such as an app restarting.
///
/// # Panics
/// At the first `Err`, with `what` and the observation.
pub async fn holds_for<F, Fut>(what: &str, window: Duration, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    loop {
        if let Err(observed) = probe().await {
            panic!(
                "{what} stopped holding after {:?}: {observed}",
                started.elapsed()
            );
        }
        if started.elapsed() >= window {
            return;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn poll_until_answers_the_first_ok() {
        let mut calls = 0;
        let (value, _) = poll_until(Duration::from_secs(5), || {
            calls += 1;
            let answer = if calls == 3 {
                Ok(calls)
            } else {
                Err(format!("call {calls}"))
            };
            async move { answer }
        })
        .await
        .unwrap();
        assert_eq!(value, 3);
    }

    #[tokio::test]
    async fn poll_until_reports_the_last_observation_on_timeout() {
        let mut calls = 0;
        let timed_out = poll_until(Duration::from_millis(100), || {
            calls += 1;
            let seen = format!("call {calls}");
            async move { Err::<(), _>(seen) }
        })
        .await
        .unwrap_err();
        assert!(timed_out.waited >= Duration::from_millis(100));
        assert_eq!(timed_out.last, format!("call {calls}"));
    }

    #[tokio::test]
    #[should_panic(expected = "the flag stopped holding")]
    async fn holds_for_panics_at_the_first_err() {
        let mut calls = 0;
        holds_for("the flag", Duration::from_secs(5), || {
            calls += 1;
            let answer = if calls < 3 {
                Ok(())
            } else {
                Err("off".to_owned())
            };
            async move { answer }
        })
        .await;
    }
}
