//! Which apps this node owns, recomputed from registry events.
//!
//! [`Membership`] is pure logic: it is fed the live node set (with each node's host) and
//! session changes (by the dispatcher, which the console feeds from its registry) and the apps
//! it should know about (with their hosts), and answers with the apps gained and lost. No I/O,
//! so every rule is unit-tested.
//!
//! # Notable behaviors
//! - Ownership is [`LiveSet::owner`] over the live set: the same set and the same app give the
//!   same owner on every node, whatever order the changes arrived in. An app tied to a host
//!   goes only to nodes on that host (see `affinity`).
//! - This node owns nothing while it has no registry session, or while its own id is missing
//!   from the live set (not yet registered, or already declared gone).
//! - Losing the session reports every owned app as lost at once; a restored session recomputes
//!   from the live set given with it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::affinity::{AppPlacement, HostId, LiveNode, LiveSet};
use crate::ring::{RingKind, TooManyNodes};
use crate::store::AppId;

/// Apps that changed hands for this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnershipChange {
    /// Now owned, not before: adopt them (attach, never restart).
    pub gained: Vec<AppId>,
    /// Owned before, not now: stop monitoring and acting on them.
    pub lost: Vec<AppId>,
}

impl OwnershipChange {
    /// True when nothing changed hands.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.gained.is_empty() && self.lost.is_empty()
    }
}

/// This node's view of the cluster: live nodes, session, and the apps it owns.
#[derive(Debug, Clone)]
pub struct Membership {
    me: String,
    live: Arc<LiveSet>,
    session: bool,
    /// Every known app, with the host its copy may run on.
    known: BTreeMap<AppId, Option<HostId>>,
    owned: BTreeSet<AppId>,
}

impl Membership {
    /// A node `me` with a session but no known live nodes yet (so it owns nothing).
    #[must_use]
    pub fn new(me: impl Into<String>, kind: RingKind) -> Self {
        Self {
            me: me.into(),
            live: Arc::new(LiveSet::empty(kind)),
            session: true,
            known: BTreeMap::new(),
            owned: BTreeSet::new(),
        }
    }

    /// The live node set changed (a node joined, left or died): recompute ownership.
    ///
    /// # Notable errors
    /// [`TooManyNodes`] beyond the ring's limit; the previous view is kept.
    pub fn nodes_changed<I, N>(&mut self, live: I) -> Result<OwnershipChange, TooManyNodes>
    where
        I: IntoIterator<Item = N>,
        N: Into<LiveNode>,
    {
        self.live = Arc::new(LiveSet::new(self.live.kind(), live)?);
        Ok(self.recompute())
    }

    /// The registry session is gone: this node stops acting on everything, now.
    pub fn session_lost(&mut self) -> OwnershipChange {
        self.session = false;
        self.recompute()
    }

    /// A new session is established (and the node re-registered): recompute from `live`.
    ///
    /// # Notable errors
    /// [`TooManyNodes`]; the session is then still considered restored, with the old live set.
    pub fn session_restored<I, N>(&mut self, live: I) -> Result<OwnershipChange, TooManyNodes>
    where
        I: IntoIterator<Item = N>,
        N: Into<LiveNode>,
    {
        self.session = true;
        match LiveSet::new(self.live.kind(), live) {
            Ok(set) => {
                self.live = Arc::new(set);
                Ok(self.recompute())
            }
            Err(e) => Err(e),
        }
    }

    /// Makes these apps known (new apps, apps with new tasks), or updates the host of known
    /// ones, and reports the apps that changed hands for this node because of it.
    pub fn track<I, A>(&mut self, apps: I) -> OwnershipChange
    where
        I: IntoIterator<Item = A>,
        A: Into<AppPlacement>,
    {
        let mut change = OwnershipChange::default();
        for app in apps.into_iter().map(Into::into) {
            let owns = self.would_own(&app);
            self.known.insert(app.id, app.host);
            match (self.owned.contains(&app.id), owns) {
                (false, true) => {
                    self.owned.insert(app.id);
                    change.gained.push(app.id);
                }
                (true, false) => {
                    self.owned.remove(&app.id);
                    change.lost.push(app.id);
                }
                _ => {}
            }
        }
        change
    }

    /// Forgets a deleted app (it is no longer reported as owned or lost).
    pub fn forget(&mut self, app: AppId) {
        self.known.remove(&app);
        self.owned.remove(&app);
    }

    /// The node that owns `app` in this view (whatever this node's session state).
    #[must_use]
    pub fn owner_of(&self, app: impl Into<AppPlacement>) -> Option<&str> {
        self.live.owner(&app.into()).ok()
    }

    /// Whether this node owns `app` now.
    #[must_use]
    pub fn owns(&self, app: AppId) -> bool {
        self.owned.contains(&app)
    }

    /// The apps this node owns now (among the known ones).
    #[must_use]
    pub fn owned(&self) -> &BTreeSet<AppId> {
        &self.owned
    }

    /// How many apps are known (owned or not).
    #[must_use]
    pub fn tracked(&self) -> usize {
        self.known.len()
    }

    /// Whether `node` is in the live set.
    #[must_use]
    pub fn is_live(&self, node: &str) -> bool {
        self.live.contains(node)
    }

    /// The live nodes with their hosts, by id.
    #[must_use]
    pub fn live(&self) -> Vec<LiveNode> {
        self.live.nodes().collect()
    }

    /// Whether the node has a registry session.
    #[must_use]
    pub fn has_session(&self) -> bool {
        self.session
    }

    /// Has a session and appears in the live set: it owns its share.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.session && self.live.contains(&self.me)
    }

    /// The current live set (shared: cloning it is cheap).
    #[must_use]
    pub fn live_set(&self) -> &Arc<LiveSet> {
        &self.live
    }

    /// This node's id.
    #[must_use]
    pub fn node_id(&self) -> &str {
        &self.me
    }

    fn would_own(&self, app: &AppPlacement) -> bool {
        self.is_ready() && self.live.owner(app) == Ok(self.me.as_str())
    }

    fn recompute(&mut self) -> OwnershipChange {
        let now: BTreeSet<AppId> = self
            .known
            .iter()
            .map(|(&id, host)| AppPlacement::new(id, host.clone()))
            .filter(|app| self.would_own(app))
            .map(|app| app.id)
            .collect();
        let change = OwnershipChange {
            gained: now.difference(&self.owned).copied().collect(),
            lost: self.owned.difference(&now).copied().collect(),
        };
        self.owned = now;
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(me: &str, live: &[&str], apps: std::ops::Range<AppId>) -> Membership {
        let mut m = Membership::new(me, RingKind::Rendezvous);
        m.track(apps);
        m.nodes_changed(live.iter().copied()).unwrap();
        m
    }

    #[test]
    fn nodes_split_the_apps_without_overlap_or_gaps() {
        let live = ["a", "b", "c"];
        let views: Vec<Membership> = live.iter().map(|me| view(me, &live, 0..300)).collect();
        for app in 0..300 {
            let owners = views.iter().filter(|v| v.owns(app)).count();
            assert_eq!(owners, 1, "app {app}");
        }
        assert!(views.iter().all(|v| v.owned().len() > 50));
    }

    #[test]
    fn a_join_reports_only_losses_to_the_joiner_and_a_leave_only_gains() {
        let mut a = view("a", &["a", "b"], 0..500);
        let before = a.owned().clone();
        let change = a.nodes_changed(["a", "b", "c"]).unwrap();
        assert!(change.gained.is_empty());
        assert!(!change.lost.is_empty());
        assert!(change.lost.iter().all(|&app| a.owner_of(app) == Some("c")));
        // c leaves again: a gets back exactly what it lost.
        let back = a.nodes_changed(["a", "b"]).unwrap();
        assert_eq!(back.gained, change.lost);
        assert!(back.lost.is_empty());
        assert_eq!(a.owned(), &before);
    }

    #[test]
    fn the_order_of_changes_does_not_matter() {
        let mut x = view("a", &["a"], 0..200);
        x.nodes_changed(["a", "b"]).unwrap();
        x.nodes_changed(["a", "b", "c"]).unwrap();
        let mut y = view("a", &["a", "c"], 0..200);
        y.nodes_changed(["c", "b", "a"]).unwrap();
        assert_eq!(x.owned(), y.owned());
    }

    #[test]
    fn session_loss_reports_everything_lost_at_once_and_restore_gives_it_back() {
        let mut a = view("a", &["a", "b"], 0..100);
        let owned: Vec<AppId> = a.owned().iter().copied().collect();
        let lost = a.session_lost();
        assert_eq!(lost.lost, owned);
        assert!(a.owned().is_empty() && !a.is_ready());
        // While lost, new apps are known but not owned.
        assert!(a.track(100..200).gained.is_empty());
        let restored = a.session_restored(["a", "b"]).unwrap();
        assert!(restored.lost.is_empty());
        assert!(restored.gained.len() > owned.len());
        assert!(owned.iter().all(|app| a.owns(*app)));
    }

    #[test]
    fn a_node_missing_from_the_live_set_owns_nothing() {
        let a = view("a", &["b", "c"], 0..100);
        assert!(a.owned().is_empty());
        assert!(!a.is_ready());
        assert!(a.owner_of(1).is_some());
    }

    #[test]
    fn a_pinned_app_is_owned_only_on_its_host_and_a_host_update_moves_it() {
        let (h1, h2) = (Some(HostId::new("h1")), Some(HostId::new("h2")));
        let live = [
            LiveNode::new("a", h1.clone()),
            LiveNode::new("b", h2.clone()),
        ];
        let mut a = Membership::new("a", RingKind::Rendezvous);
        a.nodes_changed(live.clone()).unwrap();
        let app = (0..100)
            .find(|&app| a.owner_of(app) == Some("a"))
            .expect("a owns one of a hundred apps");
        assert!(a.track([AppPlacement::new(app, h2.clone())]).is_empty());
        assert_eq!(a.owner_of(AppPlacement::new(app, h2.clone())), Some("b"));
        assert_eq!(a.tracked(), 1);
        // Its copy is gone (a stop on b): unpinned, it goes where the ring says.
        let unpinned = a.track([AppPlacement::from(app)]);
        assert_eq!(unpinned.gained, [app]);
        // Pinned to b's host again: a loses it.
        assert_eq!(a.track([AppPlacement::new(app, h2.clone())]).lost, [app]);
        // b dies: nobody may own the app pinned to its host, a does not take it.
        assert!(a.nodes_changed([live[0].clone()]).unwrap().is_empty());
        assert_eq!(a.owner_of(AppPlacement::new(app, h2)), None);
        // Pinned to a's own host: a owns it.
        assert_eq!(a.track([AppPlacement::new(app, h1)]).gained, [app]);
    }

    #[test]
    fn tracking_reports_new_owned_apps_once_and_forget_drops_them() {
        let mut a = view("a", &["a"], 0..0);
        assert_eq!(a.track([1, 2]).gained, vec![1, 2]);
        assert!(a.track([1, 2]).gained.is_empty());
        a.forget(1);
        assert!(!a.owns(1));
        assert_eq!(a.nodes_changed(["b"]).unwrap().lost, vec![2]);
    }
}
