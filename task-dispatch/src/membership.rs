//! Which apps this node owns, recomputed from registry events.
//!
//! [`Membership`] is pure logic: it is fed the live node set (with each node's host and
//! capacity) and session changes (by the dispatcher, which the console feeds from its
//! registry), the apps it should know about (with their hosts) and the app set (every app with
//! its weight, read from the task database), and answers with the apps gained and lost. No
//! I/O, so every rule is unit-tested.
//!
//! # Notable behaviors
//! - Ownership is [`owner_in`] over the live set (and, under the `bounded` assignment, the
//!   [`Placement`] of the app set): the same inputs give the same owner on every node, whatever
//!   order the changes arrived in. An app tied to a host goes only to nodes on that host (see
//!   `affinity`).
//! - Under `bounded`, an app is placed by the bounded-load assignment (issue 16) unless it is
//!   tied to a host and its placed node is not on it; then it goes where the plain rendezvous
//!   order of its host's nodes says (the bound does not cover such apps). An app missing from
//!   the app set this node read has no owner until the next read ([`Unowned::NotPlacedYet`]).
//! - This node owns nothing while it has no registry session, or while its own id is missing
//!   from the live set (not yet registered, or already declared gone).
//! - Losing the session reports every owned app as lost at once; a restored session recomputes
//!   from the live set given with it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::affinity::{AppPlacement, HostId, LiveNode, LiveSet, Unowned};
use crate::assignment::{Assignment, Change, Epsilon, LoadBound, Placement};
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

/// The owner of `app` given the live set and, under the `bounded` assignment, the placement of
/// the app set: the one rule every node applies (see the module comment).
///
/// # Notable errors
/// [`Unowned`] when no live node may own it, or (`bounded`) the app is not in the placement.
pub fn owner_in<'a>(
    live: &'a LiveSet,
    placement: Option<&'a Placement>,
    app: &AppPlacement,
) -> Result<&'a str, Unowned> {
    let Some(placement) = placement else {
        return live.owner(app);
    };
    if live.is_empty() {
        return Err(Unowned::NoLiveNode);
    }
    let placed = placement.owner_of(app.id).ok_or(Unowned::NotPlacedYet)?;
    match &app.host {
        Some(host) if live.host_of(placed) != Some(host) => live.owner(app),
        _ => Ok(placed),
    }
}

/// This node's view of the cluster: live nodes, session, the app set, and the apps it owns.
#[derive(Debug, Clone)]
pub struct Membership {
    me: String,
    live: Arc<LiveSet>,
    session: bool,
    /// Every known app, with the host its copy may run on.
    known: BTreeMap<AppId, Option<HostId>>,
    owned: BTreeSet<AppId>,
    /// Every app with its weight, as last read ([`Membership::apps_changed`]); under plain
    /// rendezvous only the weights of apps this node adopted ([`Membership::weight_seen`]).
    weights: BTreeMap<AppId, u32>,
    /// The app set's version `weights` belong to; `None` until first read.
    app_set_version: Option<i64>,
    /// The bounded-load assignment (`dispatch.assignment: bounded`); `None`: plain rendezvous.
    bounded: Option<Assignment>,
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
            weights: BTreeMap::new(),
            app_set_version: None,
            bounded: None,
        }
    }

    /// Like [`Membership::new`], with the bounded-load assignment (`dispatch.assignment:
    /// bounded`): no node owns more than `(1+ε) ×` its fair share of the app set's weight.
    #[must_use]
    pub fn bounded(me: impl Into<String>, kind: RingKind, epsilon: Epsilon) -> Self {
        let mut membership = Self::new(me, kind);
        membership.bounded = Some(Assignment::empty(LoadBound::Within(epsilon)));
        membership
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
        let set = LiveSet::new(self.live.kind(), live)?;
        self.place_nodes(&set)?;
        self.live = Arc::new(set);
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
        let set = LiveSet::new(self.live.kind(), live)?;
        self.place_nodes(&set)?;
        self.live = Arc::new(set);
        Ok(self.recompute())
    }

    /// The app set was read: every app with its weight, as of app-set version `version`.
    /// Recomputes ownership (under `bounded` any change of the set may move apps).
    pub fn apps_changed<I>(&mut self, version: i64, apps: I) -> OwnershipChange
    where
        I: IntoIterator<Item = (AppId, u32)>,
    {
        let weights: BTreeMap<AppId, u32> = apps
            .into_iter()
            .map(|(id, weight)| (id, weight.max(1)))
            .collect();
        if let Some(assignment) = self.bounded.as_mut() {
            let removed = self
                .weights
                .keys()
                .filter(|id| !weights.contains_key(id))
                .map(|&id| Change::AppRemoved { id });
            let added = weights
                .iter()
                .filter(|&(id, weight)| self.weights.get(id) != Some(weight))
                .map(|(&id, &weight)| Change::AppAdded { id, weight });
            let changes: Vec<Change> = removed.chain(added).collect();
            // Weights are at least 1 and ids unique, so only more than 2^32 - 1 apps fail,
            // which a task database does not hold; the previous placement is kept then.
            let _ = assignment.apply(changes);
        }
        self.weights = weights;
        self.app_set_version = Some(version);
        self.recompute()
    }

    /// Under plain rendezvous, which reads no app set: the weight of an app this node adopted
    /// (for [`Membership::owned_weight`]). Under `bounded` the app set read is the only source.
    pub fn weight_seen(&mut self, app: AppId, weight: u32) {
        if self.bounded.is_none() {
            self.weights.insert(app, weight.max(1));
        }
    }

    /// The version of the app set last given to [`Membership::apps_changed`].
    #[must_use]
    pub fn app_set_version(&self) -> Option<i64> {
        self.app_set_version
    }

    /// Under `bounded`, whether `app` is missing from the app set as last read (a newer read
    /// would place it). Always false under plain rendezvous, which needs no app set.
    #[must_use]
    pub fn misses(&self, app: AppId) -> bool {
        self.bounded.is_some() && !self.weights.contains_key(&app)
    }

    /// The weight of `app` in the app set as last read.
    #[must_use]
    pub fn weight_of(&self, app: AppId) -> Option<u32> {
        self.weights.get(&app).copied()
    }

    /// The total weight of the apps this node owns now (an app whose weight this node has not
    /// seen counts 1).
    #[must_use]
    pub fn owned_weight(&self) -> u64 {
        self.owned
            .iter()
            .map(|app| u64::from(self.weight_of(*app).unwrap_or(1)))
            .sum()
    }

    /// The bounded-load placement, under `bounded`.
    #[must_use]
    pub fn placement(&self) -> Option<&Arc<Placement>> {
        self.bounded.as_ref().map(Assignment::placement)
    }

    /// Gives the bounded assignment (if any) the nodes of `set` with their capacities.
    fn place_nodes(&mut self, set: &LiveSet) -> Result<(), TooManyNodes> {
        if let Some(assignment) = self.bounded.as_mut() {
            let nodes = set.nodes().map(|node| (node.id, node.capacity));
            assignment.set_nodes(nodes).map_err(|_| TooManyNodes {
                count: set.ids().len(),
                max: crate::assignment::MAX_NODES,
            })?;
        }
        Ok(())
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
        if self.bounded.is_none() {
            self.weights.remove(&app);
        }
    }

    /// The node that owns `app` in this view (whatever this node's session state).
    #[must_use]
    pub fn owner_of(&self, app: impl Into<AppPlacement>) -> Option<&str> {
        owner_in(&self.live, self.placement().map(|p| &**p), &app.into()).ok()
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
        self.is_ready()
            && owner_in(&self.live, self.placement().map(|p| &**p), app) == Ok(self.me.as_str())
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
    fn bounded_view(me: &str, live: &[LiveNode], apps: &[(AppId, u32)]) -> Membership {
        let mut m = Membership::bounded(me, RingKind::Rendezvous, Epsilon::new(0.1).unwrap());
        m.nodes_changed(live.iter().cloned()).unwrap();
        m.apps_changed(1, apps.iter().copied());
        m.track(apps.iter().map(|&(id, _)| id));
        m
    }

    fn mixed_weights(count: AppId) -> Vec<(AppId, u32)> {
        (1..=count)
            .map(|id| (id, [1, 1, 2, 4, 8, 16][id as usize % 6]))
            .collect()
    }

    #[test]
    fn bounded_nodes_split_weighted_apps_once_each_within_the_bound() {
        let live = [
            LiveNode::new("a", None).with_capacity(2),
            LiveNode::new("b", None),
            LiveNode::new("c", None),
        ];
        let apps = mixed_weights(300);
        let total: u64 = apps.iter().map(|&(_, w)| u64::from(w)).sum();
        let views: Vec<Membership> = ["a", "b", "c"]
            .iter()
            .map(|me| bounded_view(me, &live, &apps))
            .collect();
        for &(app, _) in &apps {
            assert_eq!(views.iter().filter(|v| v.owns(app)).count(), 1, "app {app}");
        }
        for (view, capacity) in views.iter().zip([2.0, 1.0, 1.0]) {
            let fair = total as f64 * capacity / 4.0;
            let owned = view.owned_weight() as f64;
            assert!(
                owned <= 1.1 * fair,
                "{}: {owned} over 1.1 x {fair}",
                view.node_id()
            );
            let placed = view
                .placement()
                .unwrap()
                .owned_weight(view.node_id())
                .unwrap();
            assert_eq!(
                placed,
                view.owned_weight(),
                "every app is known, so all are owned"
            );
        }
    }

    #[test]
    fn bounded_ownership_does_not_depend_on_the_order_of_changes() {
        let live = [LiveNode::new("a", None), LiveNode::new("b", None)];
        let apps = mixed_weights(200);
        let mut x = bounded_view("a", &live, &apps[..100]);
        x.nodes_changed([live[0].clone()]).unwrap();
        x.apps_changed(2, apps.iter().copied());
        x.track(apps.iter().map(|&(id, _)| id));
        x.nodes_changed(live.iter().cloned()).unwrap();
        let y = bounded_view("a", &live, &apps);
        assert_eq!(x.owned(), y.owned());
        assert_eq!(x.owned_weight(), y.owned_weight());
    }

    #[test]
    fn bounded_a_weight_change_places_the_apps_again_within_the_bound() {
        let live = [LiveNode::new("a", None), LiveNode::new("b", None)];
        let mut apps = mixed_weights(100);
        let mut views: Vec<Membership> = ["a", "b"]
            .iter()
            .map(|me| bounded_view(me, &live, &apps))
            .collect();
        let before: Vec<u64> = views.iter().map(Membership::owned_weight).collect();
        apps[0].1 = 64;
        let total: u64 = apps.iter().map(|&(_, w)| u64::from(w)).sum();
        for view in &mut views {
            view.apps_changed(2, apps.iter().copied());
        }
        let after: Vec<u64> = views.iter().map(Membership::owned_weight).collect();
        assert_ne!(before, after);
        assert_eq!(after.iter().sum::<u64>(), total);
        for (view, owned) in views.iter().zip(&after) {
            assert!(
                *owned as f64 <= 1.1 * total as f64 / 2.0,
                "{}: {owned}",
                view.node_id()
            );
        }
        for &(app, _) in &apps {
            assert_eq!(views.iter().filter(|v| v.owns(app)).count(), 1, "app {app}");
        }
    }

    #[test]
    fn bounded_an_app_missing_from_the_app_set_is_placed_by_the_next_read() {
        let live = [LiveNode::new("a", None)];
        let mut a = bounded_view("a", &live, &mixed_weights(10));
        assert!(a.track([11]).is_empty());
        assert!(a.misses(11));
        assert_eq!(
            owner_in(
                a.live_set(),
                a.placement().map(|p| &**p),
                &AppPlacement::from(11)
            ),
            Err(Unowned::NotPlacedYet)
        );
        let placed = a.apps_changed(2, mixed_weights(11));
        assert_eq!(placed.gained, [11]);
        assert_eq!(a.app_set_version(), Some(2));
        // Deleted from the set: nobody owns it any more.
        assert_eq!(a.apps_changed(3, mixed_weights(10)).lost, [11]);
    }

    #[test]
    fn bounded_an_app_pinned_to_another_host_than_its_placed_node_goes_to_its_host() {
        let (h1, h2) = (Some(HostId::new("h1")), Some(HostId::new("h2")));
        let live = [
            LiveNode::new("a", h1.clone()),
            LiveNode::new("b", h2.clone()),
        ];
        let apps = mixed_weights(50);
        let a = bounded_view("a", &live, &apps);
        let app = apps
            .iter()
            .map(|&(id, _)| id)
            .find(|&id| a.owner_of(id) == Some("b"))
            .expect("b is placed some of 50 apps");
        assert_eq!(a.owner_of(AppPlacement::new(app, h1)), Some("a"));
        assert_eq!(a.owner_of(AppPlacement::new(app, h2)), Some("b"));
    }
}
