//! Leader election and leader retrieval, built on [`Registry::lock`] for every backend.
//!
//! The shape is Flink's HA services: a [`LeaderContender`] is granted leadership with a
//! [`LeaderSessionId`] and revoked when its session is lost; a [`LeaderRetrieval`] learns the
//! current leader's address. The election holds the lock `<path>/latch`; the leader publishes its
//! address as the ephemeral key `<path>/leader/<session id>`, where the session id is the latch's
//! fencing token, so a newer leader always sorts after an older one and a stale entry (re-created
//! after a session loss before its owner noticed) can never hide the real leader.
//!
//! On the `standalone` registry the latch is free at once, so leadership is granted immediately,
//! like Flink's `StandaloneHaServices`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::error::{RegistryError, Result};
use crate::event::Mode;
use crate::path;
use crate::registry::Registry;

/// Identifies one term of leadership. It is the fencing token of the election latch, so it
/// strictly increases from one leader to the next and can fence a former leader's writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LeaderSessionId(pub u64);

impl fmt::Display for LeaderSessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The current leader as published in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderInfo {
    pub address: String,
    pub session_id: LeaderSessionId,
}

/// The party that wants to lead (a console node).
///
/// # Notable behaviors
/// Calls alternate strictly: `grant`, `revoke`, `grant`, ... `revoke_leadership` is called when
/// the registry session is lost (not when it is merely suspended) and when the election stops.
#[async_trait]
pub trait LeaderContender: Send + Sync + 'static {
    async fn grant_leadership(&self, session_id: LeaderSessionId);
    async fn revoke_leadership(&self);
}

/// A running election for one contender. Stop it with [`LeaderElection::stop`]; dropping it
/// stops it in the background.
pub struct LeaderElection {
    leader: watch::Receiver<Option<LeaderSessionId>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// How long to wait before retrying after a registry error while not connected.
const RETRY_DELAY: Duration = Duration::from_millis(200);

impl LeaderElection {
    /// Starts contending for leadership of `path` with `address` as the published address.
    ///
    /// # Notable errors
    /// [`RegistryError::InvalidPath`] for a bad `path`.
    pub fn start(
        registry: Arc<dyn Registry>,
        path: &str,
        address: impl Into<String>,
        contender: Arc<dyn LeaderContender>,
    ) -> Result<Self> {
        path::validate_key(path)?;
        let (leader_tx, leader) = watch::channel(None);
        let (stop, stop_rx) = oneshot::channel();
        let run = Campaign {
            registry,
            latch: path::join(path, "latch"),
            leaders: path::join(path, "leader"),
            address: address.into(),
            contender,
            leader: leader_tx,
        };
        Ok(Self {
            leader,
            stop: Some(stop),
            task: Some(tokio::spawn(run.run(stop_rx))),
        })
    }

    /// The session id of the current term if this contender leads now.
    pub fn leader_session(&self) -> Option<LeaderSessionId> {
        *self.leader.borrow()
    }

    /// Whether this contender leads with exactly `session_id` (a term that has not ended).
    pub fn has_leadership(&self, session_id: LeaderSessionId) -> bool {
        self.leader_session() == Some(session_id)
    }

    /// Stops contending: revokes leadership if held, withdraws the published address and frees
    /// the latch, then returns.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for LeaderElection {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl fmt::Debug for LeaderElection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaderElection")
            .field("leader_session", &self.leader_session())
            .finish_non_exhaustive()
    }
}

struct Campaign {
    registry: Arc<dyn Registry>,
    latch: String,
    leaders: String,
    address: String,
    contender: Arc<dyn LeaderContender>,
    leader: watch::Sender<Option<LeaderSessionId>>,
}

impl Campaign {
    async fn run(self, mut stop: oneshot::Receiver<()>) {
        loop {
            let guard = tokio::select! {
                _ = &mut stop => return,
                guard = self.registry.lock(&self.latch, None) => guard,
            };
            let guard = match guard {
                Ok(guard) => guard,
                Err(RegistryError::Closed) => return,
                Err(error) => {
                    tracing::debug!(%error, latch = %self.latch, "leader election waits for the registry");
                    tokio::select! {
                        _ = &mut stop => return,
                        _ = tokio::time::sleep(RETRY_DELAY) => continue,
                    }
                }
            };
            let session_id = LeaderSessionId(guard.fencing_token());
            let entry = path::join(&self.leaders, &format!("{:020}", session_id.0));
            let info = LeaderInfo {
                address: self.address.clone(),
                session_id,
            };
            let published = match serde_json::to_vec(&info) {
                Ok(bytes) => self.registry.put(&entry, &bytes, Mode::Ephemeral).await,
                Err(error) => Err(RegistryError::Backend {
                    backend: "election",
                    message: error.to_string(),
                }),
            };
            if let Err(error) = published {
                tracing::warn!(%error, "could not publish the leader address; retrying");
                drop(guard);
                tokio::select! {
                    _ = &mut stop => return,
                    _ = tokio::time::sleep(RETRY_DELAY) => continue,
                }
            }
            tracing::info!(%session_id, latch = %self.latch, "leadership granted");
            self.leader.send_replace(Some(session_id));
            self.contender.grant_leadership(session_id).await;
            let stopping = tokio::select! {
                _ = guard.lost() => false,
                _ = &mut stop => true,
            };
            self.leader.send_replace(None);
            tracing::info!(%session_id, stopping, "leadership revoked");
            self.contender.revoke_leadership().await;
            // Withdraw our address; after a session loss the backend may have re-created it.
            if let Err(error) = self.registry.delete(&entry).await {
                tracing::debug!(%error, "withdrawing the leader address failed; it ends with the session");
            }
            if stopping {
                let _ = guard.release().await;
                return;
            }
        }
    }
}

/// Follows who leads `path`: the latest [`LeaderInfo`], or `None` while nobody leads.
pub struct LeaderRetrieval {
    leader: watch::Receiver<Option<LeaderInfo>>,
    task: JoinHandle<()>,
}

impl LeaderRetrieval {
    /// Starts following the leader of `path`.
    pub async fn start(registry: Arc<dyn Registry>, path: &str) -> Result<Self> {
        path::validate_key(path)?;
        let leaders = path::join(path, "leader");
        let mut events = registry.subscribe(&leaders).await?;
        let (tx, leader) = watch::channel(current_leader(&*registry, &leaders).await?);
        let task = tokio::spawn(async move {
            while events.next().await.is_some() {
                // Coalesce bursts: read the tree once per batch of events.
                while events.try_next().is_some() {}
                match current_leader(&*registry, &leaders).await {
                    Ok(info) => {
                        tx.send_if_modified(|current| {
                            let changed = *current != info;
                            *current = info;
                            changed
                        });
                    }
                    Err(error) => {
                        tracing::debug!(%error, "reading the leader failed; waiting for the next change")
                    }
                }
            }
        });
        Ok(Self { leader, task })
    }

    /// The leader now.
    pub fn current(&self) -> Option<LeaderInfo> {
        self.leader.borrow().clone()
    }

    /// A receiver that is notified of every change of leader.
    pub fn watch(&self) -> watch::Receiver<Option<LeaderInfo>> {
        self.leader.clone()
    }
}

impl Drop for LeaderRetrieval {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for LeaderRetrieval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaderRetrieval")
            .field("current", &self.current())
            .finish_non_exhaustive()
    }
}

/// The published leader with the highest session id.
async fn current_leader(registry: &dyn Registry, leaders: &str) -> Result<Option<LeaderInfo>> {
    // Entry names are zero-padded session ids, so the last name is the newest term.
    for name in registry.children(leaders).await?.iter().rev() {
        if let Some(bytes) = registry.get(&path::join(leaders, name)).await?
            && let Ok(info) = serde_json::from_slice::<LeaderInfo>(&bytes)
        {
            return Ok(Some(info));
        }
    }
    Ok(None)
}
