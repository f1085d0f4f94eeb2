//! Ephemeral keys and the end of a session: whose keys they are, and what closing, losing or
//! crashing a session does to its ephemerals and its locks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::connection::ConnectionState;
use crate::ensure;
use crate::error::RegistryError;
use crate::event::{EventKind, Mode};
use crate::registry::{Registry, RegistryExt};
use crate::testkit::child::ChildPlan;
use crate::testkit::{
    CaseResult, Context, Environment, Failure, connected, expect_event, expect_next,
    spawn_crash_child,
};

use super::{event_wait, session_end_wait};

use EventKind::{Added, Removed};

pub async fn ephemeral_of_another_session_is_not_overwritten<E: Environment>(
    env: Arc<E>,
) -> CaseResult {
    let owner = connected(&*env).await?;
    let other = connected(&*env).await?;
    let key = "/conformance/owned/node";
    owner
        .put(key, b"mine", Mode::Ephemeral)
        .await
        .context("put ephemeral")?;
    for mode in [Mode::Ephemeral, Mode::Persistent] {
        let outcome = other.put(key, b"theirs", mode).await;
        ensure!(
            matches!(outcome, Err(RegistryError::Conflict { .. })),
            "a {mode:?} put over another live session's ephemeral key should fail with Conflict, got {outcome:?}"
        );
    }
    let value = owner.get(key).await.context("get")?;
    ensure!(
        value.as_deref() == Some(&b"mine"[..]),
        "the owner's value must be intact, got {value:?}"
    );
    owner
        .put(key, b"mine-2", Mode::Ephemeral)
        .await
        .context("the owner overwriting its own key")?;
    owner.close().await.context("close")?;
    other.close().await.context("close")
}

pub async fn close_removes_ephemerals_and_frees_locks<E: Environment>(env: Arc<E>) -> CaseResult {
    let watcher = connected(&*env).await?;
    let leaver = connected(&*env).await?;
    let root = "/conformance/close";
    let mut events = watcher.subscribe(root).await.context("subscribe")?;
    leaver
        .put(&format!("{root}/e1"), b"one", Mode::Ephemeral)
        .await
        .context("put e1")?;
    leaver
        .put(&format!("{root}/e2"), b"two", Mode::Ephemeral)
        .await
        .context("put e2")?;
    leaver
        .put(&format!("{root}/p"), b"kept", Mode::Persistent)
        .await
        .context("put p")?;
    let lock = format!("{root}/lock");
    let guard = leaver.lock(&lock, None).await.context("lock")?;
    for _ in 0..3 {
        expect_event(&mut events, event_wait(&*env), "Added for each key", |e| {
            e.kind == Added
        })
        .await?;
    }
    leaver.close().await.context("close")?;
    ensure!(
        !guard.is_valid(),
        "a guard of a closed client should report itself invalid"
    );
    let mut removed = BTreeMap::new();
    for _ in 0..2 {
        let event = expect_event(
            &mut events,
            session_end_wait(&*env),
            "Removed for each ephemeral of the closed client",
            |e| e.kind == Removed,
        )
        .await?;
        removed.insert(event.path.clone(), event.value_str().into_owned());
    }
    let expected = BTreeMap::from([
        (format!("{root}/e1"), "one".to_owned()),
        (format!("{root}/e2"), "two".to_owned()),
    ]);
    ensure!(
        removed == expected,
        "expected Removed with last values {expected:?}, got {removed:?}"
    );
    let kept = watcher.get(&format!("{root}/p")).await.context("get p")?;
    ensure!(
        kept.as_deref() == Some(&b"kept"[..]),
        "persistent keys survive their writer's session, got {kept:?}"
    );
    let got = watcher
        .try_lock(&lock, session_end_wait(&*env))
        .await
        .context("lock after close")?;
    ensure!(got.is_some(), "the closed client's lock should be free");
    watcher.close().await.context("close")
}

pub async fn session_loss_recreates_ephemerals_and_invalidates_locks<E: Environment>(
    env: Arc<E>,
) -> CaseResult {
    let watcher = connected(&*env).await?;
    let victim = connected(&*env).await?;
    let root = "/conformance/session-loss";
    let key = format!("{root}/node");
    let lock = format!("{root}/lock");
    let mut events = watcher.subscribe(root).await.context("subscribe")?;
    let mut states = victim.connection_listener();
    victim
        .put(&key, b"alive", Mode::Ephemeral)
        .await
        .context("put")?;
    expect_next(&mut events, event_wait(&*env), Added, &key, b"alive").await?;
    let guard = victim.lock(&lock, None).await.context("lock")?;
    env.expire_session(&victim)
        .await
        .context("expiring the session")?;
    let mut seen = Vec::new();
    let wait = session_end_wait(&*env) + Duration::from_secs(10);
    let recovered = tokio::time::timeout(wait, async {
        while let Some(state) = states.next().await {
            seen.push(state);
            if seen.contains(&ConnectionState::SessionLost) && state == ConnectionState::Connected {
                return true;
            }
        }
        false
    })
    .await;
    ensure!(
        recovered == Ok(true),
        "after its session expired the client should report SessionLost and then Connected within {wait:?}; saw {seen:?}"
    );
    ensure!(
        !guard.is_valid(),
        "a lock guard of the lost session must report itself invalid"
    );
    expect_next(&mut events, event_wait(&*env), Removed, &key, b"alive").await?;
    expect_next(&mut events, event_wait(&*env), Added, &key, b"alive").await?;
    let value = watcher.get(&key).await.context("get")?;
    ensure!(
        value.as_deref() == Some(&b"alive"[..]),
        "the ephemeral should be re-created in the new session, got {value:?}"
    );
    let got = watcher
        .try_lock(&lock, session_end_wait(&*env))
        .await
        .context("lock")?;
    ensure!(got.is_some(), "the lost session's lock should be free");
    // The re-created key belongs to the new session: closing the client removes it.
    victim.close().await.context("close")?;
    expect_next(
        &mut events,
        session_end_wait(&*env),
        Removed,
        &key,
        b"alive",
    )
    .await?;
    watcher.close().await.context("close")
}

pub async fn crash_of_another_process_removes_its_ephemerals_and_frees_its_lock<E: Environment>(
    env: Arc<E>,
    module_path: &str,
) -> CaseResult {
    let root = "/conformance/crash";
    let watcher = connected(&*env).await?;
    let mut events = watcher.subscribe(root).await.context("subscribe")?;
    let plan = ChildPlan {
        ephemerals: (1..=3)
            .map(|i| (format!("{root}/node-{i}"), format!("value-{i}")))
            .collect(),
        lock: format!("{root}/lock"),
    };
    let child = spawn_crash_child(&*env, module_path, &plan).await?;
    for _ in 0..3 {
        expect_event(
            &mut events,
            event_wait(&*env),
            "Added for each of the child's ephemerals",
            |e| e.kind == Added,
        )
        .await?;
    }
    let held = watcher
        .try_lock(&plan.lock, Duration::from_millis(300))
        .await
        .context("lock while the child holds it")?;
    ensure!(
        held.is_none(),
        "the lock must not be free while the child holds it"
    );
    let child_token = child.fencing_token;
    child.kill().await?;
    let killed = Instant::now();
    let mut removed = BTreeMap::new();
    for _ in 0..3 {
        let event = expect_event(
            &mut events,
            session_end_wait(&*env),
            "Removed for each ephemeral of the SIGKILLed child",
            |e| e.kind == Removed,
        )
        .await?;
        removed.insert(event.path.clone(), event.value_str().into_owned());
    }
    let expected: BTreeMap<String, String> = plan.ephemerals.iter().cloned().collect();
    ensure!(
        removed == expected,
        "expected Removed with the last values {expected:?}, got {removed:?}"
    );
    let remaining = session_end_wait(&*env).saturating_sub(killed.elapsed());
    let guard = watcher
        .try_lock(&plan.lock, remaining.max(Duration::from_secs(1)))
        .await
        .context("lock after the crash")?
        .ok_or_else(|| {
            Failure(format!(
                "the SIGKILLed child's lock should be free within {:?}",
                session_end_wait(&*env)
            ))
        })?;
    ensure!(
        guard.fencing_token() > child_token,
        "the new holder's fencing token {} must exceed the crashed holder's {child_token}",
        guard.fencing_token()
    );
    drop(guard);
    watcher.close().await.context("close")
}
