//! A private ZooKeeper ensemble: it elects a new leader when its leader is killed, takes the
//! killed member back as a follower, keeps a client's session across all that, and leaves
//! nothing behind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use test_support::zookeeper::{Namespace, PrivateEnsemble};
use zookeeper_client as zk;

const ELECTION: Duration = Duration::from_secs(30);

#[tokio::test]
async fn zk_a_private_ensemble_survives_its_leader_and_takes_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ensemble");
    let ensemble = PrivateEnsemble::start(3, Some(&root)).await;
    assert_eq!(ensemble.servers().split(',').count(), 3);
    for member in 1..=3 {
        assert!(root.join(format!("member-{member}/data/myid")).is_file());
    }
    let (leader, _) = ensemble.wait_for_leader(ELECTION).await.unwrap();

    // A client of all three members, holding an ephemeral znode in a namespace.
    let namespace = Namespace::new(&ensemble.servers(), "support-test").await;
    let client = zk::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .connect(&ensemble.servers())
        .await
        .unwrap();
    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let ephemeral = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    client
        .create(namespace.path(), b"", &persistent)
        .await
        .unwrap();
    client
        .create(&format!("{}/mine", namespace.path()), b"", &ephemeral)
        .await
        .unwrap();
    let own = BTreeMap::from([("mine".to_owned(), client.session_id().0)]);
    assert_eq!(namespace.ephemeral_owners("").await.unwrap(), own);

    ensemble.kill(leader).await;
    assert_eq!(
        ensemble.mode(leader).await,
        None,
        "the killed member answers"
    );
    let (new_leader, _) = ensemble.wait_for_leader(ELECTION).await.unwrap();
    assert_ne!(new_leader, leader);
    ensemble.start_member(leader).await;
    assert_eq!(ensemble.mode(leader).await.as_deref(), Some("follower"));
    assert_eq!(ensemble.leader().await, Some(new_leader));
    assert_eq!(
        namespace.ephemeral_owners("").await.unwrap(),
        own,
        "the client's session and its ephemeral znode outlive the leader"
    );

    drop(client);
    namespace.delete().await;
    drop(ensemble);
    assert!(!root.exists(), "{} left behind", root.display());
}
