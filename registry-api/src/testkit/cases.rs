//! The conformance cases. Each takes a fresh [`Environment`] and returns a [`CaseResult`] whose
//! failure says what was expected.
//!
//! Keys live under `/conformance/<case>` so that a shared namespace would still separate cases.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::child::ChildPlan;
use super::{CaseResult, Context, Environment, Failure, connected, expect_event, expect_next};
use crate::connection::ConnectionState;
use crate::election::{LeaderContender, LeaderElection, LeaderRetrieval, LeaderSessionId};
use crate::ensure;
use crate::error::RegistryError;
use crate::event::{EventKind, Mode};
use crate::registry::{Registry, RegistryExt};

use EventKind::{Added, Removed, Updated};

/// How long an event may take to arrive before the case fails: generous, because this is a
/// liveness check, not a latency measurement.
fn event_wait<E: Environment>(env: &E) -> Duration {
    Duration::from_secs(10) + env.session_timeout()
}

/// How long a crashed or closed session may keep its ephemerals and locks: the session timeout
/// plus slack for the backend to notice and for the event to travel.
fn session_end_wait<E: Environment>(env: &E) -> Duration {
    env.session_timeout() + Duration::from_secs(5)
}

pub async fn connected_after_connect<E: Environment>(env: Arc<E>) -> CaseResult {
    let client = env.new_client().context("creating a client")?;
    ensure!(
        client.connection_state().is_none(),
        "a new client should report no state before connect, got {:?}",
        client.connection_state()
    );
    client
        .connect(Duration::from_secs(15))
        .await
        .context("connect")?;
    ensure!(
        client.connection_state() == Some(ConnectionState::Connected),
        "expected Connected right after connect returned, got {:?}",
        client.connection_state()
    );
    client.close().await.context("close")
}

pub async fn connect_returns_within_its_timeout<E: Environment>(env: Arc<E>) -> CaseResult {
    let client = env.new_client().context("creating a client")?;
    let timeout = Duration::from_secs(10);
    let started = Instant::now();
    client.connect(timeout).await.context("connect")?;
    ensure!(
        started.elapsed() <= timeout + Duration::from_secs(1),
        "connect({timeout:?}) succeeded but took {:?}",
        started.elapsed()
    );
    // Connecting again while connected is a no-op.
    client.connect(timeout).await.context("second connect")?;
    client.close().await.context("close")
}

pub async fn connection_listener_sees_connected<E: Environment>(env: Arc<E>) -> CaseResult {
    let client = env.new_client().context("creating a client")?;
    let mut before = client.connection_listener();
    client
        .connect(Duration::from_secs(15))
        .await
        .context("connect")?;
    let first = tokio::time::timeout(Duration::from_secs(5), before.next()).await;
    ensure!(
        first == Ok(Some(ConnectionState::Connected)),
        "a listener added before connect should see Connected, got {first:?}"
    );
    let mut after = client.connection_listener();
    ensure!(
        after.try_next() == Some(ConnectionState::Connected),
        "a listener added after connect should first receive the current state Connected"
    );
    client.close().await.context("close")?;
    let ended = tokio::time::timeout(Duration::from_secs(5), before.next()).await;
    ensure!(
        ended == Ok(None),
        "after close a listener should end, got {ended:?}"
    );
    Ok(())
}

pub async fn put_get_and_overwrite<E: Environment>(env: Arc<E>) -> CaseResult {
    let client = connected(&*env).await?;
    let key = "/conformance/put/a/b";
    client
        .put(key, b"v1", Mode::Persistent)
        .await
        .context("put v1")?;
    let got = client.get(key).await.context("get")?;
    ensure!(
        got.as_deref() == Some(&b"v1"[..]),
        "get after put v1 returned {got:?}"
    );
    client
        .put(key, b"v2", Mode::Persistent)
        .await
        .context("put v2")?;
    let got = client.get(key).await.context("get")?;
    ensure!(
        got.as_deref() == Some(&b"v2"[..]),
        "get after overwrite returned {got:?}"
    );
    client
        .put(key, b"", Mode::Persistent)
        .await
        .context("put empty")?;
    let got = client.get(key).await.context("get")?;
    ensure!(
        got.as_deref() == Some(&b""[..]),
        "an empty value should read back empty, got {got:?}"
    );
    let other = connected(&*env).await?;
    let seen = other.get(key).await.context("get from another client")?;
    ensure!(
        seen.as_deref() == Some(&b""[..]),
        "another client should read the same value, got {seen:?}"
    );
    client.close().await.context("close")?;
    other.close().await.context("close")
}

pub async fn get_of_a_missing_key_is_none<E: Environment>(env: Arc<E>) -> CaseResult {
    let client = connected(&*env).await?;
    let got = client
        .get("/conformance/missing/key")
        .await
        .context("get")?;
    ensure!(
        got.is_none(),
        "get of a missing key should be None, got {got:?}"
    );
    client.close().await.context("close")
}

pub async fn exists_follows_put_and_delete<E: Environment>(env: Arc<E>) -> CaseResult {
    let client = connected(&*env).await?;
    let key = "/conformance/exists/k";
    ensure!(
        !client.exists(key).await.context("exists")?,
        "{key} should not exist yet"
    );
    client
        .put(key, b"x", Mode::Persistent)
        .await
        .context("put")?;
    ensure!(
        client.exists(key).await.context("exists")?,
        "{key} should exist after put"
    );
    client.delete(key).await.context("delete")?;
    ensure!(
        !client.exists(key).await.context("exists")?,
        "{key} should not exist after delete"
    );
    client.close().await.context("close")
}

pub async fn delete_is_recursive_and_missing_keys_are_fine<E: Environment>(
    env: Arc<E>,
) -> CaseResult {
    let client = connected(&*env).await?;
    let root = "/conformance/delete";
    for key in ["/t", "/t/a", "/t/a/b", "/t/c", "/u"] {
        client
            .put(&format!("{root}{key}"), key.as_bytes(), Mode::Persistent)
            .await
            .context(format_args!("put {root}{key}"))?;
    }
    let mut events = client.subscribe(root).await.context("subscribe")?;
    client
        .delete(&format!("{root}/t"))
        .await
        .context("recursive delete")?;
    for key in ["/t", "/t/a", "/t/a/b", "/t/c"] {
        let got = client.get(&format!("{root}{key}")).await.context("get")?;
        ensure!(
            got.is_none(),
            "{root}{key} should be gone after deleting {root}/t, got {got:?}"
        );
    }
    let survivor = client.get(&format!("{root}/u")).await.context("get")?;
    ensure!(
        survivor.is_some(),
        "{root}/u is not under {root}/t and must survive"
    );
    let mut removed = Vec::new();
    for _ in 0..4 {
        let event = expect_event(
            &mut events,
            event_wait(&*env),
            "a Removed event for each deleted key",
            |e| e.kind == Removed,
        )
        .await?;
        removed.push(event.path);
    }
    removed.sort();
    let expected: Vec<String> = ["/t", "/t/a", "/t/a/b", "/t/c"]
        .iter()
        .map(|k| format!("{root}{k}"))
        .collect();
    ensure!(
        removed == expected,
        "expected Removed for {expected:?}, got {removed:?}"
    );
    client
        .delete(&format!("{root}/never"))
        .await
        .context("deleting a missing key")?;
    client
        .delete(&format!("{root}/t"))
        .await
        .context("deleting an already deleted key")?;
    client.close().await.context("close")
}

pub async fn children_are_sorted_direct_and_include_implied_parents<E: Environment>(
    env: Arc<E>,
) -> CaseResult {
    let client = connected(&*env).await?;
    let root = "/conformance/children";
    for key in ["/c", "/a/x/y", "/b", "/a-b", "/b/z"] {
        client
            .put(&format!("{root}{key}"), b"v", Mode::Persistent)
            .await
            .context(format_args!("put {root}{key}"))?;
    }
    let names = client.children(root).await.context("children")?;
    ensure!(
        names == ["a", "a-b", "b", "c"],
        "children of {root} should be [a, a-b, b, c] (sorted, direct, with the implied parent a), got {names:?}"
    );
    let deeper = client
        .children(&format!("{root}/a"))
        .await
        .context("children")?;
    ensure!(
        deeper == ["x"],
        "children of {root}/a should be [x], got {deeper:?}"
    );
    let none = client
        .children(&format!("{root}/c"))
        .await
        .context("children")?;
    ensure!(none.is_empty(), "a leaf has no children, got {none:?}");
    let missing = client
        .children(&format!("{root}/nothing"))
        .await
        .context("children of a missing path")?;
    ensure!(
        missing.is_empty(),
        "a missing path has no children, got {missing:?}"
    );
    client.close().await.context("close")
}

pub async fn prefixes_match_on_segment_boundaries<E: Environment>(env: Arc<E>) -> CaseResult {
    let client = connected(&*env).await?;
    let root = "/conformance/prefix";
    let mut sub_a = client
        .subscribe(&format!("{root}/a"))
        .await
        .context("subscribe /a")?;
    client
        .put(&format!("{root}/ab"), b"ab", Mode::Persistent)
        .await
        .context("put /ab")?;
    client
        .put(&format!("{root}/a/x"), b"ax", Mode::Persistent)
        .await
        .context("put /a/x")?;
    let first = expect_event(&mut sub_a, event_wait(&*env), "an event for /a/x", |_| true).await?;
    ensure!(
        first.path == format!("{root}/a/x"),
        "a subscription to {root}/a must not see {root}/ab; its first event was {first:?}"
    );
    let kids = client
        .children(&format!("{root}/a"))
        .await
        .context("children")?;
    ensure!(
        kids == ["x"],
        "children of {root}/a must not include ab's data, got {kids:?}"
    );
    client
        .delete(&format!("{root}/a"))
        .await
        .context("delete /a")?;
    let ab = client.get(&format!("{root}/ab")).await.context("get /ab")?;
    ensure!(ab.is_some(), "deleting {root}/a must not delete {root}/ab");
    client.close().await.context("close")
}

pub async fn invalid_paths_are_rejected<E: Environment>(env: Arc<E>) -> CaseResult {
    let client = connected(&*env).await?;
    for bad in [
        "",
        "relative",
        "/trailing/",
        "/double//slash",
        "/dot/./x",
        "/dotdot/../x",
    ] {
        let outcome = client.put(bad, b"x", Mode::Persistent).await;
        ensure!(
            matches!(outcome, Err(RegistryError::InvalidPath { .. })),
            "put({bad:?}) should fail with InvalidPath, got {outcome:?}"
        );
    }
    let root_delete = client.delete("/").await;
    ensure!(
        matches!(root_delete, Err(RegistryError::InvalidPath { .. })),
        "delete(\"/\") should be refused with InvalidPath, got {root_delete:?}"
    );
    client.close().await.context("close")
}

pub async fn subscribe_sees_added_updated_removed<E: Environment>(env: Arc<E>) -> CaseResult {
    let watcher = connected(&*env).await?;
    let writer = connected(&*env).await?;
    let root = "/conformance/subscribe";
    let key = format!("{root}/k");
    let mut events = watcher.subscribe(root).await.context("subscribe")?;
    writer
        .put(&key, b"v1", Mode::Persistent)
        .await
        .context("put v1")?;
    expect_next(&mut events, event_wait(&*env), Added, &key, b"v1").await?;
    writer
        .put(&key, b"v2", Mode::Persistent)
        .await
        .context("put v2")?;
    expect_next(&mut events, event_wait(&*env), Updated, &key, b"v2").await?;
    writer.delete(&key).await.context("delete")?;
    expect_next(&mut events, event_wait(&*env), Removed, &key, b"v2").await?;
    watcher.close().await.context("close")?;
    writer.close().await.context("close")
}

pub async fn removed_carries_the_last_value<E: Environment>(env: Arc<E>) -> CaseResult {
    let client = connected(&*env).await?;
    let root = "/conformance/last-value";
    let key = format!("{root}/k");
    client
        .put(&key, b"first", Mode::Persistent)
        .await
        .context("put")?;
    client
        .put(&key, b"last", Mode::Persistent)
        .await
        .context("put")?;
    // Subscribed after the writes: the backend must know the value without having seen it change.
    let watcher = connected(&*env).await?;
    let mut events = watcher.subscribe(root).await.context("subscribe")?;
    client.delete(&key).await.context("delete")?;
    expect_next(&mut events, event_wait(&*env), Removed, &key, b"last").await?;
    client.close().await.context("close")?;
    watcher.close().await.context("close")
}

pub async fn events_arrive_in_commit_order_under_concurrent_writers<E: Environment>(
    env: Arc<E>,
) -> CaseResult {
    const WRITERS: usize = 4;
    const PUTS: usize = 50;
    let root = "/conformance/ordering";
    let watcher = connected(&*env).await?;
    let mut events = watcher.subscribe(root).await.context("subscribe")?;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let client = connected(&*env).await?;
        writers.push(tokio::spawn(async move {
            let own = format!("{root}/own-{w}");
            for i in 0..PUTS {
                client
                    .put(&own, i.to_string().as_bytes(), Mode::Persistent)
                    .await
                    .context(format_args!("writer {w}: put {own} = {i}"))?;
                // Every writer also hits one shared key, so commits on it interleave.
                client
                    .put(
                        &format!("{root}/shared"),
                        format!("{w}:{i}").as_bytes(),
                        Mode::Persistent,
                    )
                    .await
                    .context(format_args!("writer {w}: put shared"))?;
            }
            client
                .delete(&own)
                .await
                .context(format_args!("writer {w}: delete {own}"))?;
            client.close().await.context("close")
        }));
    }
    for writer in writers {
        writer
            .await
            .map_err(|error| Failure(format!("a writer task panicked: {error}")))??;
    }
    // Per key, what the subscriber saw: (kind, value) in arrival order.
    let mut seen: BTreeMap<String, Vec<(EventKind, String)>> = BTreeMap::new();
    let own_done = |seen: &BTreeMap<String, Vec<(EventKind, String)>>| {
        (0..WRITERS).all(|w| {
            seen.get(&format!("{root}/own-{w}"))
                .and_then(|events| events.last())
                .is_some_and(|(kind, _)| *kind == Removed)
        })
    };
    let deadline = tokio::time::Instant::now() + event_wait(&*env) * 2;
    while !own_done(&seen) {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(event)) => {
                let value = event.value_str().into_owned();
                seen.entry(event.path)
                    .or_default()
                    .push((event.kind, value));
            }
            Ok(None) => return Err(Failure("the subscription ended early".to_owned())),
            Err(_) => {
                return Err(Failure(format!(
                    "expected every writer's key to end with Removed within the deadline; saw {seen:?}"
                )));
            }
        }
    }
    let every_value = env.delivers_every_value();
    for w in 0..WRITERS {
        let key = format!("{root}/own-{w}");
        let events = &seen[&key];
        ensure!(
            events.first().map(|e| e.0) == Some(Added),
            "{key}: the first event should be Added, got {events:?}"
        );
        let last = events.len() - 1;
        ensure!(
            events[1..last].iter().all(|e| e.0 == Updated),
            "{key}: between Added and Removed there should only be Updated events, got {events:?}"
        );
        let values: Vec<usize> = events[..last]
            .iter()
            .filter_map(|e| e.1.parse().ok())
            .collect();
        ensure!(
            values.windows(2).all(|w| w[0] < w[1]),
            "{key}: values must arrive in commit order without repeats, got {values:?}"
        );
        ensure!(
            events[last].1 == (PUTS - 1).to_string(),
            "{key}: Removed should carry the last value {}, got {:?}",
            PUTS - 1,
            events[last]
        );
        if every_value {
            ensure!(
                values == (0..PUTS).collect::<Vec<_>>(),
                "{key}: every value 0..{PUTS} should arrive exactly once, in order; got {values:?}"
            );
        }
    }
    let shared = format!("{root}/shared");
    let shared_events = seen.get(&shared).cloned().unwrap_or_default();
    for w in 0..WRITERS {
        let mine: Vec<usize> = shared_events
            .iter()
            .filter_map(|(_, v)| v.split_once(':'))
            .filter(|(writer, _)| *writer == w.to_string())
            .filter_map(|(_, i)| i.parse().ok())
            .collect();
        ensure!(
            mine.windows(2).all(|p| p[0] < p[1]),
            "{shared}: writer {w}'s values must keep their commit order, got {mine:?}"
        );
        if every_value {
            ensure!(
                mine.len() == PUTS,
                "{shared}: all {PUTS} of writer {w}'s values should arrive, got {}",
                mine.len()
            );
        }
    }
    watcher.close().await.context("close")
}

pub async fn dropping_a_subscription_unsubscribes<E: Environment>(env: Arc<E>) -> CaseResult {
    let client = connected(&*env).await?;
    let root = "/conformance/unsubscribe";
    let dropped = client.subscribe(root).await.context("subscribe")?;
    let mut kept = client.subscribe(root).await.context("subscribe")?;
    drop(dropped);
    client
        .put(&format!("{root}/k"), b"1", Mode::Persistent)
        .await
        .context("put")?;
    expect_next(
        &mut kept,
        event_wait(&*env),
        Added,
        &format!("{root}/k"),
        b"1",
    )
    .await?;
    drop(kept);
    // A fresh subscription sees only what happens after it starts.
    client
        .put(&format!("{root}/k"), b"2", Mode::Persistent)
        .await
        .context("put")?;
    let mut fresh = client.subscribe(root).await.context("resubscribe")?;
    client
        .put(&format!("{root}/k"), b"3", Mode::Persistent)
        .await
        .context("put")?;
    expect_next(
        &mut fresh,
        event_wait(&*env),
        Updated,
        &format!("{root}/k"),
        b"3",
    )
    .await?;
    client.close().await.context("close")?;
    let ended = tokio::time::timeout(Duration::from_secs(5), fresh.next()).await;
    ensure!(
        ended == Ok(None),
        "after close a subscription should end, got {ended:?}"
    );
    Ok(())
}

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

pub async fn calls_after_close_fail_with_closed<E: Environment>(env: Arc<E>) -> CaseResult {
    let client = connected(&*env).await?;
    client.close().await.context("close")?;
    client.close().await.context("closing twice")?;
    let put = client
        .put("/conformance/closed", b"x", Mode::Persistent)
        .await;
    ensure!(
        put == Err(RegistryError::Closed),
        "put after close should fail with Closed, got {put:?}"
    );
    let get = client.get("/conformance/closed").await;
    ensure!(
        get == Err(RegistryError::Closed),
        "get after close should fail with Closed, got {get:?}"
    );
    let lock = client
        .lock("/conformance/closed-lock", Some(Duration::from_secs(1)))
        .await;
    ensure!(
        matches!(lock, Err(RegistryError::Closed)),
        "lock after close should fail with Closed, got {lock:?}"
    );
    Ok(())
}

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
    let child = super::spawn_crash_child(&*env, module_path, &plan).await?;
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

pub async fn connect_to_an_unreachable_server_fails_within_the_timeout<E: Environment>(
    env: Arc<E>,
) -> CaseResult {
    let timeout = Duration::from_secs(2);
    let Some(client) = env.unreachable_client(timeout) else {
        return Err(Failure(
            "this environment has no unreachable client; use `registry_conformance_tests!(Env, single_process)` for in-process backends".to_owned(),
        ));
    };
    let started = Instant::now();
    let outcome = client.connect(timeout).await;
    let took = started.elapsed();
    ensure!(
        matches!(outcome, Err(RegistryError::ConnectTimeout { .. })),
        "connect to an unreachable server should fail with ConnectTimeout, got {outcome:?}"
    );
    ensure!(
        took <= timeout + Duration::from_secs(2),
        "connect({timeout:?}) to an unreachable server should give up in time, took {took:?}"
    );
    Ok(())
}
