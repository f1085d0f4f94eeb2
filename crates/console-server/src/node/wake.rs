//! Wake-ups between nodes: when a task is submitted on one node for an app owned by another,
//! the submitting node nudges the owner over HTTP (`POST /internal/v1/wake`), so the task starts
//! within milliseconds whatever the registry's event latency. A lost nudge only delays the task
//! until the owner's fallback poll.

use std::time::Duration;

use async_trait::async_trait;
use registry_api::Secret;
use task_dispatch::{AppId, OwnerNotifier, TaskId};

use super::peers::Peers;

/// The internal route a nudge is sent to.
pub const WAKE_ROUTE: &str = "/internal/v1/wake";

/// How long a nudge may take before it is given up (the fallback poll covers it).
const NUDGE_TIMEOUT: Duration = Duration::from_secs(1);

/// An [`OwnerNotifier`] that calls the owner's HTTP API.
#[derive(Debug, Clone)]
pub struct HttpNudge {
    peers: Peers,
    client: reqwest::Client,
    token: Secret,
}

impl HttpNudge {
    /// `token` is the cluster's `server.auth_token` (every node has the same).
    pub fn new(peers: Peers, token: Secret) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(NUDGE_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self {
            peers,
            client,
            token,
        })
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
        let mut request = self
            .client
            .post(format!("{}{WAKE_ROUTE}", node.base_url()))
            .json(&serde_json::json!({ "app_id": app_id, "task_id": task_id }));
        if !self.token.is_empty() {
            request = request.bearer_auth(self.token.expose());
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => {
                tracing::debug!(owner, status = %response.status(), "nudge refused; the owner will poll")
            }
            Err(error) => tracing::debug!(owner, %error, "nudge failed; the owner will poll"),
        }
    }
}
