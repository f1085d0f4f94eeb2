//! Locks: one row per path in `locks`, taken by a conditional update or an insert on the unique
//! key, with a fencing token from the row's own counter.
//!
//! # Guarantees
//! - Mutual exclusion: a row has at most one `owner`; taking it is `UPDATE ... WHERE owner IS
//!   NULL` or an `INSERT` that the primary key refuses when another client got there first.
//! - Fencing: `token` is incremented by every acquisition and the row is never deleted, so a
//!   path's tokens strictly increase across all holders, forever.
//! - Only the holder releases: the release matches `owner` (the client) and `claim` (this
//!   acquisition), so neither another client nor a stale guard of the same client can free it.
//! - A holder's death frees the lock: the purge of a dead client sets `owner = NULL` on its rows
//!   in the same transaction that removes its ephemerals. An acquisition checks (with a shared
//!   lock on its session row) that its own session is alive, so a purged client cannot take a lock
//!   that nobody would ever free. (The shared lock is on its `sessions` row, not its `clients`
//!   row, so that an acquisition never holds up the client's own heartbeat.)
//! - No spinning: a waiter retries once per heartbeat interval, or at once when a lock of the same
//!   client is released; a retry that finds the lock held costs one indexed read.

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use registry_api::{LockGuard, LockRelease, RegistryError};
use sqlx::AssertSqlSafe;
use sqlx::mysql::MySqlConnection;

use crate::error::{BACKEND, MAX_ATTEMPTS, OpError, is_duplicate_key};
use crate::link::on_link;
use crate::schema::Tables;
use crate::state::Shared;
use crate::{store, write};

/// Takes the lock at `key` (a valid key that fits the tables) for the client, waiting at most
/// `timeout`: one attempt per heartbeat interval, or at once when a lock of this client is
/// released.
///
/// # Notable errors
/// `LockTimeout` when the timeout passed; `NotConnected`, `SessionLost` or `Closed` when the
/// session is not live.
///
/// # Cancellation safety
/// Cancel-safe: a dropped call that may have taken the lock unseen (its attempt was in flight)
/// frees that acquisition in the background; one dropped while waiting holds nothing.
pub(crate) async fn acquire(
    shared: &Arc<Shared>,
    key: &str,
    timeout: Option<Duration>,
) -> Result<LockGuard, RegistryError> {
    let started = tokio::time::Instant::now();
    let deadline = timeout.map(|t| started + t);
    let claim = shared.next_claim();
    loop {
        let (me, validity) = shared.live()?;
        let freed = shared.lock_freed.notified();
        tokio::pin!(freed);
        freed.as_mut().enable();
        let pending = PendingClaim::new(Claim {
            shared: Arc::downgrade(shared),
            path: key.to_owned(),
            owner: me,
            claim,
        });
        let attempt = on_link!(shared.link, shared.timing.op_timeout, |conn| {
            try_acquire(conn, &shared.tables, me, claim, key)
        });
        match attempt {
            Ok(Some(token)) => {
                if let Some(granted) = pending.disarm() {
                    return Ok(LockGuard::new(key, token, validity, Box::new(granted)));
                }
            }
            Ok(None) => {
                pending.disarm();
            }
            Err(error) if error.is_retryable() => {
                pending.disarm();
            }
            Err(error) => {
                // `pending` frees the attempt in the background if its commit went unseen.
                if !error.costs_connection() {
                    pending.disarm();
                }
                return Err(shared.failed(error, &format!("lock {key}")));
            }
        }
        let now = tokio::time::Instant::now();
        let nap = match deadline {
            Some(deadline) if now >= deadline => {
                return Err(RegistryError::LockTimeout {
                    path: key.to_owned(),
                    waited: now - started,
                });
            }
            Some(deadline) => shared.timing.interval.min(deadline - now),
            None => shared.timing.interval,
        };
        tokio::select! {
            _ = tokio::time::sleep(nap) => {}
            _ = &mut freed => {}
        }
    }
}

/// One attempt to take `key` for client `me` with acquisition id `claim`: the fencing token if
/// it was free, `None` if another client holds it.
pub(crate) async fn try_acquire(
    conn: &mut MySqlConnection,
    tables: &Tables,
    me: i64,
    claim: i64,
    key: &str,
) -> Result<Option<u64>, OpError> {
    // A waiter mostly finds the lock held: one plain read answers that, instead of the
    // five-statement transaction below (a leader-election contender retries every heartbeat).
    // The session check is skipped only when nothing would be taken; a dead session still
    // learns of its death from the heartbeat.
    let holder: Option<Option<i64>> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT owner FROM {} WHERE path = ?",
        tables.locks
    )))
    .bind(key.as_bytes())
    .fetch_optional(&mut *conn)
    .await?;
    if matches!(holder, Some(Some(_))) {
        return Ok(None);
    }
    write::begin(conn).await?;
    let body = take_in_tx(conn, tables, me, claim, key).await;
    write::finish(conn, tables, body.map(|token| (token, Vec::new()))).await
}

/// The transaction of [`try_acquire`]: the session checked (and share-locked), then the row
/// taken by a conditional update or created.
async fn take_in_tx(
    conn: &mut MySqlConnection,
    tables: &Tables,
    me: i64,
    claim: i64,
    key: &str,
) -> Result<Option<u64>, OpError> {
    if !store::is_alive(conn, tables, me).await? {
        return Err(OpError::Refused(RegistryError::SessionLost {
            backend: BACKEND,
        }));
    }
    // LAST_INSERT_ID(expr) hands the new token back in the OK packet: no second query.
    let taken = sqlx::query(AssertSqlSafe(format!(
        "UPDATE {} SET owner = ?, claim = ?, token = LAST_INSERT_ID(token + 1), version = version + 1, \
         acquired_at = UTC_TIMESTAMP(6) WHERE path = ? AND owner IS NULL",
        tables.locks
    )))
    .bind(me)
    .bind(claim)
    .bind(key.as_bytes())
    .execute(&mut *conn)
    .await?;
    if taken.rows_affected() == 1 {
        return Ok(Some(taken.last_insert_id()));
    }
    let inserted = sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {} (path, owner, claim, token, version, acquired_at) VALUES (?, ?, ?, 1, 1, UTC_TIMESTAMP(6))",
        tables.locks
    )))
    .bind(key.as_bytes())
    .bind(me)
    .bind(claim)
    .execute(&mut *conn)
    .await;
    match inserted {
        Ok(_) => Ok(Some(1)),
        // The row exists and is held.
        Err(error) if is_duplicate_key(&error) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// Frees `key` if client `owner` still holds it with acquisition `claim`; a lock already freed
/// (released, or its session purged) is left alone.
pub(crate) async fn release(
    conn: &mut MySqlConnection,
    tables: &Tables,
    owner: i64,
    claim: i64,
    key: &str,
) -> Result<bool, OpError> {
    let freed = sqlx::query(AssertSqlSafe(format!(
        "UPDATE {} SET owner = NULL, claim = NULL, version = version + 1 \
         WHERE path = ? AND owner = ? AND claim = ?",
        tables.locks
    )))
    .bind(key.as_bytes())
    .bind(owner)
    .bind(claim)
    .execute(&mut *conn)
    .await?;
    Ok(freed.rows_affected() == 1)
}

/// Frees one granted lock (or one acquisition whose outcome is unknown) for a [`LockGuard`].
///
/// [`LockGuard`]: registry_api::LockGuard
pub(crate) struct Claim {
    pub shared: Weak<Shared>,
    pub path: String,
    pub owner: i64,
    pub claim: i64,
}

impl Claim {
    async fn free(self) -> Result<(), RegistryError> {
        let Some(shared) = self.shared.upgrade() else {
            // The client is gone; its session ends by timeout and the purge frees the lock.
            return Ok(());
        };
        free(&shared, &self.path, self.owner, self.claim).await
    }
}

/// Releases `path` for (`owner`, `claim`) and wakes this client's waiters.
pub(crate) async fn free(
    shared: &Arc<Shared>,
    path: &str,
    owner: i64,
    claim: i64,
) -> Result<(), RegistryError> {
    // A lock-wait timeout or a deadlock rolls back only the statement, and freeing is
    // idempotent (it matches the claim), so it is retried as writes are.
    let mut attempt = 1;
    let outcome = loop {
        let outcome = on_link!(shared.link, shared.timing.op_timeout, |conn| release(
            conn,
            &shared.tables,
            owner,
            claim,
            path
        ));
        match outcome {
            Err(error) if error.is_retryable() && attempt < MAX_ATTEMPTS => {
                tracing::debug!(%error, attempt, path, "releasing a registry lock met a held row; retrying");
                attempt += 1;
            }
            outcome => break outcome,
        }
    };
    shared.lock_freed.notify_waiters();
    match outcome {
        Ok(_) => Ok(()),
        Err(error) => {
            shared.wake_session();
            Err(error.into_registry(&format!("releasing lock {path}")))
        }
    }
}

#[async_trait]
impl LockRelease for Claim {
    async fn release(self: Box<Self>) -> Result<(), RegistryError> {
        self.free().await
    }
}

/// Frees an acquisition in the background if the `lock` call that made it is cancelled (or
/// failed) before it could hand out a guard: the attempt may have committed unseen.
pub(crate) struct PendingClaim {
    claim: Option<Claim>,
}

impl PendingClaim {
    pub(crate) fn new(claim: Claim) -> Self {
        Self { claim: Some(claim) }
    }

    /// The attempt's outcome is known and nothing needs undoing (or a guard took over).
    pub(crate) fn disarm(mut self) -> Option<Claim> {
        self.claim.take()
    }
}

impl Drop for PendingClaim {
    fn drop(&mut self) {
        if let Some(claim) = self.claim.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                if let Err(error) = claim.free().await {
                    tracing::debug!(%error, "freeing an abandoned lock attempt failed; it ends with the session");
                }
            });
        }
    }
}
