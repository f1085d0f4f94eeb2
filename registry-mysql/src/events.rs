//! The change log: appending events inside write transactions, reading them in commit order,
//! and purging old ones.
//!
//! Events are numbered and appended by the final packet of each write (`write.rs`, which says
//! why sequence order is commit order); this module reads and purges them.

use std::time::Duration;

use registry_api::path;
use registry_api::{Event, EventKind};
use sqlx::mysql::MySqlConnection;
use sqlx::{AssertSqlSafe, Row};

use crate::error::OpError;
use crate::schema::Tables;

/// The most events one poll reads; a fuller backlog is read by polling again at once.
pub(crate) const POLL_BATCH: usize = 1_000;

/// The most dead clients one poll reports.
const DEAD_BATCH: usize = 16;

/// One change to append to the log.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub kind: EventKind,
    pub path: String,
    pub old: Option<Vec<u8>>,
    pub new: Option<Vec<u8>>,
}

pub(crate) fn kind_code(kind: EventKind) -> i8 {
    match kind {
        EventKind::Added => 1,
        EventKind::Updated => 2,
        EventKind::Removed => 3,
    }
}

fn kind_of(code: i64) -> Option<EventKind> {
    match code {
        1 => Some(EventKind::Added),
        2 => Some(EventKind::Updated),
        3 => Some(EventKind::Removed),
        _ => None,
    }
}

/// The byte range `[low, high)` that holds every path strictly below `prefix`, on segment
/// boundaries: below `/a` lies `/a/...`, which is `>= "/a/"` and `< "/a0"` (`'0'` follows `'/'`),
/// and `/ab` lies outside. A range instead of `LIKE 'prefix/%'` has no wildcards to escape
/// (`_` and `%` are ordinary characters in keys) and is an index range scan.
pub(crate) fn subtree_range(prefix: &str) -> (String, String) {
    if prefix == path::ROOT {
        ("/".to_owned(), "0".to_owned())
    } else {
        (format!("{prefix}/"), format!("{prefix}0"))
    }
}

/// What one poll found.
#[derive(Debug, Default)]
pub(crate) struct Polled {
    /// Events after the cursor under the watched prefixes, in sequence (= commit) order.
    pub events: Vec<Event>,
    /// Where the cursor goes next.
    pub watermark: i64,
    /// Whether the batch was full, so more events may be waiting.
    pub full: bool,
    /// Clients whose session expired (by the database's clock), other than the poller.
    pub dead_clients: Vec<i64>,
    /// Events after the cursor were purged before this client read them (it fell behind the
    /// log's retention): its subscribers may have missed changes.
    pub gap: bool,
    /// The database's clock when it answered, in microseconds since the epoch.
    pub database_us: Option<i64>,
}

/// Reads, in ONE statement and one snapshot: the events after `after` under `prefixes`, the
/// last committed sequence number, and the clients whose session has expired. This is the only
/// query an idle client runs besides its heartbeat.
pub(crate) async fn poll(
    conn: &mut MySqlConnection,
    tables: &Tables,
    after: i64,
    prefixes: &[String],
    me: i64,
) -> Result<Polled, OpError> {
    let mut sql = String::new();
    if !prefixes.is_empty() {
        let filter = vec!["(path = ? OR (path >= ? AND path < ?))"; prefixes.len()].join(" OR ");
        sql.push_str(&format!(
            "(SELECT 0 AS src, seq AS n, path, kind, IF(kind = 3, old_value, new_value) AS value \
             FROM {} WHERE seq > ? AND ({filter}) ORDER BY seq LIMIT {POLL_BATCH}) UNION ALL ",
            tables.events
        ));
    }
    sql.push_str(&format!(
        "(SELECT 1 AS src, last_seq AS n, NULL AS path, NULL AS kind, NULL AS value FROM {} WHERE id = 1) \
         UNION ALL (SELECT 2, id, NULL, NULL, NULL FROM {} \
         WHERE expires_at < UTC_TIMESTAMP(6) AND id <> ? ORDER BY expires_at LIMIT {DEAD_BATCH}) \
         UNION ALL (SELECT 3, MIN(seq), NULL, NULL, NULL FROM {}) \
         UNION ALL (SELECT 4, CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED), NULL, NULL, NULL)",
        tables.sequence, tables.clients, tables.events
    ));
    let mut query = sqlx::query(AssertSqlSafe(sql));
    if !prefixes.is_empty() {
        query = query.bind(after);
        for prefix in prefixes {
            let (low, high) = subtree_range(prefix);
            query = query
                .bind(prefix.as_bytes().to_vec())
                .bind(low.into_bytes())
                .bind(high.into_bytes());
        }
    }
    let rows = query.bind(me).fetch_all(&mut *conn).await?;
    let mut polled = Polled {
        watermark: after,
        ..Polled::default()
    };
    let mut events: Vec<(i64, Event)> = Vec::new();
    let mut last_seq = after;
    let mut oldest: Option<i64> = None;
    for row in rows {
        let src: i64 = row.try_get_unchecked("src")?;
        if src == 3 {
            // MIN(seq) of an empty log is NULL.
            oldest = row.try_get_unchecked("n")?;
            continue;
        }
        if src == 4 {
            polled.database_us = row.try_get_unchecked("n")?;
            continue;
        }
        let n: i64 = row.try_get_unchecked("n")?;
        match src {
            0 => {
                let path: Vec<u8> = row.try_get("path")?;
                let kind: i64 = row.try_get_unchecked("kind")?;
                let value: Option<Vec<u8>> = row.try_get("value")?;
                let (Ok(path), Some(kind)) = (String::from_utf8(path), kind_of(kind)) else {
                    tracing::warn!(seq = n, "skipping a malformed event row");
                    continue;
                };
                events.push((n, Event::new(kind, path, value.unwrap_or_default())));
            }
            1 => last_seq = n,
            _ => polled.dead_clients.push(n),
        }
    }
    // Sequence numbers have no holes (a write that rolls back returns its numbers), so a log
    // that starts above the cursor + 1, or is empty while numbers were handed out past the
    // cursor, lost events to the purge before this client read them.
    polled.gap = match oldest {
        Some(oldest) => oldest > after + 1,
        None => last_seq > after,
    };
    events.sort_by_key(|(seq, _)| *seq);
    polled.full = events.len() >= POLL_BATCH;
    polled.watermark = match (polled.full, events.last()) {
        (true, Some((seq, _))) => *seq,
        _ => last_seq.max(after),
    };
    polled.events = events.into_iter().map(|(_, event)| event).collect();
    Ok(polled)
}

/// Deletes events older than `age` by the database's clock, oldest first, in batches; returns
/// how many were deleted. Recent events are never touched (the comparison is
/// `created_at < now - age`).
pub(crate) async fn purge_older_than(
    conn: &mut MySqlConnection,
    tables: &Tables,
    age: Duration,
) -> Result<u64, OpError> {
    const BATCH: u64 = 5_000;
    let micros = i64::try_from(age.as_micros()).unwrap_or(i64::MAX);
    let sql = format!(
        "DELETE FROM {} WHERE created_at < UTC_TIMESTAMP(6) - INTERVAL ? MICROSECOND \
         ORDER BY created_at LIMIT {BATCH}",
        tables.events
    );
    let mut total = 0;
    loop {
        let deleted = sqlx::query(AssertSqlSafe(sql.clone()))
            .bind(micros)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        total += deleted;
        if deleted < BATCH {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtree_ranges_respect_segment_boundaries() {
        let (low, high) = subtree_range("/a");
        let inside = |p: &str| p >= low.as_str() && p < high.as_str();
        assert!(inside("/a/b") && inside("/a/b/c") && inside("/a/_") && inside("/a/%"));
        assert!(!inside("/a") && !inside("/ab") && !inside("/a-b") && !inside("/a0"));
        let (low, high) = subtree_range("/");
        assert!("/anything" >= low.as_str() && "/anything" < high.as_str());
    }

    #[test]
    fn kinds_round_trip() {
        for kind in [EventKind::Added, EventKind::Updated, EventKind::Removed] {
            assert_eq!(kind_of(i64::from(kind_code(kind))), Some(kind));
        }
        assert_eq!(kind_of(0), None);
    }
}
