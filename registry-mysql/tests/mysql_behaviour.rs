//! Behaviour of the MySQL backend beyond the conformance kit: load, connection loss, session
//! loss through a network partition, late commits, the event purge, and keys that look like SQL
//! wildcards. Each test runs in a database of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{PREFIX, SESSION_MS, connected};
use registry_api::testkit::{expect_state, next_event};
use registry_api::{ConnectionState, Event, EventKind, Mode, Registry, RegistryError};
use registry_mysql::MysqlRegistry;
use sqlx::{AssertSqlSafe, Connection};
use test_support::eventually;
use test_support::mariadb::TestDatabase;

use ConnectionState::{Connected, Reconnected, SessionLost, Suspended};
use EventKind::{Added, Removed, Updated};

/// Generous: a liveness bound, not a latency measurement.
const EVENT_WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_eight_writers_500_puts_each_are_seen_exactly_once_in_order() {
    const WRITERS: usize = 8;
    const PUTS: usize = 500;
    let db = common::database().await;
    let watcher = connected(&db).await;
    let mut events = watcher.subscribe("/load").await.unwrap();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let client = connected(&db).await;
        writers.push(tokio::spawn(async move {
            let mut states = client.connection_listener();
            let mut refused = 0;
            for i in 0..PUTS {
                // Every other put goes to one shared key, so commits on it interleave.
                let (key, value) = if i % 2 == 0 {
                    (format!("/load/own-{w}"), i.to_string())
                } else {
                    ("/load/shared".to_owned(), format!("{w}:{i}"))
                };
                loop {
                    match client.put(&key, value.as_bytes(), Mode::Persistent).await {
                        Ok(()) => break,
                        // A heartbeat that misses its deadline on a loaded machine suspends the
                        // client for a moment. `NotConnected` is refused before anything is
                        // sent, so retrying once the client is back cannot write twice: the
                        // exactly-once checks below still hold every event to account.
                        Err(RegistryError::NotConnected { .. }) => {
                            refused += 1;
                            while !client.connection_state().is_some_and(|s| s.is_connected()) {
                                let state = tokio::time::timeout(EVENT_WAIT, states.next())
                                    .await
                                    .unwrap_or_else(|_| {
                                        panic!("writer {w}: still suspended after {EVENT_WAIT:?}")
                                    });
                                assert!(state.is_some(), "writer {w}: the client closed");
                            }
                        }
                        Err(e) => panic!("writer {w}: put {key} = {value}: {e}"),
                    }
                }
            }
            client.close().await.unwrap();
            refused
        }));
    }
    let mut refused = Vec::new();
    for writer in writers {
        refused.push(writer.await.unwrap());
    }
    // Evidence for the log: how often a writer found its client suspended (usually never).
    eprintln!("puts refused while suspended, per writer: {refused:?}");
    let mut seen: BTreeMap<String, Vec<(EventKind, String)>> = BTreeMap::new();
    for n in 0..WRITERS * PUTS {
        let event = next_event(&mut events, EVENT_WAIT)
            .await
            .unwrap_or_else(|failure| panic!("event {n} of {}: {failure}", WRITERS * PUTS));
        seen.entry(event.path.clone())
            .or_default()
            .push((event.kind, event.value_str().into_owned()));
    }
    for w in 0..WRITERS {
        let key = format!("/load/own-{w}");
        let got = &seen[&key];
        let expected: Vec<(EventKind, String)> = (0..PUTS)
            .step_by(2)
            .enumerate()
            .map(|(n, i)| (if n == 0 { Added } else { Updated }, i.to_string()))
            .collect();
        assert_eq!(
            got, &expected,
            "{key}: every value exactly once, in commit order"
        );
    }
    let shared = &seen["/load/shared"];
    assert_eq!(shared.len(), WRITERS * PUTS / 2);
    assert_eq!(shared[0].0, Added);
    assert!(shared[1..].iter().all(|(kind, _)| *kind == Updated));
    for w in 0..WRITERS {
        let mine: Vec<usize> = shared
            .iter()
            .filter_map(|(_, v)| v.split_once(':'))
            .filter(|(writer, _)| *writer == w.to_string())
            .map(|(_, i)| i.parse().unwrap())
            .collect();
        let expected: Vec<usize> = (1..PUTS).step_by(2).collect();
        assert_eq!(
            mine, expected,
            "writer {w}'s values on the shared key, in order, once each"
        );
    }
    // Nothing more: no duplicates trail behind.
    let extra = tokio::time::timeout(
        Duration::from_millis(3 * common::HEARTBEAT_MS),
        events.next(),
    )
    .await;
    assert!(extra.is_err(), "no event beyond the writes, got {extra:?}");
    watcher.close().await.unwrap();
}

/// The connection id the client's last heartbeat recorded.
async fn connection_id(db: &TestDatabase, client: &MysqlRegistry) -> i64 {
    let mut admin = db.connect().await;
    let id: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT connection_id FROM {PREFIX}clients WHERE id = ?"
    )))
    .bind(client.client_id().unwrap() as i64)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    admin.close().await.unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_killed_connection_suspends_then_reconnects_keeping_ephemerals() {
    let db = common::database().await;
    let watcher = connected(&db).await;
    let victim = connected(&db).await;
    let mut events = watcher.subscribe("/kill").await.unwrap();
    victim
        .put("/kill/node", b"alive", Mode::Ephemeral)
        .await
        .unwrap();
    let event = next_event(&mut events, EVENT_WAIT).await.unwrap();
    assert_eq!(event, Event::new(Added, "/kill/node", "alive"));
    let session = victim.client_id();
    let mut states = victim.connection_listener();
    assert_eq!(states.next().await, Some(Connected));

    let thread = connection_id(&db, &victim).await;
    let mut admin = db.connect().await;
    sqlx::query(AssertSqlSafe(format!("KILL {thread}")))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();

    let wait = Duration::from_millis(SESSION_MS) + EVENT_WAIT;
    let mut seen = expect_state(&mut states, wait, Suspended)
        .await
        .unwrap_or_else(|failure| {
            panic!("a killed connection should suspend the client: {failure}")
        });
    seen.extend(
        expect_state(&mut states, wait, Reconnected)
            .await
            .unwrap_or_else(|failure| {
                panic!("the client should reconnect with its session: {failure}")
            }),
    );
    assert_eq!(seen, [Suspended, Reconnected], "no session loss on the way");
    assert_eq!(victim.client_id(), session, "the same session survives");
    // The call connection is reopened (and recorded) by the next call or poll.
    eventually(
        "the client records its new connection",
        EVENT_WAIT,
        || async { connection_id(&db, &victim).await != thread },
    )
    .await;
    assert_eq!(
        watcher.get("/kill/node").await.unwrap().as_deref(),
        Some(&b"alive"[..]),
        "the ephemeral survives"
    );
    // The watcher saw nothing in between, and the client writes again.
    victim
        .put("/kill/node", b"still", Mode::Ephemeral)
        .await
        .unwrap();
    let event = next_event(&mut events, EVENT_WAIT).await.unwrap();
    assert_eq!(event, Event::new(Updated, "/kill/node", "still"));
    victim.close().await.unwrap();
    watcher.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_client_cut_off_past_the_session_timeout_is_purged_and_re_registers() {
    let db = common::database().await;
    let (victim, proxy) = common::connected_through_proxy(&db).await;
    let watcher = connected(&db).await;
    let mut events = watcher.subscribe("/away").await.unwrap();
    victim
        .put("/away/node", b"v1", Mode::Ephemeral)
        .await
        .unwrap();
    let lock = victim.lock("/away/lock", None).await.unwrap();
    assert_eq!(
        next_event(&mut events, EVENT_WAIT).await.unwrap(),
        Event::new(Added, "/away/node", "v1")
    );
    let old_session = victim.client_id();
    let mut states = victim.connection_listener();
    assert_eq!(states.next().await, Some(Connected));

    proxy.black_hole();
    let wait = Duration::from_millis(SESSION_MS) + EVENT_WAIT;
    // Peers purge it by the database's clock and see the key go, with its last value.
    assert_eq!(
        next_event(&mut events, EVENT_WAIT).await.unwrap(),
        Event::new(Removed, "/away/node", "v1")
    );
    let got = watcher.try_lock_for_test("/away/lock").await;
    assert!(got, "the cut-off client's lock is freed by the purge");
    // The client itself knows: suspended, then lost once the session timeout passed.
    let seen = expect_state(&mut states, wait, SessionLost)
        .await
        .unwrap_or_else(|failure| panic!("while cut off: {failure}"));
    assert_eq!(seen, [Suspended, SessionLost]);
    assert!(!lock.is_valid(), "its lock guard is invalid");
    assert!(matches!(
        victim.put("/away/other", b"x", Mode::Persistent).await,
        Err(RegistryError::NotConnected { .. })
    ));

    proxy.pass();
    expect_state(&mut states, wait, Connected)
        .await
        .unwrap_or_else(|failure| panic!("a new session once the network is back: {failure}"));
    assert_ne!(victim.client_id(), old_session, "a new session");
    assert_eq!(
        next_event(&mut events, EVENT_WAIT).await.unwrap(),
        Event::new(Added, "/away/node", "v1")
    );
    victim.close().await.unwrap();
    assert_eq!(
        next_event(&mut events, EVENT_WAIT).await.unwrap(),
        Event::new(Removed, "/away/node", "v1")
    );
    watcher.close().await.unwrap();
}

trait TryLockForTest {
    async fn try_lock_for_test(&self, path: &str) -> bool;
}

impl TryLockForTest for MysqlRegistry {
    async fn try_lock_for_test(&self, path: &str) -> bool {
        matches!(self.lock(path, Some(EVENT_WAIT)).await, Ok(guard) if guard.is_valid())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_late_committing_writer_is_delivered_before_later_ones() {
    let db = common::database().await;
    let watcher = connected(&db).await;
    let writer = connected(&db).await;
    let mut events = watcher.subscribe("/late").await.unwrap();
    // A slow writer, by hand, following the backend's protocol: lock the sequence row,
    // write the row and its event, and stall before committing.
    let mut slow = db.connect().await;
    sqlx::query("BEGIN").execute(&mut slow).await.unwrap();
    let last: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT last_seq FROM {PREFIX}sequence WHERE id = 1 FOR UPDATE"
    )))
    .fetch_one(&mut slow)
    .await
    .unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {PREFIX}data (path, value, owner, version, updated_at) VALUES ('/late/a', 'a', NULL, 1, UTC_TIMESTAMP(6))"
    )))
    .execute(&mut slow)
    .await
    .unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {PREFIX}events (seq, path, kind, old_value, new_value, created_at) VALUES (?, '/late/a', 1, NULL, 'a', UTC_TIMESTAMP(6))"
    )))
    .bind(last + 1)
    .execute(&mut slow)
    .await
    .unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE {PREFIX}sequence SET last_seq = ? WHERE id = 1"
    )))
    .bind(last + 1)
    .execute(&mut slow)
    .await
    .unwrap();
    // A fast writer starts later and must not commit (and be delivered) first.
    let fast = tokio::spawn(async move {
        writer.put("/late/b", b"b", Mode::Persistent).await.unwrap();
        writer
    });
    let probe = tokio::sync::Mutex::new(db.connect().await);
    eventually(
        "the fast writer waits for the sequence lock",
        EVENT_WAIT,
        || async {
            // Its final packet's first statement, which takes the sequence row, is running
            // (InnoDB's own view shows the wait inside a multi-statement query as RUNNING).
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = DATABASE() \
                 AND INFO LIKE 'UPDATE %sequence SET last_seq = LAST_INSERT_ID(%'",
            )
            .fetch_one(&mut *probe.lock().await)
            .await
            .unwrap();
            waiting > 0
        },
    )
    .await;
    assert!(
        !fast.is_finished(),
        "the fast writer committed before the slow one"
    );
    assert!(
        events.try_next().is_none(),
        "nothing is delivered before the slow commit"
    );
    sqlx::query("COMMIT").execute(&mut slow).await.unwrap();
    let writer = fast.await.unwrap();
    assert_eq!(
        next_event(&mut events, EVENT_WAIT).await.unwrap(),
        Event::new(Added, "/late/a", "a")
    );
    assert_eq!(
        next_event(&mut events, EVENT_WAIT).await.unwrap(),
        Event::new(Added, "/late/b", "b")
    );
    let _ = slow.close().await;
    let _ = probe.into_inner().close().await;
    writer.close().await.unwrap();
    watcher.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_event_purge_deletes_old_events_only() {
    let db = common::database().await;
    let client = connected(&db).await;
    client.put("/gc/a", b"1", Mode::Persistent).await.unwrap();
    client.put("/gc/b", b"2", Mode::Persistent).await.unwrap();
    let mut admin = db.connect().await;
    let aged = sqlx::query(AssertSqlSafe(format!(
        "UPDATE {PREFIX}events SET created_at = created_at - INTERVAL 2 HOUR"
    )))
    .execute(&mut admin)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(aged, 2);
    client.put("/gc/c", b"3", Mode::Persistent).await.unwrap();
    client.put("/gc/a", b"4", Mode::Persistent).await.unwrap();
    let purged = client
        .purge_events_older_than(Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(purged, 2, "the two aged events go");
    let left: Vec<Vec<u8>> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT new_value FROM {PREFIX}events ORDER BY seq"
    )))
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(left, [b"3".to_vec(), b"4".to_vec()], "recent events stay");
    // Data is untouched and subscribers keep working.
    assert_eq!(
        client.get("/gc/b").await.unwrap().as_deref(),
        Some(&b"2"[..])
    );
    let mut events = client.subscribe("/gc").await.unwrap();
    client.delete("/gc/b").await.unwrap();
    assert_eq!(
        next_event(&mut events, EVENT_WAIT).await.unwrap(),
        Event::new(Removed, "/gc/b", "2")
    );
    admin.close().await.unwrap();
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_keys_with_sql_wildcards_and_case_are_literal() {
    let db = common::database().await;
    let client = connected(&db).await;
    for key in [
        "/w/a_b/x", "/w/aXb/y", "/w/a%b", "/w/a%/z", "/w/A_b", "/w/a_b ",
    ] {
        client
            .put(key, key.as_bytes(), Mode::Persistent)
            .await
            .unwrap();
    }
    assert_eq!(client.children("/w/a_b").await.unwrap(), ["x"]);
    assert_eq!(client.children("/w/a%").await.unwrap(), ["z"]);
    assert_eq!(
        client.children("/w").await.unwrap(),
        ["A_b", "a%", "a%b", "aXb", "a_b", "a_b "]
    );
    let mut events = client.subscribe("/w/a_b").await.unwrap();
    client
        .put("/w/aXb/y", b"changed", Mode::Persistent)
        .await
        .unwrap();
    client.delete("/w/a_b").await.unwrap();
    assert_eq!(
        next_event(&mut events, EVENT_WAIT).await.unwrap(),
        Event::new(Removed, "/w/a_b/x", "/w/a_b/x"),
        "a subscription to /w/a_b sees neither /w/aXb/y nor /w/A_b"
    );
    for (key, present) in [
        ("/w/a_b/x", false),
        ("/w/aXb/y", true),
        ("/w/a%b", true),
        ("/w/A_b", true),
        ("/w/a_b ", true),
    ] {
        assert_eq!(client.exists(key).await.unwrap(), present, "{key:?}");
    }
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_expired_client_cannot_write_or_lock_until_it_has_a_new_session() {
    let db = common::database().await;
    let client = connected(&db).await;
    let mut states = client.connection_listener();
    assert_eq!(states.next().await, Some(Connected));
    client.put("/exp/e", b"1", Mode::Ephemeral).await.unwrap();
    let old = client.client_id();
    common::expire(&db, &client).await.unwrap();
    // Whichever call or heartbeat comes first, a dead session never writes: the put fails
    // (its connection was killed by the purge, or its session is gone) or runs in a new session.
    let outcome = client.put("/exp/p", b"x", Mode::Persistent).await;
    assert!(
        matches!(
            outcome,
            Err(RegistryError::SessionLost { .. }
                | RegistryError::NotConnected { .. }
                | RegistryError::Transient { .. })
        ) || client.client_id() != old,
        "a put by an expired session must fail, got {outcome:?}"
    );
    let seen = expect_state(&mut states, EVENT_WAIT, Connected)
        .await
        .unwrap_or_else(|failure| panic!("a new session: {failure}"));
    // The purge kills the client's connection: a call may notice that first (Suspended).
    let seen: Vec<_> = seen.into_iter().skip_while(|s| *s == Suspended).collect();
    assert_eq!(seen, [SessionLost, Connected]);
    assert_eq!(
        client.get("/exp/e").await.unwrap().as_deref(),
        Some(&b"1"[..])
    );
    client.put("/exp/p", b"x", Mode::Persistent).await.unwrap();
    client.close().await.unwrap();
}

#[test]
fn mysql_factory_builds_an_unconnected_client_and_names_bad_keys() {
    let config = serde_json::json!({
        "url": "mysql://127.0.0.1:3306/console",
        "username": "root",
        "password": "",
        "heartbeat_interval_ms": 500,
        "session_timeout_ms": 3000,
    });
    let client = registry_api::create("mysql", &config).unwrap();
    assert_eq!(client.backend(), "mysql");
    assert_eq!(client.connection_state(), None);
    assert!(registry_api::known_types().contains(&"mysql"));

    let error = |config: serde_json::Value| registry_api::create("mysql", &config).unwrap_err();
    let key_of = |error: RegistryError| match error {
        RegistryError::Config { key, .. } => key,
        other => panic!("expected a Config error, got {other:?}"),
    };
    assert_eq!(
        key_of(error(serde_json::json!({"url": "postgres://x/y"}))),
        "registry.mysql.url"
    );
    assert_eq!(
        key_of(error(
            serde_json::json!({"url": "mysql://root:pw@127.0.0.1:3306/console"})
        )),
        "registry.mysql.url"
    );
    assert_eq!(
        key_of(error(serde_json::json!({"url": "mysql://127.0.0.1:3306"}))),
        "registry.mysql.url"
    );
    assert_eq!(
        key_of(error(
            serde_json::json!({"heartbeat_interval_ms": 1000, "session_timeout_ms": 2000})
        )),
        "registry.mysql.session_timeout_ms"
    );
    assert_eq!(
        key_of(error(serde_json::json!({"table_prefix": "x;drop"}))),
        "registry.mysql.table_prefix"
    );
    assert_eq!(
        key_of(error(serde_json::json!({"nope": 1}))),
        "registry.mysql.nope"
    );
}

/// Issue 12, finding 4: another session holds the `sequence` row lock (as a writer stopped
/// inside its transaction once did) for three session timeouts. Writes wait, nobody's session
/// is touched: heartbeats have their own connection, and no writer holds the lock across a round
/// trip. Before the fix both clients lost their sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_a_held_sequence_row_costs_writers_time_but_nobody_their_session() {
    let db = common::database().await;
    let writer = connected(&db).await;
    let reader = connected(&db).await;
    let mut events = reader.subscribe("/held").await.unwrap();
    let sessions = (writer.client_id(), reader.client_id());
    let mut writer_states = writer.connection_listener();
    let mut reader_states = reader.connection_listener();
    assert_eq!(writer_states.next().await, Some(Connected));
    assert_eq!(reader_states.next().await, Some(Connected));

    let mut holder = db.connect().await;
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "SELECT last_seq FROM {PREFIX}sequence WHERE id = 1 FOR UPDATE"
    )))
    .fetch_one(&mut holder)
    .await
    .unwrap();
    let write = tokio::spawn(async move {
        let outcome = writer.put("/held/a", b"1", Mode::Persistent).await;
        (writer, outcome)
    });
    // The fault lasts three session timeouts; reads go on meanwhile.
    let hold = Duration::from_millis(3 * SESSION_MS);
    let started = std::time::Instant::now();
    while started.elapsed() < hold {
        assert_eq!(reader.get("/held/a").await.unwrap(), None);
        tokio::time::sleep(Duration::from_millis(common::HEARTBEAT_MS)).await;
    }
    if write.is_finished() {
        let (_, outcome) = write.await.unwrap();
        panic!("the write should wait for the held lock, it ended: {outcome:?}");
    }
    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
    let (writer, outcome) = write.await.unwrap();
    outcome.expect("the write goes through once the lock is free");
    assert_eq!(
        next_event(&mut events, EVENT_WAIT).await.unwrap(),
        Event::new(Added, "/held/a", "1")
    );
    let drain = |states: &mut registry_api::ConnectionListener| {
        std::iter::from_fn(|| states.try_next()).collect::<Vec<_>>()
    };
    assert_eq!(
        drain(&mut writer_states),
        [],
        "the writer's session was untouched"
    );
    assert_eq!(
        drain(&mut reader_states),
        [],
        "the reader's session was untouched"
    );
    assert_eq!((writer.client_id(), reader.client_id()), sessions);
    let _ = holder.close().await;
    writer.close().await.unwrap();
    reader.close().await.unwrap();
}

/// A release that meets a held row lock waits it out instead of failing: a lock-wait timeout
/// (1 s, the link's limit) rolls back only the statement, and freeing a lock is idempotent, so
/// it is retried like any write. Before, `release` failed with error 1205 after one second
/// (seen in CI: a conformance case's release met a cut acquisition's lingering transaction)
/// and the caller was left not knowing whether it still held the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_a_release_waits_out_a_held_row_lock() {
    let db = common::database().await;
    let holder_client = connected(&db).await;
    let other = connected(&db).await;
    let guard = holder_client.lock("/locks/held", None).await.unwrap();
    let token = guard.fencing_token();

    let mut blocker = db.connect().await;
    sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "SELECT owner FROM {PREFIX}locks WHERE path = ? FOR UPDATE"
    )))
    .bind(b"/locks/held".as_slice())
    .fetch_one(&mut blocker)
    .await
    .unwrap();
    let release = tokio::spawn(guard.release());
    // Past one lock-wait timeout (1 s), short of the attempts a write is allowed.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(
        !release.is_finished(),
        "the release should wait for the held row: {:?}",
        release.await
    );
    sqlx::query("COMMIT").execute(&mut blocker).await.unwrap();
    release
        .await
        .unwrap()
        .expect("the release goes through once the row is free");

    let again = other
        .lock("/locks/held", Some(Duration::from_secs(5)))
        .await
        .expect("the released lock is free for another client");
    assert!(again.fencing_token() > token);
    again.release().await.unwrap();
    let _ = blocker.close().await;
    holder_client.close().await.unwrap();
    other.close().await.unwrap();
}

/// Issue 12, finding 16: a subscriber whose cursor fell below the oldest event left after a
/// purge cannot be delivered what was purged; it is told so with `SessionLost` (as etcd's
/// `ErrCompacted` forces a re-read), then `Connected` on a new session, and its subscription
/// goes on with later changes. Before, the purged changes were skipped without a word.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_a_subscriber_behind_the_purged_log_is_told_to_re_read() {
    let db = common::database().await;
    let (behind, proxy) = common::connected_through_proxy(&db).await;
    let mut events = behind.subscribe("/gap").await.unwrap();
    let mut states = behind.connection_listener();
    assert_eq!(states.next().await, Some(Connected));
    let writer = connected(&db).await;

    // Less than a session timeout: `behind` keeps its session, but misses a poll or two.
    proxy.black_hole();
    writer
        .put("/gap/missed", b"1", Mode::Persistent)
        .await
        .unwrap();
    let purged = writer
        .purge_events_older_than(Duration::ZERO)
        .await
        .unwrap();
    assert!(purged >= 1, "the event was purged");
    proxy.pass();

    let wait = Duration::from_millis(SESSION_MS) + EVENT_WAIT;
    expect_state(&mut states, wait, SessionLost)
        .await
        .unwrap_or_else(|failure| panic!("the gap should be reported: {failure}"));
    expect_state(&mut states, wait, Connected)
        .await
        .unwrap_or_else(|failure| panic!("a new session should follow: {failure}"));
    writer
        .put("/gap/later", b"2", Mode::Persistent)
        .await
        .unwrap();
    assert_eq!(
        next_event(&mut events, EVENT_WAIT).await.unwrap(),
        Event::new(Added, "/gap/later", "2"),
        "the subscription goes on (the purged change is not invented)"
    );
    writer.close().await.unwrap();
    behind.close().await.unwrap();
}
