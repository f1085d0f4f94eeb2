//! Calls between nodes that make the cluster react faster than the registry reports.
//!
//! - Wake-ups: when a task is submitted on one node for an app owned by another, the submitting
//!   node nudges the owner over HTTP (`POST /internal/v1/wake`), so the task starts within
//!   milliseconds whatever the registry's event latency. A lost nudge only delays the task until
//!   the owner's fallback poll. One nudge per owner is in flight at a time; the apps to wake
//!   that arrive meanwhile go in the next one (`{"app_ids": [...]}`, issue 15), so a burst of
//!   submissions costs a few calls, not one per task.
//! - Departures: a node that shut down gracefully tells its peers (`POST /internal/v1/left`), so
//!   they adopt its apps at once. A lost notice only delays that until the registry reports the
//!   node's entry gone. The notice is a hint: the receiver reads the registry and believes it.
//!
//! Both are signed with the cluster's key ([`super::signing`]); the user's `server.auth_token`
//! never leaves the node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
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

/// The most apps one nudge names; more wait for the next.
pub const MAX_WAKE_IDS: usize = 1024;

/// The apps waiting to be named in a nudge to one owner, and whether a nudge to it is in
/// flight (whose sender takes them next).
#[derive(Debug, Default)]
struct Pending {
    app_ids: Vec<AppId>,
    sending: bool,
}

/// An [`OwnerNotifier`] that calls the owner's HTTP API.
#[derive(Debug, Clone)]
pub struct HttpNudge {
    peers: Peers,
    client: reqwest::Client,
    key: NodeKey,
    /// This node's id, named in every signature.
    sender: String,
    /// Wake-ups not sent yet, by owner.
    pending: Arc<Mutex<HashMap<String, Pending>>>,
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
            pending: Arc::default(),
        })
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        // A poisoned map only means a panic elsewhere; its entries are always whole.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends the nudges to `owner` until none waits.
    async fn send_pending(&self, owner: String) {
        loop {
            let app_ids = {
                let mut pending = self.pending();
                let Some(entry) = pending.get_mut(&owner) else {
                    return;
                };
                if entry.app_ids.is_empty() {
                    pending.remove(&owner);
                    return;
                }
                let take = entry.app_ids.len().min(MAX_WAKE_IDS);
                entry.app_ids.drain(..take).collect::<Vec<AppId>>()
            };
            let Some(node) = self.peers.get(&owner) else {
                tracing::debug!(
                    owner,
                    apps = app_ids.len(),
                    "owner not in the live set; it will find the tasks by polling"
                );
                continue;
            };
            let body = match app_ids.as_slice() {
                [app_id] => serde_json::json!({ "app_id": app_id }),
                many => serde_json::json!({ "app_ids": many }),
            };
            if let Err(why) = deliver(self.request(&node, WAKE_ROUTE, &body)).await {
                tracing::debug!(owner, %why, "nudge not delivered; the owner will poll");
            }
        }
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
    async fn notify(&self, owner: &str, app_id: AppId, _task_id: TaskId) {
        let start = {
            let mut pending = self.pending();
            let entry = pending.entry(owner.to_owned()).or_default();
            entry.app_ids.push(app_id);
            !std::mem::replace(&mut entry.sending, true)
        };
        // The sender in flight, if any, takes this one in its next nudge.
        if start {
            self.send_pending(owner.to_owned()).await;
        }
    }
}
