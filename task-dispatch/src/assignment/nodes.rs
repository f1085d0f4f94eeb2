//! The live nodes of an assignment, each in a stable slot, with the words that score them.
//!
//! A node keeps its slot from its join to its leave, so the candidate lists (which name nodes by
//! slot) stay valid while other nodes come and go. A freed slot is reused by a later join only
//! after every list has been purged of it (the caller's order: leaves first, then joins).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::ring::{LANES, NodeWords, mix};

/// "No node" in a slot-valued field.
pub(crate) const NONE: u16 = u16::MAX;

/// The most nodes an assignment holds: every slot fits a `u16` below [`NONE`].
pub(crate) const MAX_NODES: usize = NONE as usize;

/// Eight slots' score words; `keep` is all ones for a live slot and 0 for a free one.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Lanes {
    pub(crate) salt: [u32; LANES],
    pub(crate) multiplier: [u32; LANES],
    pub(crate) keep: [u32; LANES],
}

/// The live nodes by slot.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodeTable {
    /// The capacity of the node in each slot; `None` for a free slot.
    slots: Vec<Option<u32>>,
    by_id: BTreeMap<Arc<str>, u16>,
    free: BTreeSet<u16>,
    lanes: Vec<Lanes>,
    /// Per slot, `u16::MAX` minus the position of its id among the live ids: on equal scores
    /// the larger comes first. Recomputed on every join and leave (a walk over the ids).
    precedence: Vec<u16>,
    total_capacity: u64,
}

impl NodeTable {
    /// Adds a node that is not in the table, in the lowest free slot; returns its slot.
    ///
    /// The caller checks the id is new and the table holds fewer than [`MAX_NODES`].
    pub(crate) fn insert(&mut self, id: &str, capacity: u32) -> u16 {
        debug_assert!(!self.by_id.contains_key(id) && self.by_id.len() < MAX_NODES);
        let slot = self.free.pop_first().unwrap_or(self.slots.len() as u16);
        let index = usize::from(slot);
        if index == self.slots.len() {
            self.slots.push(None);
            self.precedence.push(0);
            if index % LANES == 0 {
                self.lanes.push(Lanes::default());
            }
        }
        let id: Arc<str> = Arc::from(id);
        let words = NodeWords::of(&id);
        let lanes = &mut self.lanes[index / LANES];
        lanes.salt[index % LANES] = words.salt;
        lanes.multiplier[index % LANES] = words.multiplier;
        lanes.keep[index % LANES] = u32::MAX;
        self.by_id.insert(id, slot);
        self.slots[index] = Some(capacity);
        self.total_capacity += u64::from(capacity);
        self.rank_ids();
        slot
    }

    /// Removes the node `id`; its slot is free for a later [`NodeTable::insert`].
    pub(crate) fn remove(&mut self, id: &str) -> Option<u16> {
        let slot = self.by_id.remove(id)?;
        let index = usize::from(slot);
        if let Some(capacity) = self.slots[index].take() {
            self.total_capacity -= u64::from(capacity);
        }
        self.lanes[index / LANES].keep[index % LANES] = 0;
        self.free.insert(slot);
        self.rank_ids();
        Some(slot)
    }

    /// Sets the capacity of the node in `slot`.
    pub(crate) fn set_capacity(&mut self, slot: u16, capacity: u32) {
        if let Some(old) = &mut self.slots[usize::from(slot)] {
            self.total_capacity = self.total_capacity - u64::from(*old) + u64::from(capacity);
            *old = capacity;
        }
    }

    pub(crate) fn slot_of(&self, id: &str) -> Option<u16> {
        self.by_id.get(id).copied()
    }

    /// The live nodes in the order of their ids: `(id, slot)`.
    pub(crate) fn by_id(&self) -> impl Iterator<Item = (&Arc<str>, u16)> {
        self.by_id.iter().map(|(id, &slot)| (id, slot))
    }

    /// The id of the live node in `slot` (empty for a free slot).
    #[cfg(test)]
    pub(crate) fn id(&self, slot: u16) -> &str {
        self.by_id
            .iter()
            .find(|&(_, &s)| s == slot)
            .map_or("", |(id, _)| id)
    }

    /// The capacity of the live node in `slot` (0 for a free slot).
    pub(crate) fn capacity(&self, slot: u16) -> u32 {
        self.slots[usize::from(slot)].unwrap_or(0)
    }

    /// The number of slots in use or free (slot indices are below it).
    pub(crate) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// The live slots, in slot order.
    pub(crate) fn live_slots(&self) -> impl Iterator<Item = u16> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, node)| node.is_some())
            .map(|(slot, _)| slot as u16)
    }

    /// How many nodes are live.
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(crate) fn total_capacity(&self) -> u64 {
        self.total_capacity
    }

    /// The slots' score words, eight per group; slot `8 * g + i` is lane `i` of group `g`.
    pub(crate) fn lanes(&self) -> &[Lanes] {
        &self.lanes
    }

    /// The 24-bit rendezvous score of the key with hash halves `(lo, hi)` on `slot`.
    #[inline]
    pub(crate) fn score(&self, slot: u16, lo: u32, hi: u32) -> u32 {
        let index = usize::from(slot);
        let lanes = &self.lanes[index / LANES];
        mix(
            lo,
            hi,
            lanes.salt[index % LANES],
            lanes.multiplier[index % LANES],
        ) >> 8
    }

    /// The sort key of `slot` in the order of a key on which it scores `score`: a larger key
    /// comes first. Higher scores first, and on equal scores the id that sorts first (as
    /// [`crate::Ring`] does); the slot in the low bits only makes the key name its node.
    #[inline]
    pub(crate) fn order_key(&self, slot: u16, score: u32) -> u64 {
        (u64::from(score) << 32)
            | (u64::from(self.precedence[usize::from(slot)]) << 16)
            | u64::from(slot)
    }

    fn rank_ids(&mut self) {
        for (position, &slot) in self.by_id.values().enumerate() {
            // At most MAX_NODES ids, so the position fits.
            self.precedence[usize::from(slot)] = u16::MAX - position as u16;
        }
    }

    /// Gives `slot` the score words of `like` (tests force ties with it).
    #[cfg(test)]
    pub(crate) fn copy_words(&mut self, slot: u16, like: u16) {
        let (from, to) = (usize::from(like), usize::from(slot));
        let salt = self.lanes[from / LANES].salt[from % LANES];
        let multiplier = self.lanes[from / LANES].multiplier[from % LANES];
        self.lanes[to / LANES].salt[to % LANES] = salt;
        self.lanes[to / LANES].multiplier[to % LANES] = multiplier;
    }
}
