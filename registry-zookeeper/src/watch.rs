//! Subscriptions on ZooKeeper: one persistent recursive watch per watched prefix, one task that
//! turns its notifications into events, and a re-read-and-diff whenever notifications may have
//! been missed.
//!
//! # How events are made
//! The watcher task takes notifications in the order the server sent them. For a created or
//! changed znode it sends a read at once (reads go out in notification order and are answered
//! in order), then applies the answers strictly in notification order through the
//! [`Cache`], which drops stale and repeated versions and remembers the last value for
//! `Removed`. A deleted znode needs no read. Everything a subscriber receives is published from
//! this one task, so events for a key are in commit order.
//!
//! # Gaps
//! Persistent watches miss changes made while the connection was down (ZOOKEEPER-4698), and
//! `zookeeper-client` 0.11.2 does not even re-register them on the server after a reconnection
//! (its `resend_watches` only sends the one-shot kinds), so after a reconnection (a
//! `SyncConnected` following a `Disconnected` on the watch stream) the task re-arms every watch,
//! as Curator's `PersistentWatcher` does, and walks the watched prefixes to deliver the
//! difference from the cache before it takes any later notification. A new session gets the
//! same treatment.
//!
//! # Invariant
//! Watched prefixes never nest: a subscription under a watched prefix reuses its watch, and a
//! subscription above watched prefixes replaces their watches (after draining them).

use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::Poll;

use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::{AbortHandle, BoxStream, SelectAll, StreamExt};
use registry_api::{RegistryError, Subscribers, Subscription, path};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use zookeeper_client as zk;

use crate::cache::{Cache, Node, Snapshot};
use crate::error::{BACKEND, from_zk};
use crate::tree;

/// The handle of the watcher task of one registry client. Dropping it stops the task.
pub(crate) struct WatchHandle {
    commands: mpsc::UnboundedSender<Command>,
    task: JoinHandle<()>,
}

enum Command {
    Subscribe {
        prefix: String,
        reply: oneshot::Sender<Result<Subscription, RegistryError>>,
    },
    /// A new session replaced an expired one: re-arm every watch in it and resync.
    Adopt {
        client: zk::Client,
        reply: oneshot::Sender<()>,
    },
}

impl WatchHandle {
    /// Starts the watcher task for the client of the first session.
    pub(crate) fn start(client: zk::Client, subscribers: Subscribers) -> Self {
        let (commands, receiver) = mpsc::unbounded_channel();
        let watcher = Watcher {
            client: Some(client),
            last_subscriber_count: subscribers.len(),
            subscribers,
            cache: Cache::default(),
            roots: Vec::new(),
            streams: SelectAll::new(),
            queue: VecDeque::new(),
            missed: false,
        };
        Self {
            commands,
            task: tokio::spawn(watcher.run(receiver)),
        }
    }

    /// Subscribes to `prefix` (validated by the caller): arms a watch if no watched prefix covers
    /// it and records the keys already there, so that only later changes are delivered.
    pub(crate) async fn subscribe(&self, prefix: &str) -> Result<Subscription, RegistryError> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Subscribe {
            prefix: prefix.to_owned(),
            reply,
        };
        if self.commands.send(command).is_err() {
            return Err(RegistryError::Closed);
        }
        answer.await.unwrap_or(Err(RegistryError::Closed))
    }

    /// Moves the watches to a new session's client and delivers what changed since the old one
    /// ended. Returns when that is done.
    pub(crate) async fn adopt(&self, client: zk::Client) {
        let (reply, done) = oneshot::channel();
        if self.commands.send(Command::Adopt { client, reply }).is_ok() {
            let _ = done.await;
        }
    }

    /// Stops the task and waits until it has let go of its client.
    pub(crate) async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for WatchHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchHandle").finish_non_exhaustive()
    }
}

/// One watched prefix and the handle that ends its notification stream.
struct Root {
    prefix: String,
    stop: AbortHandle,
}

/// A notification waiting for its turn to be applied.
enum Pending {
    /// A created or changed znode, with the read sent when the notification arrived.
    Read {
        path: String,
        read: BoxFuture<'static, Result<(Vec<u8>, zk::Stat), zk::Error>>,
        outcome: Option<Result<(Vec<u8>, zk::Stat), zk::Error>>,
    },
    Deleted {
        path: String,
    },
    /// Notifications may have been missed: re-arm, walk and diff before taking later ones.
    Resync,
}

struct Watcher {
    /// `None` between an expired session and the next one.
    client: Option<zk::Client>,
    subscribers: Subscribers,
    last_subscriber_count: usize,
    cache: Cache,
    roots: Vec<Root>,
    streams: SelectAll<BoxStream<'static, zk::WatchedEvent>>,
    queue: VecDeque<Pending>,
    /// A watch stream reported `Disconnected`: resync at its next `SyncConnected`.
    missed: bool,
}

impl Watcher {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        loop {
            self.forget_unsubscribed();
            let paused = self.queue.iter().any(|p| matches!(p, Pending::Resync));
            // Notifications first: each read must reach the server before a quick writer can
            // overwrite or delete the value (the answers are applied in order anyway).
            tokio::select! {
                biased;
                Some(event) = self.streams.next(), if !paused && !self.streams.is_empty() => self.enqueue(event),
                () = head_ready(&mut self.queue), if !self.queue.is_empty() => self.apply_head().await,
                command = commands.recv(), if self.queue.is_empty() => match command {
                    Some(Command::Subscribe { prefix, reply }) => {
                        let _ = reply.send(self.subscribe(&prefix).await);
                    }
                    Some(Command::Adopt { client, reply }) => {
                        self.adopt(client).await;
                        let _ = reply.send(());
                    }
                    None => return,
                },
            }
        }
    }

    fn prefixes(&self) -> Vec<String> {
        self.roots.iter().map(|root| root.prefix.clone()).collect()
    }

    /// Takes one notification: sends the read it needs at once, or marks a gap.
    fn enqueue(&mut self, event: zk::WatchedEvent) {
        use zk::EventType::*;
        match event.event_type {
            NodeCreated | NodeDataChanged => {
                if let Some(client) = &self.client {
                    let read = client.get_data(&event.path).boxed();
                    self.queue.push_back(Pending::Read {
                        path: event.path,
                        read,
                        outcome: None,
                    });
                }
            }
            NodeDeleted => self.queue.push_back(Pending::Deleted { path: event.path }),
            NodeChildrenChanged => {}
            Session => match event.session_state {
                zk::SessionState::Disconnected => self.missed = true,
                zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {
                    // Every watched prefix reports the same reconnection; one resync covers all.
                    if std::mem::take(&mut self.missed) {
                        self.queue.push_back(Pending::Resync);
                    }
                }
                // The session is over; the supervisor brings a new one with `Adopt`.
                _ => self.client = None,
            },
        }
    }

    async fn apply_head(&mut self) {
        match self.queue.pop_front() {
            Some(Pending::Read { path, outcome, .. }) => match outcome {
                Some(Ok((value, stat))) if tree::is_key(&stat) => {
                    if let Some(event) = self.cache.observe(&path, Node::new(value, &stat)) {
                        self.subscribers.publish(&event);
                    }
                }
                // Not a key, or deleted already: its deletion notification follows.
                Some(Ok(_)) | Some(Err(zk::Error::NoNode)) | None => {}
                Some(Err(error)) => {
                    tracing::debug!(%path, %error, "reading a changed key failed; the resync after reconnecting covers it");
                }
            },
            Some(Pending::Deleted { path }) => {
                if let Some(event) = self.cache.removed(&path) {
                    self.subscribers.publish(&event);
                }
            }
            Some(Pending::Resync) => {
                self.rearm_watches().await;
                self.resync().await;
            }
            None => {}
        }
    }

    /// Applies every notification that has already arrived, so that a new subscription starts
    /// after all changes this client has seen committed.
    async fn drain(&mut self) {
        loop {
            if !self.queue.is_empty() {
                head_ready(&mut self.queue).await;
                self.apply_head().await;
                continue;
            }
            match self.streams.next().now_or_never() {
                Some(Some(event)) => self.enqueue(event),
                _ => return,
            }
        }
    }

    /// Walks every watched prefix and delivers the difference from what subscribers were told.
    async fn resync(&mut self) {
        let Some(client) = self.client.clone() else {
            return;
        };
        let prefixes = self.prefixes();
        match snapshot(&client, &prefixes).await {
            Ok(snapshot) => {
                for event in self.cache.resync(&prefixes, snapshot) {
                    self.subscribers.publish(&event);
                }
            }
            Err(error) => {
                // A connection lost again brings another reconnection and another resync.
                tracing::warn!(%error, "resync of watched prefixes failed; retrying after the next reconnection");
                self.missed = true;
            }
        }
    }

    async fn subscribe(&mut self, prefix: &str) -> Result<Subscription, RegistryError> {
        self.drain().await;
        let covered = self
            .roots
            .iter()
            .any(|root| path::is_within(&root.prefix, prefix));
        if !covered {
            let client = self
                .client
                .clone()
                .ok_or(RegistryError::NotConnected { backend: BACKEND })?;
            let stream = arm(&client, prefix).await?;
            // Changes committed before the new watch are only in the streams of the prefixes it
            // replaces: apply them, then let those streams go.
            self.drain().await;
            self.roots.retain(|root| {
                let nested = path::is_within(prefix, &root.prefix);
                if nested {
                    root.stop.abort();
                }
                !nested
            });
            let (stream, stop) = futures::stream::abortable(stream);
            self.streams.push(stream.boxed());
            self.roots.push(Root {
                prefix: prefix.to_owned(),
                stop,
            });
            let existing = snapshot(&client, &[prefix.to_owned()])
                .await
                .map_err(|e| from_zk(e, prefix))?;
            self.cache.seed(existing);
        }
        let subscription = self.subscribers.subscribe(prefix);
        self.last_subscriber_count = self.subscribers.len();
        Ok(subscription)
    }

    /// Drops the watches that no live subscription needs any more, and their cached keys.
    fn forget_unsubscribed(&mut self) {
        let count = self.subscribers.len();
        if count == self.last_subscriber_count {
            return;
        }
        self.last_subscriber_count = count;
        let wanted = self.subscribers.prefixes();
        self.roots.retain(|root| {
            let needed = wanted.iter().any(|p| path::is_within(&root.prefix, p));
            if !needed {
                root.stop.abort();
            }
            needed
        });
        self.cache.retain_within(&self.prefixes());
    }

    async fn adopt(&mut self, client: zk::Client) {
        self.client = Some(client);
        self.missed = false;
        self.forget_unsubscribed();
        // The old session's streams have ended.
        self.streams = SelectAll::new();
        self.rearm_watches().await;
        self.resync().await;
    }

    /// Arms the watch of every watched prefix again and replaces its stream. After a
    /// reconnection the client library keeps the old watcher but the server has forgotten it;
    /// the old watcher is dropped after the new one is armed, which leaves the server's watch in
    /// place.
    async fn rearm_watches(&mut self) {
        let Some(client) = self.client.clone() else {
            return;
        };
        for root in &mut self.roots {
            match arm(&client, &root.prefix).await {
                Ok(stream) => {
                    root.stop.abort();
                    let (stream, stop) = futures::stream::abortable(stream);
                    self.streams.push(stream.boxed());
                    root.stop = stop;
                }
                Err(error) => {
                    // Lost again: the next reconnection (or session) re-arms it.
                    tracing::warn!(prefix = %root.prefix, %error, "re-arming a watch failed");
                    self.missed = true;
                }
            }
        }
    }
}

/// Completes when the oldest pending notification can be applied (its read has been answered).
fn head_ready(queue: &mut VecDeque<Pending>) -> impl Future<Output = ()> + '_ {
    poll_fn(move |cx| match queue.front_mut() {
        Some(Pending::Read { read, outcome, .. }) => {
            if outcome.is_some() {
                return Poll::Ready(());
            }
            match Pin::new(read).poll(cx) {
                Poll::Ready(result) => {
                    *outcome = Some(result);
                    Poll::Ready(())
                }
                Poll::Pending => Poll::Pending,
            }
        }
        Some(_) => Poll::Ready(()),
        None => Poll::Pending,
    })
}

/// Arms a persistent recursive watch on `prefix`; its stream ends after the session ends.
async fn arm(
    client: &zk::Client,
    prefix: &str,
) -> Result<BoxStream<'static, zk::WatchedEvent>, RegistryError> {
    let watcher = client
        .watch(prefix, zk::AddWatchMode::PersistentRecursive)
        .await
        .map_err(|e| from_zk(e, prefix))?;
    let events = futures::stream::unfold(Some(watcher), |watcher| async move {
        // The library panics if a watcher is polled after a terminal session event.
        let mut watcher = watcher?;
        let event = watcher.changed().await;
        let over =
            event.event_type == zk::EventType::Session && event.session_state.is_terminated();
        Some((event, (!over).then_some(watcher)))
    });
    Ok(events.boxed())
}

/// The keys at or below each prefix, read level by level.
async fn snapshot(client: &zk::Client, prefixes: &[String]) -> Result<Snapshot, zk::Error> {
    let mut keys = Snapshot::new();
    for prefix in prefixes {
        let nodes = tree::subtree(client, prefix).await?;
        let reads = futures::future::join_all(nodes.iter().map(|node| client.get_data(node))).await;
        for (node, read) in nodes.into_iter().zip(reads) {
            match read {
                Ok((value, stat)) if tree::is_key(&stat) => {
                    keys.insert(node, Node::new(value, &stat));
                }
                Ok(_) | Err(zk::Error::NoNode) => {}
                Err(error) => return Err(error),
            }
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn head_ready_waits_for_the_oldest_read_only() {
        let (answer, answered) = oneshot::channel::<Result<(Vec<u8>, zk::Stat), zk::Error>>();
        let mut queue = VecDeque::from([
            Pending::Read {
                path: "/a".to_owned(),
                read: async move { answered.await.unwrap_or(Err(zk::Error::ConnectionLoss)) }
                    .boxed(),
                outcome: None,
            },
            Pending::Deleted {
                path: "/b".to_owned(),
            },
        ]);
        assert!(head_ready(&mut queue).now_or_never().is_none());
        answer.send(Err(zk::Error::NoNode)).ok();
        assert!(head_ready(&mut queue).now_or_never().is_some());
        assert!(matches!(
            queue.front(),
            Some(Pending::Read {
                outcome: Some(Err(zk::Error::NoNode)),
                ..
            })
        ));
    }
}
