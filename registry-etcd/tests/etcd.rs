//! What the kit cannot see: etcd's own failure modes. `etcd_` tests against the etcd of
//! `deploy/etcd.sh` (`CONSOLE_TEST_ETCD`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use registry_api::{Event, EventKind, Mode, Registry};
use registry_etcd::{EtcdConfig, EtcdRegistry};
use test_support::etcd::{self, Namespace};
use test_support::proxy::TcpProxy;

async fn connected(namespace: &Namespace, endpoints: &str) -> EtcdRegistry {
    let client = EtcdRegistry::new(EtcdConfig {
        endpoints: endpoints.to_owned(),
        namespace: namespace.path().to_owned(),
        session_timeout_ms: 2000,
        ..EtcdConfig::default()
    })
    .unwrap();
    client.connect(Duration::from_secs(10)).await.unwrap();
    client
}

/// A subscriber cut off while the revisions it would resume from are compacted away re-reads
/// the prefix and delivers the difference: the last value of each changed key, `Removed` with
/// the value it had, nothing twice.
#[tokio::test]
async fn etcd_a_watch_whose_revision_was_compacted_re_reads_and_delivers_the_difference() {
    let namespace = Namespace::new(&etcd::endpoints(), "etcd-compaction").await;
    let proxy = TcpProxy::start(namespace.endpoints()).await;
    let writer = connected(&namespace, namespace.endpoints()).await;
    let watcher = connected(&namespace, &proxy.addr().to_string()).await;
    writer.put("/c/gone", b"g", Mode::Persistent).await.unwrap();
    let mut events = watcher.subscribe("/c").await.unwrap();
    writer.put("/c/k", b"1", Mode::Persistent).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .unwrap();
    assert_eq!(first, Some(Event::new(EventKind::Added, "/c/k", "1")));

    proxy.cut();
    writer.put("/c/k", b"2", Mode::Persistent).await.unwrap();
    writer.put("/c/k", b"3", Mode::Persistent).await.unwrap();
    writer.delete("/c/gone").await.unwrap();
    writer.put("/c/new", b"n", Mode::Persistent).await.unwrap();
    let mut raw = etcd::client(namespace.endpoints()).await.unwrap();
    let now = raw
        .get("/", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    raw.compact(now, None).await.unwrap();
    proxy.pass();

    let mut seen = Vec::new();
    while seen.len() < 3 {
        let event = tokio::time::timeout(Duration::from_secs(15), events.next()).await;
        seen.push(
            event
                .expect("the changes made during the cut")
                .expect("a live subscription"),
        );
    }
    seen.sort_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(
        seen,
        [
            Event::new(EventKind::Removed, "/c/gone", "g"),
            Event::new(EventKind::Updated, "/c/k", "3"),
            Event::new(EventKind::Added, "/c/new", "n"),
        ]
    );
    let extra = tokio::time::timeout(Duration::from_secs(2), events.next()).await;
    assert!(extra.is_err(), "nothing more should arrive, got {extra:?}");
    watcher.close().await.unwrap();
    writer.close().await.unwrap();
    namespace.delete().await;
}
