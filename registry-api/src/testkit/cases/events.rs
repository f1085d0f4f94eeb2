//! Subscriptions: which events arrive, in which order, with which values, and until when.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::ensure;
use crate::event::{EventKind, Mode};
use crate::registry::Registry;
use crate::testkit::{CaseResult, Context, Environment, Failure, connected, expect_next};

use super::event_wait;

use EventKind::{Added, Removed, Updated};

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
