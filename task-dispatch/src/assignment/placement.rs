//! The placement pass, and [`Placement`]: who owns every app under the load bound.
//!
//! The pass visits the apps in canonical order and gives each to the first node of its
//! rendezvous order whose owned weight, with the app, stays within its limit
//! `⌊(1+ε) × total weight × capacity / total capacity⌋`. It reads the app's candidate list and
//! scores other nodes only when every candidate is at its limit. When no node at all has room
//! (possible only outside the precondition on [`Placement::bound_guaranteed`]), the app goes to
//! the first node of its order that is still *below* `(1+ε) × fair share` (one always is, since
//! the apps placed so far weigh less than the total), so such a node ends below
//! `(1+ε) × fair share + the largest weight`.

use std::sync::Arc;

use super::LoadBound;
use super::apps::{AppKeys, AppTable};
use super::candidates::{K, List};
use super::nodes::{NONE, NodeTable};
use crate::ring::key_halves;
use crate::store::AppId;

/// Parts per million: ε is kept as an integer so every node computes the same limits.
pub(crate) const PPM: u64 = 1_000_000;

/// One live node's share: its capacity, what it owns, what it should own.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeLoad {
    id: Arc<str>,
    capacity: u32,
    owned_weight: u64,
    owned_apps: usize,
    fair_share: f64,
    limit: Option<u64>,
}

impl NodeLoad {
    /// The node id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The node's capacity (`node.capacity`, at least 1).
    #[must_use]
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// The total weight of the apps it owns.
    #[must_use]
    pub fn owned_weight(&self) -> u64 {
        self.owned_weight
    }

    /// How many apps it owns.
    #[must_use]
    pub fn owned_apps(&self) -> usize {
        self.owned_apps
    }

    /// Total weight × its capacity / total capacity.
    #[must_use]
    pub fn fair_share(&self) -> f64 {
        self.fair_share
    }

    /// `⌊(1+ε) × fair share⌋`, computed exactly in integers; `None` when unbounded.
    #[must_use]
    pub fn limit(&self) -> Option<u64> {
        self.limit
    }
}

/// The owner of every app for one live set and one app set: an immutable snapshot.
///
/// Cheap to share (`Arc<Placement>`); [`super::Assignment::apply`] never changes a placement
/// that was handed out, it makes a new one, so a reader holding one keeps a consistent view
/// while the next is computed.
#[derive(Debug, Clone)]
pub struct Placement {
    bound: LoadBound,
    apps: Arc<AppKeys>,
    /// The owner's slot per app, in canonical order ([`NONE`] when no node is live).
    owners: Box<[u16]>,
    /// Live nodes sorted by id.
    nodes: Vec<NodeLoad>,
    /// Slot → index into `nodes` (`u32::MAX` for a free slot).
    node_of_slot: Vec<u32>,
    total_weight: u64,
    total_capacity: u64,
    max_weight: u32,
    overflowed: usize,
}

impl Placement {
    /// The node that owns `app`; `None` for an unknown app or when no node is live.
    ///
    /// A binary search over the apps in canonical order (hashing the id included).
    #[must_use]
    pub fn owner_of(&self, app: AppId) -> Option<&str> {
        let at = self.apps.find(app).ok()?;
        self.node_in(self.owners[at]).map(NodeLoad::id)
    }

    /// Whether `app` is one of the assigned apps.
    #[must_use]
    pub fn contains_app(&self, app: AppId) -> bool {
        self.apps.find(app).is_ok()
    }

    /// The live node `id` with its share; `None` if it is not live.
    #[must_use]
    pub fn node(&self, id: &str) -> Option<&NodeLoad> {
        let at = self.nodes.binary_search_by(|node| node.id().cmp(id)).ok()?;
        self.nodes.get(at)
    }

    /// Every live node with its share, sorted by id.
    #[must_use]
    pub fn nodes(&self) -> &[NodeLoad] {
        &self.nodes
    }

    /// The weight owned by the live node `id`.
    #[must_use]
    pub fn owned_weight(&self, id: &str) -> Option<u64> {
        self.node(id).map(NodeLoad::owned_weight)
    }

    /// The fair share of the live node `id`: total weight × capacity / total capacity.
    #[must_use]
    pub fn fair_share(&self, id: &str) -> Option<f64> {
        self.node(id).map(NodeLoad::fair_share)
    }

    /// Every app with its owner, in canonical order.
    pub fn owners(&self) -> impl Iterator<Item = (AppId, Option<&str>)> {
        self.apps
            .ids()
            .iter()
            .zip(&self.owners)
            .map(|(&app, &slot)| (app, self.node_in(slot).map(NodeLoad::id)))
    }

    /// The apps the node `id` owns, in canonical order (none for a node that is not live).
    pub fn apps_of(&self, id: &str) -> impl Iterator<Item = AppId> {
        let slot = self
            .node_of_slot
            .iter()
            .position(|&at| at != u32::MAX && self.nodes[at as usize].id() == id)
            .map_or(NONE, |slot| slot as u16);
        self.apps
            .ids()
            .iter()
            .zip(&self.owners)
            .filter(move |&(_, &owner)| slot != NONE && owner == slot)
            .map(|(&app, _)| app)
    }

    /// How many apps are assigned.
    #[must_use]
    pub fn len(&self) -> usize {
        self.owners.len()
    }

    /// True when there is no app.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }

    /// The bound this placement was made under.
    #[must_use]
    pub fn bound(&self) -> LoadBound {
        self.bound
    }

    /// The sum of all weights.
    #[must_use]
    pub fn total_weight(&self) -> u64 {
        self.total_weight
    }

    /// The sum of the live nodes' capacities.
    #[must_use]
    pub fn total_capacity(&self) -> u64 {
        self.total_capacity
    }

    /// Apps that found no node with room and went to the first node still below
    /// `(1+ε) × fair share`. Zero means every node is within its limit.
    #[must_use]
    pub fn overflowed(&self) -> usize {
        self.overflowed
    }

    /// Whether the precondition of the hard bound holds: `ε × W ≥ (N − 1) × w_max` for total
    /// weight `W`, `N` live nodes and largest weight `w_max` (always true when unbounded).
    ///
    /// Then a node with room exists for every app, so [`Placement::overflowed`] is 0 and every
    /// node owns at most its [`NodeLoad::limit`]. Proof: if every node lacked room for an app
    /// of weight `w`, then `load_n + w ≥ limit_n + 1 > (1+ε)·fair_n` for all `n`; summing,
    /// `W − w ≥ Σ load_n > (1+ε)·W − N·w`, that is `ε·W < (N − 1)·w`.
    #[must_use]
    pub fn bound_guaranteed(&self) -> bool {
        match self.bound {
            LoadBound::Unbounded => true,
            LoadBound::Within(epsilon) => {
                let others = self.nodes.len().saturating_sub(1) as u128;
                u128::from(epsilon.ppm()) * u128::from(self.total_weight)
                    >= others * u128::from(self.max_weight) * u128::from(PPM)
            }
        }
    }

    /// The largest owned weight over fair share among live nodes (0 without weight).
    #[must_use]
    pub fn max_over_fair(&self) -> f64 {
        self.nodes
            .iter()
            .filter(|node| node.fair_share > 0.0)
            .map(|node| node.owned_weight as f64 / node.fair_share)
            .fold(0.0, f64::max)
    }

    fn node_in(&self, slot: u16) -> Option<&NodeLoad> {
        let at = *self.node_of_slot.get(usize::from(slot))?;
        self.nodes.get(at as usize)
    }
}

/// The limits of a node: `(hard, soft)` where `hard = ⌊(1+ε)·fair⌋` (owned weight may reach
/// it) and `soft` is the largest integer below `(1+ε)·fair` (a node at or under it may take an
/// app that fits nowhere).
fn limits(bound: LoadBound, total_weight: u64, capacity: u32, total_capacity: u64) -> (u64, u64) {
    let LoadBound::Within(epsilon) = bound else {
        return (u64::MAX, u64::MAX);
    };
    // (1+ε)·W·c/C = a / b. Below 2^120 and 2^52: W < 2^64, c < 2^16, 10^6 + ppm < 2^40,
    // C < 2^32 (see `Epsilon` and `MAX_CAPACITY`).
    let a = u128::from(total_weight) * u128::from(capacity) * u128::from(PPM + epsilon.ppm());
    let b = u128::from(total_capacity) * u128::from(PPM);
    if a == 0 || b == 0 {
        return (0, 0);
    }
    let clamp = |x: u128| u64::try_from(x).unwrap_or(u64::MAX);
    (clamp(a / b), clamp((a - 1) / b))
}

/// The placement pass over every app (see the module comment).
pub(crate) fn place(bound: LoadBound, nodes: &NodeTable, apps: &AppTable) -> Placement {
    let slots = nodes.slot_count();
    let total_weight = apps.total_weight();
    let total_capacity = nodes.total_capacity();
    let mut hard = vec![0u64; slots];
    let mut soft = vec![0u64; slots];
    for slot in nodes.live_slots() {
        let at = usize::from(slot);
        (hard[at], soft[at]) = limits(bound, total_weight, nodes.capacity(slot), total_capacity);
    }
    let mut loads = vec![0u64; slots];
    let mut counts = vec![0usize; slots];
    let mut owners = Vec::with_capacity(apps.len());
    let mut overflowed = 0;
    let hashes = apps.keys().hashes();
    let lists = apps.candidates().lists();
    for (at, (&weight, list)) in apps.weights().iter().zip(lists).enumerate() {
        let weight = u64::from(weight);
        let mut owner = NONE;
        for &slot in list {
            if slot == NONE {
                break;
            }
            let s = usize::from(slot);
            if loads[s] + weight <= hard[s] {
                owner = slot;
                break;
            }
        }
        if owner == NONE && nodes.len() > 0 {
            let (slot, relaxed) = fallback(nodes, list, hashes[at], weight, &loads, &hard, &soft);
            owner = slot;
            overflowed += usize::from(relaxed);
        }
        if owner != NONE {
            loads[usize::from(owner)] += weight;
            counts[usize::from(owner)] += 1;
        }
        owners.push(owner);
    }

    let mut node_loads = Vec::with_capacity(nodes.len());
    let mut node_of_slot = vec![u32::MAX; slots];
    for (id, slot) in nodes.by_id() {
        let at = usize::from(slot);
        let capacity = nodes.capacity(slot);
        node_of_slot[at] = node_loads.len() as u32;
        node_loads.push(NodeLoad {
            id: id.clone(),
            capacity,
            owned_weight: loads[at],
            owned_apps: counts[at],
            fair_share: total_weight as f64 * f64::from(capacity) / total_capacity as f64,
            limit: matches!(bound, LoadBound::Within(_)).then_some(hard[at]),
        });
    }
    Placement {
        bound,
        apps: apps.keys().clone(),
        owners: owners.into_boxed_slice(),
        nodes: node_loads,
        node_of_slot,
        total_weight,
        total_capacity,
        max_weight: apps.weights().iter().copied().max().unwrap_or(0),
        overflowed,
    }
}

/// The owner of an app none of whose candidates has room: the first node of its order with
/// room, else the first still below `(1+ε)·fair` (then `true`: the app overflowed).
fn fallback(
    nodes: &NodeTable,
    list: &List,
    hash: u64,
    weight: u64,
    loads: &[u64],
    hard: &[u64],
    soft: &[u64],
) -> (u16, bool) {
    // A list that is not full names every live node: nothing lies beyond it.
    let beyond = list[K - 1] != NONE;
    if beyond && let Some(slot) = first_in_order(nodes, hash, |s| loads[s] + weight <= hard[s]) {
        return (slot, false);
    }
    let below = |s: usize| loads[s] <= soft[s];
    if let Some(&slot) = list
        .iter()
        .take_while(|&&slot| slot != NONE)
        .find(|&&slot| below(usize::from(slot)))
    {
        return (slot, true);
    }
    if beyond && let Some(slot) = first_in_order(nodes, hash, below) {
        return (slot, true);
    }
    // Unreachable: the apps placed so far weigh at most W − 1 < (1+ε)·W = Σ (1+ε)·fair_n, so
    // some node is below its share. Kept total anyway: the first candidate.
    debug_assert!(false, "no live node below (1+ε)·fair");
    (list[0], true)
}

/// The first live node in the order of the key `hash` among those `eligible` (by slot index).
fn first_in_order(nodes: &NodeTable, hash: u64, eligible: impl Fn(usize) -> bool) -> Option<u16> {
    let (lo, hi) = key_halves(hash as i64);
    nodes
        .live_slots()
        .filter(|&slot| eligible(usize::from(slot)))
        .map(|slot| nodes.order_key(slot, nodes.score(slot, lo, hi)))
        .max()
        // The low 16 bits of an order key are the slot.
        .map(|key| key as u16)
}
