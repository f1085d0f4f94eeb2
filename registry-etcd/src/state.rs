//! The client's state machine: which session (lease) serves calls, the connection states it
//! reports, and the task that keeps each lease alive and replaces a lost one.
//!
//! # Phases
//! ```text
//!              connect                        the lease is lost (server says so, or no
//! Unconnected ────────▶ Live { Some(session) } ──── answer for a whole TTL) ────▶ Live { None }
//!                                 ▲                                                    │
//!                                 └──── old lease revoked, new lease, ephemerals back ─┘
//!
//! every phase ── close or drop ──▶ Closed
//! ```
//! Reported states: `Connected` on connect and when a rebuilt session is installed; a keep-alive
//! that goes unanswered is `Suspended`, the next answered one `Reconnected`; `SessionLost` when
//! the lease is gone. Calls are served only by a live session that is not suspended.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use registry_api::{ConnectionState, ConnectionStates, HeldEphemerals, RegistryError};
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::config::EtcdConfig;
use crate::error::BACKEND;

/// How long `close` waits for the server to revoke the lease.
const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// The longest pause between attempts to rebuild a session while the server is away.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);
/// gRPC `NOT_FOUND`: revoking a lease the server no longer has.
const NOT_FOUND: i32 = 5;

/// The state shared by the client, its keeper task and its watch tasks.
pub(crate) struct Shared {
    pub(crate) config: EtcdConfig,
    /// `<namespace>/keys`: registry path `/a/b` is the etcd key `<namespace>/keys/a/b`.
    pub(crate) keys: String,
    /// `<namespace>/locks`: the contenders of lock `/a` are keys under `<namespace>/locks/a/`.
    pub(crate) locks: String,
    pub(crate) held: HeldEphemerals,
    /// Turns `true` on close: watch tasks end, which ends their subscriptions.
    pub(crate) closed: watch::Sender<bool>,
    pub(crate) connecting: tokio::sync::Mutex<()>,
    states: ConnectionStates,
    phase: Mutex<Phase>,
    /// When the last lease grant or keep-alive that the server answered was sent.
    last_contact: Mutex<Option<std::time::Instant>>,
}

enum Phase {
    Unconnected,
    Live {
        /// Boxed: a `Client` is large, the other phases are small.
        client: Box<Client>,
        session: Option<Session>,
        keeper: AbortHandle,
    },
    Closed,
}

/// One lease: the session its ephemeral keys and lock claims live under.
#[derive(Clone)]
pub(crate) struct Session {
    pub(crate) lease: i64,
    /// `true` while the lease lives; lock guards of the session watch it.
    validity: Arc<watch::Sender<bool>>,
}

impl Session {
    fn new(lease: i64) -> Self {
        Self {
            lease,
            validity: Arc::new(watch::channel(true).0),
        }
    }

    pub(crate) fn validity(&self) -> watch::Receiver<bool> {
        self.validity.subscribe()
    }

    fn end(&self) {
        self.validity.send_replace(false);
    }
}

impl Shared {
    pub(crate) fn new(config: EtcdConfig) -> Self {
        let namespace = config.namespace.trim_end_matches('/');
        Self {
            keys: format!("{namespace}/keys"),
            locks: format!("{namespace}/locks"),
            config,
            held: HeldEphemerals::new(),
            closed: watch::channel(false).0,
            connecting: tokio::sync::Mutex::new(()),
            states: ConnectionStates::new(),
            phase: Mutex::new(Phase::Unconnected),
            last_contact: Mutex::new(None),
        }
    }

    fn phase(&self) -> MutexGuard<'_, Phase> {
        // Updates of the phase are single assignments that cannot panic half-way.
        self.phase
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    pub(crate) fn states(&self) -> &ConnectionStates {
        &self.states
    }

    /// The etcd key of registry path `path`.
    pub(crate) fn key(&self, path: &str) -> String {
        format!("{}{path}", self.keys)
    }

    /// The client and session for a call, or why there is none usable now.
    pub(crate) fn live(&self) -> Result<(Client, Session), RegistryError> {
        match &*self.phase() {
            Phase::Live {
                client,
                session: Some(session),
                ..
            } if self.states.current() != Some(ConnectionState::Suspended) => {
                Ok((Client::clone(client), session.clone()))
            }
            Phase::Closed => Err(RegistryError::Closed),
            _ => Err(RegistryError::NotConnected { backend: BACKEND }),
        }
    }

    /// Whether `connect` has a first session to build: `Ok(false)` when it has one already.
    pub(crate) fn needs_connecting(&self) -> Result<bool, RegistryError> {
        match &*self.phase() {
            Phase::Unconnected => Ok(true),
            Phase::Live { .. } => Ok(false),
            Phase::Closed => Err(RegistryError::Closed),
        }
    }

    /// `Unconnected → Live`: the first lease is in service, kept alive by a task of its own.
    pub(crate) fn connected(
        self: &Arc<Self>,
        client: Client,
        lease: i64,
    ) -> Result<(), RegistryError> {
        let mut phase = self.phase();
        if matches!(*phase, Phase::Closed) {
            tokio::spawn(async move { client.lease_client().revoke(lease).await });
            return Err(RegistryError::Closed);
        }
        self.states.set(ConnectionState::Connected);
        let session = Session::new(lease);
        let keeper = tokio::spawn(supervise(self.clone(), client.clone(), session.clone()));
        *phase = Phase::Live {
            client: Box::new(client),
            session: Some(session),
            keeper: keeper.abort_handle(),
        };
        Ok(())
    }

    /// `Live { session } → Live { None }`: guards of the session turn invalid, listeners hear
    /// `SessionLost`. `false` when the client was closed meanwhile.
    fn session_lost(&self, lost: &Session) -> bool {
        match &mut *self.phase() {
            Phase::Live { session, .. } => *session = None,
            _ => return false,
        }
        lost.end();
        self.states.set(ConnectionState::SessionLost);
        true
    }

    /// `Live { None } → Live { session }`: listeners hear `Connected`. `false` when closed.
    fn session_restored(&self, restored: &Session) -> bool {
        match &mut *self.phase() {
            Phase::Live { session, .. } => *session = Some(restored.clone()),
            _ => return false,
        }
        self.states.set(ConnectionState::Connected);
        true
    }

    /// `any → Closed`: ends the keeper, the session (its lease revoked, at most [`CLOSE_WAIT`]),
    /// the watches and the listeners.
    pub(crate) async fn close(&self) {
        let ending = std::mem::replace(&mut *self.phase(), Phase::Closed);
        self.closed.send_replace(true);
        self.held.clear();
        if let Phase::Live {
            client,
            session,
            keeper,
        } = ending
        {
            keeper.abort();
            if let Some(session) = session {
                session.end();
                let mut leases = client.lease_client();
                let _ = tokio::time::timeout(CLOSE_WAIT, leases.revoke(session.lease)).await;
            }
        }
        self.states.close();
    }

    /// Records that a grant or keep-alive sent at `sent` was answered with a live lease.
    pub(crate) fn contacted(&self, sent: Instant) {
        let sent = sent.into_std();
        let mut last = self
            .last_contact
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if last.is_none_or(|last| last < sent) {
            *last = Some(sent);
        }
    }

    /// See [`registry_api::Registry::last_contact`].
    pub(crate) fn last_contact(&self) -> Option<std::time::Instant> {
        *self
            .last_contact
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// The test hook's half of expiry: revokes the live lease on the server.
    pub(crate) async fn revoke_live(&self) -> Result<(), RegistryError> {
        let (client, session) = self.live()?;
        client
            .lease_client()
            .revoke(session.lease)
            .await
            .map(drop)
            .map_err(crate::error::registry_error)
    }
}

/// Keeps `session` alive and replaces every lost session until the client is closed (which
/// aborts this task).
async fn supervise(shared: Arc<Shared>, client: Client, mut session: Session) {
    loop {
        keep_alive(&shared, &client, session.lease).await;
        tracing::warn!(lease = %format_args!("{:x}", session.lease), "etcd session lost");
        if !shared.session_lost(&session) {
            return;
        }
        session = rebuild(&shared, &client, session.lease).await;
        if !shared.session_restored(&session) {
            let _ = client.lease_client().revoke(session.lease).await;
            return;
        }
    }
}

/// Refreshes the lease every third of its TTL; returns when it is lost: the server answers
/// that it has no such lease, or no refresh was answered for a whole TTL.
async fn keep_alive(shared: &Shared, client: &Client, lease: i64) {
    let ttl = shared.config.session_timeout();
    let interval = ttl / 3;
    let mut last_contact = Instant::now();
    loop {
        if let Ok(Ok((mut keeper, mut replies))) =
            tokio::time::timeout(interval, client.lease_client().keep_alive(lease)).await
        {
            loop {
                let sent = Instant::now();
                let refresh = async {
                    keeper.keep_alive().await?;
                    replies.message().await
                };
                match tokio::time::timeout(interval, refresh).await {
                    Ok(Ok(Some(reply))) if reply.ttl() > 0 => {
                        last_contact = Instant::now();
                        shared.contacted(sent);
                        if shared.states.current() == Some(ConnectionState::Suspended) {
                            shared.states.set(ConnectionState::Reconnected);
                        }
                        tokio::time::sleep(interval).await;
                    }
                    Ok(Ok(Some(_))) => return,
                    _ => break,
                }
            }
        }
        shared.states.set(ConnectionState::Suspended);
        if last_contact.elapsed() >= ttl {
            return;
        }
        tokio::time::sleep(interval.min(Duration::from_millis(200))).await;
    }
}

/// A new session: the stale leases revoked first (so that subscribers see their keys removed
/// before they come back), then a new lease and the held ephemerals under it. Retries with a
/// growing pause until it succeeds.
async fn rebuild(shared: &Shared, client: &Client, lost: i64) -> Session {
    let mut stale = vec![lost];
    let mut delay = Duration::from_millis(100);
    loop {
        match renew(shared, client, &mut stale).await {
            Ok(session) => return session,
            Err(error) => {
                tracing::warn!(%error, ?delay, "building a new etcd session failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
        }
    }
}

async fn renew(
    shared: &Shared,
    client: &Client,
    stale: &mut Vec<i64>,
) -> Result<Session, etcd_client::Error> {
    let mut leases = client.lease_client();
    while let Some(&lease) = stale.last() {
        match leases.revoke(lease).await {
            Ok(_) => {}
            Err(etcd_client::Error::GRpcStatus(status))
                if i32::from(status.code()) == NOT_FOUND => {}
            Err(error) => return Err(error),
        }
        stale.pop();
    }
    let sent = Instant::now();
    let lease = leases.grant(shared.config.ttl_seconds(), None).await?.id();
    shared.contacted(sent);
    stale.push(lease);
    restore_ephemerals(shared, client, lease).await?;
    stale.pop();
    Ok(Session::new(lease))
}

/// Re-creates each held ephemeral key under `lease` where it is absent; a key that someone else
/// wrote meanwhile (another session's ephemeral, or a persistent value) is left alone and no
/// longer held.
async fn restore_ephemerals(
    shared: &Shared,
    client: &Client,
    lease: i64,
) -> Result<(), etcd_client::Error> {
    for (path, value) in shared.held.snapshot() {
        let key = shared.key(&path);
        let create = Txn::new()
            .when([Compare::version(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.clone(),
                value.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(key, None)]);
        let reply = client.kv_client().txn(create).await?;
        if !reply.succeeded() {
            let owner = match reply.op_responses().first() {
                Some(TxnOpResponse::Get(got)) => got.kvs().first().map(|kv| kv.lease()),
                _ => None,
            };
            tracing::warn!(%path, ?owner, "an ephemeral key held before the session loss belongs to someone else now; not re-creating it");
            shared.held.forget(&path, &value);
        }
    }
    Ok(())
}
