//! Which apps this node owns, recomputed from registry events.
//!
//! [`Membership`] is pure logic: it is fed the live node set and session changes (by the
//! dispatcher, which the console feeds from its registry) and the app ids it should know
//! about, and answers with the apps gained and lost. No I/O, so every rule is unit-tested.
//!
//! # Notable behaviors
//! - Ownership is `Ring::owner_of_app` over the live set: the same set gives the same owner on
//!   every node, whatever order the changes arrived in.
//! - This node owns nothing while it has no registry session, or while its own id is missing
//!   from the live set (not yet registered, or already declared gone).
//! - Losing the session reports every owned app as lost at once; a restored session recomputes
//!   from the live set given with it.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::ring::{Ring, RingKind, TooManyNodes};
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
    ring: Arc<Ring>,
    session: bool,
    known: BTreeSet<AppId>,
    owned: BTreeSet<AppId>,
}

impl Membership {
    /// A node `me` with a session but no known live nodes yet (so it owns nothing).
    #[must_use]
    pub fn new(me: impl Into<String>, kind: RingKind) -> Self {
        Self {
            me: me.into(),
            ring: Arc::new(Ring::empty(kind)),
            session: true,
            known: BTreeSet::new(),
            owned: BTreeSet::new(),
        }
    }

    /// The live node set changed (a node joined, left or died): recompute ownership.
    ///
    /// # Notable errors
    /// [`TooManyNodes`] beyond the ring's limit; the previous view is kept.
    pub fn nodes_changed<I, S>(&mut self, live: I) -> Result<OwnershipChange, TooManyNodes>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.ring = Arc::new(Ring::new(self.ring.kind(), live)?);
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
    pub fn session_restored<I, S>(&mut self, live: I) -> Result<OwnershipChange, TooManyNodes>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.session = true;
        match Ring::new(self.ring.kind(), live) {
            Ok(ring) => {
                self.ring = Arc::new(ring);
                Ok(self.recompute())
            }
            Err(e) => Err(e),
        }
    }

    /// Makes these apps known (new apps, apps with new tasks) and reports any now owned.
    pub fn track<I: IntoIterator<Item = AppId>>(&mut self, apps: I) -> OwnershipChange {
        let mut gained = Vec::new();
        for app in apps {
            if self.known.insert(app) && self.would_own(app) {
                self.owned.insert(app);
                gained.push(app);
            }
        }
        OwnershipChange {
            gained,
            lost: Vec::new(),
        }
    }

    /// Forgets a deleted app (it is no longer reported as owned or lost).
    pub fn forget(&mut self, app: AppId) {
        self.known.remove(&app);
        self.owned.remove(&app);
    }

    /// The node that owns `app` in this view (whatever this node's session state).
    #[must_use]
    pub fn owner_of(&self, app: AppId) -> Option<&str> {
        self.ring.owner_of_app(app)
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
        self.ring.contains(node)
    }

    /// The live node ids, sorted.
    #[must_use]
    pub fn live(&self) -> &[String] {
        self.ring.nodes()
    }

    /// Whether the node has a registry session.
    #[must_use]
    pub fn has_session(&self) -> bool {
        self.session
    }

    /// Has a session and appears in the live set: it owns its share.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.session && self.ring.contains(&self.me)
    }

    /// The ring of the current live set (shared: cloning it is cheap).
    #[must_use]
    pub fn ring(&self) -> &Arc<Ring> {
        &self.ring
    }

    /// This node's id.
    #[must_use]
    pub fn node_id(&self) -> &str {
        &self.me
    }

    fn would_own(&self, app: AppId) -> bool {
        self.is_ready() && self.ring.owner_of_app(app) == Some(self.me.as_str())
    }

    fn recompute(&mut self) -> OwnershipChange {
        let now: BTreeSet<AppId> = self
            .known
            .iter()
            .copied()
            .filter(|&app| self.would_own(app))
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
    fn tracking_reports_new_owned_apps_once_and_forget_drops_them() {
        let mut a = view("a", &["a"], 0..0);
        assert_eq!(a.track([1, 2]).gained, vec![1, 2]);
        assert!(a.track([1, 2]).gained.is_empty());
        a.forget(1);
        assert!(!a.owns(1));
        assert_eq!(a.nodes_changed(["b"]).unwrap().lost, vec![2]);
    }
}
