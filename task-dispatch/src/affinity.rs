//! Host affinity: which live nodes may own an app.
//!
//! An app whose running copy is tied to the machine that started it (a `process` app: only a
//! node on that machine can see, probe or signal it) records that machine as its host while a
//! copy may be alive. Such an app may be owned only by live nodes on its host; an app with no
//! recorded host may be owned by any live node. Ownership stays a pure function of the live
//! set, now with each node's host, and of the app's host: [`LiveSet::owner`] is rendezvous
//! hashing over the nodes the app may go to, so every node that sees the same live set and the
//! same app computes the same owner.
//!
//! # Notable behaviors
//! - Among the nodes of one host the owner is the one the whole ring ranks first, so recording
//!   the owner's own host (as a start does) never moves the app.
//! - With no live node on an app's host the app has no owner ([`Unowned::NoLiveNodeOnHost`]):
//!   its copy may still run there, and no other node could see it.
//! - Under the bounded-load assignment (issue 16) an app tied to a host whose placed node is on
//!   another host falls back to [`LiveSet::owner`] (see `membership::owner_in`); a filter of the
//!   assignment's candidates by host, with fair shares per host, would keep such apps within
//!   the bound too (not done).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ring::{Ring, RingKind, TooManyNodes};
use crate::store::{App, AppId};

/// The identity of a machine (the console builds it from `/etc/machine-id` and the host name:
/// two cloned virtual machines share a host name). Opaque here: two nodes are on the same host
/// exactly when their ids are equal.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HostId(String);

impl HostId {
    /// A host id from its text.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The text of the id.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A live node as ownership sees it: its id, the host it runs on (`None`: a node that does
/// not say, which may own only apps with no recorded host) and its capacity (issue 16: what
/// share of the apps' weight it takes under the `bounded` assignment; 1 unless it says).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LiveNode {
    /// The node id.
    pub id: String,
    /// The node's host.
    pub host: Option<HostId>,
    /// The node's capacity, 1 to [`crate::MAX_CAPACITY`].
    pub capacity: u32,
}

impl LiveNode {
    /// Node `id` on `host`, of capacity 1.
    pub fn new(id: impl Into<String>, host: Option<HostId>) -> Self {
        Self {
            id: id.into(),
            host,
            capacity: 1,
        }
    }

    /// The same node with `capacity` (clamped to 1..=[`crate::MAX_CAPACITY`]).
    #[must_use]
    pub fn with_capacity(mut self, capacity: u32) -> Self {
        self.capacity = capacity.clamp(1, crate::MAX_CAPACITY);
        self
    }
}

impl From<&str> for LiveNode {
    /// A node that does not say which host it runs on.
    fn from(id: &str) -> Self {
        Self::new(id, None)
    }
}

impl From<String> for LiveNode {
    /// A node that does not say which host it runs on.
    fn from(id: String) -> Self {
        Self::new(id, None)
    }
}

/// What ownership is told about an app: its id and the host its copy may run on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AppPlacement {
    /// The app.
    pub id: AppId,
    /// The host a copy of the app may be running on (`App::host`); `None`: any node may own it.
    pub host: Option<HostId>,
}

impl AppPlacement {
    /// App `id`, tied to `host` if any.
    #[must_use]
    pub fn new(id: AppId, host: Option<HostId>) -> Self {
        Self { id, host }
    }
}

impl From<AppId> for AppPlacement {
    /// An app with no recorded host.
    fn from(id: AppId) -> Self {
        Self::new(id, None)
    }
}

impl From<&App> for AppPlacement {
    fn from(app: &App) -> Self {
        Self::new(app.id, app.host.clone())
    }
}

/// Why an app has no owner now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unowned {
    /// No node is live.
    NoLiveNode,
    /// The app's copy may run on this host, and no live node runs there.
    NoLiveNodeOnHost(HostId),
    /// Under the `bounded` assignment: the app is not in the app set this node read last (it
    /// was created since); the next read of the app set places it.
    NotPlacedYet,
}

impl fmt::Display for Unowned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoLiveNode => f.write_str("no console node is live"),
            Self::NoLiveNodeOnHost(host) => write!(
                f,
                "the app's process may still run on host {host}, where no console node is live; \
                 it keeps its state until a node on that host adopts it"
            ),
            Self::NotPlacedYet => f.write_str(
                "the app is newer than this node's read of the app set; it is placed at the next read",
            ),
        }
    }
}

/// What the live set keeps of a node besides its id.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Member {
    host: Option<HostId>,
    capacity: u32,
}

/// The live nodes with their hosts: who owns which app. Immutable; a change builds a new one.
#[derive(Debug, Clone)]
pub struct LiveSet {
    all: Ring,
    members: BTreeMap<String, Member>,
    /// One ring per host with live nodes, over those nodes.
    by_host: BTreeMap<HostId, Ring>,
}

impl LiveSet {
    /// The live set of `nodes` (an id given twice counts once, with the greater host and
    /// capacity).
    ///
    /// # Notable errors
    /// [`TooManyNodes`] beyond the ring's limit.
    pub fn new<I, N>(kind: RingKind, nodes: I) -> Result<Self, TooManyNodes>
    where
        I: IntoIterator<Item = N>,
        N: Into<LiveNode>,
    {
        let mut members: BTreeMap<String, Member> = BTreeMap::new();
        for node in nodes.into_iter().map(Into::into) {
            let member = members.entry(node.id).or_default();
            member.host = member.host.take().max(node.host);
            member.capacity = member
                .capacity
                .max(node.capacity.clamp(1, crate::MAX_CAPACITY));
        }
        let all = Ring::new(kind, members.keys().cloned())?;
        let mut hosts: BTreeMap<&HostId, Vec<&str>> = BTreeMap::new();
        for (id, member) in &members {
            if let Some(host) = &member.host {
                hosts.entry(host).or_default().push(id);
            }
        }
        let by_host = hosts
            .into_iter()
            .map(|(host, ids)| Ok((host.clone(), Ring::new(kind, ids)?)))
            .collect::<Result<_, TooManyNodes>>()?;
        Ok(Self {
            all,
            members,
            by_host,
        })
    }

    /// No live node.
    #[must_use]
    pub fn empty(kind: RingKind) -> Self {
        Self {
            all: Ring::empty(kind),
            members: BTreeMap::new(),
            by_host: BTreeMap::new(),
        }
    }

    /// The ring implementation in use.
    #[must_use]
    pub fn kind(&self) -> RingKind {
        self.all.kind()
    }

    /// The owner of `app`: the first node in the ring's order among those it may go to.
    ///
    /// # Notable errors
    /// [`Unowned`] when no live node may own it.
    pub fn owner(&self, app: &AppPlacement) -> Result<&str, Unowned> {
        let ring = match &app.host {
            None => &self.all,
            Some(host) => self
                .by_host
                .get(host)
                .ok_or_else(|| Unowned::NoLiveNodeOnHost(host.clone()))?,
        };
        ring.owner_of_app(app.id).ok_or(Unowned::NoLiveNode)
    }

    /// Whether `node` is live.
    #[must_use]
    pub fn contains(&self, node: &str) -> bool {
        self.members.contains_key(node)
    }

    /// Whether a live node runs on `host`.
    #[must_use]
    pub fn has_host(&self, host: &HostId) -> bool {
        self.by_host.contains_key(host)
    }

    /// The host of live node `node`, if it is live and says.
    #[must_use]
    pub fn host_of(&self, node: &str) -> Option<&HostId> {
        self.members.get(node)?.host.as_ref()
    }

    /// The capacity of live node `node`, if it is live.
    #[must_use]
    pub fn capacity_of(&self, node: &str) -> Option<u32> {
        self.members.get(node).map(|member| member.capacity)
    }

    /// The live node ids, sorted.
    #[must_use]
    pub fn ids(&self) -> &[String] {
        self.all.nodes()
    }

    /// The live nodes with their hosts and capacities, sorted by id.
    pub fn nodes(&self) -> impl Iterator<Item = LiveNode> + '_ {
        self.members.iter().map(|(id, member)| {
            LiveNode::new(id.clone(), member.host.clone()).with_capacity(member.capacity)
        })
    }

    /// True when no node is live.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

#[cfg(test)]
mod tests;
