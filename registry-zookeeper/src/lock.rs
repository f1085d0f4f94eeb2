//! Locks: the ZooKeeper recipe with ephemeral sequential nodes, waiting on the predecessor only.
//!
//! A contender creates `<path>/_c_<uuid>-lock-<sequence>` (ephemeral, sequential) and holds the
//! lock when its node has the lowest sequence among the contenders; otherwise it watches only the
//! node just ahead of it, so a release wakes one waiter, not the herd. The fencing token is the
//! node's `czxid`: the zxid that created it. Contenders are served in creation order and zxids
//! grow with every transaction, so tokens strictly increase from one holder to the next, across
//! sessions and server restarts, even if the lock directory is deleted and re-created.
//!
//! The uuid in the name (Curator's protection) finds the node again when the connection was lost
//! while it was being created.

use std::fmt;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use registry_api::{LockGuard, LockRelease, RegistryError, path};
use tokio::sync::watch;
use zookeeper_client as zk;

use crate::error::{BACKEND, from_zk};
use crate::session::Session;
use crate::tree;

/// Marks lock nodes among the children of a lock path: `_c_<uuid>-lock-<sequence>`.
const LOCK_MARK: &str = "-lock-";

/// How many times background clean-ups retry a lost connection before leaving the node to the
/// end of the session.
const CLEANUP_ATTEMPTS: u32 = 20;

/// Takes the lock at `path` in `session`, waiting at most `timeout`.
///
/// # Notable errors
/// `LockTimeout` when the timeout passed; `SessionLost` (or `Closed`) when the session ended
/// while waiting.
///
/// # Cancellation safety
/// Cancel-safe: if the returned future is dropped before it returns the guard, a background
/// task deletes the contender node (finding it by its uuid if its creation was still in
/// flight), so the next contender in line moves up.
pub(crate) async fn acquire(
    session: Arc<Session>,
    acls: zk::Acls<'static>,
    path: &str,
    timeout: Option<Duration>,
) -> Result<LockGuard, RegistryError> {
    let mut attempt = Attempt {
        session,
        acls,
        path: path.to_owned(),
        uuid: uuid::Uuid::new_v4().to_string(),
        progress: Progress::NotStarted,
    };
    let outcome = match timeout {
        None => attempt.run().await,
        Some(timeout) => match tokio::time::timeout(timeout, attempt.run()).await {
            Ok(outcome) => outcome,
            Err(_) => Err(RegistryError::LockTimeout {
                path: path.to_owned(),
                waited: timeout,
            }),
        },
    };
    let (node, token) = outcome?;
    // Still `Created` while the watch is set: a call dropped here deletes the node.
    let validity = watch_holding(&attempt.session, &node).await;
    attempt.progress = Progress::Held;
    let release = ZookeeperLockRelease {
        session: Arc::downgrade(&attempt.session),
        node,
    };
    Ok(LockGuard::new(path, token, validity, Box::new(release)))
}

/// How far an attempt got, for the clean-up when it is dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Progress {
    NotStarted,
    /// The create was sent; whether it happened is unknown.
    Creating,
    Created(String),
    /// The guard owns the node now.
    Held,
}

struct Attempt {
    session: Arc<Session>,
    acls: zk::Acls<'static>,
    path: String,
    uuid: String,
    progress: Progress,
}

impl Attempt {
    /// Creates the contender node and waits until it is first in line: (node, fencing token).
    async fn run(&mut self) -> Result<(String, u64), RegistryError> {
        let (node, token) = self.create().await?;
        self.progress = Progress::Created(node.clone());
        self.wait_first(&node).await?;
        Ok((node, token))
    }

    async fn create(&mut self) -> Result<(String, u64), RegistryError> {
        let client = self.session.client();
        let prefix = format!("{}/_c_{}{LOCK_MARK}", self.path, self.uuid);
        let options = zk::CreateMode::EphemeralSequential.with_acls(self.acls);
        loop {
            self.progress = Progress::Creating;
            match client.create(&prefix, b"", &options).await {
                Ok((stat, sequence)) => {
                    let node = format!("{prefix}{sequence}");
                    let token = if stat.czxid > 0 {
                        stat.czxid
                    } else {
                        self.czxid(&node).await?
                    };
                    return Ok((node, token.unsigned_abs()));
                }
                Err(zk::Error::NoNode) => tree::make_dir(client, self.acls, &self.path).await?,
                Err(zk::Error::ConnectionLoss) => {
                    // The create may have happened: look for our uuid before trying again.
                    if let Some(node) = self.find_own().await? {
                        let token = self.czxid(&node).await?;
                        return Ok((node, token.unsigned_abs()));
                    }
                }
                Err(error) => return Err(self.failed(error, &self.path)),
            }
        }
    }

    async fn czxid(&self, node: &str) -> Result<i64, RegistryError> {
        loop {
            match self.session.client().check_stat(node).await {
                Ok(Some(stat)) => return Ok(stat.czxid),
                Ok(None) => return Err(self.failed(zk::Error::NoNode, node)),
                Err(zk::Error::ConnectionLoss) => continue,
                Err(error) => return Err(self.failed(error, node)),
            }
        }
    }

    async fn find_own(&self) -> Result<Option<String>, RegistryError> {
        loop {
            match self.session.client().list_children(&self.path).await {
                Ok(names) => {
                    return Ok(names
                        .into_iter()
                        .find(|name| name.contains(&self.uuid))
                        .map(|name| path::join(&self.path, &name)));
                }
                Err(zk::Error::NoNode) => return Ok(None),
                // Requests sent while disconnected wait for the reconnection: no busy loop.
                Err(zk::Error::ConnectionLoss) => continue,
                Err(error) => return Err(self.failed(error, &self.path)),
            }
        }
    }

    /// Waits until `node` has the lowest sequence, watching only its predecessor.
    async fn wait_first(&self, node: &str) -> Result<(), RegistryError> {
        let client = self.session.client();
        let own_name = node.rsplit('/').next().unwrap_or(node);
        loop {
            let names = match client.list_children(&self.path).await {
                Ok(names) => names,
                Err(zk::Error::ConnectionLoss) => continue,
                Err(error) => return Err(self.failed(error, &self.path)),
            };
            let mut line: Vec<(i64, &str)> = names
                .iter()
                .filter_map(|name| sequence_of(name).map(|seq| (seq, name.as_str())))
                .collect();
            line.sort_unstable();
            let Some(place) = line.iter().position(|(_, name)| *name == own_name) else {
                if !self.session.is_live() {
                    return Err(self.session.end_error());
                }
                return Err(RegistryError::Backend {
                    backend: BACKEND,
                    message: format!("lock node {node} was deleted by someone else while waiting"),
                });
            };
            let Some(&(_, ahead)) = place.checked_sub(1).and_then(|i| line.get(i)) else {
                return Ok(());
            };
            let predecessor = path::join(&self.path, ahead);
            match client.check_and_watch_stat(&predecessor).await {
                Ok((None, _)) => continue,
                Ok((Some(_), watcher)) => {
                    tokio::select! {
                        _ = watcher.changed() => continue,
                        () = self.session.ended() => return Err(self.session.end_error()),
                    }
                }
                Err(zk::Error::ConnectionLoss) => continue,
                Err(error) => return Err(self.failed(error, &predecessor)),
            }
        }
    }

    fn failed(&self, error: zk::Error, at: &str) -> RegistryError {
        if !self.session.is_live() {
            return self.session.end_error();
        }
        from_zk(error, at)
    }
}

impl Drop for Attempt {
    /// Deletes what a cancelled or failed attempt left behind, in the background.
    fn drop(&mut self) {
        let cleanup = match std::mem::replace(&mut self.progress, Progress::Held) {
            Progress::NotStarted | Progress::Held => return,
            Progress::Creating => Cleanup::ByUuid {
                dir: self.path.clone(),
                uuid: self.uuid.clone(),
            },
            Progress::Created(node) => Cleanup::Node(node),
        };
        if !self.session.is_live() {
            return; // The session's end removed the node.
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // No runtime: the node goes when the session ends.
        };
        let session = Arc::downgrade(&self.session);
        runtime.spawn(cleanup.run(session));
    }
}

enum Cleanup {
    Node(String),
    ByUuid { dir: String, uuid: String },
}

impl Cleanup {
    async fn run(self, session: Weak<Session>) {
        for _ in 0..CLEANUP_ATTEMPTS {
            let Some(session) = session.upgrade().filter(|s| s.is_live()) else {
                return;
            };
            let client = session.client();
            let node = match &self {
                Cleanup::Node(node) => node.clone(),
                // Requests are served in the order they were sent, so this listing sees the
                // outcome of the create that was in flight.
                Cleanup::ByUuid { dir, uuid } => match client.list_children(dir).await {
                    Ok(names) => match names.into_iter().find(|name| name.contains(uuid)) {
                        Some(name) => path::join(dir, &name),
                        None => return,
                    },
                    Err(zk::Error::ConnectionLoss) => continue,
                    Err(_) => return,
                },
            };
            match client.delete(&node, None).await {
                Ok(()) | Err(zk::Error::NoNode) => return,
                Err(zk::Error::ConnectionLoss) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => {
                    tracing::warn!(%node, %error, "deleting an abandoned lock node failed; it goes when the session ends");
                    return;
                }
            }
        }
    }
}

/// The validity of a held lock: `true` until the session ends (turned false by the session in
/// the same call that reports it over) or the node is deleted (released, or removed by someone
/// else). The watching task ends when the guard is dropped.
async fn watch_holding(session: &Session, node: &str) -> watch::Receiver<bool> {
    let (valid, validity) = watch::channel(true);
    let valid = Arc::new(valid);
    session.register_guard(&valid);
    let watched = loop {
        match session.client().check_and_watch_stat(node).await {
            Ok((Some(_), watcher)) => break Some(watcher),
            Ok((None, _)) => break None,
            Err(zk::Error::ConnectionLoss) => continue,
            Err(_) => break None,
        }
    };
    let Some(watcher) = watched else {
        valid.send_replace(false);
        return validity;
    };
    tokio::spawn(async move {
        tokio::select! {
            _ = watcher.changed() => {}
            () = valid.closed() => return,
        }
        valid.send_replace(false);
    });
    validity
}

/// The sequence number of a lock node name, `None` for other children.
fn sequence_of(name: &str) -> Option<i64> {
    let (_, sequence) = name.rsplit_once(LOCK_MARK)?;
    if sequence.is_empty() || !sequence.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    sequence.parse().ok()
}

/// Frees a lock by deleting its node, if the session that holds it still lives.
struct ZookeeperLockRelease {
    session: Weak<Session>,
    node: String,
}

impl fmt::Debug for ZookeeperLockRelease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZookeeperLockRelease")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl LockRelease for ZookeeperLockRelease {
    async fn release(self: Box<Self>) -> Result<(), RegistryError> {
        for _ in 0..CLEANUP_ATTEMPTS {
            let Some(session) = self.session.upgrade().filter(|s| s.is_live()) else {
                return Ok(()); // The session is over: the lock went with it.
            };
            match session.client().delete(&self.node, None).await {
                Ok(()) | Err(zk::Error::NoNode) => return Ok(()),
                Err(zk::Error::ConnectionLoss) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(zk::Error::SessionExpired | zk::Error::ClientClosed) => return Ok(()),
                Err(error) => return Err(from_zk(error, &self.node)),
            }
        }
        Err(RegistryError::NotConnected { backend: BACKEND })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lock_nodes_have_a_sequence() {
        assert_eq!(sequence_of("_c_1234-lock-0000000007"), Some(7));
        assert_eq!(sequence_of("_c_1234-lock-"), None);
        assert_eq!(sequence_of("leader"), None);
        assert_eq!(sequence_of("_c_1234-lock-12a"), None);
    }
}
