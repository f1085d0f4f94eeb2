//! The supervisor task of a client: follows each session (the state machine in `state.rs` maps
//! its states to [`ConnectionState`]s) and, when a session expires, builds the next one and
//! restores what the client held in it.
//!
//! [`ConnectionState`]: registry_api::ConnectionState

use std::sync::Arc;
use std::time::Duration;

use registry_api::Mode;
use zookeeper_client as zk;

use crate::session::Session;
use crate::state::Shared;
use crate::tree;

/// The longest pause between attempts to build a new session while the ensemble is unreachable.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);

/// Former sessions remembered, to recognise their leftover ephemeral nodes.
const FORMER_SESSIONS: usize = 8;

/// Follows `session` and every session after it until the client is closed (which aborts this
/// task).
pub(crate) async fn run(shared: Arc<Shared>, first: Arc<Session>) {
    let mut session = first;
    let mut former = Vec::new();
    loop {
        let end = shared.follow(&session).await;
        tracing::warn!(session = %format_args!("{:#x}", session.id()), state = %end, "ZooKeeper session ended");
        if !shared.session_lost(&session) {
            return;
        }
        former.push(session.id());
        if former.len() > FORMER_SESSIONS {
            former.remove(0);
        }
        drop(session);
        session = establish(&shared).await;
        if let Some(watch) = shared.watch() {
            watch.adopt(session.client().clone()).await;
        }
        restore_ephemerals(&shared, &session, &former).await;
        // A session lost again already is installed too: `follow` returns at once and the
        // loop starts over.
        if !shared.session_restored(&session) {
            return;
        }
    }
}

/// A new session, retrying with a growing pause until one is made.
async fn establish(shared: &Shared) -> Arc<Session> {
    let mut delay = Duration::from_millis(100);
    loop {
        match Session::establish(&shared.config, shared.config.connect_timeout()).await {
            Ok(session) => return Arc::new(session),
            Err(reason) => {
                tracing::warn!(%reason, ?delay, "building a new ZooKeeper session failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
        }
    }
}

/// Re-creates the ephemeral keys the client holds in the new session, all at once.
async fn restore_ephemerals(shared: &Shared, session: &Session, former: &[i64]) {
    let held = shared.held();
    let outcomes = futures::future::join_all(
        held.iter()
            .map(|(key, value)| restore(shared, session, former, key, value)),
    )
    .await;
    for ((key, _), outcome) in held.iter().zip(outcomes) {
        match outcome {
            Restored::Done => {}
            Restored::Foreign(owner) => {
                tracing::warn!(%key, owner = %format_args!("{owner:#x}"), "an ephemeral key held before the session loss now belongs to someone else; not re-creating it");
                shared.forget_held(key);
            }
            Restored::Failed(error) => {
                // The new session is failing too; the next one tries again.
                tracing::warn!(%key, %error, "re-creating an ephemeral key failed");
            }
        }
    }
}

enum Restored {
    Done,
    /// Another live session (or a persistent write) owns the key now.
    Foreign(i64),
    Failed(zk::Error),
}

/// Re-creates one ephemeral key, checking the owner of a node that is already there: ours is
/// updated, a former session's is waited out (the server removes it when that session's
/// timeout passes), anyone else's is left alone. A live node is never deleted.
async fn restore(
    shared: &Shared,
    session: &Session,
    former: &[i64],
    key: &str,
    value: &[u8],
) -> Restored {
    let client = session.client();
    let acls = shared.config.acls();
    loop {
        let stat = match client.check_stat(key).await {
            Ok(stat) => stat,
            Err(error) => return Restored::Failed(error),
        };
        match stat {
            None => match tree::create_key(client, acls, key, value, Mode::Ephemeral).await {
                Ok(()) => return Restored::Done,
                Err(zk::Error::NodeExists) => continue,
                Err(zk::Error::NoNode) => {
                    if let Err(error) = tree::make_parents(client, acls, key).await {
                        tracing::warn!(%key, %error, "re-creating the parents of an ephemeral key failed");
                        return Restored::Failed(zk::Error::NoNode);
                    }
                }
                Err(error) => return Restored::Failed(error),
            },
            Some(stat) if stat.ephemeral_owner == session.id() => {
                return match client.set_data(key, value, Some(stat.version)).await {
                    Ok(_) => Restored::Done,
                    Err(zk::Error::BadVersion | zk::Error::NoNode) => continue,
                    Err(error) => Restored::Failed(error),
                };
            }
            Some(stat) if former.contains(&stat.ephemeral_owner) => {
                tracing::info!(%key, owner = %format_args!("{:#x}", stat.ephemeral_owner), "waiting for the server to remove the node of the former session");
                match client.check_and_watch_stat(key).await {
                    Ok((Some(now), watcher)) if now.czxid == stat.czxid => {
                        tokio::select! {
                            _ = watcher.changed() => {}
                            () = session.ended() => return Restored::Failed(zk::Error::SessionExpired),
                        }
                    }
                    Ok(_) => {}
                    Err(error) => return Restored::Failed(error),
                }
            }
            Some(stat) => return Restored::Foreign(stat.ephemeral_owner),
        }
    }
}
