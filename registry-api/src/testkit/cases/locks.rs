//! Locks: exclusion, timeouts, handing over on release or drop, fencing tokens.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ensure;
use crate::error::RegistryError;
use crate::registry::{Registry, RegistryExt};
use crate::testkit::{CaseResult, Context, Environment, Failure, connected};

pub async fn lock_excludes_another_holder<E: Environment>(env: Arc<E>) -> CaseResult {
    let a = connected(&*env).await?;
    let b = connected(&*env).await?;
    let key = "/conformance/locks/exclusive";
    let guard = a
        .lock(key, Some(Duration::from_secs(10)))
        .await
        .context("a: lock")?;
    ensure!(guard.is_valid(), "a fresh guard should be valid");
    let second = b
        .try_lock(key, Duration::from_millis(500))
        .await
        .context("b: try_lock")?;
    ensure!(
        second.is_none(),
        "b must not get the lock while a holds it, got {second:?}"
    );
    let again = a
        .try_lock(key, Duration::from_millis(300))
        .await
        .context("a: second lock")?;
    ensure!(
        again.is_none(),
        "locks are not re-entrant: a's second lock must wait, got {again:?}"
    );
    guard.release().await.context("a: release")?;
    let got = b
        .try_lock(key, Duration::from_secs(10))
        .await
        .context("b: lock after release")?;
    ensure!(got.is_some(), "b should get the lock once a released it");
    a.close().await.context("close")?;
    b.close().await.context("close")
}

pub async fn timed_lock_returns_when_held<E: Environment>(env: Arc<E>) -> CaseResult {
    let a = connected(&*env).await?;
    let b = connected(&*env).await?;
    let key = "/conformance/locks/timed";
    let _guard = a.lock(key, None).await.context("a: lock")?;
    let wait = Duration::from_millis(700);
    let started = Instant::now();
    let outcome = b.lock(key, Some(wait)).await;
    let took = started.elapsed();
    ensure!(
        matches!(&outcome, Err(RegistryError::LockTimeout { path, .. }) if path == key),
        "a timed lock on a held path should fail with LockTimeout, got {outcome:?}"
    );
    ensure!(
        took >= wait,
        "the timed lock gave up after {took:?}, before its timeout {wait:?}"
    );
    ensure!(
        took <= wait + env.lock_wake_bound() + Duration::from_secs(2),
        "the timed lock should give up soon after {wait:?}, took {took:?}"
    );
    a.close().await.context("close")?;
    b.close().await.context("close")
}

pub async fn release_lets_a_waiter_in_promptly<E: Environment>(env: Arc<E>) -> CaseResult {
    let a = connected(&*env).await?;
    let b = Arc::new(connected(&*env).await?);
    let key = "/conformance/locks/handoff";
    let guard = a.lock(key, None).await.context("a: lock")?;
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move {
            let guard = b.lock(key, None).await;
            (guard, Instant::now())
        })
    };
    // Let the waiter queue up; whether it has is not observable, and a late waiter still passes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    ensure!(
        !waiter.is_finished(),
        "the waiter got the lock while a still held it"
    );
    let released = Instant::now();
    guard.release().await.context("a: release")?;
    let bound = env.lock_wake_bound() + Duration::from_secs(2);
    let (got, at) = tokio::time::timeout(bound + Duration::from_secs(5), waiter)
        .await
        .map_err(|_| {
            Failure(format!(
                "the waiter did not get the lock within {:?} of the release",
                bound + Duration::from_secs(5)
            ))
        })?
        .map_err(|error| Failure(format!("the waiter panicked: {error}")))?;
    let guard = got.context("b: lock")?;
    let delay = at.saturating_duration_since(released);
    ensure!(
        delay <= bound,
        "the waiter should wake promptly on release (within {bound:?}), took {delay:?}"
    );
    drop(guard);
    a.close().await.context("close")?;
    b.close().await.context("close")
}

pub async fn dropping_a_guard_releases_the_lock<E: Environment>(env: Arc<E>) -> CaseResult {
    let a = connected(&*env).await?;
    let b = connected(&*env).await?;
    let key = "/conformance/locks/drop";
    drop(a.lock(key, None).await.context("a: lock")?);
    let got = b
        .try_lock(key, Duration::from_secs(10))
        .await
        .context("b: lock")?;
    ensure!(got.is_some(), "a dropped guard should free the lock for b");
    a.close().await.context("close")?;
    b.close().await.context("close")
}

pub async fn fencing_tokens_strictly_increase<E: Environment>(env: Arc<E>) -> CaseResult {
    let clients = [
        connected(&*env).await?,
        connected(&*env).await?,
        connected(&*env).await?,
    ];
    let key = "/conformance/locks/fencing";
    let mut tokens = Vec::new();
    for round in 0..9 {
        let guard = clients[round % 3]
            .lock(key, Some(Duration::from_secs(10)))
            .await
            .context(format_args!("round {round}: lock"))?;
        tokens.push(guard.fencing_token());
        guard.release().await.context("release")?;
    }
    ensure!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "fencing tokens must strictly increase across holders, got {tokens:?}"
    );
    for client in clients {
        client.close().await.context("close")?;
    }
    Ok(())
}
