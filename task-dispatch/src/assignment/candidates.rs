//! Each app's first [`K`] nodes in its rendezvous order, kept current as nodes come and go.
//!
//! The list of an app is always the exact prefix of length `min(K, live nodes)` of its
//! rendezvous order over the live set, whatever sequence of changes led there (the tests compare
//! it with a fresh computation). That is what lets the placement pass read an app's preferences
//! without scoring every node:
//!
//! - a join scores the new node once per app and inserts it where it beats the `K`-th entry
//!   (probability about `K / nodes`);
//! - a leave rescans only the apps whose full list named the leaver (about `K / nodes` of them);
//!   a list that was not full already named every live node, so the leaver is just dropped.

use super::nodes::{NONE, NodeTable};
use crate::ring::{LANES, key_halves};

/// Candidates kept per app. Eight `u16` slots fill one 16-byte word; with all eight full, the
/// placement pass needs a full walk only for an app whose eight best nodes are all at their
/// limit, which is rare at the bounds people run.
pub(crate) const K: usize = 8;

/// Slots in rank order, padded with [`NONE`].
pub(crate) type List = [u16; K];

/// The candidate lists of the apps, by the apps' canonical index.
#[derive(Debug, Clone, Default)]
pub(crate) struct CandidateTable {
    lists: Vec<List>,
    /// The score of the `K`-th entry of a full list (0 otherwise): a joining node enters the
    /// list only if it ranks before that entry.
    kth: Vec<u32>,
}

impl CandidateTable {
    /// The lists of apps with these hashes, from a scan of every live node.
    pub(crate) fn build(nodes: &NodeTable, hashes: &[u64]) -> Self {
        let mut table = Self {
            lists: Vec::with_capacity(hashes.len()),
            kth: Vec::with_capacity(hashes.len()),
        };
        let mut scanner = Scanner::new();
        for &hash in hashes {
            table.push(scanner.top(nodes, hash));
        }
        table
    }

    pub(crate) fn lists(&self) -> &[List] {
        &self.lists
    }

    /// Appends an app's row (`(list, kth)` as [`Scanner::top`] returns it).
    pub(crate) fn push(&mut self, (list, kth): (List, u32)) {
        self.lists.push(list);
        self.kth.push(kth);
    }

    /// The row of app `app`, to move into a merged table.
    pub(crate) fn row(&self, app: usize) -> (List, u32) {
        (self.lists[app], self.kth[app])
    }

    pub(crate) fn with_capacity(len: usize) -> Self {
        Self {
            lists: Vec::with_capacity(len),
            kth: Vec::with_capacity(len),
        }
    }

    /// The node in `slot` (already in `nodes`) joined: insert it where it ranks among the first.
    pub(crate) fn node_joined(&mut self, nodes: &NodeTable, hashes: &[u64], slot: u16) {
        for ((list, kth), &hash) in self.lists.iter_mut().zip(&mut self.kth).zip(hashes) {
            let (lo, hi) = key_halves(hash as i64);
            let key = nodes.order_key(slot, nodes.score(slot, lo, hi));
            let last = list[K - 1];
            if last != NONE && key <= nodes.order_key(last, *kth) {
                continue;
            }
            let mut top = Top::from_list(nodes, list, lo, hi);
            top.offer(key);
            (*list, *kth) = top.finish();
        }
    }

    /// The nodes in `gone` (already removed from `nodes`, slots not reused yet) left: drop them
    /// from every list and refill the lists that were full.
    pub(crate) fn nodes_left(&mut self, nodes: &NodeTable, hashes: &[u64], gone: &[u16]) {
        let mut is_gone = vec![false; nodes.slot_count()];
        for &slot in gone {
            is_gone[usize::from(slot)] = true;
        }
        let single = match gone {
            [slot] => Some(*slot),
            _ => None,
        };
        let mut scanner = Scanner::new();
        for ((list, kth), &hash) in self.lists.iter_mut().zip(&mut self.kth).zip(hashes) {
            let hit = match single {
                // One leaver (the common case): a plain compare the compiler vectorises.
                Some(slot) => list.contains(&slot),
                None => list.iter().any(|&s| s != NONE && is_gone[usize::from(s)]),
            };
            if !hit {
                continue;
            }
            if list[K - 1] != NONE {
                (*list, *kth) = scanner.top(nodes, hash);
            } else {
                let mut kept = [NONE; K];
                for (at, &s) in list
                    .iter()
                    .filter(|&&s| s != NONE && !is_gone[usize::from(s)])
                    .enumerate()
                {
                    kept[at] = s;
                }
                *list = kept;
                *kth = 0;
            }
        }
    }
}

/// The first `K` nodes of one key's order, built by offering nodes one at a time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Top {
    /// [`NodeTable::order_key`]s, largest first; the first `len` are set.
    keys: [u64; K],
    len: usize,
}

impl Top {
    fn new() -> Self {
        Self {
            keys: [0; K],
            len: 0,
        }
    }

    /// A list already in rank order, with its keys recomputed.
    fn from_list(nodes: &NodeTable, list: &List, lo: u32, hi: u32) -> Self {
        let mut top = Self::new();
        for &slot in list.iter().take_while(|&&s| s != NONE) {
            top.keys[top.len] = nodes.order_key(slot, nodes.score(slot, lo, hi));
            top.len += 1;
        }
        top
    }

    /// The score a node must reach (ties included) to possibly enter: 0 until the list is full.
    #[inline]
    fn threshold(&self) -> u32 {
        if self.len < K {
            0
        } else {
            (self.keys[K - 1] >> 32) as u32
        }
    }

    /// Inserts the node with this order key if it ranks among the first `K` so far.
    #[inline]
    fn offer(&mut self, key: u64) {
        let mut at = self.len;
        while at > 0 && key > self.keys[at - 1] {
            at -= 1;
        }
        if at >= K {
            return;
        }
        let end = self.len.min(K - 1);
        self.keys.copy_within(at..end, at + 1);
        self.keys[at] = key;
        self.len = (self.len + 1).min(K);
    }

    fn finish(self) -> (List, u32) {
        let mut list = [NONE; K];
        for (slot, &key) in list.iter_mut().zip(&self.keys[..self.len]) {
            // The low 16 bits of an order key are the slot.
            *slot = key as u16;
        }
        (list, self.threshold())
    }
}

/// Scans every node for one key at a time: portable (the definition) or AVX2 (the same steps),
/// with a buffer reused from key to key.
#[derive(Debug, Clone)]
pub(crate) struct Scanner {
    simd: Simd,
    /// One key's scores, eight slots per entry (the AVX2 scan's first pass).
    scores: Vec<[u32; LANES]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Simd {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Scanner {
    pub(crate) fn new() -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            return Self {
                simd: Simd::Avx2,
                scores: Vec::new(),
            };
        }
        Self::portable()
    }

    fn portable() -> Self {
        Self {
            simd: Simd::Portable,
            scores: Vec::new(),
        }
    }

    /// The first `K` live nodes in the order of the key with Murmur3 hash `hash`, and the
    /// score of the `K`-th (0 when fewer than `K` nodes are live).
    pub(crate) fn top(&mut self, nodes: &NodeTable, hash: u64) -> (List, u32) {
        let (lo, hi) = key_halves(hash as i64);
        match self.simd {
            Simd::Portable => top_portable(nodes, lo, hi),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Simd::Avx2` is only chosen after `is_x86_feature_detected!("avx2")`.
            Simd::Avx2 => unsafe { top_avx2(nodes, lo, hi, &mut self.scores) },
        }
        .finish()
    }
}

fn top_portable(nodes: &NodeTable, lo: u32, hi: u32) -> Top {
    let mut top = Top::new();
    for (group, lanes) in nodes.lanes().iter().enumerate() {
        for lane in 0..LANES {
            if lanes.keep[lane] == 0 {
                continue;
            }
            let slot = (group * LANES + lane) as u16;
            let score = nodes.score(slot, lo, hi);
            if score >= top.threshold() {
                top.offer(nodes.order_key(slot, score));
            }
        }
    }
    top
}

/// [`top_portable`] with eight nodes scored per instruction, in two passes. The first scores
/// every node and keeps each lane's maximum: those are eight distinct nodes, so the eighth
/// best score is at least the smallest of them. The second offers only the nodes scoring at
/// least that (or the list's own threshold, once higher): a few dozen of a thousand.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn top_avx2(nodes: &NodeTable, lo: u32, hi: u32, scores: &mut Vec<[u32; LANES]>) -> Top {
    use std::arch::x86_64::{
        _mm256_and_si256, _mm256_castsi256_ps, _mm256_cmpeq_epi32, _mm256_max_epu32,
        _mm256_movemask_ps, _mm256_set1_epi32, _mm256_setzero_si256, _mm256_srli_epi32,
        _mm256_storeu_si256,
    };

    use crate::ring::avx2;

    const _: () = assert!(
        K == LANES,
        "the first pass bounds the K-th score by K lane maxima"
    );

    let groups = nodes.lanes();
    // Every entry is written below: resize only when the node table grew or shrank.
    scores.resize(groups.len(), [0; LANES]);
    // The casts reinterpret bits (`set1` takes i32); nothing is truncated.
    let lo_lanes = _mm256_set1_epi32(lo as i32);
    let hi_lanes = _mm256_set1_epi32(hi as i32);
    let mut lane_max = _mm256_setzero_si256();
    for (lanes, out) in groups.iter().zip(scores.iter_mut()) {
        let x = avx2::mix(
            lo_lanes,
            hi_lanes,
            avx2::load(&lanes.salt),
            avx2::load(&lanes.multiplier),
        );
        // A free slot scores 0 and is skipped below.
        let group_scores = _mm256_and_si256(_mm256_srli_epi32::<8>(x), avx2::load(&lanes.keep));
        lane_max = _mm256_max_epu32(lane_max, group_scores);
        // SAFETY: `out` is 32 writable bytes, and `storeu` has no alignment requirement.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), group_scores) };
    }
    let mut maxima = [0u32; LANES];
    // SAFETY: as above.
    unsafe { _mm256_storeu_si256(maxima.as_mut_ptr().cast(), lane_max) };
    let floor = maxima.into_iter().min().unwrap_or(0);

    let mut top = Top::new();
    for (group, (lanes, group_scores)) in groups.iter().zip(scores.iter()).enumerate() {
        let threshold = _mm256_set1_epi32(top.threshold().max(floor) as i32);
        let values = avx2::load(group_scores);
        let at_least = _mm256_cmpeq_epi32(_mm256_max_epu32(values, threshold), values);
        let mut mask = _mm256_movemask_ps(_mm256_castsi256_ps(at_least)) as u32;
        while mask != 0 {
            let lane = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            let score = group_scores[lane];
            if lanes.keep[lane] != 0 && score >= top.threshold() {
                top.offer(nodes.order_key((group * LANES + lane) as u16, score));
            }
        }
    }
    top
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::{app_hash, fmix64};

    /// The list must not depend on the CPU: the detected scan equals the portable one, across
    /// several groups, with free slots in the middle and padding lanes at the end.
    #[test]
    fn simd_and_portable_scans_agree() {
        for count in [1usize, 3, 8, 9, 31, 100, 300] {
            let mut nodes = NodeTable::default();
            for i in 0..count {
                nodes.insert(&format!("node-{i:04}"), 1);
            }
            for i in (0..count).step_by(7).skip(1) {
                nodes.remove(&format!("node-{i:04}"));
            }
            let (mut detected, mut portable) = (Scanner::new(), Scanner::portable());
            for app in 0..2000i64 {
                let hash = app_hash(app) as u64;
                assert_eq!(
                    detected.top(&nodes, hash),
                    portable.top(&nodes, hash),
                    "{count} nodes, app {app}"
                );
            }
        }
    }

    /// Equal scores are ordered by id, not by slot: ties are forced by giving two slots the
    /// same words.
    #[test]
    fn ties_go_to_the_id_that_sorts_first() {
        let mut nodes = NodeTable::default();
        nodes.insert("b", 1);
        nodes.insert("a", 1);
        // Same words for both: every key ties, and "a" (slot 1) must come first.
        nodes.copy_words(1, 0);
        for app in 0..100u64 {
            let hash = fmix64(app);
            for mut scanner in [Scanner::new(), Scanner::portable()] {
                let (list, _) = scanner.top(&nodes, hash);
                assert_eq!(&list[..2], &[1, 0]);
            }
        }
    }
}
