//! The baseline: Apache StreamPark's `ConsistentHash`, reproduced exactly.
//!
//! ```java
//! numberOfReplicas = 2 << 16;                        // 2^17 virtual nodes per server
//! add(server): for i in 0..replicas: circle.put(Murmur3Hash.hash64(server + i), server);
//! get(key):    h = hash64(key); first point >= h in signed order, else the first point
//! ```
//!
//! Kept as the measured baseline of `ring_bench` and as a reference for anyone migrating from
//! StreamPark. Its known flaws, which the default ring avoids:
//! - point names can collide (`"h:1000" + "11"` = `"h:10001" + "1"`), and `TreeMap.put` lets the
//!   server added last win the point, so the owner depends on insertion order;
//! - 2^17 map entries per server: slow to build and tens of megabytes for ten servers;
//! - a lookup walks a deep tree of cold cache lines.

use std::collections::BTreeMap;

use super::murmur3;

/// StreamPark's `numberOfReplicas = 2 << 16`.
pub(crate) const STREAMPARK_REPLICAS: u32 = 2 << 16;

/// A `TreeMap<Long, server>` ring; servers are stored once and points refer to them by index.
#[derive(Debug, Clone)]
pub(crate) struct StreamParkRing {
    circle: BTreeMap<i64, u32>,
    replicas: u32,
}

impl StreamParkRing {
    pub(crate) fn new(replicas: u32) -> Self {
        Self {
            circle: BTreeMap::new(),
            replicas,
        }
    }

    /// `add(server)`: puts every virtual point of `server`, overwriting any point that collides.
    pub(crate) fn add(&mut self, server: &str, server_index: u32) {
        // Reuse one buffer: `server + i` rendered like Java's string concatenation.
        let mut name = String::with_capacity(server.len() + 10);
        for i in 0..self.replicas {
            name.clear();
            name.push_str(server);
            push_decimal(&mut name, u64::from(i));
            self.circle
                .insert(murmur3::hash64(name.as_bytes()), server_index);
        }
    }

    /// `get(key)` for a key whose hash is `hash`: the server of the first point at or after it,
    /// wrapping to the start.
    pub(crate) fn get_hash(&self, hash: i64) -> Option<u32> {
        self.circle
            .range(hash..)
            .next()
            .or_else(|| self.circle.iter().next())
            .map(|(_, &server)| server)
    }
}

/// Appends the decimal rendering of `n` without going through `fmt` (the build is hot).
pub(crate) fn push_decimal(out: &mut String, n: u64) {
    let mut digits = [0u8; 20];
    let start = render_decimal(n, &mut digits);
    for &d in &digits[start..] {
        out.push(char::from(d));
    }
}

/// Renders `n` right-aligned into `buf`, returning the index of its first digit.
pub(crate) fn render_decimal(mut n: u64, buf: &mut [u8; 20]) -> usize {
    let mut pos = buf.len();
    loop {
        pos -= 1;
        // `n % 10` is below 10, so the cast cannot truncate.
        buf[pos] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return pos;
        }
    }
}
