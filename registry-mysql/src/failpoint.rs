//! Failure injection for the cluster tests, switched on by a test-only environment variable and
//! off by default.
//!
//! `CONSOLE_TEST_MYSQL_STOP_IN_WRITE=<text>@<n>` ([`STOP_IN_WRITE_VAR`]): the `n`-th `put` (from
//! 1; `@<n>` left out: the first) of a key containing `text` stops the whole process with
//! SIGSTOP in the middle of its transaction, after its locking reads and before its final
//! packet, so that it stays stopped holding its row locks: the state a client paused by the
//! kernel, a debugger or a swap storm leaves behind. The tests use it to check that such a
//! client costs its peers nothing beyond its own expiry (issue 12, finding 4). Read once per
//! process and logged as a warning; never set it in production.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The variable that arms the stop.
pub const STOP_IN_WRITE_VAR: &str = "CONSOLE_TEST_MYSQL_STOP_IN_WRITE";

struct StopInWrite {
    text: String,
    nth: u32,
    seen: AtomicU32,
}

fn armed() -> Option<&'static StopInWrite> {
    static ARMED: OnceLock<Option<StopInWrite>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let value = std::env::var(STOP_IN_WRITE_VAR).ok()?;
            let (text, nth) = match value.rsplit_once('@') {
                Some((text, nth)) => (text, nth.parse().ok()?),
                None => (value.as_str(), 1),
            };
            if text.is_empty() {
                return None;
            }
            tracing::warn!(text, nth, "test failpoint {STOP_IN_WRITE_VAR} is set: a registry write of a key containing the text stops this process");
            Some(StopInWrite {
                text: text.to_owned(),
                nth,
                seen: AtomicU32::new(0),
            })
        })
        .as_ref()
}

/// Runs inside a `put` transaction that holds its locks.
pub(crate) fn in_write(key: &str) {
    let Some(armed) = armed() else { return };
    if key.contains(&armed.text) && armed.seen.fetch_add(1, Ordering::SeqCst) + 1 == armed.nth {
        tracing::warn!(
            key,
            "test failpoint: stopping this process inside a registry write"
        );
        // SAFETY: raise(3) sends a signal to this very process; no memory is passed.
        unsafe { libc::raise(libc::SIGSTOP) };
    }
}
