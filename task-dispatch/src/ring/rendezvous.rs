//! The default ring: rendezvous (highest-random-weight) hashing with a cheap, vectorisable score.
//!
//! Every node gets two 32-bit words derived from Murmur3 of its id, a `salt` and an odd
//! `multiplier`. A key whose Murmur3 hash is `h` (halves `lo`, `hi`) scores on each node
//!
//! ```text
//! x = (lo ^ salt) * multiplier;  x ^= hi;  x = (x ^ x >> 15) * 0x2c1b3c6d;  x ^= x >> 12
//! ```
//!
//! (wrapping 32-bit arithmetic) and goes to the node with the highest top 24 bits of `x`; a tie
//! goes to the node whose id sorts first. The ranking of nodes for a key is therefore a fixed
//! total order, which is what makes joins and leaves move the fewest keys.
//!
//! Speed: a lookup computes one score per node. Nodes are laid out in groups of eight lanes so
//! that, where the CPU has AVX2 (detected at run time), one instruction does a step for eight
//! nodes. The portable scalar code is the definition; the AVX2 code performs the same integer
//! steps, so every machine computes the same owner (a test checks the two agree).

use super::murmur3::{self, fmix64};

/// Lanes per group: one AVX2 register of `u32`.
pub(crate) const LANES: usize = 8;
/// Nodes per block: a packed lane holds a 24-bit score and an 8-bit position in the block;
/// blocks are then compared by (score, block order).
const BLOCK: usize = 256;
const GROUPS_PER_BLOCK: usize = BLOCK / LANES;
const TAG_MASK: u32 = 0xff;

/// The largest number of nodes a ring holds: far beyond any cluster, and indices fit in `u32`.
pub(crate) const MAX_NODES: usize = (1 << 24) - 1;

/// Eight nodes' words, lane `i` describing node `8 * group + i`.
#[derive(Debug, Clone, Copy, Default)]
struct Group {
    salt: [u32; LANES],
    multiplier: [u32; LANES],
    /// `!TAG_MASK` for a node, 0 for padding past the last node (its packed score is then 0,
    /// below every node's, whose tag is at least 1 in the lane that holds block position 0).
    keep: [u32; LANES],
    /// `255 - position in the block`: a plain `max` prefers the lower index on a score tie.
    tag: [u32; LANES],
}

/// The per-node words in the order of the sorted node ids.
#[derive(Debug, Clone)]
pub(crate) struct RendezvousRing {
    groups: Box<[Group]>,
    len: usize,
    simd: Simd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Simd {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl RendezvousRing {
    /// Builds from node ids that are already sorted and distinct; at most [`MAX_NODES`].
    pub(crate) fn new<'a>(sorted_ids: impl IntoIterator<Item = &'a str>) -> Self {
        let mut groups: Vec<Group> = Vec::new();
        let mut len = 0;
        for (index, id) in sorted_ids.into_iter().enumerate() {
            let lane = index % LANES;
            if lane == 0 {
                groups.push(Group::default());
            }
            let words = NodeWords::of(id);
            if let Some(group) = groups.last_mut() {
                group.salt[lane] = words.salt;
                group.multiplier[lane] = words.multiplier;
                group.keep[lane] = !TAG_MASK;
                // `index % BLOCK` is below 256.
                group.tag[lane] = TAG_MASK - (index % BLOCK) as u32;
            }
            len = index + 1;
        }
        Self {
            groups: groups.into(),
            len,
            simd: detect_simd(),
        }
    }

    /// The index of the owner of a key whose Murmur3 hash is `key_hash`; `None` on an empty ring.
    #[inline]
    pub(crate) fn owner_of_hash(&self, key_hash: i64) -> Option<usize> {
        let (lo, hi) = key_halves(key_hash);
        let mut best: Option<(u32, usize)> = None;
        for (block, groups) in self.groups.chunks(GROUPS_PER_BLOCK).enumerate() {
            let packed = self.block_max(groups, lo, hi);
            let score = packed & !TAG_MASK;
            // Blocks come in index order, so only a strictly higher score replaces the best.
            if best.is_none_or(|(best_score, _)| score > best_score) {
                let index = block * BLOCK + (TAG_MASK - (packed & TAG_MASK)) as usize;
                best = Some((score, index));
            }
        }
        best.map(|(_, index)| index)
            .filter(|&index| index < self.len)
    }

    #[inline]
    fn block_max(&self, groups: &[Group], lo: u32, hi: u32) -> u32 {
        match self.simd {
            Simd::Portable => block_max(groups, lo, hi),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Simd::Avx2` is only chosen after `is_x86_feature_detected!("avx2")`.
            Simd::Avx2 => unsafe { block_max_avx2(groups, lo, hi) },
        }
    }
}

fn detect_simd() -> Simd {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        return Simd::Avx2;
    }
    Simd::Portable
}

/// The multiplier of the score's second round (an odd constant with well-spread bits).
const MIX: u32 = 0x2c1b_3c6d;

/// A node's two words of the score, derived from Murmur3 of its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NodeWords {
    pub(crate) salt: u32,
    pub(crate) multiplier: u32,
}

impl NodeWords {
    /// The words of the node `id`.
    pub(crate) fn of(id: &str) -> Self {
        let h = fmix64(murmur3::hash64(id.as_bytes()) as u64 ^ 0x9e37_79b9_7f4a_7c15);
        Self {
            salt: h as u32,
            multiplier: (h >> 32) as u32 | 1,
        }
    }
}

/// The 32-bit mix of a key (hash halves `lo`, `hi`) on a node; its top 24 bits are the score.
///
/// This is the definition every path computes (the SIMD lanes perform the same steps).
#[inline]
pub(crate) const fn mix(lo: u32, hi: u32, salt: u32, multiplier: u32) -> u32 {
    let mut x = (lo ^ salt).wrapping_mul(multiplier);
    x ^= hi;
    x = (x ^ (x >> 15)).wrapping_mul(MIX);
    x ^ (x >> 12)
}

/// The halves `(lo, hi)` of a key's Murmur3 hash, as the score reads them.
#[inline]
pub(crate) const fn key_halves(key_hash: i64) -> (u32, u32) {
    (key_hash as u32, (key_hash as u64 >> 32) as u32)
}

/// The highest packed score (score in the top 24 bits, tag below) over a block's groups.
///
/// This is the definition; the SIMD versions must compute exactly the same value.
fn block_max(groups: &[Group], lo: u32, hi: u32) -> u32 {
    let mut best = 0;
    for group in groups {
        for lane in 0..LANES {
            let x = mix(lo, hi, group.salt[lane], group.multiplier[lane]);
            best = best.max((x & group.keep[lane]) | group.tag[lane]);
        }
    }
    best
}

/// [`block_max`] with AVX2: the same integer steps, eight nodes (one group) per instruction.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn block_max_avx2(groups: &[Group], lo: u32, hi: u32) -> u32 {
    use std::arch::x86_64::{
        _mm256_and_si256, _mm256_max_epu32, _mm256_or_si256, _mm256_set1_epi32,
        _mm256_setzero_si256, _mm256_storeu_si256,
    };
    // The casts reinterpret bits (`set1` takes i32); nothing is truncated.
    let lo = _mm256_set1_epi32(lo as i32);
    let hi = _mm256_set1_epi32(hi as i32);
    let mut best = _mm256_setzero_si256();
    for group in groups {
        let x = avx2::mix(
            lo,
            hi,
            avx2::load(&group.salt),
            avx2::load(&group.multiplier),
        );
        let packed = _mm256_or_si256(
            _mm256_and_si256(x, avx2::load(&group.keep)),
            avx2::load(&group.tag),
        );
        best = _mm256_max_epu32(best, packed);
    }
    let mut lanes = [0u32; LANES];
    // SAFETY: `lanes` is 32 writable bytes, and `storeu` has no alignment requirement.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), best) };
    lanes.into_iter().fold(0, u32::max)
}

/// [`mix`] on eight lanes at once, shared by every AVX2 path.
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use std::arch::x86_64::{
        __m256i, _mm256_loadu_si256, _mm256_mullo_epi32, _mm256_set1_epi32, _mm256_srli_epi32,
        _mm256_xor_si256,
    };

    use super::{LANES, MIX};

    /// Eight `u32` lanes from memory.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(crate) fn load(lanes: &[u32; LANES]) -> __m256i {
        // SAFETY: `lanes` is 32 readable bytes, and `loadu` has no alignment requirement.
        unsafe { _mm256_loadu_si256(lanes.as_ptr().cast()) }
    }

    /// The same integer steps as [`super::mix`], lane by lane.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(crate) fn mix(lo: __m256i, hi: __m256i, salt: __m256i, multiplier: __m256i) -> __m256i {
        // The cast reinterprets bits (`set1` takes i32).
        let mix = _mm256_set1_epi32(MIX as i32);
        let mut x = _mm256_mullo_epi32(_mm256_xor_si256(lo, salt), multiplier);
        x = _mm256_xor_si256(x, hi);
        x = _mm256_mullo_epi32(_mm256_xor_si256(x, _mm256_srli_epi32::<15>(x)), mix);
        _mm256_xor_si256(x, _mm256_srli_epi32::<12>(x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owners(ring: &RendezvousRing) -> Vec<Option<usize>> {
        (0..5000i64)
            .map(|k| ring.owner_of_hash(murmur3::hash64(k.to_string().as_bytes())))
            .collect()
    }

    /// The owner must not depend on the CPU: the detected path equals the portable one, across
    /// several blocks and with padding lanes.
    #[test]
    fn simd_and_portable_paths_agree() {
        for count in [1usize, 7, 8, 9, 255, 256, 257, 600] {
            let ids: Vec<String> = (0..count).map(|i| format!("node-{i:04}")).collect();
            let mut ring = RendezvousRing::new(ids.iter().map(String::as_str));
            let detected = owners(&ring);
            ring.simd = Simd::Portable;
            assert_eq!(detected, owners(&ring), "{count} nodes");
            assert!(detected.iter().all(|o| o.is_some_and(|i| i < count)));
        }
    }

    /// Every node of a multi-block ring wins some keys: block and tag decoding are right.
    #[test]
    fn every_node_of_a_large_ring_can_win() {
        let ids: Vec<String> = (0..300).map(|i| format!("node-{i:04}")).collect();
        let ring = RendezvousRing::new(ids.iter().map(String::as_str));
        let mut wins = vec![0u32; ids.len()];
        for k in 0..100_000i64 {
            if let Some(i) = ring.owner_of_hash(murmur3::hash64(k.to_string().as_bytes())) {
                wins[i] += 1;
            }
        }
        assert!(wins.iter().all(|&w| w > 0), "{wins:?}");
    }
}
