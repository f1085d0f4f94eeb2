//! Hive-style 64-bit Murmur3 (`org.apache.hive.common.util.Murmur3.hash64`), the hash the StreamPark
//! ring used.
//!
//! This is the x64 variant that keeps only the first 64-bit lane of MurmurHash3_x64_128's mixing,
//! with Hive's default seed 104729. It reads the input as little-endian 8-byte blocks, so the result
//! does not depend on the host's byte order. Java's `long` arithmetic wraps, hence the `wrapping_*`.

/// Hive's default seed (`Murmur3.DEFAULT_SEED`), used by StreamPark's `Murmur3Hash.hash64`.
pub const DEFAULT_SEED: i32 = 104_729;

const C1: u64 = 0x87c3_7b91_1142_53d5;
const C2: u64 = 0x4cf5_ad43_2745_937f;
const R1: u32 = 31;
const R2: u32 = 27;
const M: u64 = 5;
const N1: u64 = 0x52dc_e729;

/// `Murmur3.hash64(data)` with Hive's default seed; Java strings are hashed as their UTF-8 bytes.
///
/// Test vectors (seed 104729): `""` → 8404154273843829576, `"a"` → -2460741455279943289,
/// `"hello"` → 4118559451821261121.
#[must_use]
pub fn hash64(data: &[u8]) -> i64 {
    hash64_with_seed(data, DEFAULT_SEED)
}

/// `Murmur3.hash64(data, 0, data.length, seed)`.
#[must_use]
pub fn hash64_with_seed(data: &[u8], seed: i32) -> i64 {
    // Java widens the int seed to long with sign extension.
    let mut hash = i64::from(seed) as u64;
    let mut blocks = data.chunks_exact(8);
    for block in &mut blocks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(block);
        let k = u64::from_le_bytes(bytes)
            .wrapping_mul(C1)
            .rotate_left(R1)
            .wrapping_mul(C2);
        hash ^= k;
        hash = hash.rotate_left(R2).wrapping_mul(M).wrapping_add(N1);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        // Java's switch xors tail byte i in at shift 8 * i: a little-endian load of the tail.
        // (A fold, not a copy into a zeroed buffer: that costs a `memcpy` call per key.)
        let k1 = tail
            .iter()
            .rev()
            .fold(0u64, |acc, &byte| (acc << 8) | u64::from(byte));
        hash ^= k1.wrapping_mul(C1).rotate_left(R1).wrapping_mul(C2);
    }
    // Java xors the int length into the long hash (sign-extended; lengths are non-negative).
    hash ^= data.len() as u64;
    fmix64(hash) as i64
}

/// Murmur3's 64-bit finaliser: a bijection that spreads every input bit over the output.
#[must_use]
pub(crate) const fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_hive_test_vectors() {
        assert_eq!(hash64(b""), 8_404_154_273_843_829_576);
        assert_eq!(hash64(b"a"), -2_460_741_455_279_943_289);
        assert_eq!(hash64(b"hello"), 4_118_559_451_821_261_121);
    }

    #[test]
    fn every_tail_length_is_mixed() {
        // Inputs of length 0..=17 cover an empty body, every tail length and two full blocks;
        // each must give a distinct hash (a dropped tail byte would make neighbours collide).
        let text = b"0123456789abcdefgh";
        let hashes: std::collections::BTreeSet<i64> =
            (0..=text.len()).map(|n| hash64(&text[..n])).collect();
        assert_eq!(hashes.len(), text.len() + 1);
    }
}
