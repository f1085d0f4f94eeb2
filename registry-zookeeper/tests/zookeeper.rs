//! ZooKeeper-specific behaviour against real servers: outages and restarts (on private servers,
//! so the shared one keeps serving the tests that run in parallel), a connection cut by a proxy,
//! namespaces, digest ACLs, bad server lists, and the znode mapping of keys and locks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use registry_api::testkit::{expect_next, expect_state, next_event};
use registry_api::{ConnectionState, Event, EventKind, Mode, Registry, RegistryError, RegistryExt};
use registry_zookeeper::{ZookeeperConfig, ZookeeperRegistry};
use test_support::eventually;
use test_support::ports::free_port;
use test_support::proxy::TcpProxy;
use test_support::zookeeper::{self, Namespace, PrivateZookeeper};
use zookeeper_client as zk;

use ConnectionState::{Connected, Reconnected, SessionLost, Suspended};
use EventKind::{Added, Removed, Updated};

/// Generous bound for anything that should happen promptly (an event, a state change).
const PROMPTLY: Duration = Duration::from_secs(15);

/// A raw ZooKeeper client without credentials, outside any namespace.
async fn raw_client(servers: &str) -> zk::Client {
    zk::Client::connector()
        .with_session_timeout(common::SESSION_TIMEOUT)
        .connect(servers)
        .await
        .expect("raw ZooKeeper client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_restart_within_session_timeout_keeps_the_session_and_its_ephemerals() {
    common::init_logging();
    let server = PrivateZookeeper::start().await;
    let namespace = Namespace::new(&server.servers(), "restart").await;
    // Long enough to outlast a restart of the server on a busy machine.
    let config = ZookeeperConfig {
        session_timeout_ms: 20_000,
        ..common::config_in(&namespace)
    };
    let holder = common::connected_with(config.clone()).await;
    let watcher = std::sync::Arc::new(common::connected_with(config).await);
    let mut events = watcher.subscribe("/nodes").await.unwrap();
    holder
        .put("/nodes/a", b"alive", Mode::Ephemeral)
        .await
        .unwrap();
    expect_next(&mut events, PROMPTLY, Added, "/nodes/a", b"alive")
        .await
        .unwrap();
    let guard = holder.lock("/locks/l", None).await.unwrap();
    // A waiter queued behind the holder, across the restart (its watch must survive it).
    let waiter = {
        let watcher = watcher.clone();
        tokio::spawn(async move { watcher.lock("/locks/l", None).await })
    };
    eventually("the waiter queues up", PROMPTLY, || async {
        holder.children("/locks/l").await.unwrap().len() == 2
    })
    .await;
    let session = holder.session_id();
    let mut holder_states = holder.connection_listener();
    let mut watcher_states = watcher.connection_listener();

    server.stop().await;
    expect_state(&mut holder_states, PROMPTLY, Suspended)
        .await
        .unwrap();
    assert!(
        guard.is_valid(),
        "a lock must stay valid while merely suspended"
    );
    let during = holder.get("/nodes/a").await;
    assert_eq!(
        during,
        Err(RegistryError::NotConnected {
            backend: "zookeeper"
        })
    );
    server.resume().await;

    let seen = expect_state(&mut holder_states, Duration::from_secs(30), Reconnected)
        .await
        .unwrap();
    assert!(
        !seen.contains(&SessionLost),
        "the session should survive a restart within its timeout; saw {seen:?}"
    );
    let seen = expect_state(&mut watcher_states, Duration::from_secs(30), Reconnected)
        .await
        .unwrap();
    assert!(!seen.contains(&SessionLost), "watcher saw {seen:?}");
    assert_eq!(
        holder.session_id(),
        session,
        "same session after the restart"
    );
    assert!(guard.is_valid(), "the lock survives with the session");

    // Everything the watcher was told before this marker arrives first: there must be nothing.
    holder
        .put("/nodes/marker", b"m", Mode::Persistent)
        .await
        .unwrap();
    expect_next(&mut events, PROMPTLY, Added, "/nodes/marker", b"m")
        .await
        .unwrap();
    assert_eq!(
        watcher.get("/nodes/a").await.unwrap().as_deref(),
        Some(&b"alive"[..])
    );
    assert!(!waiter.is_finished(), "the waiter must still wait");
    let held_token = guard.fencing_token();
    guard.release().await.unwrap();
    let handed_over = tokio::time::timeout(PROMPTLY, waiter)
        .await
        .expect("the waiter wakes on the release after the restart")
        .unwrap()
        .unwrap();
    assert!(handed_over.fencing_token() > held_token);
    drop(handed_over);
    holder.close().await.unwrap();
    watcher.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_outage_past_session_timeout_loses_the_session_then_reregisters() {
    common::init_logging();
    let server = PrivateZookeeper::start().await;
    let namespace = Namespace::new(&server.servers(), "outage").await;
    let holder = common::connected_with(common::config_in(&namespace)).await;
    let peer = common::connected_with(common::config_in(&namespace)).await;
    let mut events = peer.subscribe("/nodes").await.unwrap();
    holder
        .put("/nodes/a", b"alive", Mode::Ephemeral)
        .await
        .unwrap();
    expect_next(&mut events, PROMPTLY, Added, "/nodes/a", b"alive")
        .await
        .unwrap();
    let guard = holder.lock("/locks/l", None).await.unwrap();
    let old_session = holder.session_id().unwrap();
    let mut states = holder.connection_listener();

    server.stop().await;
    // The client concludes the expiry itself after 1.4 session timeouts without a server.
    let seen = expect_state(&mut states, Duration::from_secs(20), SessionLost)
        .await
        .unwrap();
    assert!(
        seen.contains(&Suspended),
        "Suspended comes before SessionLost; saw {seen:?}"
    );
    assert!(
        !guard.is_valid(),
        "the lock of a lost session must be invalid"
    );
    server.resume().await;

    // The new session re-creates the ephemeral once the server has removed the old one.
    expect_state(&mut states, Duration::from_secs(40), Connected)
        .await
        .unwrap();
    let new_session = holder.session_id().unwrap();
    assert_ne!(new_session, old_session, "a new session after the loss");
    let raw = raw_client(&server.servers()).await;
    let stat = raw
        .check_stat(&format!("{}/nodes/a", namespace.path()))
        .await
        .unwrap()
        .expect("the ephemeral is re-created");
    assert_eq!(
        stat.ephemeral_owner, new_session,
        "owned by the new session"
    );

    // The peer (which lost its own session too) sees the old node go and the new one come.
    expect_next(&mut events, PROMPTLY, Removed, "/nodes/a", b"alive")
        .await
        .unwrap();
    expect_next(&mut events, PROMPTLY, Added, "/nodes/a", b"alive")
        .await
        .unwrap();
    let taken = peer
        .try_lock("/locks/l", Duration::from_secs(10))
        .await
        .unwrap()
        .expect("the lost session's lock is free");
    assert!(taken.fencing_token() > guard.fencing_token());
    drop(taken);
    holder.close().await.unwrap();
    peer.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_changes_during_a_connection_loss_are_delivered_after_reconnecting() {
    common::init_logging();
    let servers = zookeeper::servers();
    let namespace = Namespace::new(&servers, "resync").await;
    let proxy = TcpProxy::start(&servers).await;
    let writer = common::connected_with(common::config_in(&namespace)).await;
    let watcher = common::connected_with(ZookeeperConfig {
        session_timeout_ms: 20_000,
        ..common::config(&proxy.addr().to_string(), namespace.path())
    })
    .await;
    for (key, value) in [("/w/changed", "v1"), ("/w/gone", "g"), ("/w/same", "s")] {
        writer
            .put(key, value.as_bytes(), Mode::Persistent)
            .await
            .unwrap();
    }
    let mut events = watcher.subscribe("/w").await.unwrap();
    let session = watcher.session_id();
    let mut states = watcher.connection_listener();

    proxy.cut();
    expect_state(&mut states, PROMPTLY, Suspended)
        .await
        .unwrap();
    writer
        .put("/w/changed", b"v2", Mode::Persistent)
        .await
        .unwrap();
    writer.delete("/w/gone").await.unwrap();
    writer.put("/w/new", b"n", Mode::Persistent).await.unwrap();
    proxy.pass();
    let seen = expect_state(&mut states, Duration::from_secs(30), Reconnected)
        .await
        .unwrap();
    assert!(!seen.contains(&SessionLost), "saw {seen:?}");
    assert_eq!(watcher.session_id(), session);

    let mut got = BTreeSet::new();
    for _ in 0..3 {
        let event = next_event(&mut events, PROMPTLY).await.unwrap();
        got.insert(format!("{event:?}"));
    }
    let expected: BTreeSet<String> = [
        Event::new(Updated, "/w/changed", "v2"),
        Event::new(Removed, "/w/gone", "g"),
        Event::new(Added, "/w/new", "n"),
    ]
    .iter()
    .map(|e| format!("{e:?}"))
    .collect();
    assert_eq!(got, expected, "what changed while the watcher was cut off");
    writer
        .put("/w/marker", b"m", Mode::Persistent)
        .await
        .unwrap();
    expect_next(&mut events, PROMPTLY, Added, "/w/marker", b"m")
        .await
        .unwrap();
    writer.close().await.unwrap();
    watcher.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_namespaces_keep_clusters_apart() {
    common::init_logging();
    let servers = zookeeper::servers();
    let (first_ns, second_ns) = (
        Namespace::new(&servers, "cluster").await,
        Namespace::new(&servers, "cluster").await,
    );
    let first = common::connected_with(common::config_in(&first_ns)).await;
    let second = common::connected_with(common::config_in(&second_ns)).await;
    let mut first_events = first.subscribe("/nodes").await.unwrap();
    first
        .put("/nodes/x", b"first", Mode::Ephemeral)
        .await
        .unwrap();
    second
        .put("/nodes/x", b"second", Mode::Ephemeral)
        .await
        .unwrap();
    assert_eq!(
        first.get("/nodes/x").await.unwrap().as_deref(),
        Some(&b"first"[..])
    );
    assert_eq!(
        second.get("/nodes/x").await.unwrap().as_deref(),
        Some(&b"second"[..])
    );
    let both = tokio::join!(
        first.try_lock("/lock", Duration::from_secs(5)),
        second.try_lock("/lock", Duration::from_secs(5))
    );
    assert!(
        both.0.unwrap().is_some() && both.1.unwrap().is_some(),
        "the same lock path in two namespaces is two locks"
    );
    expect_next(&mut first_events, PROMPTLY, Added, "/nodes/x", b"first")
        .await
        .unwrap();
    first
        .put("/nodes/marker", b"m", Mode::Persistent)
        .await
        .unwrap();
    expect_next(&mut first_events, PROMPTLY, Added, "/nodes/marker", b"m")
        .await
        .unwrap();
    first.close().await.unwrap();
    second.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_digest_keeps_clients_without_the_credentials_out() {
    common::init_logging();
    let servers = zookeeper::servers();
    let mut guard = Namespace::new(&servers, "digest").await;
    guard.set_digest("console:s3cret");
    let namespace = guard.path().to_owned();
    let with_digest = |digest: &str| ZookeeperConfig {
        digest: digest.into(),
        ..common::config(&servers, &namespace)
    };
    let owner = common::connected_with(with_digest("console:s3cret")).await;
    owner
        .put("/nodes/e", b"eph", Mode::Ephemeral)
        .await
        .unwrap();
    owner
        .put("/nodes/p", b"per", Mode::Persistent)
        .await
        .unwrap();

    let raw = raw_client(&servers).await;
    for node in ["/nodes/e", "/nodes/p"] {
        let full = format!("{namespace}{node}");
        assert_eq!(
            raw.delete(&full, None).await,
            Err(zk::Error::NoAuth),
            "delete {full}"
        );
        assert_eq!(
            raw.get_data(&full).await.map(drop),
            Err(zk::Error::NoAuth),
            "read {full}"
        );
    }
    assert_eq!(
        raw.create(
            &format!("{namespace}/nodes/intruder"),
            b"",
            &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
        )
        .await
        .map(drop),
        Err(zk::Error::NoAuth)
    );

    for (name, config) in [
        ("no credentials", common::config(&servers, &namespace)),
        ("wrong password", with_digest("console:wrong")),
    ] {
        let intruder = ZookeeperRegistry::new(config).unwrap();
        match intruder.connect(Duration::from_secs(10)).await {
            Err(RegistryError::ConnectTimeout { reason, .. }) => assert!(
                reason.contains("not authorized") && reason.contains("registry.zookeeper.digest"),
                "{name}: {reason}"
            ),
            other => panic!("{name}: expected ConnectTimeout naming the digest, got {other:?}"),
        }
    }

    // The same credentials in another client (another console node) have full access.
    let colleague = common::connected_with(with_digest("console:s3cret")).await;
    colleague.delete("/nodes/p").await.unwrap();
    assert_eq!(owner.get("/nodes/p").await.unwrap(), None);
    owner.close().await.unwrap();
    colleague.close().await.unwrap();
    let admin = common::connected_with(ZookeeperConfig {
        namespace: "/".to_owned(),
        ..with_digest("console:s3cret")
    })
    .await;
    admin.delete(&namespace).await.unwrap();
    admin.close().await.unwrap();
    let leftover = raw.check_stat(&namespace).await.unwrap();
    assert!(
        leftover.is_none(),
        "the digest holder can delete the namespace"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_wrong_servers_fail_clearly_within_connect_timeout() {
    common::init_logging();
    let connect_timeout = Duration::from_millis(1500);
    for servers in [
        format!("127.0.0.1:{}", free_port()),
        "no-such-host.invalid:2181".to_owned(),
    ] {
        let client = ZookeeperRegistry::new(ZookeeperConfig {
            connect_timeout_ms: connect_timeout.as_millis() as u64,
            ..common::config(&servers, "/console")
        })
        .unwrap();
        let started = Instant::now();
        // The caller's own limit is longer: connect_timeout_ms bounds it.
        let outcome = client.connect(Duration::from_secs(60)).await;
        let took = started.elapsed();
        match outcome {
            Err(RegistryError::ConnectTimeout {
                timeout, reason, ..
            }) => {
                assert_eq!(timeout, connect_timeout);
                assert!(reason.contains(&servers), "{servers}: {reason}");
            }
            other => panic!("{servers}: expected ConnectTimeout, got {other:?}"),
        }
        assert!(
            took <= connect_timeout + Duration::from_secs(1),
            "{servers}: gave up after {took:?}, not within {connect_timeout:?}"
        );
        assert_eq!(client.connection_state(), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_cancelled_lock_attempts_leave_no_node_behind() {
    common::init_logging();
    let servers = zookeeper::servers();
    let namespace = Namespace::new(&servers, "locks").await;
    let holder = common::connected_with(common::config_in(&namespace)).await;
    let waiter = common::connected_with(common::config_in(&namespace)).await;
    let guard = holder.lock("/locks/c", None).await.unwrap();
    // A dropped future, a timed-out lock, and a timed-out untimed lock.
    let dropped = tokio::time::timeout(Duration::from_millis(300), waiter.lock("/locks/c", None));
    assert!(dropped.await.is_err(), "the lock is held");
    let timed = waiter
        .lock("/locks/c", Some(Duration::from_millis(200)))
        .await;
    assert!(
        matches!(timed, Err(RegistryError::LockTimeout { .. })),
        "{timed:?}"
    );
    eventually(
        "only the holder's node remains",
        Duration::from_secs(5),
        || async { holder.children("/locks/c").await.unwrap().len() == 1 },
    )
    .await;
    guard.release().await.unwrap();
    eventually(
        "the released lock has left no node",
        Duration::from_secs(5),
        || async { holder.children("/locks/c").await.unwrap().is_empty() },
    )
    .await;
    let taken = waiter
        .try_lock("/locks/c", Duration::from_secs(5))
        .await
        .unwrap();
    assert!(taken.is_some(), "no abandoned attempt blocks the lock");
    drop(taken);
    holder.close().await.unwrap();
    waiter.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_fencing_tokens_increase_even_when_the_lock_directory_is_recreated() {
    common::init_logging();
    let servers = zookeeper::servers();
    let namespace = Namespace::new(&servers, "fencing").await;
    let client = common::connected_with(common::config_in(&namespace)).await;
    let first = client.lock("/locks/f", None).await.unwrap();
    let first_token = first.fencing_token();
    first.release().await.unwrap();
    client.delete("/locks/f").await.unwrap();
    let second = client.lock("/locks/f", None).await.unwrap();
    assert!(
        second.fencing_token() > first_token,
        "{} after {first_token}",
        second.fencing_token()
    );
    // A guard whose node someone deleted is no longer valid.
    client.delete("/locks/f").await.unwrap();
    tokio::time::timeout(PROMPTLY, second.lost())
        .await
        .expect("the guard notices that its node was deleted");
    assert!(!second.is_valid());
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_implied_parents_and_lock_nodes_are_not_keys() {
    common::init_logging();
    let servers = zookeeper::servers();
    let namespace = Namespace::new(&servers, "tree").await;
    let client = common::connected_with(common::config_in(&namespace)).await;
    let mut events = client.subscribe("/tree").await.unwrap();
    client
        .put("/tree/a/b/c", b"v", Mode::Persistent)
        .await
        .unwrap();
    let _lock = client.lock("/tree/lock", None).await.unwrap();
    expect_next(&mut events, PROMPTLY, Added, "/tree/a/b/c", b"v")
        .await
        .unwrap();
    assert_eq!(client.get("/tree/a").await.unwrap(), None);
    assert!(!client.exists("/tree/a/b").await.unwrap());
    assert_eq!(client.children("/tree").await.unwrap(), ["a", "lock"]);
    client.delete("/tree/a/b/c").await.unwrap();
    expect_next(&mut events, PROMPTLY, Removed, "/tree/a/b/c", b"v")
        .await
        .unwrap();
    assert_eq!(
        client.children("/tree").await.unwrap(),
        ["lock"],
        "empty implied parents are pruned"
    );
    // An implied parent becomes a key when a value is written to it.
    client
        .put("/tree/p/x", b"x", Mode::Persistent)
        .await
        .unwrap();
    expect_next(&mut events, PROMPTLY, Added, "/tree/p/x", b"x")
        .await
        .unwrap();
    client.put("/tree/p", b"p", Mode::Persistent).await.unwrap();
    expect_next(&mut events, PROMPTLY, Added, "/tree/p", b"p")
        .await
        .unwrap();
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_put_changes_a_keys_mode_atomically_and_respects_owners() {
    common::init_logging();
    let servers = zookeeper::servers();
    let namespace = Namespace::new(&servers, "modes").await;
    let owner = common::connected_with(common::config_in(&namespace)).await;
    let other = common::connected_with(common::config_in(&namespace)).await;
    let mut events = other.subscribe("/k").await.unwrap();
    owner.put("/k", b"p", Mode::Persistent).await.unwrap();
    expect_next(&mut events, PROMPTLY, Added, "/k", b"p")
        .await
        .unwrap();
    owner.put("/k", b"e", Mode::Ephemeral).await.unwrap();
    expect_next(&mut events, PROMPTLY, Removed, "/k", b"p")
        .await
        .unwrap();
    expect_next(&mut events, PROMPTLY, Added, "/k", b"e")
        .await
        .unwrap();
    assert!(matches!(
        other.put("/k", b"x", Mode::Persistent).await,
        Err(RegistryError::Conflict { .. })
    ));
    owner.put("/k", b"p2", Mode::Persistent).await.unwrap();
    expect_next(&mut events, PROMPTLY, Removed, "/k", b"e")
        .await
        .unwrap();
    expect_next(&mut events, PROMPTLY, Added, "/k", b"p2")
        .await
        .unwrap();
    other
        .put("/k", b"theirs", Mode::Persistent)
        .await
        .expect("a persistent key can be overwritten by anyone");
    expect_next(&mut events, PROMPTLY, Updated, "/k", b"theirs")
        .await
        .unwrap();

    owner
        .put("/parent/child", b"c", Mode::Persistent)
        .await
        .unwrap();
    assert!(matches!(
        owner.put("/parent", b"e", Mode::Ephemeral).await,
        Err(RegistryError::InvalidPath { .. })
    ));
    owner.put("/eph", b"e", Mode::Ephemeral).await.unwrap();
    assert!(matches!(
        owner.put("/eph/child", b"c", Mode::Persistent).await,
        Err(RegistryError::InvalidPath { .. })
    ));
    owner.close().await.unwrap();
    assert_eq!(
        other.get("/k").await.unwrap().as_deref(),
        Some(&b"theirs"[..])
    );
    other.close().await.unwrap();
}
