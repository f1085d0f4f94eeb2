//! Subscriptions: one etcd watch per subscription, with `prev_kv`, that resumes after a broken
//! stream from the revision after the last one delivered, and re-reads the prefix when that
//! revision was compacted.
//!
//! Each subscription keeps its view of the prefix (path → last value delivered): it tells
//! `Added` from `Updated`, gives `Removed` a value when the server has none (a compacted
//! `prev_kv`), and is what a re-read after compaction is diffed against, so that nothing is lost
//! or delivered twice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use registry_api::{Event, EventKind, Result, Subscription, path};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

use crate::error::registry_error;
use crate::state::Shared;

/// The pause before watching again after the stream broke.
const RETRY_DELAY: Duration = Duration::from_millis(200);

/// Subscribes to `prefix`: its current content is read (the view), and a task follows every
/// revision after that read.
pub(crate) async fn subscribe(
    shared: &Arc<Shared>,
    client: Client,
    prefix: &str,
) -> Result<Subscription> {
    let (sender, events) = unbounded_channel();
    let mut follower = Follower {
        watched: shared.key(prefix.trim_end_matches('/')),
        keys_len: shared.keys.len(),
        prefix: prefix.to_owned(),
        view: BTreeMap::new(),
        next: 0,
        client,
        sender,
    };
    follower.relist(false).await.map_err(registry_error)?;
    let mut closed = shared.closed.subscribe();
    let task = tokio::spawn(async move {
        tokio::select! {
            () = follower.run() => {}
            _ = closed.wait_for(|closed| *closed) => {}
        }
    });
    Ok(Subscription::new(prefix, events, move || task.abort()))
}

struct Follower {
    client: Client,
    /// The etcd key prefix watched: also covers siblings such as `/ab` for `/a`, filtered out.
    watched: String,
    keys_len: usize,
    prefix: String,
    view: BTreeMap<String, Vec<u8>>,
    /// The first revision not delivered yet.
    next: i64,
    sender: UnboundedSender<Event>,
}

impl Follower {
    /// Watches until the subscription is dropped (its receiver gone).
    async fn run(&mut self) {
        while !self.sender.is_closed() {
            match self.follow().await {
                Ok(true) => {
                    if let Err(error) = self.relist(true).await {
                        tracing::warn!(%error, prefix = %self.prefix, "re-reading a compacted subscription failed; retrying");
                        tokio::time::sleep(RETRY_DELAY).await;
                    }
                }
                Ok(false) => tokio::time::sleep(RETRY_DELAY).await,
                Err(error) => {
                    tracing::debug!(%error, prefix = %self.prefix, "etcd watch broke; resuming");
                    tokio::time::sleep(RETRY_DELAY).await;
                }
            }
        }
    }

    /// One watch from `next`; `Ok(true)` when `next` was compacted away.
    async fn follow(&mut self) -> std::result::Result<bool, etcd_client::Error> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_prev_key()
            .with_start_revision(self.next);
        let mut stream = self
            .client
            .watch_client()
            .watch(self.watched.clone(), Some(options))
            .await?;
        while let Some(reply) = stream.message().await? {
            if reply.compact_revision() > 0 {
                return Ok(true);
            }
            if reply.canceled() {
                return Ok(false);
            }
            for event in reply.events() {
                let Some(kv) = event.kv() else { continue };
                self.next = kv.mod_revision() + 1;
                let Some(path) = self.path_of(kv.key()) else {
                    continue;
                };
                match event.event_type() {
                    EventType::Put => self.deliver_value(path, kv.value().to_vec()),
                    EventType::Delete => {
                        let cached = self.view.remove(&path);
                        let last = event.prev_kv().map(|prev| prev.value().to_vec()).or(cached);
                        self.send(EventKind::Removed, path, last.unwrap_or_default());
                    }
                }
            }
        }
        Ok(false)
    }

    /// Reads the prefix now, delivers what differs from the view (if `announce`), and resumes
    /// after the read.
    async fn relist(&mut self, announce: bool) -> std::result::Result<(), etcd_client::Error> {
        let options = GetOptions::new().with_prefix();
        let mut reply = self
            .client
            .kv_client()
            .get(self.watched.clone(), Some(options))
            .await?;
        let revision = reply.header().map_or(0, |header| header.revision());
        let mut now = BTreeMap::new();
        for kv in reply.take_kvs() {
            if let Some(path) = self.path_of(kv.key()) {
                now.insert(path, kv.into_key_value().1);
            }
        }
        if !announce {
            self.view = now;
            self.next = revision + 1;
            return Ok(());
        }
        let gone: Vec<(String, Vec<u8>)> = self
            .view
            .iter()
            .filter(|(path, _)| !now.contains_key(*path))
            .map(|(p, v)| (p.clone(), v.clone()))
            .collect();
        for (path, value) in gone {
            self.view.remove(&path);
            self.send(EventKind::Removed, path, value);
        }
        for (path, value) in now {
            if self.view.get(&path) != Some(&value) {
                self.deliver_value(path, value);
            }
        }
        self.next = revision + 1;
        Ok(())
    }

    fn deliver_value(&mut self, path: String, value: Vec<u8>) {
        let kind = match self.view.insert(path.clone(), value.clone()) {
            Some(_) => EventKind::Updated,
            None => EventKind::Added,
        };
        self.send(kind, path, value);
    }

    fn send(&self, kind: EventKind, path: String, value: Vec<u8>) {
        // A dropped subscription's receiver is gone: `run` ends on it.
        let _ = self.sender.send(Event::new(kind, path, value));
    }

    /// The registry path of an etcd key, if it lies within the subscribed prefix.
    fn path_of(&self, key: &[u8]) -> Option<String> {
        let path = std::str::from_utf8(key.get(self.keys_len..)?).ok()?;
        path::is_within(&self.prefix, path).then(|| path.to_owned())
    }
}
