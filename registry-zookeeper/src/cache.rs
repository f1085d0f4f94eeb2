//! What subscribers have been told: the last delivered value and version of every key under the
//! watched prefixes. Pure bookkeeping, no I/O.
//!
//! ZooKeeper's watch notifications carry no data, so the watcher reads each changed key after its
//! notification and asks the cache what the read means. The cache turns reads into `Added` /
//! `Updated` events, refuses to go back in time or repeat a version, and remembers the last value
//! so that `Removed` can carry it even though the znode is gone when the notification arrives.

use std::collections::BTreeMap;

use registry_api::{Event, EventKind, path};
use zookeeper_client as zk;

/// The identity and version of one key as last delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    /// The zxid that created this incarnation of the key.
    pub czxid: i64,
    /// The zxid of the last change of its value.
    pub mzxid: i64,
    pub value: Vec<u8>,
}

impl Node {
    pub(crate) fn new(value: Vec<u8>, stat: &zk::Stat) -> Self {
        Self {
            czxid: stat.czxid,
            mzxid: stat.mzxid,
            value,
        }
    }
}

/// Keys read in one walk of the watched prefixes: path → node.
pub(crate) type Snapshot = BTreeMap<String, Node>;

/// The delivered state of every key under the watched prefixes.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    nodes: BTreeMap<String, Node>,
}

impl Cache {
    /// A read of `path` after a change notification returned `node`: the event to deliver, if
    /// the read shows something subscribers have not been told.
    ///
    /// # Notable behaviors
    /// - A read of the same or an older version than the delivered one is ignored, so a
    ///   duplicate notification never repeats a value.
    /// - A read of a newer incarnation (another `czxid`) is ignored: the deletion of the old one
    ///   is still on its way and must be delivered first; the notification of the new one follows.
    pub(crate) fn observe(&mut self, path: &str, node: Node) -> Option<Event> {
        match self.nodes.get_mut(path) {
            None => {
                let event = Event::new(EventKind::Added, path, node.value.clone());
                self.nodes.insert(path.to_owned(), node);
                Some(event)
            }
            Some(known) if known.czxid == node.czxid && node.mzxid > known.mzxid => {
                let event = Event::new(EventKind::Updated, path, node.value.clone());
                *known = node;
                Some(event)
            }
            Some(_) => None,
        }
    }

    /// `path` was deleted: `Removed` with the last delivered value, if it was a known key.
    pub(crate) fn removed(&mut self, path: &str) -> Option<Event> {
        self.nodes
            .remove(path)
            .map(|known| Event::new(EventKind::Removed, path, known.value))
    }

    /// Starts tracking the keys of a newly watched prefix without events (they existed before
    /// the subscription). Keys already tracked keep their delivered state: their own
    /// notifications are still on their way.
    pub(crate) fn seed(&mut self, snapshot: Snapshot) {
        for (path, node) in snapshot {
            self.nodes.entry(path).or_insert(node);
        }
    }

    /// Compares the delivered state of every key within `roots` with a fresh walk of them, after
    /// a gap in the notifications (a reconnection, a new session): the events that bring
    /// subscribers up to date, which the cache then records as delivered.
    pub(crate) fn resync(&mut self, roots: &[String], snapshot: Snapshot) -> Vec<Event> {
        let within = |key: &str| roots.iter().any(|root| path::is_within(root, key));
        let mut events = Vec::new();
        let gone: Vec<String> = self
            .nodes
            .keys()
            .filter(|key| within(key) && !snapshot.contains_key(*key))
            .cloned()
            .collect();
        for key in gone {
            events.extend(self.removed(&key));
        }
        for (key, node) in snapshot {
            if !within(&key) {
                continue;
            }
            let replaced = self
                .nodes
                .get(&key)
                .is_some_and(|known| known.czxid != node.czxid);
            if replaced {
                events.extend(self.removed(&key));
            }
            events.extend(self.observe(&key, node));
        }
        events
    }

    /// Forgets the keys outside every one of `roots` (their prefix is no longer watched).
    pub(crate) fn retain_within(&mut self, roots: &[String]) {
        self.nodes
            .retain(|key, _| roots.iter().any(|root| path::is_within(root, key)));
    }

    #[cfg(test)]
    fn value(&self, path: &str) -> Option<&[u8]> {
        self.nodes.get(path).map(|node| node.value.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EventKind::{Added, Removed, Updated};

    fn node(czxid: i64, mzxid: i64, value: &str) -> Node {
        Node {
            czxid,
            mzxid,
            value: value.as_bytes().to_vec(),
        }
    }

    /// (kind, path, value) as text, sortable.
    fn kinds(events: &[Event]) -> Vec<(String, String, String)> {
        events
            .iter()
            .map(|e| {
                (
                    format!("{:?}", e.kind),
                    e.path.clone(),
                    e.value_str().into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn reads_become_added_then_updated_and_never_repeat_or_go_back() {
        let mut cache = Cache::default();
        assert_eq!(
            cache.observe("/a", node(5, 5, "v1")).map(|e| e.kind),
            Some(Added)
        );
        assert_eq!(cache.observe("/a", node(5, 5, "v1")), None, "duplicate");
        assert_eq!(
            cache.observe("/a", node(5, 7, "v2")).map(|e| e.kind),
            Some(Updated)
        );
        assert_eq!(cache.observe("/a", node(5, 6, "old")), None, "older read");
        assert_eq!(cache.value("/a"), Some(&b"v2"[..]));
    }

    #[test]
    fn removed_carries_the_last_delivered_value_once() {
        let mut cache = Cache::default();
        cache.observe("/a", node(5, 5, "v1"));
        cache.observe("/a", node(5, 9, "last"));
        let removed = cache.removed("/a").expect("a known key");
        assert_eq!(
            (removed.kind, removed.value_str()),
            (Removed, "last".into())
        );
        assert_eq!(cache.removed("/a"), None, "a second deletion is not news");
        assert_eq!(cache.removed("/never"), None);
    }

    #[test]
    fn a_newer_incarnation_waits_for_the_deletion_of_the_old_one() {
        let mut cache = Cache::default();
        cache.observe("/a", node(5, 5, "old"));
        assert_eq!(cache.observe("/a", node(8, 8, "new")), None);
        assert_eq!(cache.removed("/a").map(|e| e.value), Some(b"old".to_vec()));
        assert_eq!(
            cache.observe("/a", node(8, 8, "new")).map(|e| e.kind),
            Some(Added)
        );
    }

    #[test]
    fn seed_keeps_what_was_delivered() {
        let mut cache = Cache::default();
        cache.observe("/a/x", node(5, 5, "delivered"));
        cache.seed(Snapshot::from([
            ("/a/x".to_owned(), node(5, 9, "newer")),
            ("/a/y".to_owned(), node(6, 6, "y")),
        ]));
        assert_eq!(cache.value("/a/x"), Some(&b"delivered"[..]));
        assert_eq!(cache.value("/a/y"), Some(&b"y"[..]));
        // The notification for the newer /a/x value still delivers it.
        assert_eq!(
            cache.observe("/a/x", node(5, 9, "newer")).map(|e| e.kind),
            Some(Updated)
        );
    }

    #[test]
    fn resync_reports_what_changed_during_the_gap() {
        let mut cache = Cache::default();
        cache.observe("/r/same", node(1, 1, "s"));
        cache.observe("/r/changed", node(2, 2, "c1"));
        cache.observe("/r/gone", node(3, 3, "g"));
        cache.observe("/r/replaced", node(4, 4, "r1"));
        cache.observe("/other/x", node(5, 5, "untouched"));
        let snapshot = Snapshot::from([
            ("/r/same".to_owned(), node(1, 1, "s")),
            ("/r/changed".to_owned(), node(2, 6, "c2")),
            ("/r/replaced".to_owned(), node(7, 7, "r2")),
            ("/r/new".to_owned(), node(8, 8, "n")),
        ]);
        let events = cache.resync(&["/r".to_owned()], snapshot);
        let mut seen = kinds(&events);
        seen.sort();
        let expected: Vec<(String, String, String)> = [
            ("Added", "/r/new", "n"),
            ("Added", "/r/replaced", "r2"),
            ("Removed", "/r/gone", "g"),
            ("Removed", "/r/replaced", "r1"),
            ("Updated", "/r/changed", "c2"),
        ]
        .iter()
        .map(|(k, p, v)| (k.to_string(), p.to_string(), v.to_string()))
        .collect();
        assert_eq!(seen, expected);
        // Per key, the removal of the old incarnation comes first.
        let replaced: Vec<_> = events
            .iter()
            .filter(|e| e.path == "/r/replaced")
            .map(|e| e.kind)
            .collect();
        assert_eq!(replaced, [Removed, Added]);
        assert_eq!(cache.value("/other/x"), Some(&b"untouched"[..]));
        assert!(
            cache
                .resync(&["/r".to_owned()], cache_snapshot(&cache))
                .is_empty()
        );
    }

    fn cache_snapshot(cache: &Cache) -> Snapshot {
        cache
            .nodes
            .iter()
            .filter(|(k, _)| k.starts_with("/r/"))
            .map(|(k, n)| (k.clone(), n.clone()))
            .collect()
    }

    #[test]
    fn retain_within_forgets_unwatched_prefixes_on_segment_boundaries() {
        let mut cache = Cache::default();
        cache.observe("/a/x", node(1, 1, "x"));
        cache.observe("/ab/y", node(2, 2, "y"));
        cache.retain_within(&["/a".to_owned()]);
        assert_eq!(cache.value("/a/x"), Some(&b"x"[..]));
        assert_eq!(cache.value("/ab/y"), None);
    }
}
