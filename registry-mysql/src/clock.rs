//! Whether the database's clock can be trusted to judge expiry right now.
//!
//! Expiry is judged by the database's clock (`expires_at < UTC_TIMESTAMP(6)`), so a step of that
//! clock would, without care, expire every session at once (forward) or keep dead ones listed
//! (backward). A [`ClockWatch`] compares, at every poll, how far the database's clock moved with
//! how far this process's monotonic clock moved; a difference beyond half the session timeout is
//! a step, and purges of expired peers are then held for one session timeout and one heartbeat
//! interval, by which time every live client has heartbeated under the new clock (a heartbeat
//! refreshes its row whatever `expires_at` says: only a purge ends a session). A fresh watch
//! holds purges for the same time, since it cannot tell whether a step happened just before it
//! started. Issue 12, finding 16.

use std::time::Duration;

use tokio::time::Instant;

/// See the [module documentation](self).
#[derive(Debug)]
pub(crate) struct ClockWatch {
    tolerance: Duration,
    hold: Duration,
    last: Option<(i64, Instant)>,
    held_until: Instant,
}

/// What one poll's reading said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reading {
    /// The database's clock moved with ours.
    Steady,
    /// It stepped by about this many microseconds (negative: backward).
    Stepped(i64),
}

impl ClockWatch {
    pub(crate) fn new(session_timeout: Duration, interval: Duration, now: Instant) -> Self {
        let hold = session_timeout + interval;
        Self {
            tolerance: session_timeout / 2,
            hold,
            last: None,
            held_until: now + hold,
        }
    }

    /// Records the database's clock `database_us` (microseconds since the epoch) read at `now`.
    pub(crate) fn observe(&mut self, database_us: i64, now: Instant) -> Reading {
        let reading = match self.last {
            Some((last_us, last_at)) => {
                let ours = i64::try_from((now - last_at).as_micros()).unwrap_or(i64::MAX);
                let drift = (database_us - last_us).saturating_sub(ours);
                let tolerance = i64::try_from(self.tolerance.as_micros()).unwrap_or(i64::MAX);
                if drift.abs() > tolerance {
                    self.held_until = now + self.hold;
                    Reading::Stepped(drift)
                } else {
                    Reading::Steady
                }
            }
            None => Reading::Steady,
        };
        self.last = Some((database_us, now));
        reading
    }

    /// Whether expired peers may be purged at `now`.
    pub(crate) fn may_purge(&self, now: Instant) -> bool {
        now >= self.held_until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND_US: i64 = 1_000_000;

    #[test]
    fn purges_wait_after_a_start_and_after_a_step_either_way() {
        let t0 = Instant::now();
        let session = Duration::from_secs(1);
        let interval = Duration::from_millis(200);
        let mut watch = ClockWatch::new(session, interval, t0);
        assert!(!watch.may_purge(t0), "a fresh watch holds");
        let db0 = 1_800_000_000 * SECOND_US;
        assert_eq!(watch.observe(db0, t0), Reading::Steady);
        let t1 = t0 + Duration::from_millis(1_300);
        assert_eq!(watch.observe(db0 + 1_300_000, t1), Reading::Steady);
        assert!(watch.may_purge(t1));
        // 10 s forward in 200 ms.
        let t2 = t1 + interval;
        assert_eq!(
            watch.observe(db0 + 1_500_000 + 10 * SECOND_US, t2),
            Reading::Stepped(10 * SECOND_US)
        );
        assert!(!watch.may_purge(t2 + session));
        assert!(watch.may_purge(t2 + session + interval));
        // Backward, then steady again.
        let t3 = t2 + Duration::from_secs(5);
        let back = watch.observe(db0, t3);
        assert!(matches!(back, Reading::Stepped(drift) if drift < -10 * SECOND_US));
        assert!(!watch.may_purge(t3));
        let t4 = t3 + interval;
        assert_eq!(watch.observe(db0 + 200_000, t4), Reading::Steady);
        // A slow poll within the tolerance is no step.
        let t5 = t4 + Duration::from_secs(3);
        assert_eq!(
            watch.observe(db0 + 200_000 + 3_400_000, t5),
            Reading::Steady
        );
    }
}
