//! The key tree: reads, and writes that change `data` and append to the event log in one
//! transaction, plus the purge of a dead client.
//!
//! Every write runs as `write.rs` describes: its reads are locking reads, so what it checked
//! (its session alive, the key's owner, no ephemeral parent, no children) still holds when its
//! final packet numbers its events and commits. The `version` column stays the optimistic check
//! of every update (`... WHERE path = ? AND version = ?`): a write that matches no row is rolled
//! back and retried instead of overwriting a change it did not see.

use registry_api::{EventKind, Mode, RegistryError, path};
use sqlx::mysql::MySqlConnection;
use sqlx::{AssertSqlSafe, Row};

use crate::error::{BACKEND, OpError, error_number, is_duplicate_key};
use crate::events::{Change, subtree_range};
use crate::schema::Tables;
use crate::{failpoint, write};

/// The longest key the `data` and `locks` tables hold (their `VARBINARY` primary keys).
pub(crate) const MAX_PATH_BYTES: usize = 1024;

/// Checks that a key fits the tables.
pub(crate) fn check_length(key: &str) -> Result<(), RegistryError> {
    if key.len() > MAX_PATH_BYTES {
        return Err(RegistryError::InvalidPath {
            path: key.to_owned(),
            reason: format!(
                "longer than {MAX_PATH_BYTES} bytes, the most the mysql backend stores"
            ),
        });
    }
    Ok(())
}

fn session_lost() -> OpError {
    OpError::Refused(RegistryError::SessionLost { backend: BACKEND })
}

/// Whether client `id`'s session lives: its `sessions` row exists, share-locked until the
/// caller's transaction ends so that nobody purges the client meanwhile. Only a purge ends a
/// session (the database's clock alone does not: it may step, see `clock.rs`); the `clients`
/// row, which the heartbeat updates, is not locked, so a writer never holds up its own heartbeat.
pub(crate) async fn is_alive(
    conn: &mut MySqlConnection,
    tables: &Tables,
    id: i64,
) -> Result<bool, OpError> {
    let session: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT id FROM {} WHERE id = ? LOCK IN SHARE MODE",
        tables.sessions
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(session.is_some())
}

/// The value at `key`.
pub(crate) async fn get(
    conn: &mut MySqlConnection,
    tables: &Tables,
    key: &str,
) -> Result<Option<Vec<u8>>, OpError> {
    Ok(sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT value FROM {} WHERE path = ?",
        tables.data
    )))
    .bind(key.as_bytes())
    .fetch_optional(&mut *conn)
    .await?)
}

/// The names of the direct children of `parent`, implied parents included, sorted.
pub(crate) async fn children(
    conn: &mut MySqlConnection,
    tables: &Tables,
    parent: &str,
) -> Result<Vec<String>, OpError> {
    let (low, high) = subtree_range(parent);
    let paths: Vec<Vec<u8>> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT path FROM {} WHERE path >= ? AND path < ?",
        tables.data
    )))
    .bind(low.as_bytes())
    .bind(high.as_bytes())
    .fetch_all(&mut *conn)
    .await?;
    let mut names: Vec<String> = paths
        .iter()
        .filter_map(|p| std::str::from_utf8(p).ok())
        .filter_map(|p| path::child_of(parent, p))
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// The row at a key: version, owner (NULL: persistent), value.
type Existing = (i64, Option<i64>, Vec<u8>);

/// What `put` found, by locking reads.
struct Current {
    row: Option<Existing>,
    ephemeral_parent: Option<String>,
    has_children: bool,
}

async fn read_for_put(
    conn: &mut MySqlConnection,
    tables: &Tables,
    key: &str,
    mode: Mode,
) -> Result<Current, OpError> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT version, owner, value FROM {} WHERE path = ? FOR UPDATE",
        tables.data
    )))
    .bind(key.as_bytes())
    .fetch_optional(&mut *conn)
    .await?
    .map(|row| -> Result<Existing, sqlx::Error> {
        Ok((
            row.try_get("version")?,
            row.try_get("owner")?,
            row.try_get("value")?,
        ))
    })
    .transpose()?;
    // Share-locks the ancestors (and, for missing ones, the gaps where they would go), so
    // none of them turns ephemeral before this write commits.
    let ancestors: Vec<&str> = path::ancestors(key).collect();
    let mut ephemeral_parent = None;
    if !ancestors.is_empty() {
        let mut query = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT path FROM {} WHERE path IN ({}) AND owner IS NOT NULL LIMIT 1 LOCK IN SHARE MODE",
            tables.data,
            vec!["?"; ancestors.len()].join(", ")
        )));
        for ancestor in &ancestors {
            query = query.bind(ancestor.as_bytes());
        }
        let found: Option<Vec<u8>> = query.fetch_optional(&mut *conn).await?;
        ephemeral_parent = found.map(|p| String::from_utf8_lossy(&p).into_owned());
    }
    // An ephemeral key must stay childless: share-lock the range below it.
    let mut has_children = false;
    if mode == Mode::Ephemeral {
        let (low, high) = subtree_range(key);
        let child: Option<Vec<u8>> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT path FROM {} WHERE path >= ? AND path < ? LIMIT 1 LOCK IN SHARE MODE",
            tables.data
        )))
        .bind(low.as_bytes())
        .bind(high.as_bytes())
        .fetch_optional(&mut *conn)
        .await?;
        has_children = child.is_some();
    }
    Ok(Current {
        row,
        ephemeral_parent,
        has_children,
    })
}

/// Creates or overwrites `key` for client `me`, appending `Added` or `Updated`, in one
/// transaction. A key owned by another live client is a `Conflict`; one owned by a dead client
/// that nobody has purged yet is purged first (its `Removed` events included).
pub(crate) async fn put(
    conn: &mut MySqlConnection,
    tables: &Tables,
    me: i64,
    key: &str,
    value: &[u8],
    mode: Mode,
) -> Result<(), OpError> {
    write::begin(conn).await?;
    let body = put_in_tx(conn, tables, me, key, value, mode).await;
    write::finish(conn, tables, body.map(|changes| ((), changes))).await?;
    tracing::trace!(key, "put committed");
    Ok(())
}

async fn put_in_tx(
    conn: &mut MySqlConnection,
    tables: &Tables,
    me: i64,
    key: &str,
    value: &[u8],
    mode: Mode,
) -> Result<Vec<Change>, OpError> {
    if !is_alive(conn, tables, me).await? {
        return Err(session_lost());
    }
    let current = read_for_put(conn, tables, key, mode).await?;
    if let Some(parent) = current.ephemeral_parent {
        return Err(OpError::Refused(RegistryError::InvalidPath {
            path: key.to_owned(),
            reason: format!(
                "its parent {parent} is ephemeral, and ephemeral keys cannot have children"
            ),
        }));
    }
    if current.has_children {
        return Err(OpError::Refused(RegistryError::InvalidPath {
            path: key.to_owned(),
            reason: "it has children, and ephemeral keys cannot have children".to_owned(),
        }));
    }
    let mut changes = Vec::new();
    let mut existing = current.row;
    if let Some((_, Some(owner), _)) = &existing
        && *owner != me
    {
        if is_alive(conn, tables, *owner).await? {
            return Err(OpError::Refused(RegistryError::Conflict {
                path: key.to_owned(),
                reason: format!("it is an ephemeral key of another live session (client {owner})"),
            }));
        }
        // Its owner is dead but not purged yet: purge it now, in this transaction.
        changes.extend(
            purge_in_tx(conn, tables, *owner, Purge::IfExpired)
                .await?
                .unwrap_or_default(),
        );
        existing = None;
    }
    failpoint::in_write(key);
    let owner = (mode == Mode::Ephemeral).then_some(me);
    match existing {
        Some((version, _, old)) => {
            let updated = sqlx::query(AssertSqlSafe(format!(
                "UPDATE {} SET value = ?, owner = ?, version = version + 1, updated_at = UTC_TIMESTAMP(6) \
                 WHERE path = ? AND version = ?",
                tables.data
            )))
            .bind(value)
            .bind(owner)
            .bind(key.as_bytes())
            .bind(version)
            .execute(&mut *conn)
            .await?;
            if updated.rows_affected() != 1 {
                return Err(OpError::Contended);
            }
            changes.push(Change {
                kind: EventKind::Updated,
                path: key.to_owned(),
                old: Some(old),
                new: Some(value.to_vec()),
            });
        }
        None => {
            let inserted = sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {} (path, value, owner, version, updated_at) VALUES (?, ?, ?, 1, UTC_TIMESTAMP(6))",
                tables.data
            )))
            .bind(key.as_bytes())
            .bind(value)
            .bind(owner)
            .execute(&mut *conn)
            .await;
            match inserted {
                Ok(_) => {}
                Err(error) if is_duplicate_key(&error) => {
                    return Err(OpError::Contended);
                }
                Err(error) => return Err(error.into()),
            }
            changes.push(Change {
                kind: EventKind::Added,
                path: key.to_owned(),
                old: None,
                new: Some(value.to_vec()),
            });
        }
    }
    Ok(changes)
}

/// Deletes `key` and everything below it, appending `Removed` (with the last value) for each,
/// deepest first, in one transaction. Deleting nothing is not an error.
pub(crate) async fn delete(
    conn: &mut MySqlConnection,
    tables: &Tables,
    me: i64,
    key: &str,
) -> Result<(), OpError> {
    write::begin(conn).await?;
    let body = delete_in_tx(conn, tables, me, key).await;
    write::finish(conn, tables, body.map(|changes| ((), changes))).await
}

async fn delete_in_tx(
    conn: &mut MySqlConnection,
    tables: &Tables,
    me: i64,
    key: &str,
) -> Result<Vec<Change>, OpError> {
    if !is_alive(conn, tables, me).await? {
        return Err(session_lost());
    }
    let (low, high) = subtree_range(key);
    let doomed = sqlx::query(AssertSqlSafe(format!(
        "SELECT path, value, version FROM {} WHERE path = ? OR (path >= ? AND path < ?) ORDER BY path FOR UPDATE",
        tables.data
    )))
    .bind(key.as_bytes())
    .bind(low.as_bytes())
    .bind(high.as_bytes())
    .fetch_all(&mut *conn)
    .await?;
    let mut changes = Vec::with_capacity(doomed.len());
    // Deepest first, as a recursive delete of a real tree would report it.
    for row in doomed.iter().rev() {
        let path: Vec<u8> = row.try_get("path")?;
        let version: i64 = row.try_get("version")?;
        let deleted = sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM {} WHERE path = ? AND version = ?",
            tables.data
        )))
        .bind(&path)
        .bind(version)
        .execute(&mut *conn)
        .await?;
        if deleted.rows_affected() != 1 {
            return Err(OpError::Contended);
        }
        changes.push(Change {
            kind: EventKind::Removed,
            path: String::from_utf8_lossy(&path).into_owned(),
            old: Some(row.try_get("value")?),
            new: None,
        });
    }
    Ok(changes)
}

/// When [`kill_connection`] may end a client's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kill {
    /// Only if its session has expired by the database's clock (a purger of a dead peer).
    IfExpired,
    /// Whatever its session looks like ([`crate::MysqlRegistry::end_session`]).
    Always,
}

/// Ends the database connection recorded for client `id` (if its session has expired by the
/// database's clock, for [`Kill::IfExpired`]). A client stopped inside a transaction (SIGSTOP, a long pause) keeps that
/// transaction's locks for as long as its connection lives; killing it makes the server roll
/// back and free them, so the purge that follows does not wait for them.
///
/// # Notable behaviors
/// - Never this client's own connection; for [`Kill::IfExpired`] never a live client's.
/// - A connection already gone is fine. One this database user may not kill (another user's,
///   without `CONNECTION ADMIN` or `SUPER`) is logged; MariaDB's idle-transaction timeout,
///   which the client sets on its call connection, ends it later.
/// - After a database restart a recorded id may name another, newer connection; killing it
///   costs that client one reconnect, never data.
pub(crate) async fn kill_connection(
    conn: &mut MySqlConnection,
    tables: &Tables,
    id: i64,
    when: Kill,
) -> Result<(), OpError> {
    let condition = match when {
        Kill::IfExpired => " AND expires_at < UTC_TIMESTAMP(6)",
        Kill::Always => "",
    };
    let recorded: Option<(i64, i64)> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT connection_id, connection_id = CONNECTION_ID() FROM {} WHERE id = ?{condition}",
        tables.clients
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((connection, 0)) = recorded else {
        return Ok(());
    };
    // An integer read from the table, not text: nothing to escape. KILL takes no parameters.
    let killed = sqlx::raw_sql(AssertSqlSafe(format!("KILL CONNECTION {connection}")))
        .execute(&mut *conn)
        .await;
    match killed {
        Ok(_) => {
            tracing::info!(
                client = id,
                connection,
                "killed the database connection of an expired registry session"
            );
            Ok(())
        }
        // ER_NO_SUCH_THREAD: already gone.
        Err(error) if error_number(&error) == Some(1094) => Ok(()),
        // ER_KILL_DENIED_ERROR: another user's connection.
        Err(error) if error_number(&error) == Some(1095) => {
            tracing::warn!(client = id, connection, %error, "may not kill the database connection of an expired registry session; its locks go when the server ends its idle transaction");
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}

/// When [`purge_client`] may end a client's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purge {
    /// Only if its session has expired by the database's clock (any live client purging a
    /// dead one).
    IfExpired,
    /// Unconditionally (the client itself: `close`, or cleaning up its own lost session).
    Always,
}

/// Ends client `id`'s session in its own transaction: compare-and-delete its row, delete its
/// ephemeral keys appending `Removed` (with the last value) for each, and free its locks.
/// Returns whether anything was purged; `false` when the client is alive (for
/// [`Purge::IfExpired`]) or already gone. Concurrent purgers of the same client are serialized
/// by the lock on its row (and on its keys): exactly one of them writes the events.
pub(crate) async fn purge_client(
    conn: &mut MySqlConnection,
    tables: &Tables,
    id: i64,
    when: Purge,
) -> Result<bool, OpError> {
    write::begin(conn).await?;
    let body = purge_in_tx(conn, tables, id, when).await.map(|purged| {
        let changes = purged.clone().unwrap_or_default();
        (purged, changes)
    });
    let Some(changes) = write::finish(conn, tables, body).await? else {
        return Ok(false);
    };
    if !changes.is_empty() {
        tracing::info!(
            client = id,
            removed = changes.len(),
            ?when,
            "purged a registry session"
        );
    }
    Ok(true)
}

/// The body of [`purge_client`] inside a transaction that holds the sequence lock. Returns the
/// `Removed` changes to append, or `None` when the client is alive and `when` is
/// [`Purge::IfExpired`].
async fn purge_in_tx(
    conn: &mut MySqlConnection,
    tables: &Tables,
    id: i64,
    when: Purge,
) -> Result<Option<Vec<Change>>, OpError> {
    let condition = match when {
        Purge::IfExpired => " AND expires_at < UTC_TIMESTAMP(6)",
        Purge::Always => "",
    };
    let deleted = sqlx::query(AssertSqlSafe(format!(
        "DELETE FROM {} WHERE id = ?{condition}",
        tables.clients
    )))
    .bind(id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if deleted == 0 && when == Purge::IfExpired {
        // Either alive (then leave it) or already gone (then sweep whatever it still owns, so
        // an orphaned key can never outlive its owner).
        let exists: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM {} WHERE id = ?",
            tables.clients
        )))
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
        if exists > 0 {
            return Ok(None);
        }
    }
    // Waits for the client's writes in flight (they share-lock this row), so none of them
    // commits a key after this purge read its keys.
    sqlx::query(AssertSqlSafe(format!(
        "DELETE FROM {} WHERE id = ?",
        tables.sessions
    )))
    .bind(id)
    .execute(&mut *conn)
    .await?;
    let owned = sqlx::query(AssertSqlSafe(format!(
        "SELECT path, value FROM {} WHERE owner = ? ORDER BY path FOR UPDATE",
        tables.data
    )))
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let mut changes = Vec::with_capacity(owned.len());
    if !owned.is_empty() {
        let removed = sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM {} WHERE owner = ?",
            tables.data
        )))
        .bind(id)
        .execute(&mut *conn)
        .await?;
        if removed.rows_affected() != owned.len() as u64 {
            return Err(OpError::Contended);
        }
        for row in owned.iter().rev() {
            let path: Vec<u8> = row.try_get("path")?;
            changes.push(Change {
                kind: EventKind::Removed,
                path: String::from_utf8_lossy(&path).into_owned(),
                old: Some(row.try_get("value")?),
                new: None,
            });
        }
    }
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE {} SET owner = NULL, claim = NULL, version = version + 1 WHERE owner = ?",
        tables.locks
    )))
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(Some(changes))
}
