//! Issue 12, finding 1: forged node-to-node calls change nothing.
//!
//! An attacker who can reach a node posts departure notices (`/internal/v1/left`) for a live peer,
//! and wake-ups for made-up apps: without the cluster's signature, with a user's bearer token,
//! with a signature under another key, and — the strongest attacker, one who holds the cluster's
//! key — with a valid signature. None of it may drop the peer, fence it, move its apps or start a
//! second copy of any app: membership comes from the registry alone.

use std::collections::BTreeMap;
use std::time::Duration;

use cluster_tests::holds_for;
use cluster_tests::{Body, Cluster, Options, RegistryKind};
use serde_json::{Value, json};
use sqlx::Connection;
use test_support::signing;

use crate::{SETTLE, label};

const TOKEN: &str = "forged-notice-test-token";

/// The key every node of the cluster signs with: drawn once into the task database.
async fn cluster_key(cluster: &Cluster) -> Vec<u8> {
    let options = cluster
        .mariadb()
        .connect_options(&cluster.mariadb().host_port, Some(cluster.store_database()));
    let mut db = sqlx::MySqlConnection::connect_with(&options).await.unwrap();
    let hex: String =
        sqlx::query_scalar("SELECT value FROM cluster_settings WHERE name = 'node_key'")
            .fetch_one(&mut db)
            .await
            .unwrap();
    signing::key_from_hex(&hex)
}

/// Every node's epoch: fencing a node moves it on.
async fn epochs(cluster: &Cluster) -> BTreeMap<String, i64> {
    let options = cluster
        .mariadb()
        .connect_options(&cluster.mariadb().host_port, Some(cluster.store_database()));
    let mut db = sqlx::MySqlConnection::connect_with(&options).await.unwrap();
    sqlx::query_as::<_, (String, i64)>("SELECT node_id, epoch FROM node_epochs")
        .fetch_all(&mut db)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

async fn forged_departure_notices_change_nothing(kind: RegistryKind) {
    let cluster = Cluster::start(Options::new(kind, 2).auth_token(TOKEN)).await;
    let apps = cluster.create_marker_apps(4).await;
    cluster.start_and_wait_running(&apps, SETTLE).await;
    let (victim, receiver) = (cluster.node(0).id.clone(), cluster.api(1));
    let nodes: Value = receiver.get("/api/v1/cluster/nodes").await.unwrap().body;
    let started_at = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|node| node["id"] == victim.as_str())
        .unwrap()["started_at"]
        .clone();
    let owners_before: Vec<(String, Option<String>)> = receiver
        .apps()
        .await
        .unwrap()
        .into_iter()
        .map(|app| (app.id.to_string(), app.adopted_by))
        .collect();
    let epochs_before = epochs(&cluster).await;

    let notice = json!({"node_id": victim, "started_at": started_at});
    let body = serde_json::to_vec(&notice).unwrap();
    let key = cluster_key(&cluster).await;
    let unsigned = receiver.with_token(None);
    let with_user_token = receiver.with_token(Some(TOKEN));
    // Six notices of each kind: the issue saw six make a 3-node cluster fence itself in a loop.
    for round in 0..6 {
        for (what, api, header, expected) in [
            ("no credential", &unsigned, None, 401),
            ("the user's bearer token", &with_user_token, None, 401),
            (
                "a signature under another key",
                &unsigned,
                Some(signing::sign(
                    b"not-the-cluster-key",
                    "POST",
                    "/internal/v1/left",
                    &body,
                    "n9",
                )),
                401,
            ),
            (
                "a valid signature (an attacker holding the cluster's key)",
                &unsigned,
                Some(signing::sign(
                    &key,
                    "POST",
                    "/internal/v1/left",
                    &body,
                    "n9",
                )),
                204,
            ),
        ] {
            let headers: Vec<(&str, String)> = header
                .map(|value| vec![(signing::HEADER, value)])
                .unwrap_or_default();
            let answer = api
                .call_with_headers(
                    reqwest::Method::POST,
                    "/internal/v1/left",
                    Body::Raw(body.clone()),
                    &headers,
                )
                .await
                .unwrap();
            assert_eq!(
                answer.status,
                expected,
                "{} round {round}: a departure notice with {what}: {answer}",
                label(kind)
            );
        }
        // Wake-ups for apps that do not exist, unsigned: refused before they reach the dispatcher.
        let answer = unsigned
            .call(
                reqwest::Method::POST,
                "/internal/v1/wake",
                Body::Json(json!({"app_id": 424_242 + round})),
            )
            .await
            .unwrap();
        assert_eq!(answer.status, 401, "an unsigned wake-up: {answer}");
    }

    // Nothing changed, and nothing changes while the nodes would act on such a notice (their
    // workers take over within a lease retry and a monitor tick of a membership change).
    let window = Duration::from_secs(3).max(cluster.monitor_interval() * 4);
    holds_for("the forged notices change nothing", window, || async {
        let nodes = receiver.nodes().await?;
        if !nodes.iter().any(|node| node.id == victim) {
            return Err(format!(
                "{victim} was dropped from the receiver's view: {nodes:?}"
            ));
        }
        let owners: Vec<(String, Option<String>)> = receiver
            .apps()
            .await?
            .into_iter()
            .map(|app| (app.id.to_string(), app.adopted_by))
            .collect();
        if owners != owners_before {
            return Err(format!(
                "apps changed hands: {owners_before:?} -> {owners:?}"
            ));
        }
        for app in &apps {
            let copies = cluster.app_processes(&app.id.to_string()).len();
            if copies != 1 {
                return Err(format!("app {} has {copies} running copies", app.id));
            }
        }
        Ok(())
    })
    .await;
    assert_eq!(
        epochs(&cluster).await,
        epochs_before,
        "no node was fenced (an epoch moves on when a node is fenced)"
    );
}

each_registry!(forged_departure_notices_change_nothing =>
    zk_forged_departure_notices_change_nothing,
    mysql_forged_departure_notices_change_nothing,
    etcd_forged_departure_notices_change_nothing);
