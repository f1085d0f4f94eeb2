//! Locks, as etcd's `concurrency.Mutex`: each `lock` call puts a claim key of its own under
//! `<namespace>/locks/<path>/` with the session's lease; the claim with the lowest create
//! revision holds the lock, and that revision is the fencing token (revisions are global and
//! never reused, so tokens strictly increase across holders). A waiter watches only the claim
//! just ahead of it, so a release wakes one waiter, not the herd.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp,
    WatchFilterType, WatchOptions,
};
use registry_api::{LockGuard, LockRelease, RegistryError, Result};
use tokio::task::JoinHandle;

use crate::error::{BACKEND, registry_error};
use crate::state::{Session, Shared};

/// Makes each claim key unique within a session: locks are not re-entrant.
static CLAIMS: AtomicU64 = AtomicU64::new(0);

pub(crate) async fn lock(
    shared: &Arc<Shared>,
    client: Client,
    session: Session,
    path: &str,
    timeout: Option<Duration>,
) -> Result<LockGuard> {
    let prefix = format!("{}{path}/", shared.locks);
    let key = format!(
        "{prefix}{:016x}-{}",
        session.lease,
        CLAIMS.fetch_add(1, Ordering::Relaxed)
    );
    // The put runs on a task of its own, so that a dropped call knows when it is safe to
    // delete the claim: after the put, never before it.
    let put = {
        let (mut kv, key) = (client.kv_client(), key.clone());
        let options = PutOptions::new().with_lease(session.lease);
        tokio::spawn(async move { kv.put(key, Vec::new(), Some(options)).await })
    };
    let mut pending = PendingClaim {
        claim: Some(Claim {
            client: client.clone(),
            key,
            revision: None,
        }),
        put: Some(put),
    };
    let acquired = async {
        let Some(put) = pending.put.as_mut() else {
            return Err(RegistryError::Closed);
        };
        let reply = put.await.map_err(|error| RegistryError::Transient {
            backend: BACKEND,
            message: error.to_string(),
        })?;
        pending.put = None;
        let revision = reply
            .map_err(registry_error)?
            .header()
            .map_or(0, |header| header.revision());
        if let Some(claim) = &mut pending.claim {
            claim.revision = Some(revision);
        }
        wait_for_those_ahead(&client, &prefix, revision, &session).await?;
        Ok(revision)
    };
    let revision = match timeout {
        None => acquired.await?,
        Some(wait) => tokio::time::timeout(wait, acquired).await.map_err(|_| {
            RegistryError::LockTimeout {
                path: path.to_owned(),
                waited: wait,
            }
        })??,
    };
    let claim = pending.claim.take().ok_or(RegistryError::Closed)?;
    Ok(LockGuard::new(
        path,
        revision as u64,
        session.validity(),
        Box::new(claim),
    ))
}

/// Waits until no claim created before revision `mine` is left: watches the newest of them
/// for its deletion, then looks again.
async fn wait_for_those_ahead(
    client: &Client,
    prefix: &str,
    mine: i64,
    session: &Session,
) -> Result<()> {
    let mut validity = session.validity();
    loop {
        let options = GetOptions::new()
            .with_prefix()
            .with_keys_only()
            .with_max_create_revision(mine - 1)
            .with_sort(SortTarget::Create, SortOrder::Descend)
            .with_limit(1);
        let ahead = client
            .kv_client()
            .get(prefix, Some(options))
            .await
            .map_err(registry_error)?;
        let Some(claim) = ahead.kvs().first() else {
            return Ok(());
        };
        let from = ahead.header().map_or(0, |header| header.revision()) + 1;
        let options = WatchOptions::new()
            .with_start_revision(from)
            .with_filters([WatchFilterType::NoPut]);
        let mut deletion = client
            .watch_client()
            .watch(claim.key(), Some(options))
            .await
            .map_err(registry_error)?;
        loop {
            tokio::select! {
                reply = deletion.message() => match reply.map_err(registry_error)? {
                    Some(reply) if reply.events().is_empty() && !reply.canceled() => continue,
                    _ => break,
                },
                _ = validity.wait_for(|valid| !*valid) => return Err(RegistryError::SessionLost { backend: BACKEND }),
            }
        }
    }
}

/// One claim key: released by deleting it, if it is still the claim created at `revision`.
struct Claim {
    client: Client,
    key: String,
    /// `None` while the put's outcome is unknown.
    revision: Option<i64>,
}

#[async_trait]
impl LockRelease for Claim {
    async fn release(self: Box<Self>) -> Result<()> {
        let delete = TxnOp::delete(self.key.clone(), None);
        let txn = match self.revision {
            Some(revision) => Txn::new().when([Compare::create_revision(
                self.key.clone(),
                CompareOp::Equal,
                revision,
            )]),
            None => Txn::new(),
        };
        self.client
            .kv_client()
            .txn(txn.and_then([delete]))
            .await
            .map(drop)
            .map_err(registry_error)
    }
}

/// A claim not handed out yet: dropped (timeout, error, a dropped call), it deletes the claim in
/// the background once the put is done.
struct PendingClaim {
    claim: Option<Claim>,
    put: Option<JoinHandle<std::result::Result<etcd_client::PutResponse, etcd_client::Error>>>,
}

impl Drop for PendingClaim {
    fn drop(&mut self) {
        let (Some(claim), Ok(runtime)) = (self.claim.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let put = self.put.take();
        runtime.spawn(async move {
            if let Some(put) = put {
                let _ = put.await;
            }
            if let Err(error) = Box::new(claim).release().await {
                tracing::warn!(%error, "deleting an abandoned lock claim failed; it goes with the session");
            }
        });
    }
}
