use std::collections::BTreeMap;

use proptest::prelude::*;

use super::apps::order_key;
use super::*;
use crate::ring::{NodeWords, Ring, RingKind, app_hash, key_halves, mix};

fn node_ids(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| format!("10.0.{}.{}:10000", i / 250, i % 250 + 1))
        .collect()
}

fn eps(value: f64) -> LoadBound {
    LoadBound::Within(Epsilon::new(value).unwrap())
}

fn owners(placement: &Placement) -> BTreeMap<AppId, Option<String>> {
    placement
        .owners()
        .map(|(app, owner)| (app, owner.map(str::to_owned)))
        .collect()
}

/// The bound every placement keeps: within the limit when nothing overflowed (always, under
/// the precondition), and below `(1+ε)·fair + w_max` in any case (exact integer checks).
fn check_bound(placement: &Placement, max_weight: u32) -> Result<(), TestCaseError> {
    let LoadBound::Within(epsilon) = placement.bound() else {
        return Ok(());
    };
    if placement.bound_guaranteed() {
        prop_assert_eq!(placement.overflowed(), 0);
    }
    let (total, capacity) = (placement.total_weight(), placement.total_capacity());
    for node in placement.nodes() {
        let limit = node.limit().unwrap();
        if placement.overflowed() == 0 {
            prop_assert!(node.owned_weight() <= limit, "{node:?}");
        }
        // owned < (1+ε)·W·c/C + w_max, multiplied out by C·10^6.
        let owned = u128::from(node.owned_weight()) * u128::from(capacity) * 1_000_000;
        let bound =
            u128::from(total) * u128::from(node.capacity()) * u128::from(1_000_000 + epsilon.ppm())
                + u128::from(max_weight) * u128::from(capacity) * 1_000_000;
        prop_assert!(owned < bound.max(1), "{node:?} over the weak bound");
    }
    Ok(())
}

/// The definition, computed the slow way: apps in canonical order, each node of the app's
/// full rendezvous order tried in turn.
fn reference(
    nodes: &[(String, u32)],
    apps: &[(AppId, u32)],
    bound: LoadBound,
) -> BTreeMap<AppId, Option<String>> {
    let mut order: Vec<&(AppId, u32)> = apps.iter().collect();
    order.sort_by_key(|(id, _)| (order_key(app_hash(*id) as u64), *id));
    let total: u64 = apps.iter().map(|(_, w)| u64::from(*w)).sum();
    let capacity: u64 = nodes.iter().map(|(_, c)| u64::from(*c)).sum();
    let ppm = match bound {
        LoadBound::Unbounded => None,
        LoadBound::Within(e) => Some(e.ppm()),
    };
    // (1+ε)·W·c/C = a / b
    let ab = |c: u32| {
        let ppm = ppm.unwrap_or(0);
        (
            u128::from(total) * u128::from(c) * u128::from(1_000_000 + ppm),
            u128::from(capacity) * 1_000_000,
        )
    };
    let mut load: BTreeMap<&str, u64> = nodes.iter().map(|(id, _)| (id.as_str(), 0)).collect();
    let mut result = BTreeMap::new();
    for &&(app, weight) in &order {
        let (lo, hi) = key_halves(app_hash(app));
        let mut ranked: Vec<(u32, &str, u32)> = nodes
            .iter()
            .map(|(id, c)| {
                let w = NodeWords::of(id);
                (mix(lo, hi, w.salt, w.multiplier) >> 8, id.as_str(), *c)
            })
            .collect();
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        let fits = |id: &str, c: u32| {
            let (a, b) = ab(c);
            ppm.is_none() || u128::from(load[id] + u64::from(weight)) * b <= a
        };
        let below = |id: &str, c: u32| {
            let (a, b) = ab(c);
            u128::from(load[id]) * b < a
        };
        let owner = ranked
            .iter()
            .find(|(_, id, c)| fits(id, *c))
            .or_else(|| ranked.iter().find(|(_, id, c)| below(id, *c)))
            .map(|(_, id, _)| id.to_string());
        if let Some(owner) = &owner {
            *load.get_mut(owner.as_str()).unwrap() += u64::from(weight);
        }
        result.insert(app, owner);
    }
    result
}

// --- examples ----------------------------------------------------------------------------------

#[test]
fn no_node_owns_nothing_and_no_app_is_empty() {
    let a = Assignment::build(Vec::<(String, u32)>::new(), [(1, 1), (2, 5)], eps(0.1)).unwrap();
    assert_eq!(a.placement().owner_of(1), None);
    assert_eq!(a.placement().len(), 2);
    let b = Assignment::build([("a", 1)], [], eps(0.1)).unwrap();
    assert!(b.placement().is_empty());
    assert_eq!(b.placement().owned_weight("a"), Some(0));
    assert_eq!(b.placement().max_over_fair(), 0.0);
}

#[test]
fn one_node_owns_everything_within_any_bound() {
    let a = Assignment::build([("only", 1)], (1..=100).map(|i| (i, 7)), eps(0.0)).unwrap();
    assert!((1..=100).all(|i| a.placement().owner_of(i) == Some("only")));
    let node = a.placement().node("only").unwrap();
    assert_eq!(
        (node.owned_weight(), node.owned_apps(), node.limit()),
        (700, 100, Some(700))
    );
    assert_eq!(a.placement().owner_of(101), None);
}

/// Four unit apps, two nodes, ε = 0: each node's limit is exactly 2, so each owns two.
#[test]
fn a_zero_slack_bound_is_exact() {
    let a = Assignment::build([("a", 1), ("b", 1)], (1..=4).map(|i| (i, 1)), eps(0.0)).unwrap();
    let p = a.placement();
    assert_eq!(p.owned_weight("a"), Some(2));
    assert_eq!(p.owned_weight("b"), Some(2));
    assert_eq!(p.overflowed(), 0);
    assert_eq!(p.fair_share("a"), Some(2.0));
}

/// Capacity 2 of 4 is half the weight: the limits follow capacities.
#[test]
fn fair_shares_follow_capacities() {
    let nodes = [("a", 1), ("b", 1), ("c", 2)];
    let a = Assignment::build(nodes, (1..=1000).map(|i| (i, 1)), eps(0.1)).unwrap();
    let p = a.placement();
    assert_eq!(p.fair_share("c"), Some(500.0));
    assert_eq!(p.node("c").unwrap().limit(), Some(550));
    assert_eq!(p.node("a").unwrap().limit(), Some(275));
    assert!(
        p.nodes()
            .iter()
            .all(|n| n.owned_weight() <= n.limit().unwrap())
    );
    assert_eq!(
        p.nodes().iter().map(NodeLoad::owned_weight).sum::<u64>(),
        1000
    );
}

/// Outside the precondition (three apps of weight 100 and 3 nodes, ε = 0, W = 300 but one
/// unit app more): apps that fit nowhere overflow, within the weaker bound.
#[test]
fn heavy_apps_overflow_within_the_weaker_bound() {
    let apps = [(1, 100), (2, 100), (3, 100), (4, 1), (5, 1)];
    let a = Assignment::build([("a", 1), ("b", 1), ("c", 1)], apps, eps(0.0)).unwrap();
    let p = a.placement();
    assert!(!p.bound_guaranteed());
    assert!(p.overflowed() > 0, "{:?}", p.nodes());
    check_bound(p, 100).unwrap();
    assert_eq!(
        owners(p),
        reference(
            &[("a".into(), 1), ("b".into(), 1), ("c".into(), 1)],
            &apps,
            eps(0.0)
        )
    );
}

#[test]
fn unbounded_is_the_plain_ring() {
    let ids = node_ids(37);
    let ring = Ring::new(RingKind::Rendezvous, ids.clone()).unwrap();
    let apps: Vec<(AppId, u32)> = (0..20_000)
        .map(|i| (i * 7919 - 50_000, 1 + (i % 5) as u32))
        .collect();
    for bound in [LoadBound::Unbounded, eps(Epsilon::MAX)] {
        let a =
            Assignment::build(ids.iter().map(|id| (id.clone(), 1)), apps.clone(), bound).unwrap();
        for &(app, _) in &apps {
            assert_eq!(
                a.placement().owner_of(app),
                ring.owner_of_app(app),
                "app {app}"
            );
        }
        assert_eq!(a.placement().overflowed(), 0);
    }
}

#[test]
fn bad_input_is_refused_with_the_reason() {
    let err = Assignment::build([("a", 0)], [], eps(0.1)).unwrap_err();
    assert_eq!(
        err,
        AssignmentError::InvalidCapacity {
            node: "a".into(),
            capacity: 0
        }
    );
    let err = Assignment::build([("a", 70_000)], [], eps(0.1)).unwrap_err();
    assert!(matches!(
        err,
        AssignmentError::InvalidCapacity {
            capacity: 70_000,
            ..
        }
    ));
    assert_eq!(
        Assignment::build([("a", 1), ("a", 2)], [], eps(0.1)).unwrap_err(),
        AssignmentError::DuplicateNode("a".into())
    );
    assert_eq!(
        Assignment::build([("a", 1)], [(5, 1), (5, 1)], eps(0.1)).unwrap_err(),
        AssignmentError::DuplicateApp(5)
    );
    assert_eq!(
        Assignment::build([("a", 1)], [(5, 0)], eps(0.1)).unwrap_err(),
        AssignmentError::ZeroWeight(5)
    );
    for bad in [-0.1, f64::NAN, f64::INFINITY, 2e6] {
        assert!(Epsilon::new(bad).is_err(), "{bad}");
    }
    assert!("x".parse::<Epsilon>().is_err());
    assert_eq!("0.05".parse::<Epsilon>().unwrap().ppm(), 50_000);
    assert_eq!(Epsilon::default().to_string(), "0.1");
    assert_eq!("bounded".parse(), Ok(AssignmentKind::Bounded));
    assert_eq!("rendezvous".parse(), Ok(AssignmentKind::Rendezvous));
    assert!("maglev".parse::<AssignmentKind>().is_err());

    // A refused batch changes nothing.
    let mut a = Assignment::build([("a", 1)], [(1, 1)], eps(0.1)).unwrap();
    let before = a.placement().clone();
    let err = a
        .apply([
            Change::NodeJoined {
                id: "b".into(),
                capacity: 1,
            },
            Change::AppAdded { id: 2, weight: 0 },
        ])
        .unwrap_err();
    assert_eq!(err, AssignmentError::ZeroWeight(2));
    assert!(Arc::ptr_eq(&before, a.placement()));
    assert!(a.placement().node("b").is_none());
}

#[test]
fn a_placement_handed_out_does_not_change() {
    let mut a = Assignment::build(
        node_ids(3).into_iter().map(|id| (id, 1)),
        (1..=100).map(|i| (i, 1)),
        eps(0.1),
    )
    .unwrap();
    let held = a.placement().clone();
    let snapshot = owners(&held);
    a.node_joined("10.9.9.9:10000", 1).unwrap();
    a.app_removed(1).unwrap();
    assert_eq!(owners(&held), snapshot);
    assert!(held.node("10.9.9.9:10000").is_none());
    assert!(a.placement().node("10.9.9.9:10000").is_some());
    assert!(!a.placement().contains_app(1) && held.contains_app(1));
}

#[test]
fn apps_of_lists_exactly_the_owned_apps() {
    let a = Assignment::build(
        node_ids(5).into_iter().map(|id| (id, 1)),
        (1..=500).map(|i| (i, 1 + (i % 3) as u32)),
        eps(0.05),
    )
    .unwrap();
    let p = a.placement();
    let mut seen = 0;
    for node in p.nodes() {
        let apps: Vec<AppId> = p.apps_of(node.id()).collect();
        assert_eq!(apps.len(), node.owned_apps());
        assert!(apps.iter().all(|&app| p.owner_of(app) == Some(node.id())));
        seen += apps.len();
    }
    assert_eq!(seen, 500);
    assert_eq!(p.apps_of("nobody").count(), 0);
}

// --- properties --------------------------------------------------------------------------------

/// Node ids from a small alphabet (so that sets overlap), capacities 1..=4.
fn node_set() -> impl Strategy<Value = Vec<(String, u32)>> {
    prop::collection::btree_map("[a-e]{1,3}", 1u32..=4, 1..14).prop_map(|m| m.into_iter().collect())
}

/// Distinct app ids with weights 1..=max_weight.
fn app_set(max_weight: u32, max_len: usize) -> impl Strategy<Value = Vec<(AppId, u32)>> {
    prop::collection::btree_map(-1000i64..100_000, 1..=max_weight, 0..max_len)
        .prop_map(|m| m.into_iter().collect())
}

fn bound_strategy() -> impl Strategy<Value = LoadBound> {
    prop_oneof![
        Just(LoadBound::Unbounded),
        (0u32..=500_000).prop_map(|ppm| eps(f64::from(ppm) / 1e6)),
        Just(eps(0.0)),
    ]
}

/// One step of a change sequence, resolved against the current sets when applied.
#[derive(Debug, Clone)]
enum Step {
    Join(String, u32),
    Leave(prop::sample::Index),
    Resize(prop::sample::Index, u32),
    Add(AppId, u32),
    Remove(prop::sample::Index),
    Reweigh(prop::sample::Index, u32),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        ("[a-f]{1,2}", 1u32..=4).prop_map(|(id, c)| Step::Join(id, c)),
        any::<prop::sample::Index>().prop_map(Step::Leave),
        (any::<prop::sample::Index>(), 1u32..=4).prop_map(|(i, c)| Step::Resize(i, c)),
        (0i64..5000, 1u32..=50).prop_map(|(id, w)| Step::Add(id, w)),
        any::<prop::sample::Index>().prop_map(Step::Remove),
        (any::<prop::sample::Index>(), 1u32..=50).prop_map(|(i, w)| Step::Reweigh(i, w)),
    ]
}

/// The current sets, and the change a step makes to them.
fn resolve(
    step: &Step,
    nodes: &mut BTreeMap<String, u32>,
    apps: &mut BTreeMap<AppId, u32>,
) -> Option<Change> {
    let pick_node = |i: &prop::sample::Index, nodes: &BTreeMap<String, u32>| {
        (!nodes.is_empty())
            .then(|| nodes.keys().nth(i.index(nodes.len())).cloned())
            .flatten()
    };
    let pick_app = |i: &prop::sample::Index, apps: &BTreeMap<AppId, u32>| {
        (!apps.is_empty())
            .then(|| apps.keys().nth(i.index(apps.len())).copied())
            .flatten()
    };
    Some(match step {
        Step::Join(id, capacity) => {
            nodes.insert(id.clone(), *capacity);
            Change::NodeJoined {
                id: id.clone(),
                capacity: *capacity,
            }
        }
        Step::Leave(i) => {
            let id = pick_node(i, nodes)?;
            nodes.remove(&id);
            Change::NodeLeft { id }
        }
        Step::Resize(i, capacity) => {
            let id = pick_node(i, nodes)?;
            nodes.insert(id.clone(), *capacity);
            Change::NodeJoined {
                id,
                capacity: *capacity,
            }
        }
        Step::Add(id, weight) => {
            apps.insert(*id, *weight);
            Change::AppAdded {
                id: *id,
                weight: *weight,
            }
        }
        Step::Remove(i) => {
            let id = pick_app(i, apps)?;
            apps.remove(&id);
            Change::AppRemoved { id }
        }
        Step::Reweigh(i, weight) => {
            let id = pick_app(i, apps)?;
            apps.insert(id, *weight);
            Change::AppAdded {
                id,
                weight: *weight,
            }
        }
    })
}

/// Candidate lists by node id, so that tables with different slots compare.
fn lists_by_id(a: &Assignment) -> Vec<Vec<String>> {
    a.apps
        .candidates()
        .lists()
        .iter()
        .map(|list| {
            list.iter()
                .take_while(|&&s| s != nodes::NONE)
                .map(|&s| a.nodes.id(s).to_owned())
                .collect()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The placement is the definition computed naively (full order, every node tried).
    #[test]
    fn placement_matches_the_definition(
        nodes in node_set(),
        apps in app_set(60, 150),
        bound in bound_strategy(),
    ) {
        let a = Assignment::build(nodes.clone(), apps.clone(), bound).unwrap();
        prop_assert_eq!(owners(a.placement()), reference(&nodes, &apps, bound));
    }

    /// Same sets in any order: same owners.
    #[test]
    fn owners_do_not_depend_on_input_order(
        nodes in node_set(),
        apps in app_set(20, 300),
        bound in bound_strategy(),
        seed in any::<u64>(),
    ) {
        let a = Assignment::build(nodes.clone(), apps.clone(), bound).unwrap();
        let (mut nodes, mut apps) = (nodes, apps);
        let n = nodes.len();
        nodes.rotate_left(seed as usize % n);
        nodes.reverse();
        apps.reverse();
        if !apps.is_empty() {
            let m = apps.len();
            apps.rotate_left((seed >> 20) as usize % m);
        }
        let b = Assignment::build(nodes, apps, bound).unwrap();
        prop_assert_eq!(owners(a.placement()), owners(b.placement()));
        prop_assert_eq!(a.placement().nodes(), b.placement().nodes());
    }

    /// The bound holds for arbitrary weights and capacities: the hard one under its
    /// precondition, the weaker one always.
    #[test]
    fn the_bound_holds(
        nodes in node_set(),
        apps in app_set(1000, 400),
        ppm in 0u32..=300_000,
    ) {
        let a = Assignment::build(nodes, apps.clone(), eps(f64::from(ppm) / 1e6)).unwrap();
        let max_weight = apps.iter().map(|&(_, w)| w).max().unwrap_or(0);
        check_bound(a.placement(), max_weight)?;
    }

    /// Many light apps: the precondition holds, and with it the hard bound.
    #[test]
    fn the_hard_bound_holds_under_its_precondition(
        nodes in node_set(),
        apps in app_set(4, 2000),
        ppm in 50_000u32..=300_000,
    ) {
        let a = Assignment::build(nodes, apps.clone(), eps(f64::from(ppm) / 1e6)).unwrap();
        let p = a.placement();
        if p.bound_guaranteed() {
            prop_assert_eq!(p.overflowed(), 0);
            for node in p.nodes() {
                prop_assert!(node.owned_weight() <= node.limit().unwrap());
                prop_assert!(node.owned_weight() as f64 <= (1.0 + f64::from(ppm) / 1e6) * node.fair_share() + 1e-6);
            }
        }
        check_bound(p, 4)?;
    }

    /// Incremental == from scratch, after any sequence of joins, leaves, capacity changes, app
    /// additions, removals and weight changes, applied one at a time or in batches; the
    /// candidate lists too (by node id).
    #[test]
    fn incremental_equals_from_scratch(
        start_nodes in node_set(),
        start_apps in app_set(50, 200),
        steps in prop::collection::vec(step(), 1..40),
        batch in 1usize..5,
        bound in bound_strategy(),
    ) {
        let mut nodes: BTreeMap<String, u32> = start_nodes.iter().cloned().collect();
        let mut apps: BTreeMap<AppId, u32> = start_apps.iter().copied().collect();
        let mut a = Assignment::build(start_nodes, start_apps, bound).unwrap();
        for chunk in steps.chunks(batch) {
            let changes: Vec<Change> = chunk.iter().filter_map(|s| resolve(s, &mut nodes, &mut apps)).collect();
            a.apply(changes).unwrap();
            let fresh = Assignment::build(nodes.clone(), apps.clone(), bound).unwrap();
            prop_assert_eq!(owners(a.placement()), owners(fresh.placement()));
            prop_assert_eq!(a.placement().nodes(), fresh.placement().nodes());
            prop_assert_eq!(a.placement().overflowed(), fresh.placement().overflowed());
            prop_assert_eq!(lists_by_id(&a), lists_by_id(&fresh));
        }
        // And `set_nodes` to the final live set is a no-op.
        let before = owners(a.placement());
        a.set_nodes(nodes.clone()).unwrap();
        prop_assert_eq!(owners(a.placement()), before);
    }

    /// A join then the same node's leave gives back exactly the first placement.
    #[test]
    fn join_then_leave_restores_the_placement(
        nodes in node_set(),
        apps in app_set(30, 300),
        joiner in "[f-h]{1,3}",
        bound in bound_strategy(),
    ) {
        let mut a = Assignment::build(nodes, apps, bound).unwrap();
        let before = a.placement().clone();
        a.node_joined(joiner.clone(), 2).unwrap();
        a.node_left(joiner).unwrap();
        prop_assert_eq!(owners(a.placement()), owners(&before));
        prop_assert_eq!(a.placement().nodes(), before.nodes());
    }

    /// With a bound that does not bind, a join moves apps only to the new node and a leave
    /// moves only the leaver's apps.
    #[test]
    fn without_a_binding_bound_only_the_necessary_apps_move(
        nodes in node_set(),
        apps in app_set(30, 300),
        joiner in "[f-h]{1,3}",
        leaver in any::<prop::sample::Index>(),
    ) {
        let leaver = nodes[leaver.index(nodes.len())].0.clone();
        let mut a = Assignment::build(nodes, apps, LoadBound::Unbounded).unwrap();
        let before = owners(a.placement());
        a.node_joined(joiner.clone(), 1).unwrap();
        let joined = owners(a.placement());
        for (app, owner) in &joined {
            prop_assert!(*owner == before[app] || owner.as_deref() == Some(joiner.as_str()));
        }
        a.node_left(leaver.clone()).unwrap();
        for (app, owner) in owners(a.placement()) {
            prop_assert!(owner == joined[&app] || joined[&app].as_deref() == Some(leaver.as_str()));
        }
    }

    /// With a binding bound, an app changes owner on a join or a leave only if its first
    /// choice (the plain ring's owner) changed, or the bound displaced it (it is not on its
    /// first choice) before or after.
    #[test]
    fn with_a_binding_bound_only_first_choice_changes_and_displaced_apps_move(
        nodes in node_set(),
        apps in app_set(30, 300),
        joiner in "[f-h]{1,3}",
        leaver in any::<prop::sample::Index>(),
        ppm in 0u32..=200_000,
    ) {
        let leaver = nodes[leaver.index(nodes.len())].0.clone();
        let ids = |nodes: &Placement| nodes.nodes().iter().map(|n| n.id().to_owned()).collect::<Vec<_>>();
        let mut a = Assignment::build(nodes, apps, eps(f64::from(ppm) / 1e6)).unwrap();
        let mut previous = a.placement().clone();
        for change in [Change::NodeJoined { id: joiner, capacity: 1 }, Change::NodeLeft { id: leaver }] {
            let next = a.apply([change]).unwrap();
            let (ring_before, ring_after) = (
                Ring::new(RingKind::Rendezvous, ids(&previous)).unwrap(),
                Ring::new(RingKind::Rendezvous, ids(&next)).unwrap(),
            );
            for ((app, old), (_, new)) in previous.owners().zip(next.owners()) {
                if old == new {
                    continue;
                }
                let (first_before, first_after) = (ring_before.owner_of_app(app), ring_after.owner_of_app(app));
                prop_assert!(
                    first_before != first_after || old != first_before || new != first_after,
                    "app {} moved {:?} -> {:?} with first choice {:?} throughout", app, old, new, first_before
                );
            }
            previous = next;
        }
    }
}
