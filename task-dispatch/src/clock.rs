//! Wall-clock timestamps as the store records them and the API shows them: milliseconds since
//! the Unix epoch.
//!
//! One definition for every crate above this one (the console uses it too), so that a row's
//! `updated_at`, a node's `started_at` and a task's measured wait agree on the unit and on what
//! a clock before 1970 gives.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch now (0 if the clock is before 1970).
#[must_use]
pub fn unix_millis() -> i64 {
    unix_millis_at(SystemTime::now())
}

/// Milliseconds since the Unix epoch at `time` (0 before 1970, `i64::MAX` past the year
/// 292 million).
#[must_use]
pub fn unix_millis_at(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn millis_count_from_the_epoch_and_clamp_before_it() {
        assert_eq!(
            unix_millis_at(UNIX_EPOCH + Duration::from_millis(1_234)),
            1_234
        );
        assert_eq!(unix_millis_at(UNIX_EPOCH - Duration::from_secs(1)), 0);
        assert!(unix_millis() > 1_600_000_000_000, "a clock after 2020");
    }
}
