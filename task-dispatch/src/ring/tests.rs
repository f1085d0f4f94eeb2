use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;

use super::streampark::StreamParkRing;
use super::*;

fn ring(kind: RingKind, nodes: &[&str]) -> Ring {
    Ring::new(kind, nodes.iter().copied()).unwrap()
}

fn node_ids(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| format!("10.0.{}.{}:10000", i / 250, i % 250 + 1))
        .collect()
}

/// Decimal strings of pseudo-random non-negative i64s (splitmix64), like real app ids.
fn keys(seed: u64, count: usize) -> Vec<String> {
    let mut state = seed;
    (0..count)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            (murmur3::fmix64(state) >> 1).to_string()
        })
        .collect()
}

// --- the StreamPark baseline -------------------------------------------------------------------

/// Two servers with two virtual points each, worked out by hand from the definition.
///
/// Points (`hash64(server + i)`) in signed order:
///   a0 = -8407011678222543128, b0 = -4259633844795767120,
///   a1 =   370657344849566846, b1 =  3822909142159298616.
#[test]
fn streampark_two_point_ring_matches_hand_computed_owners() {
    assert_eq!(hash64(b"a0"), -8_407_011_678_222_543_128);
    assert_eq!(hash64(b"b0"), -4_259_633_844_795_767_120);
    assert_eq!(hash64(b"a1"), 370_657_344_849_566_846);
    assert_eq!(hash64(b"b1"), 3_822_909_142_159_298_616);
    let mut sp = StreamParkRing::new(2);
    sp.add("a", 0);
    sp.add("b", 1);
    let cases: &[(&str, i64, u32)] = &[
        // below every point: the first point, a0
        ("3", -8_426_435_877_509_344_565, 0),
        // between a0 and b0
        ("1", -6_278_392_854_297_691_023, 1),
        // between b0 and a1
        ("2", -1_798_670_933_377_385_118, 0),
        // between a1 and b1
        ("0", 1_506_875_962_709_441_675, 1),
        // above every point: wraps to a0
        ("42", 5_351_086_086_619_340_060, 0),
        // exactly on a point: that point ("at or after")
        ("b1", 3_822_909_142_159_298_616, 1),
    ];
    for &(key, hash, owner) in cases {
        assert_eq!(hash64(key.as_bytes()), hash, "hash of {key:?}");
        assert_eq!(sp.get_hash(hash), Some(owner), "owner of {key:?}");
    }
}

/// The full 2^17-point ring against a linear scan over points generated from the definition.
#[test]
fn streampark_ring_matches_definition_by_linear_scan() {
    let servers = ["10.0.0.1:10000", "10.0.0.2:10000", "10.0.0.3:10000"];
    let r = ring(RingKind::StreamPark, &servers);
    // Build the circle the Java way: put in order, a later put overwrites an equal point.
    let mut circle: BTreeMap<i64, &str> = BTreeMap::new();
    for server in servers {
        for i in 0..(2u32 << 16) {
            circle.insert(hash64(format!("{server}{i}").as_bytes()), server);
        }
    }
    let points: Vec<(i64, &str)> = circle.into_iter().collect();
    for key in keys(7, 200) {
        let h = hash64(key.as_bytes());
        let expected = points.iter().find(|(p, _)| *p >= h).unwrap_or(&points[0]).1;
        assert_eq!(r.owner(&key), Some(expected), "key {key}");
    }
}

/// The baseline's flaw the default ring avoids: `"h:1000" + "11"` and `"h:10001" + "1"` are the
/// same point name, and whichever server is added last takes that point.
#[test]
fn streampark_colliding_point_names_make_owner_depend_on_insertion_order() {
    let shared = hash64(b"h:100011");
    let owner_when_added = |first: &str, second: &str| {
        let mut sp = StreamParkRing::new(12);
        sp.add(first, 0);
        sp.add(second, 1);
        sp.get_hash(shared)
    };
    // The later server (index 1) wins the shared point in both orders: a different node id.
    assert_eq!(owner_when_added("h:1000", "h:10001"), Some(1));
    assert_eq!(owner_when_added("h:10001", "h:1000"), Some(1));
    // The default ring has no point names: both orders give the same owner by construction.
    let a = ring(RingKind::Rendezvous, &["h:1000", "h:10001"]);
    let b = ring(RingKind::Rendezvous, &["h:10001", "h:1000"]);
    for key in keys(3, 1000) {
        assert_eq!(a.owner(&key), b.owner(&key));
    }
}

// --- the Ring type ---------------------------------------------------------------------------

#[test]
fn empty_ring_has_no_owner() {
    for kind in [RingKind::Rendezvous, RingKind::StreamPark] {
        assert_eq!(Ring::empty(kind).owner("1"), None);
        assert_eq!(
            Ring::new(kind, Vec::<String>::new()).unwrap().owner("1"),
            None
        );
    }
}

#[test]
fn one_node_owns_everything() {
    let r = ring(RingKind::Rendezvous, &["only"]);
    assert!(keys(1, 100).iter().all(|k| r.owner(k) == Some("only")));
}

#[test]
fn owner_of_app_hashes_the_decimal_id() {
    let r = ring(RingKind::Rendezvous, &["a", "b", "c", "d", "e"]);
    for id in [0i64, 1, 42, -7, i64::MAX, i64::MIN, 1_000_000_007] {
        assert_eq!(r.owner_of_app(id), r.owner(&id.to_string()), "app {id}");
    }
}

#[test]
fn duplicates_are_ignored_and_nodes_sorted() {
    let r = ring(RingKind::Rendezvous, &["b", "a", "b"]);
    assert_eq!(r.nodes(), ["a".to_owned(), "b".to_owned()]);
    assert!(r.contains("a") && !r.contains("c"));
}

#[test]
fn ring_kind_parses_cli_names() {
    assert_eq!("default".parse(), Ok(RingKind::Rendezvous));
    assert_eq!("rendezvous".parse(), Ok(RingKind::Rendezvous));
    assert_eq!("streampark".parse(), Ok(RingKind::StreamPark));
    assert!("maglev".parse::<RingKind>().is_err());
}

/// A bias in the score function shows up as a node that wins clearly more than its share.
#[test]
fn rendezvous_balance_is_within_sampling_noise() {
    let nodes = node_ids(10);
    let r = Ring::new(RingKind::Rendezvous, nodes.clone()).unwrap();
    let key_count = 200_000;
    let mut counts = vec![0usize; nodes.len()];
    for key in keys(11, key_count) {
        counts[r.owner_index(&key).unwrap()] += 1;
    }
    let mean = key_count as f64 / nodes.len() as f64;
    let max = *counts.iter().max().unwrap() as f64;
    // One node's share has a standard deviation of sqrt(mean); 5 of them is far out.
    assert!(max <= mean + 5.0 * mean.sqrt(), "counts {counts:?}");
}

// --- properties of the default ring ------------------------------------------------------------

fn node_set() -> impl Strategy<Value = Vec<String>> {
    prop::collection::btree_set("[a-z0-9.:]{1,16}", 1..24).prop_map(|s| s.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn owner_is_independent_of_insertion_order(
        nodes in node_set(),
        permutation in any::<prop::sample::Index>(),
        seed in any::<u64>(),
    ) {
        let mut shuffled = nodes.clone();
        // A deterministic shuffle driven by the generated values.
        let n = shuffled.len();
        for i in (1..n).rev() {
            let j = permutation.index(i + 1);
            shuffled.swap(i, j);
        }
        shuffled.rotate_left(seed as usize % n);
        let a = Ring::new(RingKind::Rendezvous, nodes).unwrap();
        let b = Ring::new(RingKind::Rendezvous, shuffled).unwrap();
        for key in keys(seed, 500) {
            prop_assert_eq!(a.owner(&key), b.owner(&key));
        }
    }

    #[test]
    fn a_join_moves_keys_only_to_the_new_node(
        nodes in node_set(),
        joiner in "[a-z0-9.:]{1,16}",
        seed in any::<u64>(),
    ) {
        prop_assume!(!nodes.contains(&joiner));
        let before = Ring::new(RingKind::Rendezvous, nodes.clone()).unwrap();
        let after = Ring::new(RingKind::Rendezvous, nodes.iter().cloned().chain([joiner.clone()]))
            .unwrap();
        for key in keys(seed, 2000) {
            let (old, new) = (before.owner(&key), after.owner(&key));
            prop_assert!(old == new || new == Some(joiner.as_str()), "{key}: {old:?} -> {new:?}");
        }
    }

    #[test]
    fn a_leave_moves_only_the_leavers_keys(
        nodes in node_set(),
        leaver in any::<prop::sample::Index>(),
        seed in any::<u64>(),
    ) {
        let leaver = nodes[leaver.index(nodes.len())].clone();
        let before = Ring::new(RingKind::Rendezvous, nodes.clone()).unwrap();
        let after = Ring::new(RingKind::Rendezvous, nodes.iter().filter(|n| **n != leaver).cloned())
            .unwrap();
        for key in keys(seed, 2000) {
            let (old, new) = (before.owner(&key), after.owner(&key));
            if old != Some(leaver.as_str()) {
                prop_assert_eq!(old, new, "{}", key);
            } else {
                prop_assert_ne!(new, Some(leaver.as_str()));
            }
        }
    }

    #[test]
    fn balance_is_within_the_stated_bound(node_count in 2usize..40, seed in any::<u64>()) {
        // Bound: max_over_mean <= 1 + 6 * sqrt(nodes / keys), i.e. six standard deviations of
        // one node's share from key sampling alone. A biased ranking breaks it.
        let nodes = node_ids(node_count);
        let r = Ring::new(RingKind::Rendezvous, nodes).unwrap();
        let key_count = 50_000;
        let mut counts: HashMap<usize, usize> = HashMap::new();
        for key in keys(seed, key_count) {
            *counts.entry(r.owner_index(&key).unwrap()).or_default() += 1;
        }
        let mean = key_count as f64 / node_count as f64;
        let max = counts.values().copied().max().unwrap_or(0) as f64;
        let bound = 1.0 + 6.0 * (node_count as f64 / key_count as f64).sqrt();
        prop_assert!(max / mean <= bound, "max/mean {} > {}", max / mean, bound);
    }
}
