//! This node's place in the cluster: its registry entry, its view of the other nodes, and what
//! it does when its registry session wavers.
//!
//! ```text
//!  registry ──/nodes/console events──▶ Peers ──live ids──▶ Dispatcher::nodes_changed
//!           ──connection states──────▶ fence.rs (a task of its own): Suspended past 2/3 of the
//!           ──last_contact───────────▶ session timeout, no answered exchange for 2/3 of it, or
//!                                       SessionLost ──▶ Dispatcher::session_lost (stop acting)
//!           ──connection states──────▶ supervisor: Reconnected / Connected ──▶
//!                                       Dispatcher::session_restored
//! ```
//!
//! The 2/3 is counted from the last exchange the server answered (`Registry::last_contact`,
//! MySQL and etcd) or, where the backend cannot say (ZooKeeper), from the `Suspended` report.
//! In that second case a node may notice the trouble up to two thirds of the timeout late and
//! so act on until about 4/3 of the session timeout after its last contact, while the server
//! expires it after one: peers then wait [`lock_delay`] before they apply a peer's `Removed`
//! (Chubby's lock-delay), so the taker fences only once the holder has surely stopped.

pub mod fence;
pub mod host;
pub mod leader;
pub mod peers;
pub mod signing;
pub mod wake;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use registry_api::{ConnectionState, Mode, Registry, RegistryError};
use task_dispatch::Dispatcher;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use fence::Fence;
use peers::{NODES_PATH, NodeInfo, NodeLoad, Peers};

/// How often the node's published load is compared with the dispatcher's and republished.
const LOAD_REFRESH: Duration = Duration::from_secs(1);
/// The shortest period of the check that resumes a node stopped for a stale contact.
const CONTACT_CHECK_MIN: Duration = Duration::from_millis(50);

/// How long a peer's `Removed` waits before this node applies it (and so fences and adopts the
/// peer's apps): none when the backend reports its last contact, since a node then stops a
/// third of the session timeout before the server may expire it; half the session timeout
/// otherwise (ZooKeeper), which covers the two thirds a node may take to notice, beyond the
/// expiry, with a sixth of the timeout to spare.
pub fn lock_delay(registry: &dyn Registry) -> Duration {
    if registry.last_contact().is_some() {
        Duration::ZERO
    } else {
        registry.session_timeout() / 2
    }
}

/// Why the node could not join the cluster.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error(
        "node id {id:?} is already registered by another live node; give each node its own node.id"
    )]
    DuplicateId { id: String },
    #[error("registering node {id:?} failed: {source}")]
    Registry { id: String, source: RegistryError },
}

/// This node as a cluster member. Created by [`ClusterNode::join`]; [`ClusterNode::leave`]
/// deregisters it.
#[derive(Debug)]
pub struct ClusterNode {
    registry: Arc<dyn Registry>,
    peers: Peers,
    id: String,
    /// False from the moment the session is lost (or suspended too long) until it is back:
    /// the node then neither executes nor monitors, and is not ready.
    acting: Arc<AtomicBool>,
    supervisor: Mutex<Option<(oneshot::Sender<()>, JoinHandle<()>)>>,
    /// Departure notices of peers, handed to the supervisor so that every change of the
    /// member set reaches the dispatcher from one place, in order.
    departures: mpsc::UnboundedSender<Departure>,
    started_at: i64,
}

/// A peer's notice that it has left: it released its apps and removed its registry entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Departure {
    pub node_id: String,
    /// The leaving node's `started_at`, so that a late notice cannot remove a later run of it.
    pub started_at: i64,
}

impl ClusterNode {
    /// Registers this node (`/nodes/console/<id>`, ephemeral), fills `peers` with the live
    /// nodes, hands them to the dispatcher, and keeps both current in the background.
    ///
    /// # Notable errors
    /// [`JoinError::DuplicateId`] when another live node holds the same id.
    pub async fn join(
        registry: Arc<dyn Registry>,
        dispatcher: Dispatcher,
        info: NodeInfo,
        metrics: Arc<Metrics>,
        peers: Peers,
    ) -> Result<Arc<Self>, JoinError> {
        let id = info.id.clone();
        let registry_error = |source| JoinError::Registry {
            id: id.clone(),
            source,
        };
        // Subscribe before reading, so no change between the read and the subscription is lost.
        let events = registry
            .subscribe(NODES_PATH)
            .await
            .map_err(registry_error)?;
        let states = registry.connection_listener();
        publish(&*registry, &info)
            .await
            .map_err(|error| match error {
                RegistryError::Conflict { .. } => JoinError::DuplicateId { id: id.clone() },
                other => registry_error(other),
            })?;
        peers.reload(&*registry).await.map_err(registry_error)?;
        dispatcher.nodes_changed(peers.live_nodes());
        tracing::info!(node = %id, live = ?peers.ids(), "joined the cluster");
        warn_of_other_assignments(&peers, &info);
        let acting = Arc::new(AtomicBool::new(true));
        let (stop, stop_rx) = oneshot::channel();
        let (departures, departures_rx) = mpsc::unbounded_channel();
        let started_at = info.started_at;
        let supervisor = Supervisor {
            registry: registry.clone(),
            fence: Fence::new(acting.clone(), dispatcher.clone()),
            dispatcher,
            peers: peers.clone(),
            info,
            metrics,
        };
        let task = tokio::spawn(supervisor.run(events, states, departures_rx, stop_rx));
        Ok(Arc::new(Self {
            registry,
            peers,
            id,
            acting,
            supervisor: Mutex::new(Some((stop, task))),
            departures,
            started_at,
        }))
    }

    /// A peer says it has left (`POST /internal/v1/left`). The notice is only a hint to read the
    /// registry now rather than at its next event (up to a heartbeat interval later with the
    /// MySQL registry): the peer is dropped from the member set only if the registry no longer
    /// lists it. Membership comes from the registry alone, so no notice, forged or late, can
    /// drop a node that is still registered.
    pub fn peer_left(&self, departure: Departure) {
        // Fails only once the supervisor has stopped (this node is leaving itself).
        let _ = self.departures.send(departure);
    }

    /// This node's departure notice, sent to the peers once it has left.
    pub fn departure(&self) -> Departure {
        Departure {
            node_id: self.id.clone(),
            started_at: self.started_at,
        }
    }

    /// The live nodes as this node sees them.
    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// This node's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The registry connection's state now (`None` before the backend reported one).
    pub fn registry_state(&self) -> Option<ConnectionState> {
        self.registry.connection_state()
    }

    /// Whether the node's registry session is good enough to act on.
    pub fn is_acting(&self) -> bool {
        self.acting.load(Ordering::SeqCst)
    }

    /// Stops following the registry and removes this node's entry, so peers take over its
    /// apps at once instead of after the session timeout. Call after the dispatcher has
    /// released its apps.
    pub async fn leave(&self) {
        if let Some((stop, task)) = self.supervisor.lock().await.take() {
            let _ = stop.send(());
            let _ = task.await;
        }
        self.acting.store(false, Ordering::SeqCst);
        if let Err(error) = self.registry.delete(&peers::node_key(&self.id)).await {
            tracing::warn!(%error, "could not remove this node's registry entry; it ends with the session");
        }
    }
}

async fn publish(registry: &dyn Registry, info: &NodeInfo) -> Result<(), RegistryError> {
    let value = serde_json::to_vec(info).map_err(|error| RegistryError::Backend {
        backend: "console",
        message: format!("cannot encode node info: {error}"),
    })?;
    registry.put(&info.key(), &value, Mode::Ephemeral).await
}

/// Follows the registry for a [`ClusterNode`].
struct Supervisor {
    registry: Arc<dyn Registry>,
    dispatcher: Dispatcher,
    peers: Peers,
    info: NodeInfo,
    /// Stops the node on time from a task of its own; the supervisor only resumes it.
    fence: Fence,
    metrics: Arc<Metrics>,
}

/// Aborts a task when dropped: the fence ends with the supervisor, however that ends.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Supervisor {
    async fn run(
        mut self,
        mut events: registry_api::Subscription,
        mut states: registry_api::ConnectionListener,
        mut departures: mpsc::UnboundedReceiver<Departure>,
        mut stop: oneshot::Receiver<()>,
    ) {
        let _fence = AbortOnDrop(tokio::spawn(
            self.fence
                .clone()
                .watch(self.registry.clone(), self.registry.connection_listener()),
        ));
        let bound = self.registry.session_timeout() * 2 / 3;
        let mut load_refresh = tokio::time::interval(LOAD_REFRESH);
        let mut contact_check = tokio::time::interval((bound / 4).max(CONTACT_CHECK_MIN));
        let lock_delay = lock_delay(&*self.registry);
        // Peers' `Removed` events waiting out the lock delay, in arrival order.
        let mut delayed: std::collections::VecDeque<(tokio::time::Instant, registry_api::Event)> =
            std::collections::VecDeque::new();
        loop {
            let next_delayed = delayed.front().map(|(due, _)| *due);
            tokio::select! {
                _ = &mut stop => return,
                event = events.next() => match event {
                    Some(event) if !lock_delay.is_zero() && self.is_peer_removal(&event) => {
                        tracing::info!(key = %event.path, ?lock_delay, "a peer's entry is gone; fencing it after the lock delay");
                        delayed.push_back((tokio::time::Instant::now() + lock_delay, event));
                    }
                    Some(event) => self.on_event(&event).await,
                    None => return, // The registry was closed.
                },
                _ = sleep_until(next_delayed) => {
                    if let Some((_, event)) = delayed.pop_front() {
                        // Confirmed again against the registry: a peer back by now stays.
                        self.on_event(&event).await;
                    }
                }
                state = states.next() => match state {
                    Some(state) => {
                        self.metrics.set_registry_state(state);
                        self.on_state(state).await;
                    }
                    None => return,
                },
                _ = contact_check.tick() => {
                    // Stopped by the fence for a stale contact, without any report: resume
                    // once the contact is fresh again.
                    let fresh = self
                        .registry
                        .last_contact()
                        .is_some_and(|at| at.elapsed() < bound);
                    if !self.fence.is_acting()
                        && self.fence.stopped_for_stale_contact()
                        && fresh
                        && matches!(
                            self.registry.connection_state(),
                            Some(ConnectionState::Connected | ConnectionState::Reconnected)
                        )
                    {
                        self.resume().await;
                    }
                }
                Some(departure) = departures.recv() => self.on_departure(&departure).await,
                _ = load_refresh.tick() => self.refresh_load().await,
            }
        }
    }

    /// Reads the registry entry of a peer that says it left; drops the peer only if the entry is
    /// gone.
    async fn on_departure(&mut self, departure: &Departure) {
        if departure.node_id == self.info.id || !self.peers.contains(&departure.node_id) {
            return;
        }
        match self
            .registry
            .get(&peers::node_key(&departure.node_id))
            .await
        {
            Ok(None) => {
                if self.peers.forget(&departure.node_id) && self.fence.is_acting() {
                    tracing::info!(left = %departure.node_id, live = ?self.peers.ids(), "a peer left (its notice confirmed by the registry)");
                    self.dispatcher.nodes_changed(self.peers.live_nodes());
                }
            }
            Ok(Some(_)) => {
                tracing::info!(node = %departure.node_id, "departure notice ignored: the registry still lists the node");
            }
            Err(error) => {
                tracing::debug!(node = %departure.node_id, %error, "departure notice: cannot read the registry; waiting for its events");
            }
        }
    }

    /// Whether `event` removes another node's entry.
    fn is_peer_removal(&self, event: &registry_api::Event) -> bool {
        event.kind == registry_api::EventKind::Removed
            && event.path != self.info.key()
            && registry_api::path::child_of(NODES_PATH, &event.path).is_some()
    }

    async fn on_event(&mut self, event: &registry_api::Event) {
        let event = &Peers::confirmed(&*self.registry, event).await;
        let own_key = self.info.key();
        if event.path == own_key
            && event.kind == registry_api::EventKind::Removed
            && self.fence.is_acting()
        {
            // Someone deleted our entry while our session lives: put it back.
            tracing::warn!(
                "this node's registry entry was removed by someone else; registering again"
            );
            if let Err(error) = publish(&*self.registry, &self.info).await {
                tracing::warn!(%error, "re-registering failed; retrying with the next load refresh");
            }
        }
        if self.peers.apply(event) && self.fence.is_acting() {
            tracing::info!(live = ?self.peers.ids(), "cluster membership changed");
            self.dispatcher.nodes_changed(self.peers.live_nodes());
            warn_of_other_assignments(&self.peers, &self.info);
        }
    }

    /// Reacts to a connection state; returns the new suspension deadline, if any.
    /// Stopping is the fence's (`fence.rs`); here a lost session stops the node too, so that a
    /// `Connected` that follows is always seen after the stop, and a session back resumes it.
    async fn on_state(&mut self, state: ConnectionState) {
        match state {
            ConnectionState::SessionLost => self.fence.stop_acting(),
            ConnectionState::Connected | ConnectionState::Reconnected => {
                if !self.fence.is_acting() {
                    self.resume().await;
                }
            }
            ConnectionState::Suspended => {}
        }
    }

    /// The session is usable again (a new one, or the old one back after we gave up on it):
    /// make sure our entry exists, re-read the live set, and let the dispatcher take over.
    async fn resume(&mut self) {
        if let Err(error) = publish(&*self.registry, &self.info).await {
            tracing::warn!(%error, "re-registering after the session came back failed; will retry");
            return;
        }
        match self.peers.reload(&*self.registry).await {
            Ok(()) => {
                tracing::info!(live = ?self.peers.ids(), "registry session usable again; resuming");
                self.fence.resumed();
                self.dispatcher.session_restored(self.peers.live_nodes());
            }
            Err(error) => {
                tracing::warn!(%error, "reading the live nodes after the session came back failed; will retry")
            }
        }
    }

    async fn refresh_load(&mut self) {
        if !self.fence.is_acting() {
            // A session that came back while a resume failed: try again now.
            if self
                .registry
                .connection_state()
                .is_some_and(ConnectionState::is_connected)
            {
                self.resume().await;
            }
            return;
        }
        let load = NodeLoad {
            owned_apps: self.dispatcher.owned_apps(),
            owned_weight: self.dispatcher.owned_weight(),
            running_tasks: self
                .dispatcher
                .stats()
                .actions_in_flight
                .load(Ordering::Relaxed)
                .try_into()
                .unwrap_or(usize::MAX),
        };
        if load == self.info.load {
            return;
        }
        let previous = std::mem::replace(&mut self.info.load, load);
        if let Err(error) = publish(&*self.registry, &self.info).await {
            tracing::debug!(%error, "publishing the node's load failed; retrying");
            self.info.load = previous;
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Nodes that split the apps otherwise (another `dispatch.assignment` or `dispatch.epsilon`)
/// compute other owners: an app may then have no owner at all until the configurations agree.
/// Said once per membership change, at error level, naming the keys.
fn warn_of_other_assignments(peers: &Peers, info: &NodeInfo) {
    let Some(mine) = info.assignment.as_deref() else {
        return;
    };
    let others = peers.other_assignments(mine);
    if !others.is_empty() {
        tracing::error!(
            mine,
            ?others,
            "live nodes split the apps otherwise (dispatch.assignment, dispatch.epsilon): apps may have no owner until every node is configured the same"
        );
    }
}
