//! Load-aware ownership with a hard bound: bounded-load rendezvous assignment (issue 16).
//!
//! Apps have a weight (at least 1), nodes a capacity (1 to 65,535). An [`Assignment`] gives
//! every app to the **first node of the app's rendezvous order whose owned weight, with the
//! app, stays within `(1+ε) × its fair share`**, where
//! `fair share = total weight × capacity / total capacity` (Mirrokni, Thorup, Zadimoghaddam,
//! "Consistent Hashing with Bounded Loads", 2016, with rendezvous order instead of a ring, so
//! an overflowing node's apps spread over many nodes instead of piling onto its neighbour).
//!
//! The guarantees are on [`Assignment`].
//!
//! # How it is computed
//! The placement depends on the order apps are placed in, so apps are placed in one canonical
//! order (by a remix of the app key's Murmur3 hash, then by id; `apps.rs`). Each app keeps its
//! first [`K`](candidates::K) = 8 nodes in rendezvous order (`candidates.rs`), kept exact as
//! nodes come and go: a join scores the new node once per app, a leave rescans only the apps
//! whose list named the leaver. A change of the total weight or capacity moves every node's
//! limit, so the placement itself is one pass over all apps (`placement.rs`) reading the first
//! candidate with room; it scores further nodes only for an app whose 8 candidates are full.
//! Being the same pass from the same lists, the incremental result is the from-scratch result
//! by construction (and tested so). One thread; at 1,000 nodes × 1,000,000 apps a join or a
//! leave is recomputed in milliseconds (figures in `docs/BENCHMARKS.md`), with 42 bytes per app
//! (8 + 8 key and id, 4 weight, 16 candidates, 4 the 8th candidate's score, 2 the owner).
//!
//! Room left for a host constraint (issue 12: a `process` app may be owned only by a node on
//! its host): candidates are the one place that ranks nodes for an app, so a constraint is a
//! filter in the scan and in the placement pass's full walk, with fair shares per host.

mod apps;
mod candidates;
mod nodes;
mod placement;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

pub use placement::{NodeLoad, Placement};

use crate::store::AppId;
use apps::{AppTable, MAX_APPS};
pub(crate) use nodes::MAX_NODES;
use nodes::NodeTable;
use placement::{PPM, place};

/// The largest node capacity.
pub const MAX_CAPACITY: u32 = u16::MAX as u32;

/// The slack ε of the bound `(1+ε) × fair share`, kept in parts per million so that every
/// node computes the same limits in integer arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Epsilon(u64);

impl Epsilon {
    /// The largest ε (10^6): far past any bound that binds.
    pub const MAX: f64 = 1e6;

    /// ε as a real number from 0 to [`Epsilon::MAX`], rounded to the nearest millionth.
    ///
    /// # Notable errors
    /// [`AssignmentError::InvalidEpsilon`] for a negative, non-finite or larger value.
    pub fn new(epsilon: f64) -> Result<Self, AssignmentError> {
        if !(0.0..=Self::MAX).contains(&epsilon) {
            return Err(AssignmentError::InvalidEpsilon(epsilon.to_string()));
        }
        // In range, so the rounded product fits (at most 10^12).
        Ok(Self((epsilon * PPM as f64).round() as u64))
    }

    /// ε in millionths.
    #[must_use]
    pub const fn ppm(self) -> u64 {
        self.0
    }

    /// ε as a real number.
    #[must_use]
    pub fn get(self) -> f64 {
        self.0 as f64 / PPM as f64
    }
}

impl Default for Epsilon {
    /// 0.1, the default of the issue.
    fn default() -> Self {
        Self(PPM / 10)
    }
}

impl fmt::Display for Epsilon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.get())
    }
}

impl FromStr for Epsilon {
    type Err = AssignmentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim()
            .parse::<f64>()
            .map_err(|_| AssignmentError::InvalidEpsilon(s.to_owned()))
            .and_then(Self::new)
    }
}

/// What limits a node's owned weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoadBound {
    /// Nothing: every app goes to its first choice (plain rendezvous, as [`crate::Ring`]).
    Unbounded,
    /// At most `(1+ε) × fair share` (see the module comment for when it is guaranteed).
    Within(Epsilon),
}

/// Which assignment a cluster runs (`dispatch.assignment`): `rendezvous` or `bounded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AssignmentKind {
    /// Plain rendezvous hashing over app ids: every app counts as one, nothing is bounded.
    #[default]
    Rendezvous,
    /// Bounded-load rendezvous over weights and capacities.
    Bounded,
}

impl AssignmentKind {
    /// The name used in configuration and on command lines.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Rendezvous => "rendezvous",
            Self::Bounded => "bounded",
        }
    }
}

impl fmt::Display for AssignmentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for AssignmentKind {
    type Err = AssignmentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "rendezvous" => Ok(Self::Rendezvous),
            "bounded" => Ok(Self::Bounded),
            other => Err(AssignmentError::UnknownKind(other.to_owned())),
        }
    }
}

/// Bad input to an assignment; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AssignmentError {
    /// A capacity outside 1..=[`MAX_CAPACITY`].
    #[error("node {node:?}: capacity {capacity} is outside 1..=65535")]
    InvalidCapacity {
        /// The node.
        node: String,
        /// The capacity given.
        capacity: u32,
    },
    /// A weight of 0 (weights are at least 1).
    #[error("app {0}: weight 0, expected at least 1")]
    ZeroWeight(AppId),
    /// ε negative, not a number, or above [`Epsilon::MAX`].
    #[error("epsilon {0:?}: expected a number from 0 to 1000000")]
    InvalidEpsilon(String),
    /// An unknown assignment name.
    #[error("unknown assignment {0:?}: expected \"rendezvous\" or \"bounded\"")]
    UnknownKind(String),
    /// A node id listed twice in one set.
    #[error("node {0:?} is listed twice")]
    DuplicateNode(String),
    /// An app id listed twice in one set.
    #[error("app {0} is listed twice")]
    DuplicateApp(AppId),
    /// More live nodes than an assignment holds.
    #[error("an assignment holds at most {max} nodes, got {count}")]
    TooManyNodes {
        /// How many there would be.
        count: usize,
        /// The limit (65,535).
        max: usize,
    },
    /// More apps than an assignment holds.
    #[error("an assignment holds at most {max} apps, got {count}")]
    TooManyApps {
        /// How many there would be.
        count: usize,
        /// The limit (2^32 - 1).
        max: usize,
    },
}

/// One change of the inputs. Changes are set updates, so applying one twice is a no-op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The node is live with this capacity (it joined, or its capacity changed).
    NodeJoined {
        /// The node id.
        id: String,
        /// Its capacity, 1..=[`MAX_CAPACITY`].
        capacity: u32,
    },
    /// The node is gone (a no-op for a node that is not live).
    NodeLeft {
        /// The node id.
        id: String,
    },
    /// The app exists with this weight (it was added, or its weight changed).
    AppAdded {
        /// The app id.
        id: AppId,
        /// Its weight, at least 1.
        weight: u32,
    },
    /// The app is gone (a no-op for an unknown app).
    AppRemoved {
        /// The app id.
        id: AppId,
    },
}

/// The bounded-load assignment of a set of apps to a set of live nodes, updated in place.
///
/// Every app goes to the first node of its rendezvous order whose owned weight, with the app,
/// stays within `(1+ε) × fair share` (`fair share = total weight × capacity / total
/// capacity`), apps being placed in one canonical order. The owner of each app is read from the
/// current [`Placement`] ([`Assignment::placement`]), an immutable snapshot that readers share
/// through an `Arc`.
///
/// # Guarantees
/// - **A pure function** of (live nodes with capacities, apps with weights, ε): no coordination
///   and nothing stored; every node that sees the same sets computes the same owners, whatever
///   order the inputs or the changes came in, from scratch or incrementally.
/// - **The rendezvous order is [`crate::Ring`]'s**: the same 24-bit per-key scores, equal scores
///   going to the id that sorts first. With a bound that never binds ([`LoadBound::Unbounded`],
///   or ε so large that every limit is at least the total weight), every app is owned by
///   exactly the node `Ring::owner_of_app` names.
/// - **The bound**: when `ε × W ≥ (N − 1) × w_max` ([`Placement::bound_guaranteed`]), every
///   node owns at most `⌊(1+ε) × fair share⌋`. Otherwise an app that fits nowhere goes to the
///   first node of its order still below `(1+ε) × fair share` ([`Placement::overflowed`] counts
///   them), so every node owns less than `(1+ε) × fair share + w_max`.
/// - **Movement**: with a bound that does not bind, a join moves only apps to the new node and
///   a leave only the leaver's apps (plain rendezvous). With a binding bound, an app changes
///   owner only if its first choice changed, or it was placed past its first choice (displaced
///   by the bound) before or after the change.
///
/// # Notable behaviors
/// - Every change, however small, ends with one placement pass over all apps (the limits of
///   every node move with the total weight and capacity): about 2.5 ms for 1,000,000 apps on
///   one core, plus 2 ms for a join and 7 ms for a leave at 1,000 nodes.
/// - [`Assignment::apply`] validates the whole batch before changing anything.
/// - Capacities act only through the limits: the rendezvous order ignores them (it is the
///   ring's), so a node of capacity 2 among nodes of capacity 1 gets its first-choice apps like
///   any other and the rest of its share as apps the others' limits turn away. A
///   capacity-weighted order would move fewer apps in such clusters; not done.
/// - The fewer apps per node, the more the bound binds and the more a change moves: about the
///   minimum with 1,000 apps per node at ε = 0.1, 2 to 20 times it with 20 (`docs/BENCHMARKS.md`).
#[derive(Debug, Clone)]
pub struct Assignment {
    bound: LoadBound,
    nodes: NodeTable,
    apps: AppTable,
    placement: Arc<Placement>,
}

impl Assignment {
    /// The assignment of `apps` (id, weight) over the live `nodes` (id, capacity).
    ///
    /// # Notable errors
    /// Duplicate ids, a capacity outside 1..=65,535, a weight of 0, too many nodes or apps.
    pub fn build<N, S, A>(nodes: N, apps: A, bound: LoadBound) -> Result<Self, AssignmentError>
    where
        N: IntoIterator<Item = (S, u32)>,
        S: Into<String>,
        A: IntoIterator<Item = (AppId, u32)>,
    {
        let nodes = node_set(nodes)?;
        let mut table = NodeTable::default();
        for (id, capacity) in &nodes {
            table.insert(id, *capacity);
        }
        let apps: Vec<(AppId, u32)> = apps.into_iter().collect();
        if let Some(&(id, _)) = apps.iter().find(|(_, weight)| *weight == 0) {
            return Err(AssignmentError::ZeroWeight(id));
        }
        let apps = AppTable::build(&table, apps)?;
        let placement = Arc::new(place(bound, &table, &apps));
        Ok(Self {
            bound,
            nodes: table,
            apps,
            placement,
        })
    }

    /// No node and no app: a start to apply changes to.
    #[must_use]
    pub fn empty(bound: LoadBound) -> Self {
        let nodes = NodeTable::default();
        let apps = AppTable::default();
        let placement = Arc::new(place(bound, &nodes, &apps));
        Self {
            bound,
            nodes,
            apps,
            placement,
        }
    }

    /// The current placement (clone the `Arc` to keep it).
    #[must_use]
    pub fn placement(&self) -> &Arc<Placement> {
        &self.placement
    }

    /// The bound in force.
    #[must_use]
    pub fn bound(&self) -> LoadBound {
        self.bound
    }

    /// Applies `changes` in order (the result depends only on the final sets) and places again.
    ///
    /// # Notable errors
    /// A capacity outside 1..=65,535, a weight of 0, too many nodes or apps; then nothing is
    /// changed.
    pub fn apply<I>(&mut self, changes: I) -> Result<Arc<Placement>, AssignmentError>
    where
        I: IntoIterator<Item = Change>,
    {
        let mut node_changes: BTreeMap<String, Option<u32>> = BTreeMap::new();
        let mut app_changes: BTreeMap<AppId, Option<u32>> = BTreeMap::new();
        for change in changes {
            match change {
                Change::NodeJoined { id, capacity } => {
                    check_capacity(&id, capacity)?;
                    node_changes.insert(id, Some(capacity));
                }
                Change::NodeLeft { id } => {
                    node_changes.insert(id, None);
                }
                Change::AppAdded { id, weight } => {
                    if weight == 0 {
                        return Err(AssignmentError::ZeroWeight(id));
                    }
                    app_changes.insert(id, Some(weight));
                }
                Change::AppRemoved { id } => {
                    app_changes.insert(id, None);
                }
            }
        }
        self.update(&node_changes, &app_changes)?;
        Ok(self.placement.clone())
    }

    /// Replaces the live set by `nodes` (id, capacity): leaves, joins and capacity changes.
    ///
    /// # Notable errors
    /// As [`Assignment::apply`], and [`AssignmentError::DuplicateNode`].
    pub fn set_nodes<N, S>(&mut self, nodes: N) -> Result<Arc<Placement>, AssignmentError>
    where
        N: IntoIterator<Item = (S, u32)>,
        S: Into<String>,
    {
        let live = node_set(nodes)?;
        let mut changes: BTreeMap<String, Option<u32>> = self
            .nodes
            .by_id()
            .filter(|(id, _)| !live.contains_key(&***id))
            .map(|(id, _)| (id.to_string(), None))
            .collect();
        changes.extend(live.into_iter().map(|(id, capacity)| (id, Some(capacity))));
        self.update(&changes, &BTreeMap::new())?;
        Ok(self.placement.clone())
    }

    /// The node `id` joined with `capacity` (or its capacity changed).
    ///
    /// # Notable errors
    /// As [`Assignment::apply`].
    pub fn node_joined(
        &mut self,
        id: impl Into<String>,
        capacity: u32,
    ) -> Result<Arc<Placement>, AssignmentError> {
        let id = id.into();
        self.apply([Change::NodeJoined { id, capacity }])
    }

    /// The node `id` left.
    ///
    /// # Notable errors
    /// None in practice (the signature is [`Assignment::apply`]'s).
    pub fn node_left(&mut self, id: impl Into<String>) -> Result<Arc<Placement>, AssignmentError> {
        self.apply([Change::NodeLeft { id: id.into() }])
    }

    /// The app `id` was added with `weight` (or its weight changed).
    ///
    /// # Notable errors
    /// As [`Assignment::apply`].
    pub fn app_added(&mut self, id: AppId, weight: u32) -> Result<Arc<Placement>, AssignmentError> {
        self.apply([Change::AppAdded { id, weight }])
    }

    /// The weight of app `id` changed (an unknown app is added).
    ///
    /// # Notable errors
    /// As [`Assignment::apply`].
    pub fn weight_changed(
        &mut self,
        id: AppId,
        weight: u32,
    ) -> Result<Arc<Placement>, AssignmentError> {
        self.apply([Change::AppAdded { id, weight }])
    }

    /// The app `id` was removed.
    ///
    /// # Notable errors
    /// None in practice (the signature is [`Assignment::apply`]'s).
    pub fn app_removed(&mut self, id: AppId) -> Result<Arc<Placement>, AssignmentError> {
        self.apply([Change::AppRemoved { id }])
    }

    /// Applies validated changes: `Some(value)` sets, `None` removes.
    fn update(
        &mut self,
        node_changes: &BTreeMap<String, Option<u32>>,
        app_changes: &BTreeMap<AppId, Option<u32>>,
    ) -> Result<(), AssignmentError> {
        let mut left = Vec::new();
        let mut joined = Vec::new();
        let mut resized = Vec::new();
        for (id, &capacity) in node_changes {
            match (self.nodes.slot_of(id), capacity) {
                (Some(_), None) => left.push(id.as_str()),
                (None, Some(capacity)) => joined.push((id.as_str(), capacity)),
                (Some(slot), Some(capacity)) if self.nodes.capacity(slot) != capacity => {
                    resized.push((slot, capacity));
                }
                _ => {}
            }
        }
        let node_count = self.nodes.len() - left.len() + joined.len();
        if node_count > MAX_NODES {
            return Err(AssignmentError::TooManyNodes {
                count: node_count,
                max: MAX_NODES,
            });
        }
        let app_count = self.apps.len() + self.apps.added_by(app_changes);
        if app_count > MAX_APPS {
            return Err(AssignmentError::TooManyApps {
                count: app_count,
                max: MAX_APPS,
            });
        }
        if left.is_empty() && joined.is_empty() && resized.is_empty() && app_changes.is_empty() {
            return Ok(());
        }

        // Leaves first, so that lists are purged of a slot before a join may reuse it.
        let gone: Vec<u16> = left.iter().filter_map(|id| self.nodes.remove(id)).collect();
        if !gone.is_empty() {
            self.apps.nodes_left(&self.nodes, &gone);
        }
        // Many joins at once (a start-up): one scan per app beats one score per app per join.
        let rerank = joined.len() > 1 + self.nodes.len() / 8;
        for &(id, capacity) in &joined {
            let slot = self.nodes.insert(id, capacity);
            if !rerank {
                self.apps.node_joined(&self.nodes, slot);
            }
        }
        if rerank {
            self.apps.rerank(&self.nodes);
        }
        for (slot, capacity) in resized {
            self.nodes.set_capacity(slot, capacity);
        }
        self.apps.apply(&self.nodes, app_changes);
        self.placement = Arc::new(place(self.bound, &self.nodes, &self.apps));
        Ok(())
    }
}

/// A node set with valid capacities and no repeated id.
fn node_set<N, S>(nodes: N) -> Result<BTreeMap<String, u32>, AssignmentError>
where
    N: IntoIterator<Item = (S, u32)>,
    S: Into<String>,
{
    let mut set = BTreeMap::new();
    for (id, capacity) in nodes {
        let id = id.into();
        check_capacity(&id, capacity)?;
        if set.insert(id.clone(), capacity).is_some() {
            return Err(AssignmentError::DuplicateNode(id));
        }
    }
    if set.len() > MAX_NODES {
        return Err(AssignmentError::TooManyNodes {
            count: set.len(),
            max: MAX_NODES,
        });
    }
    Ok(set)
}

fn check_capacity(node: &str, capacity: u32) -> Result<(), AssignmentError> {
    if (1..=MAX_CAPACITY).contains(&capacity) {
        Ok(())
    } else {
        Err(AssignmentError::InvalidCapacity {
            node: node.to_owned(),
            capacity,
        })
    }
}

#[cfg(test)]
mod tests;
