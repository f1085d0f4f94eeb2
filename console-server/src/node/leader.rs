//! The cluster leader's chores. One node is elected through the registry
//! ([`registry_api::LeaderElection`] under [`LEADER_PATH`]); while it leads it purges finished
//! tasks past their retention.
//!
//! Re-claiming the tasks of dead nodes is not a leader chore here: the new owner of each app
//! fences the dead node's epoch and re-claims its tasks itself (task-dispatch), which needs no
//! single coordinator and is done as soon as membership changes.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use registry_api::{LeaderContender, LeaderSessionId};
use task_dispatch::{Store, unix_millis};
use tokio::task::JoinHandle;

/// Where the election runs.
pub const LEADER_PATH: &str = "/leader/console";

/// How long finished tasks are kept.
pub const TASK_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// How often the leader purges.
const PURGE_INTERVAL: Duration = Duration::from_secs(600);
/// Rows per delete statement, so a large backlog never holds long locks.
const PURGE_BATCH: u32 = 1000;

/// The contender of this node: runs the chores while it leads.
#[derive(Debug)]
pub struct LeaderDuties {
    store: Store,
    chores: Mutex<Option<JoinHandle<()>>>,
}

impl LeaderDuties {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            chores: Mutex::new(None),
        }
    }

    fn chores(&self) -> std::sync::MutexGuard<'_, Option<JoinHandle<()>>> {
        self.chores
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

#[async_trait]
impl LeaderContender for LeaderDuties {
    async fn grant_leadership(&self, session_id: LeaderSessionId) {
        tracing::info!(%session_id, "this node is the cluster leader");
        let store = self.store.clone();
        let chores = tokio::spawn(async move {
            let mut every = tokio::time::interval(PURGE_INTERVAL);
            loop {
                every.tick().await;
                purge_old_tasks(&store).await;
            }
        });
        if let Some(previous) = self.chores().replace(chores) {
            previous.abort();
        }
    }

    async fn revoke_leadership(&self) {
        tracing::info!("this node is no longer the cluster leader");
        if let Some(chores) = self.chores().take() {
            chores.abort();
        }
    }
}

impl Drop for LeaderDuties {
    fn drop(&mut self) {
        if let Some(chores) = self.chores().take() {
            chores.abort();
        }
    }
}

/// Finished tasks older than this are purged: `retention` before the earlier of this node's
/// clock and the database's (issue 12, finding 16). A leader whose clock leapt ahead must not
/// purge recent tasks, and with them the idempotency keys that turn a replayed request into
/// the same task instead of a second action; a database clock that leapt ahead must not either.
/// A clock that fell behind only keeps tasks longer.
fn purge_cutoff(own_now_ms: i64, database_now_ms: Option<i64>, retention: Duration) -> i64 {
    let now = database_now_ms.map_or(own_now_ms, |db| db.min(own_now_ms));
    now.saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX))
}

async fn purge_old_tasks(store: &Store) {
    let database_now = match store.database_now_ms().await {
        Ok(now) => Some(now),
        Err(error) => {
            tracing::warn!(%error, "cannot read the database's clock; purging by this node's clock alone");
            None
        }
    };
    let cutoff = purge_cutoff(unix_millis(), database_now, TASK_RETENTION);
    let mut purged = 0;
    loop {
        match store.purge_finished_tasks(cutoff, PURGE_BATCH).await {
            Ok(n) => {
                purged += n;
                if n < u64::from(PURGE_BATCH) {
                    break;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "purging old tasks failed; trying again at the next interval");
                break;
            }
        }
    }
    if purged > 0 {
        tracing::info!(
            purged,
            retention_days = TASK_RETENTION.as_secs() / 86_400,
            "purged finished tasks"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: i64 = 86_400_000;

    #[test]
    fn the_cutoff_follows_the_earlier_clock() {
        let retention = Duration::from_secs(30 * 86_400);
        let now = 1_800_000_000_000;
        assert_eq!(purge_cutoff(now, Some(now), retention), now - 30 * DAY_MS);
        // This node's clock 60 days ahead: the database's decides, nothing recent goes.
        assert_eq!(
            purge_cutoff(now + 60 * DAY_MS, Some(now), retention),
            now - 30 * DAY_MS
        );
        // The database's clock ahead: this node's decides.
        assert_eq!(
            purge_cutoff(now, Some(now + 60 * DAY_MS), retention),
            now - 30 * DAY_MS
        );
        assert_eq!(purge_cutoff(now, None, retention), now - 30 * DAY_MS);
    }
}
