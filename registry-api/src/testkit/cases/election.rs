//! Leader election built on the registry.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use crate::election::{LeaderContender, LeaderElection, LeaderRetrieval, LeaderSessionId};
use crate::ensure;
use crate::registry::Registry;
use crate::testkit::{CaseResult, Context, Environment, connected};

use super::{event_wait, session_end_wait};

/// Records grants and revocations.
#[derive(Default)]
struct Contender {
    granted: std::sync::Mutex<Vec<LeaderSessionId>>,
    revocations: AtomicU32,
    changed: tokio::sync::Notify,
}

#[async_trait]
impl LeaderContender for Contender {
    async fn grant_leadership(&self, session_id: LeaderSessionId) {
        self.granted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(session_id);
        self.changed.notify_waiters();
    }

    async fn revoke_leadership(&self) {
        self.revocations.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }
}

impl Contender {
    fn grants(&self) -> Vec<LeaderSessionId> {
        self.granted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn wait_until(
        &self,
        within: Duration,
        what: &str,
        done: impl Fn(&Self) -> bool,
    ) -> CaseResult {
        let outcome = tokio::time::timeout(within, async {
            loop {
                let changed = self.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if done(self) {
                    return;
                }
                changed.await;
            }
        })
        .await;
        ensure!(outcome.is_ok(), "expected {what} within {within:?}");
        Ok(())
    }
}

pub async fn leader_election_grants_one_and_fails_over<E: Environment>(env: Arc<E>) -> CaseResult {
    let path = "/conformance/election";
    let first_client: Arc<dyn Registry> = Arc::new(connected(&*env).await?);
    let second_client: Arc<dyn Registry> = Arc::new(connected(&*env).await?);
    let observer: Arc<dyn Registry> = Arc::new(connected(&*env).await?);
    let retrieval = LeaderRetrieval::start(observer.clone(), path)
        .await
        .context("retrieval")?;
    let mut leader_changes = retrieval.watch();
    let first = Arc::new(Contender::default());
    let first_election =
        LeaderElection::start(first_client.clone(), path, "first:1", first.clone())
            .context("start first")?;
    first
        .wait_until(
            event_wait(&*env),
            "the only contender to be granted leadership",
            |c| !c.grants().is_empty(),
        )
        .await?;
    let second = Arc::new(Contender::default());
    let _second_election =
        LeaderElection::start(second_client.clone(), path, "second:2", second.clone())
            .context("start second")?;
    let first_term = first.grants()[0];
    ensure!(
        first_election.has_leadership(first_term),
        "the first contender should know it leads with {first_term}"
    );
    let address_seen = tokio::time::timeout(
        event_wait(&*env),
        leader_changes.wait_for(|l| l.as_ref().is_some_and(|l| l.address == "first:1")),
    )
    .await
    .map(|seen| seen.is_ok());
    ensure!(
        address_seen == Ok(true),
        "retrieval should learn the first leader's address, has {:?}",
        retrieval.current()
    );
    ensure!(
        second.grants().is_empty(),
        "only one contender may lead at a time"
    );
    first_client.close().await.context("closing the leader")?;
    first
        .wait_until(event_wait(&*env), "the closed leader to be revoked", |c| {
            c.revocations.load(Ordering::SeqCst) == 1
        })
        .await?;
    second
        .wait_until(
            session_end_wait(&*env) + event_wait(&*env),
            "the second contender to take over",
            |c| !c.grants().is_empty(),
        )
        .await?;
    let second_term = second.grants()[0];
    ensure!(
        second_term > first_term,
        "a new term must have a greater session id: {second_term} after {first_term}"
    );
    let address_seen = tokio::time::timeout(
        event_wait(&*env),
        leader_changes.wait_for(|l| l.as_ref().is_some_and(|l| l.address == "second:2")),
    )
    .await
    .map(|seen| seen.is_ok());
    ensure!(
        address_seen == Ok(true),
        "retrieval should learn the new leader's address, has {:?}",
        retrieval.current()
    );
    drop(retrieval);
    second_client.close().await.context("close")?;
    observer.close().await.context("close")
}
