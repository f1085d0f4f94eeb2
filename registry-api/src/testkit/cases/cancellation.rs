//! Conformance cases about calls dropped half-way: what the `# Cancellation safety` sections of
//! [`crate::Registry`] promise.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::{
    CaseResult, Context, Environment, Failure, connected, expect_event, expect_next,
};
use crate::connection::ConnectionState;
use crate::ensure;
use crate::error::RegistryError;
use crate::event::{EventKind, Mode};
use crate::registry::{Registry, RegistryExt};

/// How long a waiter is given to queue up behind the holder. Whether it has is not observable
/// through the trait; one that queued up late only makes the case check less, never fail.
const QUEUE_UP: Duration = Duration::from_millis(300);

/// Where further `lock` calls are dropped: from before their first attempt was sent to well
/// into their wait, so that every stage of a backend's acquisition is cut once.
const DROP_AFTER_MS: [u64; 8] = [0, 1, 2, 5, 10, 20, 50, 150];

/// How long a session's end may take to show: the session timeout plus slack for the backend to
/// notice and for the event to travel.
fn session_end_wait<E: Environment>(env: &E) -> Duration {
    env.session_timeout() + Duration::from_secs(5)
}

/// A holds the lock; b's `lock` calls are dropped while they wait (one queued up before c, more
/// cut at every stage of their way in); a releases. Then c, waiting behind b, must get the lock
/// promptly, with a greater fencing token, while b's session lives on (so no session end freed
/// anything); and b itself must get it once c releases, which a claim left by one of its
/// dropped calls would prevent (locks are not re-entrant).
pub async fn a_dropped_lock_call_leaves_no_claim_behind<E: Environment>(env: Arc<E>) -> CaseResult {
    let a = connected(&*env).await?;
    let b = connected(&*env).await?;
    let c = Arc::new(connected(&*env).await?);
    let key = "/conformance/locks/cancelled";
    let mut b_states = b.connection_listener();
    let held = a.lock(key, None).await.context("a: lock")?;
    let a_token = held.fencing_token();

    let mut b_waiting = Box::pin(b.lock(key, None));
    tokio::select! {
        got = &mut b_waiting => {
            return Err(Failure(format!("b got the lock while a held it: {got:?}")));
        }
        () = tokio::time::sleep(QUEUE_UP) => {}
    }
    let c_waiter = {
        let c = c.clone();
        tokio::spawn(async move {
            let got = c.lock(key, None).await;
            (got, Instant::now())
        })
    };
    // b's call keeps waiting while c queues up behind it.
    tokio::select! {
        got = &mut b_waiting => {
            return Err(Failure(format!("b got the lock while a held it: {got:?}")));
        }
        () = tokio::time::sleep(QUEUE_UP) => {}
    }
    drop(b_waiting);
    for after in DROP_AFTER_MS {
        let cut = Duration::from_millis(after);
        if let Ok(got) = tokio::time::timeout(cut, b.lock(key, None)).await {
            return Err(Failure(format!(
                "b got the lock while a held it (call dropped after {cut:?}): {got:?}"
            )));
        }
    }
    ensure!(
        !c_waiter.is_finished(),
        "c got the lock while a still held it"
    );

    let released = Instant::now();
    held.release().await.context("a: release")?;
    let bound = env.lock_wake_bound() + Duration::from_secs(2);
    let patience = bound + Duration::from_secs(5);
    let (got, at) = tokio::time::timeout(patience, c_waiter)
        .await
        .map_err(|_| {
            Failure(format!(
                "c did not get the lock within {patience:?} of a's release: a dropped lock call \
                 of b left a claim behind"
            ))
        })?
        .map_err(|error| Failure(format!("c's waiter panicked: {error}")))?;
    let c_guard = got.context("c: lock")?;
    let delay = at.saturating_duration_since(released);
    ensure!(
        delay <= bound,
        "c should get the lock promptly once a released it (within {bound:?}), took {delay:?}: \
         a dropped lock call of b left a claim behind until something else removed it"
    );
    let c_token = c_guard.fencing_token();
    ensure!(
        c_token > a_token,
        "c's fencing token {c_token} should be greater than a's {a_token}"
    );

    c_guard.release().await.context("c: release")?;
    let again = b
        .try_lock(key, bound)
        .await
        .context("b: lock after its dropped calls")?;
    let Some(again) = again else {
        return Err(Failure(format!(
            "b could not take the lock within {bound:?} after c released it: a dropped lock \
             call of b left a claim behind, ahead of b's new one"
        )));
    };
    ensure!(
        again.fencing_token() > c_token,
        "b's fencing token {} should be greater than c's {c_token}",
        again.fencing_token()
    );
    again.release().await.context("b: release")?;

    let b_history: Vec<ConnectionState> = std::iter::from_fn(|| b_states.try_next()).collect();
    ensure!(
        !b_history.contains(&ConnectionState::SessionLost),
        "b's session must live on through the case (it did not: {b_history:?}), so that only \
         the clean-up of its dropped calls can have freed their claims"
    );
    a.close().await.context("close")?;
    b.close().await.context("close")?;
    c.close().await.context("close")
}

/// The lock is free; b's `lock` calls are cut at every stage of their acquisition (a call that
/// completed first is released). After each cut, a must get the lock promptly, with a greater
/// fencing token than any before: an acquisition that committed unseen must have been undone.
pub async fn a_lock_call_dropped_mid_acquisition_leaves_no_claim_behind<E: Environment>(
    env: Arc<E>,
) -> CaseResult {
    let a = connected(&*env).await?;
    let b = connected(&*env).await?;
    let key = "/conformance/locks/cut";
    let bound = env.lock_wake_bound() + Duration::from_secs(2);
    let mut last_token = 0;
    for after in DROP_AFTER_MS {
        let cut = Duration::from_millis(after);
        if let Ok(got) = tokio::time::timeout(cut, b.lock(key, None)).await {
            let guard = got.context(format_args!("b: lock (not cut after {cut:?})"))?;
            last_token = guard.fencing_token();
            guard.release().await.context("b: release")?;
        }
        let Some(guard) = a
            .try_lock(key, bound)
            .await
            .context(format_args!("a: lock after b's call was cut after {cut:?}"))?
        else {
            return Err(Failure(format!(
                "a could not take the free lock within {bound:?} after b's call was cut after \
                 {cut:?}: the cut acquisition left a claim behind"
            )));
        };
        ensure!(
            guard.fencing_token() > last_token,
            "fencing tokens must increase: a got {} after {last_token}",
            guard.fencing_token()
        );
        last_token = guard.fencing_token();
        guard.release().await.context("a: release")?;
    }
    a.close().await.context("close")?;
    b.close().await.context("close")
}

/// The victim holds ephemeral keys; a `put` (a new value) and a `delete` of each are dropped at
/// several points of their way; then its session expires. The rebuilt session must re-create
/// each key as the dropped `put` asked, and none that a dropped `delete` removed, whether or not
/// the dropped call had reached the server.
pub async fn dropped_writes_are_recreated_as_asked_after_session_loss<E: Environment>(
    env: Arc<E>,
) -> CaseResult {
    let watcher = connected(&*env).await?;
    let victim = connected(&*env).await?;
    let root = "/conformance/cancelled-writes";
    let mut states = victim.connection_listener();
    for after in DROP_AFTER_MS {
        for what in ["put", "delete"] {
            let key = format!("{root}/{what}-{after}");
            victim
                .put(&key, b"before", Mode::Ephemeral)
                .await
                .context(format_args!("put {key}"))?;
        }
    }
    for after in DROP_AFTER_MS {
        let cut = Duration::from_millis(after);
        let key = format!("{root}/put-{after}");
        let put = tokio::time::timeout(cut, victim.put(&key, b"asked", Mode::Ephemeral)).await;
        if let Ok(outcome) = put {
            outcome.context(format_args!("put {key} (not cut after {cut:?})"))?;
        }
        let key = format!("{root}/delete-{after}");
        if let Ok(outcome) = tokio::time::timeout(cut, victim.delete(&key)).await {
            outcome.context(format_args!("delete {key} (not cut after {cut:?})"))?;
        }
    }
    env.expire_session(&victim)
        .await
        .context("expiring the session")?;
    let wait = session_end_wait(&*env) + Duration::from_secs(10);
    let mut seen = Vec::new();
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
        "after its session expired the client should report SessionLost and then Connected \
         within {wait:?}; saw {seen:?}"
    );
    for after in DROP_AFTER_MS {
        let key = format!("{root}/put-{after}");
        let value = watcher.get(&key).await.context(format_args!("get {key}"))?;
        ensure!(
            value.as_deref() == Some(&b"asked"[..]),
            "a put dropped after {after} ms should be re-created with the value it asked for in \
             the new session, got {:?}",
            value.as_deref().map(String::from_utf8_lossy)
        );
        let key = format!("{root}/delete-{after}");
        let value = watcher.get(&key).await.context(format_args!("get {key}"))?;
        ensure!(
            value.is_none(),
            "a key whose delete was dropped after {after} ms must not come back in the new \
             session, got {:?}",
            value.as_deref().map(String::from_utf8_lossy)
        );
    }
    victim.close().await.context("close")?;
    watcher.close().await.context("close")
}

/// A `close` dropped right after it started must still complete: the other client sees the
/// ephemeral key removed, the closed client's subscription and connection listener end (which
/// no session timeout would do for it), and its calls fail with `Closed`.
pub async fn a_dropped_close_still_ends_the_session<E: Environment>(env: Arc<E>) -> CaseResult {
    let watcher = connected(&*env).await?;
    let leaver = connected(&*env).await?;
    let root = "/conformance/cancelled-close";
    let key = format!("{root}/e");
    let mut events = watcher.subscribe(root).await.context("subscribe")?;
    let mut own_events = leaver.subscribe(root).await.context("leaver: subscribe")?;
    let mut own_states = leaver.connection_listener();
    leaver
        .put(&key, b"bye", Mode::Ephemeral)
        .await
        .context("put")?;
    expect_next(
        &mut events,
        session_end_wait(&*env),
        EventKind::Added,
        &key,
        b"bye",
    )
    .await?;
    if let Ok(outcome) = tokio::time::timeout(Duration::ZERO, leaver.close()).await {
        outcome.context("close (not cut)")?;
    }
    expect_event(
        &mut events,
        session_end_wait(&*env),
        "Removed for the ephemeral key of the client whose close was dropped",
        |e| e.kind == EventKind::Removed && e.path == key,
    )
    .await?;
    let wait = session_end_wait(&*env);
    let ended = tokio::time::timeout(wait, async {
        while own_events.next().await.is_some() {}
        while own_states.next().await.is_some() {}
    })
    .await;
    ensure!(
        ended.is_ok(),
        "the closed client's subscription and connection listener should end within {wait:?} \
         although its close was dropped"
    );
    let after = leaver.get(&key).await;
    ensure!(
        after == Err(RegistryError::Closed),
        "calls after a dropped close should fail with Closed, got {after:?}"
    );
    leaver.close().await.context("closing again")?;
    watcher.close().await.context("close")
}
