//! The apps of an assignment in their canonical order: keys (shared with every placement made
//! from them), weights and candidate lists (the assignment's own).
//!
//! The canonical order is by `(order_key(hash), id)`, where `hash` is the Murmur3 hash of the
//! app's key (its id in decimal, the key every ring ranks) and `order_key` remixes it, so the
//! order is independent of any node's score. Every node sorts the same apps the same way, so the
//! placement pass (which depends on the order) gives the same result everywhere. The order is
//! also the index: a lookup by id hashes the id and binary-searches the sorted keys.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::AssignmentError;
use super::candidates::{CandidateTable, Scanner};
use super::nodes::NodeTable;
use crate::ring::{app_hash, fmix64};
use crate::store::AppId;

/// Mixed into the hash before ordering, so that the order is not the ranking's input bits.
const ORDER_SALT: u64 = 0x6a09_e667_f3bc_c909;

/// The most apps an assignment holds (indices fit a `u32`).
pub(crate) const MAX_APPS: usize = u32::MAX as usize;

/// The position of an app with this key hash in the canonical order (then by id).
#[inline]
pub(crate) fn order_key(hash: u64) -> u64 {
    fmix64(hash ^ ORDER_SALT)
}

/// App ids and hashes in canonical order; immutable once built (placements share it).
#[derive(Debug, Clone, Default)]
pub(crate) struct AppKeys {
    hashes: Vec<u64>,
    ids: Vec<AppId>,
}

impl AppKeys {
    pub(crate) fn hashes(&self) -> &[u64] {
        &self.hashes
    }

    pub(crate) fn ids(&self) -> &[AppId] {
        &self.ids
    }

    /// The canonical index of `id`: `Ok` where it is, `Err` where it would go.
    pub(crate) fn find(&self, id: AppId) -> Result<usize, usize> {
        let key = (order_key(app_hash(id) as u64), id);
        let (mut low, mut high) = (0, self.ids.len());
        while low < high {
            let mid = low + (high - low) / 2;
            match (order_key(self.hashes[mid]), self.ids[mid]).cmp(&key) {
                std::cmp::Ordering::Less => low = mid + 1,
                std::cmp::Ordering::Greater => high = mid,
                std::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(low)
    }
}

/// Everything the assignment keeps per app, index-aligned in canonical order.
#[derive(Debug, Clone, Default)]
pub(crate) struct AppTable {
    keys: Arc<AppKeys>,
    weights: Vec<u32>,
    candidates: CandidateTable,
    total_weight: u64,
}

impl AppTable {
    /// The table of `apps` (distinct ids, weights at least 1), ranked over `nodes`.
    pub(crate) fn build(
        nodes: &NodeTable,
        apps: Vec<(AppId, u32)>,
    ) -> Result<Self, AssignmentError> {
        if apps.len() > MAX_APPS {
            return Err(AssignmentError::TooManyApps {
                count: apps.len(),
                max: MAX_APPS,
            });
        }
        let mut rows: Vec<(u64, AppId, u64, u32)> = apps
            .into_iter()
            .map(|(id, weight)| {
                let hash = app_hash(id) as u64;
                (order_key(hash), id, hash, weight)
            })
            .collect();
        rows.sort_unstable_by_key(|&(key, id, _, _)| (key, id));
        if let Some(pair) = rows.windows(2).find(|pair| pair[0].1 == pair[1].1) {
            return Err(AssignmentError::DuplicateApp(pair[0].1));
        }
        let keys = AppKeys {
            hashes: rows.iter().map(|row| row.2).collect(),
            ids: rows.iter().map(|row| row.1).collect(),
        };
        let weights: Vec<u32> = rows.iter().map(|row| row.3).collect();
        let candidates = CandidateTable::build(nodes, &keys.hashes);
        Ok(Self {
            total_weight: weights.iter().map(|&w| u64::from(w)).sum(),
            keys: Arc::new(keys),
            weights,
            candidates,
        })
    }

    pub(crate) fn keys(&self) -> &Arc<AppKeys> {
        &self.keys
    }

    pub(crate) fn weights(&self) -> &[u32] {
        &self.weights
    }

    pub(crate) fn candidates(&self) -> &CandidateTable {
        &self.candidates
    }

    pub(crate) fn total_weight(&self) -> u64 {
        self.total_weight
    }

    pub(crate) fn len(&self) -> usize {
        self.weights.len()
    }

    /// The node in `slot` joined (it is in `nodes`).
    pub(crate) fn node_joined(&mut self, nodes: &NodeTable, slot: u16) {
        self.candidates.node_joined(nodes, &self.keys.hashes, slot);
    }

    /// The nodes in `gone` left (removed from `nodes`, their slots not reused yet).
    pub(crate) fn nodes_left(&mut self, nodes: &NodeTable, gone: &[u16]) {
        self.candidates.nodes_left(nodes, &self.keys.hashes, gone);
    }

    /// Ranks every app again over `nodes` (cheaper than many joins one by one).
    pub(crate) fn rerank(&mut self, nodes: &NodeTable) {
        self.candidates = CandidateTable::build(nodes, &self.keys.hashes);
    }

    /// How many apps `changes` would add (new ids with a weight); the caller checks the limit.
    pub(crate) fn added_by(&self, changes: &BTreeMap<AppId, Option<u32>>) -> usize {
        changes
            .iter()
            .filter(|&(&id, weight)| weight.is_some() && self.keys.find(id).is_err())
            .count()
    }

    /// Applies app changes (`Some(weight)`: the app exists with that weight; `None`: it is
    /// gone), ranking new apps over `nodes`. Keys are rebuilt only when the set of ids changes.
    pub(crate) fn apply(&mut self, nodes: &NodeTable, changes: &BTreeMap<AppId, Option<u32>>) {
        let mut added: Vec<(u64, AppId, u64, u32)> = Vec::new();
        let mut removed: Vec<usize> = Vec::new();
        for (&id, &change) in changes {
            match (self.keys.find(id), change) {
                (Ok(at), Some(weight)) => {
                    self.total_weight =
                        self.total_weight - u64::from(self.weights[at]) + u64::from(weight);
                    self.weights[at] = weight;
                }
                (Ok(at), None) => removed.push(at),
                (Err(_), Some(weight)) => {
                    let hash = app_hash(id) as u64;
                    added.push((order_key(hash), id, hash, weight));
                }
                (Err(_), None) => {}
            }
        }
        if added.is_empty() && removed.is_empty() {
            return;
        }
        added.sort_unstable_by_key(|&(key, id, _, _)| (key, id));
        removed.sort_unstable();
        self.merge(nodes, &added, &removed);
    }

    /// Rebuilds the rows with `added` (sorted, new ids) merged in and `removed` (sorted
    /// indices) left out.
    fn merge(&mut self, nodes: &NodeTable, added: &[(u64, AppId, u64, u32)], removed: &[usize]) {
        let len = self.len() + added.len() - removed.len();
        let mut keys = AppKeys {
            hashes: Vec::with_capacity(len),
            ids: Vec::with_capacity(len),
        };
        let mut weights = Vec::with_capacity(len);
        let mut candidates = CandidateTable::with_capacity(len);
        let mut scanner = Scanner::new();
        let mut removed = removed.iter().peekable();
        let mut added = added.iter().peekable();
        let mut old = 0;
        loop {
            if removed.peek() == Some(&&old) {
                removed.next();
                self.total_weight -= u64::from(self.weights[old]);
                old += 1;
                continue;
            }
            let old_key =
                (old < self.len()).then(|| (order_key(self.keys.hashes[old]), self.keys.ids[old]));
            let take_added = match (added.peek(), old_key) {
                (Some(&&(key, id, _, _)), Some(old_key)) => (key, id) < old_key,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if take_added {
                if let Some(&(_, id, hash, weight)) = added.next() {
                    keys.hashes.push(hash);
                    keys.ids.push(id);
                    weights.push(weight);
                    candidates.push(scanner.top(nodes, hash));
                    self.total_weight += u64::from(weight);
                }
            } else {
                keys.hashes.push(self.keys.hashes[old]);
                keys.ids.push(self.keys.ids[old]);
                weights.push(self.weights[old]);
                candidates.push(self.candidates.row(old));
                old += 1;
            }
        }
        self.keys = Arc::new(keys);
        self.weights = weights;
        self.candidates = candidates;
    }
}
