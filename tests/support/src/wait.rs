//! Waiting for a condition: poll a probe, with a short backoff, until it holds or a deadline
//! passes. Tests never sleep a fixed time to let something happen; this is how they wait.
//!
//! Every function takes its arguments in one order: what is waited for (words that complete
//! "waiting until ..."), the deadline, then the probe. A probe is a closure answering a future of
//! a [`Condition`]: `bool`, or `Result<T, String>` (`Ok(value)` once the condition holds,
//! `Err(observation)` while it does not). The last observation goes into the failure message, so
//! a timeout says what the test saw, not only that it was late.
//!
//! ```
//! # async fn demo() {
//! use std::time::Duration;
//! use test_support::eventually;
//!
//! let mut polls = 0;
//! let value = eventually("the third poll", Duration::from_secs(5), || {
//!     polls += 1;
//!     let seen = polls;
//!     async move { if seen == 3 { Ok(seen) } else { Err(format!("poll {seen}")) } }
//! })
//! .await;
//! assert_eq!(value, 3);
//! # }
//! ```

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// The longest pause between two polls: short against the timings tests measure (monitor
/// intervals of 200-500 ms, sessions of 1-2 s), long enough not to load two cores.
pub const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// The first pause; each next one doubles, up to [`POLL_INTERVAL`].
const FIRST_PAUSE: Duration = Duration::from_millis(5);

/// What a probe answers: whether the condition holds, with a value once it does and an
/// observation while it does not.
pub trait Condition {
    /// What the wait answers once the condition holds.
    type Value;

    /// `Ok` once the condition holds; `Err` with what was seen instead.
    fn check(self) -> Result<Self::Value, String>;
}

impl Condition for bool {
    type Value = ();

    fn check(self) -> Result<(), String> {
        if self {
            Ok(())
        } else {
            Err("the condition was false".to_owned())
        }
    }
}

impl<T> Condition for Result<T, String> {
    type Value = T;

    fn check(self) -> Result<T, String> {
        self
    }
}

/// A condition that did not hold in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedOut {
    /// How long it was polled.
    pub waited: Duration,
    /// What the last probe saw.
    pub last: String,
}

/// Polls `probe` until its condition holds, for at most `within`; answers the value and the
/// moment it was first seen (to measure how long something took).
///
/// # Notable behaviors
/// The probe always runs at least once, and once more after the deadline has passed if the
/// previous run started before it (so a slow probe is not cut short). Pauses between polls
/// start at 5 ms and double up to [`POLL_INTERVAL`].
pub async fn poll_until<C, F, Fut>(
    within: Duration,
    mut probe: F,
) -> Result<(C::Value, Instant), TimedOut>
where
    C: Condition,
    F: FnMut() -> Fut,
    Fut: Future<Output = C>,
{
    let started = Instant::now();
    let deadline = started + within;
    let mut pause = FIRST_PAUSE;
    loop {
        let attempt = Instant::now();
        match probe().await.check() {
            Ok(value) => return Ok((value, Instant::now())),
            Err(last) if attempt >= deadline => {
                return Err(TimedOut {
                    waited: started.elapsed(),
                    last,
                });
            }
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(POLL_INTERVAL);
            }
        }
    }
}

/// Waits until `probe`'s condition holds and answers its value: [`poll_until`] that fails the
/// test on timeout. `what` completes "waiting until ...", e.g. `"app 7 is RUNNING"`.
///
/// # Panics
/// When the condition does not hold within `within`, naming `what` and the last observation.
pub async fn eventually<C, F, Fut>(what: &str, within: Duration, probe: F) -> C::Value
where
    C: Condition,
    F: FnMut() -> Fut,
    Fut: Future<Output = C>,
{
    match poll_until(within, probe).await {
        Ok((value, _)) => value,
        Err(timed_out) => panic!(
            "timed out after {:?} waiting until {what}; last seen: {}",
            timed_out.waited, timed_out.last
        ),
    }
}

/// Checks that `probe`'s condition keeps holding for `window`, polled every [`POLL_INTERVAL`]:
/// the way to assert that something does *not* happen, such as an app restarting.
///
/// # Panics
/// At the first poll where it does not hold, naming `what` and the observation.
pub async fn holds_for<C, F, Fut>(what: &str, window: Duration, mut probe: F)
where
    C: Condition,
    F: FnMut() -> Fut,
    Fut: Future<Output = C>,
{
    let started = Instant::now();
    loop {
        if let Err(observed) = probe().await.check() {
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
    async fn eventually_takes_a_bool_condition() {
        let mut calls = 0;
        eventually("the third call", Duration::from_secs(5), || {
            calls += 1;
            let holds = calls == 3;
            async move { holds }
        })
        .await;
        assert_eq!(calls, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "waiting until the flag is up; last seen: the condition was false")]
    async fn eventually_names_what_it_waited_for() {
        eventually("the flag is up", Duration::from_millis(50), || async {
            false
        })
        .await;
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
