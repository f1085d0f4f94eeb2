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

use sqlx::AssertSqlSafe;
use sqlx::mysql::MySqlConnection;

use crate::error::OpError;

/// The variable that arms the clock step.
pub const CLOCK_STEP_VAR: &str = "CONSOLE_TEST_MYSQL_CLOCK_STEP";

/// (offset ms, the file whose existence starts the step).
fn clock_step() -> Option<&'static (i64, std::path::PathBuf)> {
    static STEP: OnceLock<Option<(i64, std::path::PathBuf)>> = OnceLock::new();
    STEP.get_or_init(|| {
        let value = std::env::var(CLOCK_STEP_VAR).ok()?;
        let (offset, file) = value.split_once('@')?;
        let step = (offset.parse().ok()?, std::path::PathBuf::from(file));
        tracing::warn!(offset_ms = step.0, file = %step.1.display(), "test failpoint {CLOCK_STEP_VAR} is set: this client's view of the database clock steps once the file exists");
        Some(step)
    })
    .as_ref()
}

/// Runs before every call on a connection of the client.
pub(crate) async fn before_call(conn: &mut MySqlConnection) -> Result<(), OpError> {
    let Some((offset_ms, file)) = clock_step() else {
        return Ok(());
    };
    if !file.exists() {
        return Ok(());
    }
    // A number only: nothing to escape.
    let offset = format!("{:.3}", *offset_ms as f64 / 1_000.0);
    sqlx::raw_sql(AssertSqlSafe(format!(
        "SET TIMESTAMP = UNIX_TIMESTAMP(SYSDATE(6)) + {offset}"
    )))
    .execute(conn)
    .await?;
    Ok(())
}

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
