//! The failures that peers shipped although their registry plugins shared one test class
//! (Apache DolphinScheduler's ZooKeeper, JDBC and etcd registries): each case here is one of
//! them, run on every backend.
//!
//! | case | their bug |
//! |---|---|
//! | [`removed_carries_the_last_value_however_the_key_ends`] | `Removed` events without the value (JDBC #18292, etcd #18640) |
//! | [`a_replacement_registration_survives_the_old_sessions_end`] | a replacement registered under the same key, then removed by the old session's end (#16759: duplicate execution) |
//! | [`an_outage_past_the_session_timeout_ends_in_a_new_session_with_the_ephemerals`] | a client that never came back after its session expired (JDBC #18274, ZooKeeper #16322) |
//! | [`a_watch_resumed_after_a_cut_delivers_the_missed_changes_once`] | changes made while a watcher was cut off, lost or repeated |

use std::sync::Arc;
use std::time::Duration;

use crate::connection::ConnectionState;
use crate::ensure;
use crate::error::RegistryError;
use crate::event::{Event, EventKind, Mode};
use crate::registry::Registry;
use crate::subscription::Subscription;
use crate::testkit::child::ChildPlan;
use crate::testkit::{
    CaseResult, Context, Environment, Failure, connected, expect_event, expect_next, expect_state,
    next_event, spawn_crash_child,
};

use super::{event_wait, session_end_wait};

use EventKind::{Added, Removed, Updated};

/// How long a case watches for an event that must not come.
fn quiet_window<E: Environment>(env: &E) -> Duration {
    env.session_timeout() + Duration::from_secs(2)
}

/// Fails if any event arrives on `subscription` within `window`.
async fn expect_no_event(
    subscription: &mut Subscription,
    window: Duration,
    why: &str,
) -> CaseResult {
    match tokio::time::timeout(window, subscription.next()).await {
        Err(_) => Ok(()),
        Ok(event) => Err(Failure(format!(
            "expected no event within {window:?} ({why}), got {event:?}"
        ))),
    }
}

/// A client behind a switch, connected; or a failure for a backend that has none.
async fn cuttable<E: Environment>(
    env: &E,
) -> Result<(E::Client, Box<dyn crate::testkit::Cut>), Failure> {
    let Some((client, cut)) = env.cuttable_client().await else {
        return Err(Failure(
            "this environment has no cuttable client; use `registry_conformance_tests!(Env, single_process)` for in-process backends".to_owned(),
        ));
    };
    client
        .connect(Duration::from_secs(15))
        .await
        .context("connecting the cuttable client")?;
    Ok((client, cut))
}

/// A key's `Removed` carries its last value whether it was deleted, deleted with its parent,
/// or removed with its session, also for a subscriber that never saw the value written.
pub async fn removed_carries_the_last_value_however_the_key_ends<E: Environment>(
    env: Arc<E>,
) -> CaseResult {
    let writer = connected(&*env).await?;
    let victim = connected(&*env).await?;
    let root = "/conformance/removed-values";
    for (key, value) in [
        ("/single", "s1"),
        ("/tree", "t0"),
        ("/tree/a", "ta"),
        ("/tree/a/b", "tab"),
    ] {
        writer
            .put(&format!("{root}{key}"), value.as_bytes(), Mode::Persistent)
            .await
            .context(format_args!("put {key}"))?;
    }
    writer
        .put(&format!("{root}/single"), b"s2", Mode::Persistent)
        .await
        .context("overwrite /single")?;
    let node = format!("{root}/node");
    victim
        .put(&node, b"n1", Mode::Ephemeral)
        .await
        .context("put the ephemeral")?;
    victim
        .put(&node, b"n2", Mode::Ephemeral)
        .await
        .context("overwrite the ephemeral")?;
    // Subscribed after every write: the backend cannot have seen the values change.
    let watcher = connected(&*env).await?;
    let mut events = watcher.subscribe(root).await.context("subscribe")?;
    writer
        .delete(&format!("{root}/single"))
        .await
        .context("delete /single")?;
    expect_next(
        &mut events,
        event_wait(&*env),
        Removed,
        &format!("{root}/single"),
        b"s2",
    )
    .await?;
    writer
        .delete(&format!("{root}/tree"))
        .await
        .context("delete /tree")?;
    let mut removed = Vec::new();
    for _ in 0..3 {
        let event = next_event(&mut events, event_wait(&*env)).await?;
        ensure!(
            event.kind == Removed,
            "expected Removed for each key of the deleted tree, got {event:?}"
        );
        removed.push((
            event.path.trim_start_matches(root).to_owned(),
            event.value_str().into_owned(),
        ));
    }
    removed.sort();
    ensure!(
        removed
            == [
                ("/tree".to_owned(), "t0".to_owned()),
                ("/tree/a".to_owned(), "ta".to_owned()),
                ("/tree/a/b".to_owned(), "tab".to_owned())
            ],
        "a recursive delete should report each key with its last value, got {removed:?}"
    );
    env.expire_session(&victim)
        .await
        .context("expiring the victim's session")?;
    expect_next(&mut events, session_end_wait(&*env), Removed, &node, b"n2").await?;
    expect_next(
        &mut events,
        session_end_wait(&*env) + Duration::from_secs(10),
        Added,
        &node,
        b"n2",
    )
    .await?;
    victim.close().await.context("closing the victim")?;
    expect_next(&mut events, session_end_wait(&*env), Removed, &node, b"n2").await?;
    writer.close().await.context("close")?;
    watcher.close().await.context("close")
}

/// A node crashes (SIGKILL) while registered; its replacement registers under the same key as
/// soon as it may. Until the old session has ended the replacement is refused (`Conflict`);
/// once it is registered, the old session's end (already processed, or late) must not remove
/// it, and a watcher sees exactly: old Added, old Removed, new Added, then nothing.
pub async fn a_replacement_registration_survives_the_old_sessions_end<E: Environment>(
    env: Arc<E>,
    module_path: &str,
) -> CaseResult {
    let root = "/conformance/replacement";
    let key = format!("{root}/node");
    let watcher = connected(&*env).await?;
    let mut events = watcher.subscribe(root).await.context("subscribe")?;
    let plan = ChildPlan {
        ephemerals: vec![(key.clone(), "old".to_owned())],
        lock: format!("{root}-lock"),
    };
    let child = spawn_crash_child(&*env, module_path, &plan).await?;
    expect_next(&mut events, event_wait(&*env), Added, &key, b"old").await?;
    child.kill().await?;
    let replacement = connected(&*env).await?;
    let deadline = tokio::time::Instant::now() + session_end_wait(&*env) + Duration::from_secs(5);
    loop {
        match replacement.put(&key, b"new", Mode::Ephemeral).await {
            Ok(()) => break,
            Err(RegistryError::Conflict { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => {
                return Err(Failure(format!(
                    "the replacement's registration failed: {error}"
                )));
            }
        }
    }
    expect_next(&mut events, event_wait(&*env), Removed, &key, b"old").await?;
    expect_next(&mut events, event_wait(&*env), Added, &key, b"new").await?;
    expect_no_event(
        &mut events,
        quiet_window(&*env),
        "the replacement lives; the old session is over",
    )
    .await?;
    let value = watcher.get(&key).await.context("get")?;
    ensure!(
        value.as_deref() == Some(&b"new"[..]),
        "the replacement's registration must stay, got {value:?}"
    );
    replacement.close().await.context("close")?;
    watcher.close().await.context("close")
}

/// A client is cut off for longer than its session timeout: the server ends its session (a
/// watcher sees `Removed`); the client reports `SessionLost` by itself, and once the server is
/// reachable again it builds a new session without help, re-creates its ephemeral key and
/// reports `Connected`.
pub async fn an_outage_past_the_session_timeout_ends_in_a_new_session_with_the_ephemerals<
    E: Environment,
>(
    env: Arc<E>,
) -> CaseResult {
    let root = "/conformance/long-outage";
    let key = format!("{root}/node");
    let (client, cut) = cuttable(&*env).await?;
    let watcher = connected(&*env).await?;
    let mut events = watcher.subscribe(root).await.context("subscribe")?;
    let mut states = client.connection_listener();
    client
        .put(&key, b"alive", Mode::Ephemeral)
        .await
        .context("put")?;
    expect_next(&mut events, event_wait(&*env), Added, &key, b"alive").await?;
    cut.cut();
    expect_next(
        &mut events,
        session_end_wait(&*env),
        Removed,
        &key,
        b"alive",
    )
    .await?;
    expect_state(
        &mut states,
        session_end_wait(&*env) * 2,
        ConnectionState::SessionLost,
    )
    .await?;
    cut.restore();
    expect_state(
        &mut states,
        session_end_wait(&*env) + Duration::from_secs(10),
        ConnectionState::Connected,
    )
    .await?;
    expect_next(&mut events, event_wait(&*env), Added, &key, b"alive").await?;
    let value = client
        .get(&key)
        .await
        .context("get through the new session")?;
    ensure!(
        value.as_deref() == Some(&b"alive"[..]),
        "the client should read its re-created key, got {value:?}"
    );
    client.close().await.context("close")?;
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

/// A watcher is cut off briefly (well within its session) while another client writes: once
/// back, it receives every change made meanwhile, per key in commit order, none repeated and
/// none from before the cut.
pub async fn a_watch_resumed_after_a_cut_delivers_the_missed_changes_once<E: Environment>(
    env: Arc<E>,
) -> CaseResult {
    let root = "/conformance/resumed-watch";
    let (watcher, cut) = cuttable(&*env).await?;
    let writer = connected(&*env).await?;
    let mut states = watcher.connection_listener();
    let mut events = watcher.subscribe(root).await.context("subscribe")?;
    let (one, two, three) = (
        format!("{root}/one"),
        format!("{root}/two"),
        format!("{root}/three"),
    );
    writer
        .put(&one, b"1", Mode::Persistent)
        .await
        .context("put one")?;
    writer
        .put(&two, b"a", Mode::Persistent)
        .await
        .context("put two")?;
    expect_next(&mut events, event_wait(&*env), Added, &one, b"1").await?;
    expect_next(&mut events, event_wait(&*env), Added, &two, b"a").await?;
    cut.cut();
    for value in ["2", "3", "4"] {
        writer
            .put(&one, value.as_bytes(), Mode::Persistent)
            .await
            .context("put one")?;
    }
    writer.delete(&two).await.context("delete two")?;
    writer
        .put(&three, b"x", Mode::Persistent)
        .await
        .context("put three")?;
    cut.restore();
    let mut seen: Vec<Event> = Vec::new();
    let complete = |seen: &[Event]| {
        seen.iter().any(|e| e.path == one && e.value == b"4")
            && seen.iter().any(|e| e.path == two && e.kind == Removed)
            && seen.iter().any(|e| e.path == three)
    };
    let wait = session_end_wait(&*env) + Duration::from_secs(10);
    while !complete(&seen) {
        let event = expect_event(&mut events, wait, "the changes made during the cut", |_| {
            true
        })
        .await?;
        seen.push(event);
    }
    expect_no_event(
        &mut events,
        Duration::from_secs(2),
        "every change was delivered once",
    )
    .await?;
    let of = |path: &str| {
        seen.iter()
            .filter(|e| e.path == path)
            .map(|e| (e.kind, e.value_str().into_owned()))
            .collect::<Vec<_>>()
    };
    let ones: Vec<String> = of(&one)
        .into_iter()
        .map(|(kind, value)| {
            if kind == Updated {
                value
            } else {
                format!("{kind:?}:{value}")
            }
        })
        .collect();
    if env.delivers_every_value() {
        ensure!(
            ones == ["2", "3", "4"],
            "{one}: expected Updated 2, 3, 4 once each, in order, got {ones:?}"
        );
    } else {
        ensure!(
            ones.last().map(String::as_str) == Some("4")
                && ones.windows(2).all(|w| w[0] < w[1])
                && ones.iter().all(|v| ["2", "3", "4"].contains(&v.as_str())),
            "{one}: expected Updated values from 2..=4, in order, without repeats, ending with 4; got {ones:?}"
        );
    }
    ensure!(
        of(&two) == [(Removed, "a".to_owned())],
        "{two}: expected one Removed with the value a, got {:?}",
        of(&two)
    );
    ensure!(
        of(&three) == [(Added, "x".to_owned())],
        "{three}: expected one Added x, got {:?}",
        of(&three)
    );
    let history: Vec<ConnectionState> = std::iter::from_fn(|| states.try_next()).collect();
    ensure!(
        !history.contains(&ConnectionState::SessionLost),
        "the watcher's session should have lived through the short cut, saw {history:?}"
    );
    watcher.close().await.context("close")?;
    writer.close().await.context("close")
}
