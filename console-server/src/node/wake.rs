//! Calls between nodes that make the cluster react faster than the registry reports.
//!
//! - Wake-ups: when a task is submitted on one node for an app owned by another, the submitting
//!   node nudges the owner over HTTP (`POST /internal/v1/wake`), so the task starts within
//!   milliseconds whatever the registry's event latency. A lost nudge only delays the task until
//!   the owner's fallback poll.
//! - Departures: a node that shut down gracefully tells its peers (`POST /internal/v1/left`), so
//!   they adopt its apps at once. A lost notice only delays that until the registry reports the
//!   node's entry gone. The notice is a hint: the receiver reads the registry and believes it.
//!
//! Both are signed with the cluster's key ([`super::signing`]); the user's `server.auth_token`
//! never leaves the node.

use std::time::Duration;

use async_trait::async_trait;
use task_dispatch::{AppId, OwnerNotifier, TaskId, unix_millis};

use super::Departure;
use super::peers::{NodeInfo, Peers};
use super::signing::{NodeKey, SIGNATURE_HEADER};

/// The internal route a nudge is sent to.
pub const WAKE_ROUTE: &str = "/internal/v1/wake";
/// The internal route a leaving node announces its departure on.
pub const LEFT_ROUTE: &str = "/internal/v1/left";

/// How long a nudge may take before it is given up (the fallback poll covers it).
const NUDGE_TIMEOUT: Duration = Duration::from_secs(1);

/// An [`OwnerNotifier`] that calls the owner's HTTP API.
#[derive(Debug, Clone)]
pub struct HttpNudge {
    peers: Peers,
    client: reqwest::Client,
    key: NodeKey,
    /// This node's id, named in every signature.
    sender: String,
}

impl HttpNudge {
    /// Calls signed with `key` as node `sender`.
    pub fn new(peers: Peers, key: NodeKey, sender: String) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(NUDGE_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self {
            peers,
            client,
            key,
            sender,
        })
    }

    /// Tells every peer that this node has left (its apps released, its registry entry
    /// deleted), so that they adopt its apps now rather than when the registry reports the
    /// entry gone. Best effort: waits at most [`NUDGE_TIMEOUT`]; a peer that misses it learns
    /// from the registry.
    pub async fn announce_departure(&self, departure: &Departure) {
        let mut calls = tokio::task::JoinSet::new();
        for peer in self.peers.list() {
            if peer.id == departure.node_id {
                continue;
            }
            let request = self.request(&peer, LEFT_ROUTE, departure);
            calls.spawn(async move {
                if let Err(why) = deliver(request).await {
                    tracing::debug!(peer = %peer.id, %why, "departure notice not delivered");
                }
            });
        }
        // Every request carries NUDGE_TIMEOUT, so this ends within it.
        while calls.join_next().await.is_some() {}
    }

    /// A POST of `body` to `route` on `peer`, signed with the cluster's key.
    fn request(
        &self,
        peer: &NodeInfo,
        route: &str,
        body: &impl serde::Serialize,
    ) -> reqwest::RequestBuilder {
        // A body of plain ids and numbers always encodes; an empty one would fail the peer's
        // JSON check, not the signature.
        let body = serde_json::to_vec(body).unwrap_or_default();
        let signature = self
            .key
            .sign("POST", route, &body, &self.sender, unix_millis());
        self.client
            .post(format!("{}{route}", peer.base_url()))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .body(body)
    }
}

/// Sends a node-to-node call; an error says why it did not get a 2xx answer.
async fn deliver(request: reqwest::RequestBuilder) -> Result<(), String> {
    match request.send().await {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(format!("refused with {}", response.status())),
        Err(error) => Err(error.to_string()),
    }
}

#[async_trait]
impl OwnerNotifier for HttpNudge {
    async fn notify(&self, owner: &str, app_id: AppId, task_id: TaskId) {
        let Some(node) = self.peers.get(owner) else {
            tracing::debug!(
                owner,
                app_id,
                "owner not in the live set; it will find the task by polling"
            );
            return;
        };
        let body = serde_json::json!({ "app_id": app_id, "task_id": task_id });
        if let Err(why) = deliver(self.request(&node, WAKE_ROUTE, &body)).await {
            tracing::debug!(owner, %why, "nudge not delivered; the owner will poll");
        }
    }
}
