//! The live console nodes as the registry shows them: one ephemeral key per node under
//! [`NODES_PATH`], whose value is the node's [`NodeInfo`].

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use registry_api::{Event, EventKind, Registry, path};
use serde::{Deserialize, Serialize};
use task_dispatch::{HostId, LiveNode};

/// Where nodes register: `/nodes/console/<node id>`.
pub const NODES_PATH: &str = "/nodes/console";

/// What a node publishes about itself in its registry entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: String,
    pub host: String,
    pub port: u16,
    pub pid: u32,
    /// MAC address of the interface with the default route, when there is one.
    pub mac: Option<String>,
    /// The machine the node runs on (host affinity: only nodes on the host that started a
    /// `process` app may own it). Missing in entries of nodes that do not say.
    #[serde(default)]
    pub host_id: Option<HostId>,
    /// Milliseconds since the Unix epoch.
    pub started_at: i64,
    pub version: String,
    /// The node's share of the apps' weight under the `bounded` assignment (`node.capacity`;
    /// issue 16). 1 in entries of nodes that do not say.
    #[serde(default = "one")]
    pub capacity: u32,
    /// How the node splits the apps (`dispatch.assignment` and `dispatch.epsilon`, e.g.
    /// `bounded(epsilon=0.1)`); every node of a cluster must say the same. Missing in entries
    /// of nodes that do not say (issue 16).
    #[serde(default)]
    pub assignment: Option<String>,
    pub load: NodeLoad,
}

fn one() -> u32 {
    1
}

/// The load part of [`NodeInfo`], refreshed while the node runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeLoad {
    pub owned_apps: usize,
    pub running_tasks: usize,
    /// The weight the node owns ([`task_dispatch::Dispatcher::owned_weight`]; issue 16).
    #[serde(default)]
    pub owned_weight: u64,
}

impl NodeInfo {
    /// The registry key of this node.
    pub fn key(&self) -> String {
        node_key(&self.id)
    }

    /// `http://host:port` (an IPv6 address in brackets), for calls between nodes.
    pub fn base_url(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("http://[{}]:{}", self.host, self.port)
        } else {
            format!("http://{}:{}", self.host, self.port)
        }
    }
}

/// The registry key of node `id`.
pub fn node_key(id: &str) -> String {
    path::join(NODES_PATH, id)
}

/// The live nodes, keyed by id. Cheap to clone; clones share the view.
///
/// # Notable behaviors
/// Built from a snapshot taken after subscribing, then kept current by applying the
/// subscription's events in order; applying an event twice is harmless, so the overlap between
/// snapshot and events converges to the registry's state.
#[derive(Debug, Clone, Default)]
pub struct Peers {
    nodes: Arc<RwLock<BTreeMap<String, NodeInfo>>>,
}

impl Peers {
    /// Replaces the view with what the registry holds now.
    ///
    /// # Notable errors
    /// Registry errors; entries that are not valid [`NodeInfo`] are skipped with a warning.
    pub async fn reload(&self, registry: &dyn Registry) -> registry_api::Result<()> {
        let mut nodes = BTreeMap::new();
        for name in registry.children(NODES_PATH).await? {
            let key = path::join(NODES_PATH, &name);
            if let Some(value) = registry.get(&key).await?
                && let Some(info) = parse(&key, &value)
            {
                nodes.insert(info.id.clone(), info);
            }
        }
        *self.write() = nodes;
        Ok(())
    }

    /// Applies one registry event; returns whether the live set (ids, hosts and capacities)
    /// changed.
    pub fn apply(&self, event: &Event) -> bool {
        let Some(id) = path::child_of(NODES_PATH, &event.path) else {
            return false;
        };
        let mut nodes = self.write();
        match event.kind {
            EventKind::Removed => nodes.remove(id).is_some(),
            EventKind::Added | EventKind::Updated => match parse(&event.path, &event.value) {
                Some(info) => {
                    let placed = (info.host_id.clone(), info.capacity);
                    nodes
                        .insert(id.to_owned(), info)
                        .is_none_or(|old| (old.host_id, old.capacity) != placed)
                }
                None => false,
            },
        }
    }

    /// `event` as the registry confirms it: a `Removed` of a node key is checked with a read,
    /// and if the registry still lists the key (a stale `Removed` replayed after a session was
    /// re-established, say, or one that a later `Added` has overtaken) it becomes an `Updated`
    /// with the current value. Other events, and a `Removed` that cannot be checked (the
    /// registry does not answer: the node stops acting anyway), are returned unchanged.
    ///
    /// Why a read and not event sequence numbers: membership must come from the registry's
    /// current state alone (issue 12, findings 1 and 11), whatever order a backend replays its
    /// history in; a read after the event sees every change the event reports.
    pub async fn confirmed(registry: &dyn Registry, event: &Event) -> Event {
        if event.kind != EventKind::Removed || path::child_of(NODES_PATH, &event.path).is_none() {
            return event.clone();
        }
        match registry.get(&event.path).await {
            Ok(Some(value)) => {
                tracing::info!(key = %event.path, "stale Removed ignored: the registry still lists the node");
                Event::new(EventKind::Updated, event.path.clone(), value)
            }
            Ok(None) => event.clone(),
            Err(error) => {
                tracing::debug!(key = %event.path, %error, "cannot confirm a Removed; applying it");
                event.clone()
            }
        }
    }

    /// Forgets `id`, which the registry no longer lists (read just now, before its `Removed`
    /// event arrived). Returns whether the set changed; the registry's own `Removed` that
    /// follows is then a no-op.
    pub fn forget(&self, id: &str) -> bool {
        self.write().remove(id).is_some()
    }

    /// Whether `id` is in the view.
    pub fn contains(&self, id: &str) -> bool {
        self.read().contains_key(id)
    }

    /// The ids of the live nodes, sorted.
    pub fn ids(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// The live nodes with their hosts, as ownership takes them, sorted by id.
    pub fn live_nodes(&self) -> Vec<LiveNode> {
        self.read()
            .values()
            .map(|info| {
                LiveNode::new(info.id.clone(), info.host_id.clone()).with_capacity(info.capacity)
            })
            .collect()
    }

    /// The live nodes that split the apps otherwise than `mine` (with what they say), sorted
    /// by id. Nodes that do not say are not listed.
    pub fn other_assignments(&self, mine: &str) -> Vec<(String, String)> {
        self.read()
            .values()
            .filter_map(|info| {
                let theirs = info.assignment.as_deref()?;
                (theirs != mine).then(|| (info.id.clone(), theirs.to_owned()))
            })
            .collect()
    }

    /// Every live node, sorted by id.
    pub fn list(&self) -> Vec<NodeInfo> {
        self.read().values().cloned().collect()
    }

    /// One live node.
    pub fn get(&self, id: &str) -> Option<NodeInfo> {
        self.read().get(id).cloned()
    }

    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<String, NodeInfo>> {
        // Writers replace or update single entries: a poisoned map is still consistent.
        self.nodes
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<String, NodeInfo>> {
        self.nodes
            .write()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

fn parse(key: &str, value: &[u8]) -> Option<NodeInfo> {
    match serde_json::from_slice::<NodeInfo>(value) {
        Ok(info) => Some(info),
        Err(error) => {
            tracing::warn!(key, %error, "ignoring a node entry that is not valid node info");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str) -> NodeInfo {
        NodeInfo {
            id: id.to_owned(),
            host: "127.0.0.1".to_owned(),
            port: 1,
            pid: 1,
            mac: None,
            host_id: Some(HostId::new("vm/3d12")),
            started_at: 0,
            version: "0".to_owned(),
            capacity: 1,
            assignment: Some("rendezvous".to_owned()),
            load: NodeLoad::default(),
        }
    }

    fn event(kind: EventKind, id: &str) -> Event {
        let value = serde_json::to_vec(&info(id)).unwrap();
        Event::new(kind, node_key(id), value)
    }

    #[test]
    fn events_keep_the_set_and_report_real_changes() {
        let peers = Peers::default();
        assert!(peers.apply(&event(EventKind::Added, "a")));
        assert!(
            !peers.apply(&event(EventKind::Added, "a")),
            "a repeat changes nothing"
        );
        assert!(
            !peers.apply(&event(EventKind::Updated, "a")),
            "a load update is not a change of set"
        );
        assert!(peers.apply(&event(EventKind::Added, "b")));
        assert_eq!(peers.ids(), ["a", "b"]);
        assert!(peers.apply(&event(EventKind::Removed, "a")));
        assert!(!peers.apply(&event(EventKind::Removed, "a")));
        assert_eq!(peers.ids(), ["b"]);
        assert!(!peers.apply(&Event::new(EventKind::Added, "/nodes/consoleX/c", "{}")));
        assert!(!peers.apply(&Event::new(EventKind::Added, node_key("junk"), "not json")));
    }

    #[test]
    fn a_node_entry_gives_its_host_and_a_new_host_is_a_change() {
        let peers = Peers::default();
        assert!(peers.apply(&event(EventKind::Added, "a")));
        assert_eq!(
            peers.live_nodes(),
            [LiveNode::new("a", Some(HostId::new("vm/3d12")))]
        );
        let mut moved = info("a");
        moved.host_id = Some(HostId::new("other/3d12"));
        let value = serde_json::to_vec(&moved).unwrap();
        assert!(peers.apply(&Event::new(EventKind::Updated, node_key("a"), value)));
        // An entry of a node that does not say its host: a node on no known host.
        let mut value = serde_json::to_value(info("b")).unwrap();
        value.as_object_mut().unwrap().remove("host_id");
        let value = serde_json::to_vec(&value).unwrap();
        assert!(peers.apply(&Event::new(EventKind::Added, node_key("b"), value)));
        assert_eq!(peers.live_nodes()[1], LiveNode::new("b", None));
    }

    #[test]
    fn nodes_that_split_the_apps_otherwise_are_listed_and_a_capacity_is_a_change() {
        let peers = Peers::default();
        assert!(peers.apply(&event(EventKind::Added, "a")));
        let mut other = info("b");
        other.assignment = Some("bounded(epsilon=0.1)".to_owned());
        other.capacity = 2;
        let value = serde_json::to_vec(&other).unwrap();
        assert!(peers.apply(&Event::new(EventKind::Added, node_key("b"), value)));
        assert_eq!(
            peers.live_nodes()[1],
            LiveNode::new("b", Some(HostId::new("vm/3d12"))).with_capacity(2)
        );
        assert_eq!(
            peers.other_assignments("rendezvous"),
            [("b".to_owned(), "bounded(epsilon=0.1)".to_owned())]
        );
        other.capacity = 3;
        let value = serde_json::to_vec(&other).unwrap();
        assert!(peers.apply(&Event::new(EventKind::Updated, node_key("b"), value)));
        // An entry that does not say (an older node) is not reported.
        let mut value = serde_json::to_value(info("c")).unwrap();
        value.as_object_mut().unwrap().remove("assignment");
        value.as_object_mut().unwrap().remove("capacity");
        let value = serde_json::to_vec(&value).unwrap();
        assert!(peers.apply(&Event::new(EventKind::Added, node_key("c"), value)));
        assert_eq!(peers.other_assignments("rendezvous").len(), 1);
        assert_eq!(peers.live_nodes()[2].capacity, 1);
    }

    #[test]
    fn forgetting_a_node_makes_its_later_removal_a_no_op() {
        let peers = Peers::default();
        assert!(peers.apply(&event(EventKind::Added, "a")));
        assert!(!peers.forget("zz"), "an unknown node changes nothing");
        assert!(peers.contains("a"));
        assert!(peers.forget("a"));
        assert!(peers.ids().is_empty() && !peers.contains("a"));
        assert!(
            !peers.apply(&event(EventKind::Removed, "a")),
            "the registry's Removed that follows is a no-op"
        );
    }

    /// Issue 12, finding 11: after a session was re-established, a backend replayed the
    /// `Removed` of the node's own entry, which it had already put back; the node dropped
    /// itself from its live set and released every lease. A `Removed` is now checked against
    /// the registry first.
    #[tokio::test]
    async fn a_removed_event_for_a_listed_node_changes_nothing() {
        let registry = registry_api::StandaloneRegistry::new();
        registry
            .connect(std::time::Duration::from_secs(5))
            .await
            .unwrap();
        let peers = Peers::default();
        let listed = event(EventKind::Added, "a");
        registry
            .put(&listed.path, &listed.value, registry_api::Mode::Ephemeral)
            .await
            .unwrap();
        assert!(peers.apply(&listed));

        let stale = event(EventKind::Removed, "a");
        let confirmed = Peers::confirmed(&registry, &stale).await;
        assert_eq!(confirmed.kind, EventKind::Updated);
        assert!(!peers.apply(&confirmed), "a listed node stays");
        assert_eq!(peers.ids(), ["a"]);

        registry.delete(&listed.path).await.unwrap();
        let confirmed = Peers::confirmed(&registry, &stale).await;
        assert_eq!(confirmed, stale, "a real removal passes");
        assert!(peers.apply(&confirmed));
        assert!(peers.ids().is_empty());
    }
}
