//! The key tree: reads, and writes that change `data` and append to the event log in one
//! transaction, plus the purge of a dead client.
//!
//! Every write transaction starts with [`events::lock_sequence`], which serializes writers and
//! orders their events by commit; its later reads are therefore current. The `version` column is
//! still the optimistic check of every update (`... WHERE path = ? AND version = ?`): a write that
//! matches no row is rolled back and retried instead of overwriting a change it did not see.

use registry_api::{EventKind, Mode, RegistryError, path};
use sqlx::mysql::MySqlConnection;
use sqlx::{AssertSqlSafe, Connection, Row};

use crate::error::{BACKEND, OpError, is_duplicate_key};
use crate::events::{self, Change, subtree_range};
use crate::schema::Tables;

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

/// Whether client `id` is alive by the database's clock (a current read inside the caller's
/// transaction).
async fn is_alive(conn: &mut MySqlConnection, tables: &Tables, id: i64) -> Result<bool, OpError> {
    let alive: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM {} WHERE id = ? AND expires_at >= UTC_TIMESTAMP(6)",
        tables.clients
    )))
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(alive > 0)
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

/// What `put` found at the key, read after the sequence lock.
struct Current {
    me_alive: bool,
    row: Option<(i64, Option<i64>, Vec<u8>, bool)>,
    ephemeral_parent: Option<String>,
    has_children: bool,
}

async fn read_for_put(
    conn: &mut MySqlConnection,
    tables: &Tables,
    me: i64,
    key: &str,
) -> Result<Current, OpError> {
    let ancestors: Vec<&str> = path::ancestors(key).collect();
    let parent_check = if ancestors.is_empty() {
        "NULL".to_owned()
    } else {
        format!(
            "(SELECT a.path FROM {} a WHERE a.path IN ({}) AND a.owner IS NOT NULL LIMIT 1)",
            tables.data,
            vec!["?"; ancestors.len()].join(", ")
        )
    };
    let sql = format!(
        "SELECT \
           (SELECT COUNT(*) FROM {c} WHERE id = ? AND expires_at >= UTC_TIMESTAMP(6)) AS me_alive, \
           d.version, d.owner, d.value, \
           (SELECT COUNT(*) FROM {c} o WHERE o.id = d.owner AND o.expires_at >= UTC_TIMESTAMP(6)) AS owner_alive, \
           {parent_check} AS ephemeral_parent, \
           EXISTS(SELECT 1 FROM {d} k WHERE k.path >= ? AND k.path < ?) AS has_children \
         FROM (SELECT 1 AS one) AS one LEFT JOIN {d} d ON d.path = ?",
        c = tables.clients,
        d = tables.data,
    );
    let (low, high) = subtree_range(key);
    let mut query = sqlx::query(AssertSqlSafe(sql)).bind(me);
    for ancestor in &ancestors {
        query = query.bind(ancestor.as_bytes());
    }
    let row = query
        .bind(low.as_bytes())
        .bind(high.as_bytes())
        .bind(key.as_bytes())
        .fetch_one(&mut *conn)
        .await?;
    let version: Option<i64> = row.try_get("version")?;
    let existing = match version {
        Some(version) => Some((
            version,
            row.try_get::<Option<i64>, _>("owner")?,
            row.try_get::<Vec<u8>, _>("value")?,
            row.try_get_unchecked::<i64, _>("owner_alive")? > 0,
        )),
        None => None,
    };
    let ephemeral_parent: Option<Vec<u8>> = row.try_get("ephemeral_parent")?;
    Ok(Current {
        me_alive: row.try_get_unchecked::<i64, _>("me_alive")? > 0,
        row: existing,
        ephemeral_parent: ephemeral_parent.map(|p| String::from_utf8_lossy(&p).into_owned()),
        has_children: row.try_get_unchecked::<i64, _>("has_children")? > 0,
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
    let mut tx = conn.begin().await?;
    let mut last_seq = events::lock_sequence(&mut tx, tables).await?;
    let current = read_for_put(&mut tx, tables, me, key).await?;
    if !current.me_alive {
        return Err(session_lost());
    }
    if let Some(parent) = current.ephemeral_parent {
        return Err(OpError::Refused(RegistryError::InvalidPath {
            path: key.to_owned(),
            reason: format!(
                "its parent {parent} is ephemeral, and ephemeral keys cannot have children"
            ),
        }));
    }
    if mode == Mode::Ephemeral && current.has_children {
        return Err(OpError::Refused(RegistryError::InvalidPath {
            path: key.to_owned(),
            reason: "it has children, and ephemeral keys cannot have children".to_owned(),
        }));
    }
    let mut changes = Vec::new();
    let mut existing = current.row;
    if let Some((_, Some(owner), _, owner_alive)) = &existing
        && *owner != me
    {
        if *owner_alive {
            return Err(OpError::Refused(RegistryError::Conflict {
                path: key.to_owned(),
                reason: format!("it is an ephemeral key of another live session (client {owner})"),
            }));
        }
        // Its owner is dead but not purged yet: purge it now, in this transaction.
        changes.extend(
            purge_in_tx(&mut tx, tables, *owner, Purge::IfExpired)
                .await?
                .unwrap_or_default(),
        );
        existing = None;
    }
    let owner = (mode == Mode::Ephemeral).then_some(me);
    match existing {
        Some((version, _, old, _)) => {
            let updated = sqlx::query(AssertSqlSafe(format!(
                "UPDATE {} SET value = ?, owner = ?, version = version + 1, updated_at = UTC_TIMESTAMP(6) \
                 WHERE path = ? AND version = ?",
                tables.data
            )))
            .bind(value)
            .bind(owner)
            .bind(key.as_bytes())
            .bind(version)
            .execute(&mut *tx)
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
            .execute(&mut *tx)
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
    events::append(&mut tx, tables, last_seq, &changes).await?;
    last_seq += changes.len() as i64;
    tracing::trace!(key, last_seq, "put committed");
    tx.commit().await?;
    Ok(())
}

/// Deletes `key` and everything below it, appending `Removed` (with the last value) for each,
/// deepest first, in one transaction. Deleting nothing is not an error.
pub(crate) async fn delete(
    conn: &mut MySqlConnection,
    tables: &Tables,
    me: i64,
    key: &str,
) -> Result<(), OpError> {
    let mut tx = conn.begin().await?;
    let last_seq = events::lock_sequence(&mut tx, tables).await?;
    if !is_alive(&mut tx, tables, me).await? {
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
    .fetch_all(&mut *tx)
    .await?;
    if doomed.is_empty() {
        return Ok(());
    }
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
        .execute(&mut *tx)
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
    events::append(&mut tx, tables, last_seq, &changes).await?;
    tx.commit().await?;
    Ok(())
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
/// by the sequence lock: exactly one of them writes the events.
pub(crate) async fn purge_client(
    conn: &mut MySqlConnection,
    tables: &Tables,
    id: i64,
    when: Purge,
) -> Result<bool, OpError> {
    let mut tx = conn.begin().await?;
    let last_seq = events::lock_sequence(&mut tx, tables).await?;
    let Some(changes) = purge_in_tx(&mut tx, tables, id, when).await? else {
        return Ok(false);
    };
    events::append(&mut tx, tables, last_seq, &changes).await?;
    tx.commit().await?;
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
