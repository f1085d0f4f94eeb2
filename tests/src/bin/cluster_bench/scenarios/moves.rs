//! What failover and handoff share: picking the node to take away (the one holding the most
//! apps) and watching its apps move to the nodes that remain.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use cluster_tests::{Api, Id, wait};
use tokio::time::Instant;

use crate::setup::{Bench, MOVE_TIMEOUT, all_apps, settled};

/// What `adopted_by` means, as printed with the failover and handoff figures.
pub const ADOPTED_BY: &str = "adopted_by is the node holding the app's lease in the store: the new \
    owner's worker takes it in Store::adopt_app (fencing the dead holder's epoch, or after the \
    leaving node released it) and then probes the RUNNING app at once (attach), never restarting it";

/// The node a scenario takes away, and where its apps are watched from.
pub struct Target {
    /// Its index in the cluster.
    pub index: usize,
    pub id: String,
    /// How many apps of the scenario it holds.
    pub holds: usize,
    /// The API of a node that stays.
    pub survivor: Api,
    /// The ids of the nodes that stay.
    pub remaining: BTreeSet<String>,
}

/// The running node holding the most apps of `ids`; prints `{scenario}: {signal} of` it.
pub async fn busiest_node(bench: &Bench, ids: &[Id], scenario: &str, signal: &str) -> Target {
    let apps = all_apps(&bench.first_api())
        .await
        .unwrap_or_else(|error| panic!("listing apps: {error}"));
    let mut held: BTreeMap<String, usize> = BTreeMap::new();
    for id in ids {
        if let Some(holder) = apps.get(id).and_then(|app| app.adopted_by.clone()) {
            *held.entry(holder).or_default() += 1;
        }
    }
    eprintln!("apps held per node: {held:?}");
    let Some((holder, holds)) = held.into_iter().max_by_key(|(_, count)| *count) else {
        panic!("no app is held by any node");
    };
    let Some(index) = bench
        .cluster
        .live()
        .into_iter()
        .find(|index| bench.cluster.node(*index).id == holder)
    else {
        panic!("{holder} holds apps but does not run");
    };
    eprintln!(
        "{scenario}: {signal} of {holder}, which holds {holds} of {} apps",
        ids.len()
    );
    let mut remaining = bench.cluster.live_ids();
    remaining.remove(&holder);
    Target {
        index,
        survivor: bench.api_other_than(&holder),
        id: holder,
        holds,
        remaining,
    }
}

/// Polls the survivor of `target` after it went away until every app of `ids` is RUNNING and
/// adopted by its owner among the remaining nodes; answers when every owner was first seen
/// remaining (if seen before the end) and when all were adopted.
pub async fn watch_moves(
    target: &Target,
    ids: &[Id],
    since: Instant,
) -> (Option<Instant>, Instant) {
    let api = &target.survivor;
    let live = &target.remaining;
    let wanted: BTreeSet<Id> = ids.iter().cloned().collect();
    let owners_live: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let (_, adopted) = wait::poll_until(MOVE_TIMEOUT, || {
        let owners_live = owners_live.clone();
        let wanted = &wanted;
        async move {
            let apps = all_apps(api).await?;
            let all_live = wanted.iter().all(|id| {
                apps.get(id)
                    .and_then(|app| app.owner.as_ref())
                    .is_some_and(|owner| live.contains(owner))
            });
            if all_live
                && let Ok(mut first) = owners_live.lock()
                && first.is_none()
            {
                *first = Some(Instant::now());
            }
            settled(api, wanted, live).await
        }
    })
    .await
    .unwrap_or_else(|timed_out| {
        panic!(
            "the apps of {} were not all adopted by live owners {:?} after it went away; last seen: {}",
            target.id,
            since.elapsed(),
            timed_out.last
        )
    });
    let first = owners_live.lock().ok().and_then(|first| *first);
    (first, adopted)
}
