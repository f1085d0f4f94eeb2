//! [`EtcdRegistry`]: the facade that implements the SPI on etcd's KV, lease and watch APIs.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp,
    TxnOpResponse,
};
use registry_api::{
    ConnectionListener, ConnectionState, LockGuard, Mode, Registry, RegistryError, Result,
    Subscription, path,
};

use crate::config::EtcdConfig;
use crate::error::{BACKEND, registry_error};
use crate::state::{Session, Shared};
use crate::{lock, watch};

/// How often a `put` re-reads and retries when the key changed owner between its attempts.
const PUT_ATTEMPTS: usize = 8;

/// The etcd backend: one client with one lease (session) at a time. See the crate
/// documentation for the mapping and the failure behaviour.
pub struct EtcdRegistry {
    shared: Arc<Shared>,
}

impl EtcdRegistry {
    /// An unconnected client; no I/O happens until [`Registry::connect`].
    ///
    /// # Notable errors
    /// [`RegistryError::Config`] naming the offending key.
    pub fn new(config: EtcdConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            shared: Arc::new(Shared::new(config)),
        })
    }

    /// Revokes the session's lease on the server, as its TTL running out would, without closing
    /// the client: a hook for tests of session-loss handling.
    ///
    /// # Notable errors
    /// `NotConnected` without a live session; the server's error.
    pub async fn expire_session(&self) -> Result<()> {
        self.shared.revoke_live().await
    }

    fn options(config: &EtcdConfig) -> ConnectOptions {
        let ttl = config.session_timeout();
        // HTTP/2 pings find a dead connection under an idle watch; etcd refuses pings more often
        // than every 5 s (--grpc-keepalive-min-time), and pings without a stream.
        let options = ConnectOptions::new()
            .with_connect_timeout(ttl / 2)
            .with_timeout(ttl)
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5))
            .with_keep_alive_while_idle(false);
        if config.username.is_empty() {
            options
        } else {
            options
                .with_user(config.username.clone(), config.password.expose())
                .with_auto_token_refresh(true)
        }
    }

    /// One attempt at `put`: the key must be owned by `owner` (0: nobody, or persistent), no
    /// ancestor may be ephemeral, and an ephemeral key may have no children. `Ok(None)` is done;
    /// `Ok(Some(owner))` names the key's owner now, to try again with.
    async fn try_put(
        &self,
        client: &Client,
        session: &Session,
        path: &str,
        value: &[u8],
        mode: Mode,
        owner: i64,
    ) -> Result<Option<i64>> {
        let key = self.shared.key(path);
        let below = format!("{key}/");
        let mut checks = vec![Compare::lease(key.clone(), CompareOp::Equal, owner)];
        let mut reads = vec![TxnOp::get(key.clone(), None)];
        for ancestor in path::ancestors(path) {
            checks.push(Compare::lease(
                self.shared.key(ancestor),
                CompareOp::Equal,
                0,
            ));
            reads.push(TxnOp::get(self.shared.key(ancestor), None));
        }
        let lease = match mode {
            Mode::Ephemeral => {
                checks.push(Compare::version(below.clone(), CompareOp::Equal, 0).with_prefix());
                reads.push(TxnOp::get(
                    below,
                    Some(
                        GetOptions::new()
                            .with_prefix()
                            .with_keys_only()
                            .with_limit(1),
                    ),
                ));
                session.lease
            }
            Mode::Persistent => 0,
        };
        let put = TxnOp::put(
            key,
            value.to_vec(),
            Some(PutOptions::new().with_lease(lease)),
        );
        let txn = Txn::new().when(checks).and_then([put]).or_else(reads);
        let reply = client.kv_client().txn(txn).await.map_err(registry_error)?;
        if reply.succeeded() {
            return Ok(None);
        }
        let found: Vec<Option<i64>> = reply
            .op_responses()
            .iter()
            .map(|op| match op {
                TxnOpResponse::Get(got) => got.kvs().first().map(|kv| kv.lease()),
                _ => None,
            })
            .collect();
        let invalid = |reason: &str| {
            Err(RegistryError::InvalidPath {
                path: path.to_owned(),
                reason: reason.to_owned(),
            })
        };
        let ancestors = found.len() - 1 - usize::from(mode == Mode::Ephemeral);
        if found[1..=ancestors]
            .iter()
            .any(|lease| lease.is_some_and(|l| l != 0))
        {
            return invalid("an ancestor is ephemeral, and ephemeral keys cannot have children");
        }
        if mode == Mode::Ephemeral && found[ancestors + 1].is_some() {
            return invalid("it has children, and ephemeral keys cannot have children");
        }
        match found[0].unwrap_or(0) {
            now if now == 0 || now == session.lease => Ok(Some(now)),
            _ => Err(RegistryError::Conflict {
                path: path.to_owned(),
                reason: "it is an ephemeral key of another live session".to_owned(),
            }),
        }
    }
}

impl fmt::Debug for EtcdRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdRegistry")
            .field("config", &self.shared.config)
            .field("state", &self.shared.states().current())
            .finish_non_exhaustive()
    }
}

impl Drop for EtcdRegistry {
    /// Closes in the background, like `close`, when a Tokio runtime is there; without one the
    /// lease expires after its TTL, as after a crash.
    fn drop(&mut self) {
        self.shared.closed.send_replace(true);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let shared = self.shared.clone();
            runtime.spawn(async move { shared.close().await });
        }
    }
}

#[async_trait]
impl Registry for EtcdRegistry {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn connect(&self, timeout: Duration) -> Result<()> {
        let _connecting = self.shared.connecting.lock().await;
        if !self.shared.needs_connecting()? {
            return Ok(());
        }
        let config = &self.shared.config;
        let mut reason = String::from("no answer");
        let attempts = async {
            loop {
                let attempt = async {
                    let client =
                        Client::connect(config.endpoints(), Some(Self::options(config))).await?;
                    let sent = tokio::time::Instant::now();
                    let lease = client
                        .lease_client()
                        .grant(config.ttl_seconds(), None)
                        .await?;
                    self.shared.contacted(sent);
                    Ok::<_, etcd_client::Error>((client, lease.id()))
                };
                match attempt.await {
                    Ok(connected) => return Ok(connected),
                    Err(error) => {
                        let error = registry_error(error);
                        reason = error.to_string();
                        if !error.is_transient() {
                            return Err(());
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        match tokio::time::timeout(timeout, attempts).await {
            Ok(Ok((client, lease))) => self.shared.connected(client, lease),
            _ => Err(RegistryError::ConnectTimeout {
                backend: BACKEND,
                timeout,
                reason,
            }),
        }
    }

    fn connection_state(&self) -> Option<ConnectionState> {
        self.shared.states().current()
    }

    fn connection_listener(&self) -> ConnectionListener {
        self.shared.states().listen()
    }

    fn session_timeout(&self) -> Duration {
        self.shared.config.session_timeout()
    }

    fn last_contact(&self) -> Option<std::time::Instant> {
        self.shared.last_contact()
    }

    async fn put(&self, path: &str, value: &[u8], mode: Mode) -> Result<()> {
        path::validate_key(path)?;
        let (client, session) = self.shared.live()?;
        let pending = self.shared.held.pending_put(path, value, mode);
        let mut outcome = Err(RegistryError::Transient {
            backend: BACKEND,
            message: format!("{path} kept changing owner"),
        });
        let mut owner = 0;
        for _ in 0..PUT_ATTEMPTS {
            match self
                .try_put(&client, &session, path, value, mode, owner)
                .await
            {
                Ok(Some(now)) => owner = now,
                done => {
                    outcome = done.map(drop);
                    break;
                }
            }
        }
        pending.settle(&outcome);
        outcome
    }

    async fn get(&self, path: &str) -> Result<Option<Vec<u8>>> {
        path::validate(path)?;
        let (client, _) = self.shared.live()?;
        let mut reply = client
            .kv_client()
            .get(self.shared.key(path), None)
            .await
            .map_err(registry_error)?;
        Ok(reply
            .take_kvs()
            .into_iter()
            .next()
            .map(|kv| kv.into_key_value().1))
    }

    async fn exists(&self, path: &str) -> Result<bool> {
        path::validate(path)?;
        let (client, _) = self.shared.live()?;
        let options = GetOptions::new().with_count_only();
        let reply = client
            .kv_client()
            .get(self.shared.key(path), Some(options))
            .await
            .map_err(registry_error)?;
        Ok(reply.count() > 0)
    }

    async fn delete(&self, path: &str) -> Result<()> {
        path::validate_key(path)?;
        let (client, _) = self.shared.live()?;
        let pending = self.shared.held.pending_delete(path);
        let key = self.shared.key(path);
        let below = TxnOp::delete(format!("{key}/"), Some(DeleteOptions::new().with_prefix()));
        let txn = Txn::new().and_then([TxnOp::delete(key, None), below]);
        let outcome = client
            .kv_client()
            .txn(txn)
            .await
            .map(drop)
            .map_err(registry_error);
        pending.settle(&outcome);
        outcome
    }

    async fn children(&self, parent: &str) -> Result<Vec<String>> {
        path::validate(parent)?;
        let (client, _) = self.shared.live()?;
        let below = format!("{}/", self.shared.key(parent).trim_end_matches('/'));
        let options = GetOptions::new().with_prefix().with_keys_only();
        let reply = client
            .kv_client()
            .get(below, Some(options))
            .await
            .map_err(registry_error)?;
        let mut names: Vec<String> = reply
            .kvs()
            .iter()
            .filter_map(|kv| {
                std::str::from_utf8(kv.key())
                    .ok()?
                    .strip_prefix(&self.shared.keys)
                    .map(str::to_owned)
            })
            .filter_map(|key| path::child_of(parent, &key).map(str::to_owned))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn subscribe(&self, prefix: &str) -> Result<Subscription> {
        path::validate(prefix)?;
        let (client, _) = self.shared.live()?;
        watch::subscribe(&self.shared, client, prefix).await
    }

    async fn lock(&self, path: &str, timeout: Option<Duration>) -> Result<LockGuard> {
        path::validate_key(path)?;
        let (client, session) = self.shared.live()?;
        lock::lock(&self.shared, client, session, path, timeout).await
    }

    async fn close(&self) -> Result<()> {
        // On a task of its own, so that a dropped call still completes.
        let shared = self.shared.clone();
        let _ = tokio::spawn(async move { shared.close().await }).await;
        Ok(())
    }
}
