//! Keys and values: put, get, exists, delete, children, and the path rules.

use std::sync::Arc;

use crate::ensure;
use crate::error::RegistryError;
use crate::event::{EventKind, Mode};
use crate::registry::Registry;
use crate::testkit::{CaseResult, Context, Environment, connected, expect_event};

use super::event_wait;

use EventKind::Removed;

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
