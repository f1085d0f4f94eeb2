//! The session: the client's row in `clients`, kept alive by heartbeats, and the background
//! tasks: one heartbeats (on its own connection) and rebuilds a lost session, one polls the event
//! log and purges dead peers (killing their connections first). The phases and their transitions
//! are `state.rs`; this module does the I/O that drives them.
//!
//! # When the phase changes
//! - A heartbeat (`UPDATE clients SET expires_at = now + timeout ... WHERE id = ?`, with the
//!   database's clock) that matches the row keeps the session; after a failure it reports
//!   `Reconnected`. A row that merely looks expired is refreshed: only a purge ends a session.
//! - A heartbeat that fails (I/O error, timeout), or any call or poll that loses the connection,
//!   reports `Suspended`; calls fail with `NotConnected` until a heartbeat succeeds, which the
//!   task tries at once and then once per interval.
//! - A heartbeat that matches **0 rows** means the row was purged: the session is
//!   gone (`SessionLost`), whatever the connection did meanwhile. So does being unable to
//!   heartbeat for the whole session timeout (measured from when the last good heartbeat was
//!   sent), and so does a poll that finds its subscribers fell behind the purged event log.
//! - Purges of expired peers wait while the database's clock looks stepped (`clock.rs`).
//! - After `SessionLost` the task registers a new client row, purges the old session itself (if
//!   no peer has yet, so subscribers see `Removed`), re-creates the ephemeral keys the client
//!   still holds, and reports `Connected`.

use std::sync::Arc;

use registry_api::{Mode, RegistryError, path};
use sqlx::AssertSqlSafe;
use sqlx::mysql::MySqlConnection;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::clock::{ClockWatch, Reading};
use crate::error::OpError;
use crate::events;
use crate::link::on_link;
use crate::schema::{self, Tables};
use crate::state::{Duty, Shared};
use crate::store::{self, Purge};
use crate::write;

/// Inserts a new client row and its `sessions` row (a new session) and returns its id. The
/// row records the connection it was inserted on: call this on the call link.
pub(crate) async fn register(
    conn: &mut MySqlConnection,
    tables: &Tables,
    name: &str,
    session_timeout_ms: i64,
) -> Result<i64, OpError> {
    write::begin(conn).await?;
    let body = insert_session(conn, tables, name, session_timeout_ms).await;
    write::finish(conn, tables, body.map(|id| (id, Vec::new()))).await
}

async fn insert_session(
    conn: &mut MySqlConnection,
    tables: &Tables,
    name: &str,
    session_timeout_ms: i64,
) -> Result<i64, OpError> {
    let inserted = sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {} (name, session_timeout_ms, connection_id, created_at, heartbeat_at, expires_at) \
         VALUES (?, ?, CONNECTION_ID(), UTC_TIMESTAMP(6), UTC_TIMESTAMP(6), \
                 UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND)",
        tables.clients
    )))
    .bind(name)
    .bind(session_timeout_ms)
    .bind(session_timeout_ms.saturating_mul(1_000))
    .execute(&mut *conn)
    .await?;
    let id = i64::try_from(inserted.last_insert_id()).map_err(|_| {
        OpError::Refused(RegistryError::Backend {
            backend: crate::error::BACKEND,
            message: "client id out of range".to_owned(),
        })
    })?;
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {} (id) VALUES (?)",
        tables.sessions
    )))
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(id)
}

/// Proves client `id` alive for another session timeout. `false` when its row is gone: a peer
/// purged it, and the session is over. A row that merely looks expired (the database's clock
/// stepped forward, or this client was slow) is refreshed: only a purge ends a session, and a
/// purge of a live client waits out clock steps (`clock.rs`).
pub(crate) async fn heartbeat(
    conn: &mut MySqlConnection,
    tables: &Tables,
    id: i64,
) -> Result<bool, OpError> {
    let updated = sqlx::query(AssertSqlSafe(format!(
        "UPDATE {} SET heartbeat_at = UTC_TIMESTAMP(6), \
           expires_at = UTC_TIMESTAMP(6) + INTERVAL session_timeout_ms * 1000 MICROSECOND \
         WHERE id = ?",
        tables.clients
    )))
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// The first session of a client: migrations, a client row, and the log position to read from.
pub(crate) async fn first_session(
    conn: &mut MySqlConnection,
    tables: &Tables,
    name: &str,
    session_timeout_ms: i64,
) -> Result<(i64, i64), OpError> {
    schema::migrate(conn, tables).await?;
    let id = register(conn, tables, name, session_timeout_ms).await?;
    let last_seq: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT last_seq FROM {} WHERE id = 1",
        tables.sequence
    )))
    .fetch_one(&mut *conn)
    .await?;
    Ok((id, last_seq))
}

/// Starts the background task of a connected client. Send `true` on the returned sender (or
/// drop it) to stop it.
pub(crate) fn spawn(shared: Arc<Shared>) -> (JoinHandle<()>, watch::Sender<bool>) {
    let (stop, stopped) = watch::channel(false);
    (tokio::spawn(run(shared, stopped)), stop)
}

/// The heartbeat loop (which also rebuilds a lost session), with the poll loop beside it.
async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let _poller = AbortOnDrop(tokio::spawn(poll_loop(shared.clone(), stop.clone())));
    let timing = shared.timing.clone();
    let mut ticks = tokio::time::interval(timing.interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // When the last heartbeat that succeeded was sent: the database judged it at or after this.
    let mut last_ok = Instant::now();
    loop {
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
            _ = ticks.tick() => {}
            _ = shared.woken() => {}
        }
        let id = match shared.duty() {
            Duty::Stop => return,
            Duty::Rebuild => {
                establish(&shared, &mut last_ok).await;
                continue;
            }
            Duty::Heartbeat(id) => id,
        };
        let sent = Instant::now();
        let beat = on_link!(
            shared.beat_link,
            timing.heartbeat_timeout,
            |conn| heartbeat(conn, &shared.tables, id)
        );
        match beat {
            Ok(true) => {
                last_ok = sent;
                shared.contacted(sent);
                shared.resume(id);
            }
            Ok(false) => {
                shared.lose(id, "its client row was purged or had expired");
                establish(&shared, &mut last_ok).await;
            }
            Err(error) => {
                shared.suspend(id, &error);
                if last_ok.elapsed() >= timing.session_timeout {
                    shared.lose(id, "no heartbeat succeeded for the whole session timeout");
                    establish(&shared, &mut last_ok).await;
                }
            }
        }
    }
}

/// Reads the event log and purges expired peers once per interval, on the call link. It runs
/// beside the heartbeat loop, so a poll or a purge that waits (for the call link, for a stalled
/// peer's locks) never delays a heartbeat.
async fn poll_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let timing = shared.timing.clone();
    let mut ticks = tokio::time::interval(timing.interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut next_gc = Instant::now() + timing.gc_period;
    let mut clock = ClockWatch::new(timing.session_timeout, timing.interval, Instant::now());
    loop {
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
            _ = ticks.tick() => {}
        }
        let id = match shared.duty() {
            Duty::Stop => return,
            Duty::Rebuild => continue,
            Duty::Heartbeat(id) => id,
        };
        poll_and_purge(&shared, id, &mut clock).await;
        if Instant::now() >= next_gc {
            next_gc = Instant::now() + timing.gc_period;
            let purged = on_link!(shared.link, timing.op_timeout, |conn| {
                events::purge_older_than(conn, &shared.tables, timing.event_retention)
            });
            match purged {
                Ok(count) if count > 0 => tracing::debug!(count, "purged old registry events"),
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%error, "purging old registry events failed; retrying later")
                }
            }
        }
    }
}

/// Aborts a task when dropped: the poll loop ends with the heartbeat loop, however that ends.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a catch-up saw besides the events it delivered.
pub(crate) struct Caught {
    /// Expired peers (by the database's clock).
    pub dead: Vec<i64>,
    /// The database's clock at the first poll, microseconds since the epoch.
    pub database_us: Option<i64>,
}

/// Reads the log up to now and delivers what the subscriptions want, in commit order; returns
/// the expired clients that the poll saw. Callers hold the cursor lock, so deliveries never
/// interleave.
pub(crate) async fn catch_up(
    shared: &Shared,
    cursor: &mut i64,
    me: i64,
) -> Result<Caught, OpError> {
    let mut dead = Vec::new();
    let mut database_us = None;
    loop {
        let prefixes = minimal_prefixes(shared.subscribers.prefixes());
        let polled = on_link!(shared.link, shared.timing.op_timeout, |conn| events::poll(
            conn,
            &shared.tables,
            *cursor,
            &prefixes,
            me
        ))?;
        for event in &polled.events {
            shared.subscribers.publish(event);
        }
        if polled.gap && !prefixes.is_empty() {
            // Like etcd's ErrCompacted: what was purged cannot be delivered. A lost session is
            // how a client is told that it must re-read what it follows (the console reloads
            // its peers on the `Connected` that follows).
            shared.lose(
                me,
                "it fell behind the event log: events it had not read were purged",
            );
        }
        *cursor = polled.watermark;
        database_us = database_us.or(polled.database_us);
        for id in polled.dead_clients {
            if !dead.contains(&id) {
                dead.push(id);
            }
        }
        if !polled.full {
            return Ok(Caught { dead, database_us });
        }
    }
}

/// Drops prefixes that another prefix in the list covers, so the poll's filter stays short.
fn minimal_prefixes(sorted: Vec<String>) -> Vec<String> {
    let mut kept: Vec<String> = Vec::with_capacity(sorted.len());
    for prefix in sorted {
        if !kept.iter().any(|k| path::is_within(k, &prefix)) {
            kept.push(prefix);
        }
    }
    kept
}

async fn poll_and_purge(shared: &Shared, me: i64, clock: &mut ClockWatch) {
    let dead = {
        let mut cursor = shared.cursor.lock().await;
        match catch_up(shared, &mut cursor, me).await {
            Ok(caught) => {
                let now = Instant::now();
                if let Some(database_us) = caught.database_us
                    && let Reading::Stepped(drift_us) = clock.observe(database_us, now)
                {
                    tracing::warn!(drift_ms = drift_us / 1_000, hold = ?shared.timing.session_timeout + shared.timing.interval, "the database's clock stepped; holding purges of expired peers until every live one has heartbeated under the new clock");
                }
                if !clock.may_purge(now) {
                    return;
                }
                caught.dead
            }
            Err(error) => {
                tracing::debug!(%error, "polling the registry event log failed");
                if error.costs_connection() {
                    shared.connection_lost(&error);
                }
                return;
            }
        }
    };
    for id in dead {
        let purged = on_link!(shared.link, shared.timing.op_timeout, |conn| async {
            // Its connection may be stopped inside a transaction, holding locks the purge
            // needs: end it first (the server rolls it back).
            store::kill_connection(conn, &shared.tables, id, store::Kill::IfExpired).await?;
            store::purge_client(conn, &shared.tables, id, Purge::IfExpired).await
        });
        if let Err(error) = purged {
            tracing::debug!(%error, client = id, "purging an expired registry client failed; retrying at the next poll");
            if error.costs_connection() {
                shared.connection_lost(&error);
            }
        }
    }
}

/// Builds a new session after `SessionLost`: a new client row, the old session purged, the held
/// ephemeral keys re-created, then `Connected`. On failure it leaves the client in `Lost` (with
/// every row it created marked for purging) and the next tick tries again.
async fn establish(shared: &Arc<Shared>, last_ok: &mut Instant) {
    let Some(stale) = shared.lost_rows() else {
        return;
    };
    let sent = Instant::now();
    let registered = on_link!(shared.link, shared.timing.op_timeout, |conn| register(
        conn,
        &shared.tables,
        &shared.client_name,
        shared.timing.session_timeout_ms()
    ));
    let new_id = match registered {
        Ok(id) => id,
        Err(error) => {
            tracing::debug!(%error, "could not register a new registry session yet");
            return;
        }
    };
    if !shared.rebuild_registered(new_id) {
        return;
    }
    for old in stale {
        let purged = on_link!(shared.link, shared.timing.op_timeout, |conn| {
            store::purge_client(conn, &shared.tables, old, Purge::Always)
        });
        if let Err(error) = purged {
            tracing::debug!(%error, client = old, "could not purge the lost session yet");
            return;
        }
        shared.rebuild_purged(old);
    }
    for (key, value) in shared.held() {
        let put = on_link!(shared.link, shared.timing.op_timeout, |conn| store::put(
            conn,
            &shared.tables,
            new_id,
            &key,
            &value,
            Mode::Ephemeral
        ));
        match put {
            Ok(()) => {}
            Err(OpError::Refused(error)) => {
                tracing::warn!(%error, key, "could not re-create an ephemeral key after session loss; dropping it");
                shared.forget_held(&key);
            }
            Err(error) => {
                tracing::debug!(%error, key, "could not re-create an ephemeral key yet");
                return;
            }
        }
    }
    if shared.rebuilt(new_id) {
        *last_ok = sent;
        shared.contacted(sent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covered_prefixes_are_dropped() {
        let kept = minimal_prefixes(vec!["/a".into(), "/a/b".into(), "/ab".into(), "/c".into()]);
        assert_eq!(kept, ["/a", "/ab", "/c"]);
        assert_eq!(minimal_prefixes(vec!["/".into(), "/x".into()]), ["/"]);
    }
}
