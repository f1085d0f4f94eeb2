//! The client's durations, all derived from the two configured ones.

use std::time::Duration;

use crate::link::SessionLimits;

/// Keeps `Duration` math in one place.
#[derive(Debug, Clone)]
pub(crate) struct Timing {
    /// Heartbeat and poll period.
    pub interval: Duration,
    /// The session timeout of this client.
    pub session_timeout: Duration,
    /// How long one heartbeat may take (waiting for the connection included) before it counts
    /// as failed.
    pub heartbeat_timeout: Duration,
    /// How long one call may take before its connection is dropped.
    pub op_timeout: Duration,
    /// How long events stay in the log.
    pub event_retention: Duration,
    /// How often this client purges old events.
    pub gc_period: Duration,
}

impl Timing {
    pub(crate) fn new(heartbeat_interval_ms: u64, session_timeout_ms: u64) -> Self {
        let interval = Duration::from_millis(heartbeat_interval_ms);
        let session_timeout = Duration::from_millis(session_timeout_ms);
        // Long enough that a lagging subscriber or one back from a long suspension still finds
        // its events; a subscriber further behind has lost its session anyway.
        let event_retention = (session_timeout * 10).max(Duration::from_secs(600));
        Self {
            interval,
            session_timeout,
            heartbeat_timeout: interval.max(session_timeout / 3),
            op_timeout: session_timeout.max(Duration::from_secs(5)),
            event_retention,
            gc_period: event_retention / 10,
        }
    }

    /// The limits of the call connection: a row lock is waited for at most a second (a stalled
    /// peer's locks go when its session expires and its connection is killed); a transaction
    /// left idle (its client stopped) is rolled back by MariaDB after two session timeouts, in
    /// case the peers may not `KILL` (another database user without the privilege).
    pub(crate) fn call_limits(&self) -> SessionLimits {
        SessionLimits {
            lock_wait_secs: 1,
            statement_secs: None,
            idle_transaction_secs: Some((self.session_timeout * 2).as_secs().max(1) + 1),
        }
    }

    /// The limits of the heartbeat connection: no statement outlives the heartbeat timeout on
    /// the server either (MariaDB), and no lock is waited for longer than a second.
    pub(crate) fn heartbeat_limits(&self) -> SessionLimits {
        SessionLimits {
            lock_wait_secs: 1,
            statement_secs: Some(self.heartbeat_timeout.as_secs_f64()),
            idle_transaction_secs: None,
        }
    }

    pub(crate) fn session_timeout_ms(&self) -> i64 {
        i64::try_from(self.session_timeout.as_millis()).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_follows_the_configuration() {
        let timing = Timing::new(200, 1_000);
        assert_eq!(timing.interval, Duration::from_millis(200));
        assert_eq!(timing.heartbeat_timeout, Duration::from_millis(1_000) / 3);
        assert!(timing.event_retention >= Duration::from_secs(600));
        assert!(timing.gc_period < timing.event_retention);
    }
}
