//! Connecting, the connection state, and what calls do after `close`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::connection::ConnectionState;
use crate::ensure;
use crate::error::RegistryError;
use crate::event::Mode;
use crate::registry::Registry;
use crate::testkit::{CaseResult, Context, Environment, Failure, connected};

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
