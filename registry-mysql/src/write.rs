//! How a write runs: `START TRANSACTION`, the body's locking reads and writes, then **one
//! packet** that numbers the events, appends them and commits.
//!
//! # Why sequence order is commit order, with no lock held across a round trip
//! Subscribers read the log by `seq > cursor`, so a reader must never see event `n` before
//! every event below `n` is visible. The final packet takes the single `sequence` row lock
//! (`UPDATE ... SET last_seq = LAST_INSERT_ID(last_seq + n)`), inserts the events numbered from
//! it and commits, all as one multi-statement query that the server runs to its end without
//! waiting for the client. Numbering is therefore serialized from allocation to commit (a
//! snapshot that holds `n` holds everything below it), yet the sequence lock is held only for
//! the microseconds the server spends on that packet: a client stopped at any point (SIGSTOP,
//! a swap storm, a cut connection) can hold at most the row locks of its own transaction, which
//! only writers of the same keys wait for, at most `innodb_lock_wait_timeout`, and only until a
//! peer finds its session expired and `KILL`s its connection (issue 12, finding 4).
//!
//! The body's reads are locking reads (`LOCK IN SHARE MODE`, `FOR UPDATE`), so its checks hold
//! until the commit: the writer's own `sessions` row is share-locked, so its purge (which deletes
//! that row) waits for the write or the write sees the session gone (the `clients` row, which
//! the heartbeat updates, is not locked, so a write never holds up its own heartbeat); the
//! key's row is locked for update; missing rows are covered by REPEATABLE READ's gap locks (the
//! link sets the isolation level). Deadlocks between writers abort one of them, which retries.
//!
//! Values in the final packet are hex literals (`X'..'`): a multi-statement query cannot bind
//! parameters, and hex digits cannot break out of a literal.

use std::fmt::Write as _;

use sqlx::AssertSqlSafe;
use sqlx::mysql::MySqlConnection;

use crate::error::OpError;
use crate::events::{Change, kind_code};
use crate::schema::Tables;

/// Events per `INSERT` statement in the final packet.
const ROWS_PER_INSERT: usize = 200;

/// Opens the write's transaction.
pub(crate) async fn begin(conn: &mut MySqlConnection) -> Result<(), OpError> {
    sqlx::raw_sql("START TRANSACTION").execute(conn).await?;
    Ok(())
}

/// Ends the write: commits with `body`'s changes appended to the log in one packet, or rolls
/// back when the body failed (and returns its error).
///
/// # Notable errors
/// [`OpError::Unfinished`] when a statement of the final packet failed: the transaction may
/// still be open, so the connection is dropped (the server rolls back).
pub(crate) async fn finish<T>(
    conn: &mut MySqlConnection,
    tables: &Tables,
    body: Result<(T, Vec<Change>), OpError>,
) -> Result<T, OpError> {
    match body {
        Ok((value, changes)) => {
            sqlx::raw_sql(AssertSqlSafe(commit_packet(tables, &changes)))
                .execute(conn)
                .await
                .map_err(OpError::Unfinished)?;
            Ok(value)
        }
        Err(error) => {
            if !error.costs_connection() {
                // One round trip, so that the locks go now rather than at the next call; if it
                // fails the connection is dropped, which rolls back as well.
                sqlx::raw_sql("ROLLBACK")
                    .execute(conn)
                    .await
                    .map_err(OpError::Unfinished)?;
            }
            Err(error)
        }
    }
}

/// The final packet: number `changes` after the last sequence number, append them, commit.
fn commit_packet(tables: &Tables, changes: &[Change]) -> String {
    if changes.is_empty() {
        return "COMMIT".to_owned();
    }
    let total = changes.len();
    let mut sql = format!(
        "UPDATE {} SET last_seq = LAST_INSERT_ID(last_seq + {total}) WHERE id = 1",
        tables.sequence
    );
    for (chunk_index, chunk) in changes.chunks(ROWS_PER_INSERT).enumerate() {
        let _ = write!(
            sql,
            "; INSERT INTO {} (seq, path, kind, old_value, new_value, created_at) VALUES ",
            tables.events
        );
        for (i, change) in chunk.iter().enumerate() {
            // LAST_INSERT_ID() is the new last sequence number: the first change gets
            // last - (total - 1), the last one gets last.
            let position = chunk_index * ROWS_PER_INSERT + i;
            let below_last = total - 1 - position;
            let _ = write!(
                sql,
                "{}(LAST_INSERT_ID() - {below_last}, {}, {}, {}, {}, UTC_TIMESTAMP(6))",
                if i == 0 { "" } else { ", " },
                hex(Some(change.path.as_bytes())),
                kind_code(change.kind),
                hex(change.old.as_deref()),
                hex(change.new.as_deref()),
            );
        }
    }
    sql.push_str("; COMMIT");
    sql
}

/// A binary literal: `X'6162'`, `NULL` for none.
fn hex(bytes: Option<&[u8]>) -> String {
    match bytes {
        None => "NULL".to_owned(),
        Some(bytes) => {
            let mut literal = String::with_capacity(bytes.len() * 2 + 3);
            literal.push_str("X'");
            for byte in bytes {
                let _ = write!(literal, "{byte:02X}");
            }
            literal.push('\'');
            literal
        }
    }
}

#[cfg(test)]
mod tests {
    use registry_api::EventKind;

    use super::*;

    fn change(path: &str) -> Change {
        Change {
            kind: EventKind::Added,
            path: path.to_owned(),
            old: None,
            new: Some(b"v'\\".to_vec()),
        }
    }

    #[test]
    fn a_write_without_events_only_commits() {
        assert_eq!(commit_packet(&Tables::new("r_"), &[]), "COMMIT");
    }

    #[test]
    fn events_are_numbered_in_order_up_to_the_new_last_sequence_number() {
        let changes: Vec<Change> = (0..450).map(|i| change(&format!("/k{i}"))).collect();
        let sql = commit_packet(&Tables::new("r_"), &changes);
        assert!(sql.starts_with("UPDATE r_sequence SET last_seq = LAST_INSERT_ID(last_seq + 450)"));
        assert!(sql.ends_with("; COMMIT"));
        assert_eq!(sql.matches("INSERT INTO r_events").count(), 3);
        assert!(sql.contains("(LAST_INSERT_ID() - 449, X'2F6B30', 1, NULL, X'76275C'"));
        assert!(sql.contains("(LAST_INSERT_ID() - 0, X'2F6B343439'"));
        // Quotes and backslashes in values travel as hex digits only.
        assert!(!sql.contains("v'"));
    }
}
