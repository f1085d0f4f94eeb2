use proptest::prelude::*;

use super::*;

fn host(name: &str) -> Option<HostId> {
    Some(HostId::new(name))
}

fn live(nodes: &[(&str, Option<&str>)]) -> LiveSet {
    LiveSet::new(
        RingKind::default(),
        nodes
            .iter()
            .map(|(id, on)| LiveNode::new(*id, on.map(HostId::new))),
    )
    .unwrap()
}

#[test]
fn an_app_without_a_host_goes_to_any_node_as_on_the_plain_ring() {
    let set = live(&[("a", Some("h1")), ("b", Some("h2")), ("c", None)]);
    let ring = Ring::new(RingKind::default(), ["a", "b", "c"]).unwrap();
    for app in 0..300 {
        assert_eq!(
            set.owner(&AppPlacement::from(app)).ok(),
            ring.owner_of_app(app)
        );
    }
}

#[test]
fn a_pinned_app_goes_only_to_nodes_on_its_host() {
    let set = live(&[
        ("a", Some("h1")),
        ("b", Some("h2")),
        ("c", Some("h2")),
        ("d", None),
    ]);
    for app in 0..300 {
        let on_h1 = set.owner(&AppPlacement::new(app, host("h1"))).unwrap();
        assert_eq!(on_h1, "a");
        let on_h2 = set.owner(&AppPlacement::new(app, host("h2"))).unwrap();
        assert!(on_h2 == "b" || on_h2 == "c", "app {app} on {on_h2}");
    }
    assert_eq!(
        set.owner(&AppPlacement::new(7, host("h3"))),
        Err(Unowned::NoLiveNodeOnHost(HostId::new("h3")))
    );
    assert!(set.has_host(&HostId::new("h2")) && !set.has_host(&HostId::new("h3")));
    assert_eq!(set.host_of("b"), host("h2").as_ref());
    assert_eq!(set.host_of("d"), None);
    assert_eq!(
        LiveSet::empty(RingKind::default()).owner(&AppPlacement::from(1)),
        Err(Unowned::NoLiveNode)
    );
}

#[test]
fn the_reason_names_the_host() {
    let reason = Unowned::NoLiveNodeOnHost(HostId::new("vm/3d12")).to_string();
    assert!(reason.contains("vm/3d12") && reason.contains("no console node is live"));
}

fn hosts_strategy() -> impl Strategy<Value = Vec<(String, Option<u8>)>> {
    prop::collection::vec((0u16..40, prop::option::of(0u8..4)), 1..12).prop_map(|nodes| {
        nodes
            .into_iter()
            .map(|(id, host)| (format!("10.0.0.{id}:10000"), host))
            .collect()
    })
}

fn build(nodes: &[(String, Option<u8>)]) -> LiveSet {
    LiveSet::new(
        RingKind::default(),
        nodes
            .iter()
            .map(|(id, h)| LiveNode::new(id.clone(), h.map(|h| HostId::new(format!("h{h}"))))),
    )
    .unwrap()
}

proptest! {
    /// Pinning an app to its owner's own host (what a start records) never moves it.
    #[test]
    fn pinning_to_the_owners_host_keeps_the_owner(nodes in hosts_strategy(), app in 0i64..100_000) {
        let set = build(&nodes);
        let owner = set.owner(&AppPlacement::from(app)).unwrap().to_owned();
        if let Some(on) = set.host_of(&owner).cloned() {
            prop_assert_eq!(set.owner(&AppPlacement::new(app, Some(on))).unwrap(), owner.as_str());
        }
    }

    /// The owner is a pure function of the set: the order nodes are listed in does not matter,
    /// and a pinned app's owner is on its host.
    #[test]
    fn the_owner_depends_on_the_set_only(nodes in hosts_strategy(), app in 0i64..100_000, pin in 0u8..4) {
        let forward = build(&nodes);
        let mut reversed = nodes.clone();
        reversed.reverse();
        let backward = build(&reversed);
        let placement = AppPlacement::new(app, Some(HostId::new(format!("h{pin}"))));
        prop_assert_eq!(forward.owner(&placement), backward.owner(&placement));
        if let Ok(owner) = forward.owner(&placement) {
            prop_assert_eq!(forward.host_of(owner), placement.host.as_ref());
        }
    }

    /// A node joining on another host never takes a pinned app.
    #[test]
    fn a_join_elsewhere_moves_no_pinned_app(nodes in hosts_strategy(), app in 0i64..100_000) {
        let before = build(&nodes);
        let mut more = nodes.clone();
        more.push(("10.9.9.9:10000".to_owned(), Some(9)));
        let after = build(&more);
        let placement = AppPlacement::new(app, Some(HostId::new("h0")));
        prop_assert_eq!(before.owner(&placement), after.owner(&placement));
    }
}
