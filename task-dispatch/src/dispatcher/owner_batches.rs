//! The node's owner statements in batches (issue 15): its app workers' queue reads, adoptions,
//! claims and outcomes each go through a [`Batcher`], so that a thousand workers busy at once
//! cost a few statements per batch instead of one each ([`Store::next_tasks_and_more`],
//! [`Store::adopt_apps`], [`Store::claim_tasks_of`], [`Store::finish_tasks`]).
//!
//! A worker waits for its answer as it waited for its statement; every answer is the one the
//! single call gives, so the worker's logic (and each app's order: one worker, one call at a
//! time) is unchanged.

use std::future::Future;
use std::sync::Arc;

use super::batcher::Batcher;
use crate::affinity::{HostId, LiveSet};
use crate::error::Result;
use crate::store::{
    Adoption, App, AppId, Claim, ClaimRequest, FinishRequest, MAX_OWNER_BATCH, NodeLease, Store,
    Task,
};

type Answer<T> = Result<T>;

/// Connections of each writer's own pool ([`Store::dedicated`]): it writes one batch at a
/// time, so each shape of its statements is prepared on few connections. Two, so that a
/// single call made while a connection is held can never wait for itself.
pub(super) const WRITER_CONNECTIONS: u32 = 2;

/// What adoptions batched together share: the worker's lease, this node's host, the live set
/// a holder is judged by (the same snapshot).
#[derive(Debug, Clone)]
struct AdoptKey {
    lease: NodeLease,
    host: Option<HostId>,
    live: Arc<LiveSet>,
}

impl PartialEq for AdoptKey {
    fn eq(&self, other: &Self) -> bool {
        self.lease == other.lease && self.host == other.host && Arc::ptr_eq(&self.live, &other.live)
    }
}

/// The batchers of one node. Cheap to clone.
#[derive(Debug, Clone)]
pub(super) struct OwnerBatches {
    reads: Batcher<AppId, Answer<(Option<Task>, bool)>>,
    adoptions: Batcher<(AdoptKey, AppId), Answer<Adoption>>,
    claims: Batcher<(NodeLease, ClaimRequest), Answer<Claim>>,
    outcomes: Batcher<(NodeLease, FinishRequest), Answer<(Task, App)>>,
    /// Off ([`DispatcherConfig::group_commit`]): every call is the single statement, at once.
    ///
    /// [`DispatcherConfig::group_commit`]: super::DispatcherConfig::group_commit
    group_commit: bool,
    store: Store,
    max_attempts: i64,
}

impl OwnerBatches {
    /// Starts the four writers on `store`; claims give up a task after `max_attempts`. Without
    /// `group_commit` every call goes to the store alone.
    pub(super) fn start(store: &Store, max_attempts: i64, group_commit: bool) -> Self {
        let reads = {
            let store = store.dedicated(WRITER_CONNECTIONS);
            Batcher::start(MAX_OWNER_BATCH, move |apps: Vec<AppId>| {
                let store = store.clone();
                async move { store.next_tasks_and_more(&apps).await }
            })
        };
        let adoptions = {
            let store = store.dedicated(WRITER_CONNECTIONS);
            Batcher::start(MAX_OWNER_BATCH, move |requests: Vec<(AdoptKey, AppId)>| {
                let store = store.clone();
                grouped(requests, move |key: AdoptKey, ids: Vec<AppId>| {
                    let store = store.clone();
                    async move {
                        let live = key.live.clone();
                        store
                            .adopt_apps(&key.lease, &ids, key.host.as_ref(), |node| {
                                live.contains(node)
                            })
                            .await
                    }
                })
            })
        };
        let claims = {
            let store = store.dedicated(WRITER_CONNECTIONS);
            Batcher::start(
                MAX_OWNER_BATCH,
                move |requests: Vec<(NodeLease, ClaimRequest)>| {
                    let store = store.clone();
                    grouped(
                        requests,
                        move |lease: NodeLease, group: Vec<ClaimRequest>| {
                            let store = store.clone();
                            async move { store.claim_tasks_of(&lease, &group, max_attempts).await }
                        },
                    )
                },
            )
        };
        let outcomes = {
            let store = store.dedicated(WRITER_CONNECTIONS);
            Batcher::start(
                MAX_OWNER_BATCH,
                move |requests: Vec<(NodeLease, FinishRequest)>| {
                    let store = store.clone();
                    grouped(
                        requests,
                        move |lease: NodeLease, group: Vec<FinishRequest>| {
                            let store = store.clone();
                            async move { store.finish_tasks(&lease, &group).await }
                        },
                    )
                },
            )
        };
        Self {
            reads,
            adoptions,
            claims,
            outcomes,
            group_commit,
            store: store.clone(),
            max_attempts,
        }
    }

    /// [`Store::next_task_and_more`].
    pub(super) async fn next_task_and_more(&self, app_id: AppId) -> Result<(Option<Task>, bool)> {
        if !self.group_commit {
            return self.store.next_task_and_more(app_id).await;
        }
        self.reads.call(app_id).await?
    }

    /// [`Store::adopt_app`], judging holders by `live`.
    pub(super) async fn adopt_app(
        &self,
        lease: &NodeLease,
        app_id: AppId,
        host: Option<&HostId>,
        live: Arc<LiveSet>,
    ) -> Result<Adoption> {
        if !self.group_commit {
            return self
                .store
                .adopt_app(lease, app_id, host, |node| live.contains(node))
                .await;
        }
        let key = AdoptKey {
            lease: lease.clone(),
            host: host.cloned(),
            live,
        };
        self.adoptions.call((key, app_id)).await?
    }

    /// [`Store::claim_task_of`].
    pub(super) async fn claim_task_of(
        &self,
        lease: &NodeLease,
        request: ClaimRequest,
    ) -> Result<Claim> {
        if !self.group_commit {
            let ClaimRequest { task, app, pin } = &request;
            return self
                .store
                .claim_task_of(lease, task, app, self.max_attempts, pin.as_ref())
                .await;
        }
        self.claims.call((lease.clone(), request)).await?
    }

    /// [`Store::finish_task`].
    pub(super) async fn finish_task(
        &self,
        lease: &NodeLease,
        request: FinishRequest,
    ) -> Result<(Task, App)> {
        if !self.group_commit {
            let FinishRequest {
                task,
                app,
                phase,
                outcome,
            } = request;
            return self
                .store
                .finish_task(lease, &task, &app, phase, outcome)
                .await;
        }
        self.outcomes.call((lease.clone(), request)).await?
    }
}

/// Runs `write` once per distinct key of `requests` (in practice one: the node's session),
/// with that key's requests in order; answers in the requests' order.
async fn grouped<K, R, A, F, Fut>(requests: Vec<(K, R)>, write: F) -> Vec<A>
where
    K: PartialEq,
    F: Fn(K, Vec<R>) -> Fut,
    Fut: Future<Output = Vec<A>>,
{
    let total = requests.len();
    let mut groups: Vec<(K, Vec<usize>, Vec<R>)> = Vec::new();
    for (i, (key, request)) in requests.into_iter().enumerate() {
        match groups.iter_mut().find(|(k, ..)| *k == key) {
            Some((_, indexes, group)) => {
                indexes.push(i);
                group.push(request);
            }
            None => groups.push((key, vec![i], vec![request])),
        }
    }
    let mut answers: Vec<Option<A>> = (0..total).map(|_| None).collect();
    for (key, indexes, group) in groups {
        for (i, answer) in indexes.into_iter().zip(write(key, group).await) {
            answers[i] = Some(answer);
        }
    }
    answers.into_iter().flatten().collect()
}
