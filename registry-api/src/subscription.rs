//! Subscriptions: a stream of [`Event`]s for a prefix that ends when dropped.
//!
//! [`Subscribers`] is the fan-out that backends use to deliver events: they call
//! [`Subscribers::publish`] once per committed change, in commit order, and every live
//! subscription whose prefix covers the path gets it.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::mpsc;

use crate::event::Event;
use crate::path;

/// A live subscription to a prefix, returned by [`crate::Registry::subscribe`].
///
/// # Notable behaviors
/// - Events for one key arrive in commit order; none is lost or repeated while the client's
///   session lives.
/// - The buffer is unbounded, so a slow reader never makes the backend drop events.
/// - Dropping the subscription unsubscribes. [`Subscription::next`] returns `None` once the
///   registry client is closed.
pub struct Subscription {
    prefix: String,
    events: mpsc::UnboundedReceiver<Event>,
    on_drop: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl Subscription {
    /// Builds a subscription from a channel; `on_drop` runs once when it is dropped, so the
    /// backend can stop watching. Backends that use [`Subscribers`] do not call this.
    pub fn new(
        prefix: impl Into<String>,
        events: mpsc::UnboundedReceiver<Event>,
        on_drop: impl FnOnce() + Send + Sync + 'static,
    ) -> Self {
        Self {
            prefix: prefix.into(),
            events,
            on_drop: Some(Box::new(on_drop)),
        }
    }

    /// The subscribed prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The next event, waiting for it; `None` when the registry client is closed.
    ///
    /// # Cancellation safety
    /// Cancel-safe: a dropped call loses no event.
    pub async fn next(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// The next event if one is already buffered.
    pub fn try_next(&mut self) -> Option<Event> {
        self.events.try_recv().ok()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(on_drop) = self.on_drop.take() {
            on_drop();
        }
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The set of live subscriptions of one client, shared between the client and its background
/// tasks. Cloning shares the set.
#[derive(Clone, Default)]
pub struct Subscribers {
    table: Arc<Mutex<SubscriberTable>>,
}

#[derive(Default)]
struct SubscriberTable {
    next_id: u64,
    entries: Vec<Entry>,
}

struct Entry {
    id: u64,
    prefix: String,
    sender: mpsc::UnboundedSender<Event>,
}

impl Subscribers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a subscription for `prefix` (which the caller has validated). It receives every event
    /// published after this call returns.
    pub fn subscribe(&self, prefix: &str) -> Subscription {
        let (sender, receiver) = mpsc::unbounded_channel();
        let id = {
            let mut table = self.lock();
            table.next_id += 1;
            let id = table.next_id;
            table.entries.push(Entry {
                id,
                prefix: prefix.to_owned(),
                sender,
            });
            id
        };
        let table: Weak<Mutex<SubscriberTable>> = Arc::downgrade(&self.table);
        Subscription::new(prefix, receiver, move || {
            if let Some(table) = table.upgrade() {
                let mut table = table.lock().unwrap_or_else(|poison| poison.into_inner());
                table.entries.retain(|entry| entry.id != id);
            }
        })
    }

    /// Delivers `event` to every subscription whose prefix covers its path.
    ///
    /// Call it once per committed change, in commit order, from one place at a time per key:
    /// the order of calls is the order subscribers see.
    pub fn publish(&self, event: &Event) {
        let mut table = self.lock();
        table.entries.retain(|entry| {
            if path::is_within(&entry.prefix, &event.path) {
                entry.sender.send(event.clone()).is_ok()
            } else {
                !entry.sender.is_closed()
            }
        });
    }

    /// Whether any live subscription covers `path`.
    pub fn wants(&self, path: &str) -> bool {
        self.lock()
            .entries
            .iter()
            .any(|entry| path::is_within(&entry.prefix, path) && !entry.sender.is_closed())
    }

    /// The distinct prefixes with live subscriptions, sorted; what a backend must watch.
    pub fn prefixes(&self) -> Vec<String> {
        let mut prefixes: Vec<String> = self
            .lock()
            .entries
            .iter()
            .filter(|entry| !entry.sender.is_closed())
            .map(|entry| entry.prefix.clone())
            .collect();
        prefixes.sort();
        prefixes.dedup();
        prefixes
    }

    /// The number of live subscriptions.
    pub fn len(&self) -> usize {
        self.lock()
            .entries
            .iter()
            .filter(|entry| !entry.sender.is_closed())
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ends every subscription: their `next()` returns `None` after the buffered events.
    pub fn close_all(&self) {
        self.lock().entries.clear();
    }

    fn lock(&self) -> MutexGuard<'_, SubscriberTable> {
        // A panic while holding this lock cannot leave the table half-updated (every update is
        // a single push/retain), so a poisoned lock is still safe to use.
        self.table
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

impl fmt::Debug for Subscribers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscribers")
            .field("prefixes", &self.prefixes())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;

    #[test]
    fn publish_reaches_covering_prefixes_only_and_drop_unsubscribes() {
        let subscribers = Subscribers::new();
        let mut a = subscribers.subscribe("/a");
        let mut ab = subscribers.subscribe("/ab");
        subscribers.publish(&Event::new(EventKind::Added, "/a/x", "1"));
        subscribers.publish(&Event::new(EventKind::Added, "/ab", "2"));
        assert_eq!(a.try_next().map(|e| e.path), Some("/a/x".to_owned()));
        assert_eq!(a.try_next(), None);
        assert_eq!(ab.try_next().map(|e| e.path), Some("/ab".to_owned()));
        assert_eq!(subscribers.len(), 2);
        drop(ab);
        assert_eq!(subscribers.len(), 1);
        assert_eq!(subscribers.prefixes(), ["/a"]);
        assert!(subscribers.wants("/a/b") && !subscribers.wants("/ab"));
    }
}
