//! The kit can fail: deliberately broken backends make the relevant cases fail with a message
//! that says what was expected. The broken backends wrap the `standalone` registry, hence the
//! `standalone_` names.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use registry_api::testkit::{CaseResult, Cut, Environment, cases};
use registry_api::{
    ConnectionListener, ConnectionState, ConnectionStates, EventKind, LockGuard, Mode, Registry,
    RegistryError, StandaloneRegistry, StandaloneServer, Subscription,
};
use tokio::sync::{mpsc, oneshot, watch};

/// The ways a [`BrokenRegistry`] breaks the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Defect {
    /// `subscribe` drops `Removed` events (the StreamPark/DolphinScheduler JDBC defect).
    DropsRemovedEvents,
    /// `lock` never excludes: every caller gets a fresh, unrelated lock.
    LockExcludesNobody,
    /// `close` does not end the session, so ephemerals outlive their client.
    CloseKeepsEphemerals,
    /// A dropped `lock` call goes on waiting in the background and keeps the lock it gets.
    DroppedLockKeepsClaim,
    /// `Removed` events carry no value (DolphinScheduler's JDBC #18292, etcd #18640).
    RemovedWithoutValue,
    /// A subscription loses the events committed while its client was cut off.
    LosesEventsWhileCut,
    /// After a session loss the client never reports `Connected` again (their JDBC #18274).
    StaysLostAfterExpiry,
}

/// A standalone client with one defect.
#[derive(Debug)]
struct BrokenRegistry {
    inner: Arc<StandaloneRegistry>,
    defect: Defect,
    /// (how many cuts began, whether one lasts now) ([`BrokenCut`]).
    cut_off: Arc<watch::Sender<(u64, bool)>>,
}

/// Cuts a broken client off: while cut for longer than 200 ms, its session ends (as a server's
/// timeout would); a short cut only interrupts its subscriptions.
struct BrokenCut {
    inner: Arc<StandaloneRegistry>,
    cut_off: Arc<watch::Sender<(u64, bool)>>,
}

impl Cut for BrokenCut {
    fn cut(&self) {
        self.cut_off
            .send_modify(|(cuts, cut)| (*cuts, *cut) = (*cuts + 1, true));
        let (inner, mut cut_off) = (self.inner.clone(), self.cut_off.subscribe());
        tokio::spawn(async move {
            // The session timeout of this in-process "server".
            let restored = tokio::time::timeout(
                Duration::from_millis(200),
                cut_off.wait_for(|(_, cut)| !*cut),
            );
            if restored.await.is_err() {
                inner.expire_session();
            }
        });
    }

    fn restore(&self) {
        self.cut_off.send_modify(|(_, cut)| *cut = false);
    }
}

/// Shared by every client, so that no two `lock` calls of a broken client meet.
static HIDDEN_LOCKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[async_trait]
impl Registry for BrokenRegistry {
    fn backend(&self) -> &'static str {
        "broken"
    }
    async fn connect(&self, timeout: Duration) -> registry_api::Result<()> {
        self.inner.connect(timeout).await
    }
    fn connection_state(&self) -> Option<ConnectionState> {
        self.inner.connection_state()
    }
    fn connection_listener(&self) -> ConnectionListener {
        if self.defect != Defect::StaysLostAfterExpiry {
            return self.inner.connection_listener();
        }
        // Forwards the states up to the first SessionLost, and nothing after it.
        let states = ConnectionStates::new();
        let listener = states.listen();
        let mut real = self.inner.connection_listener();
        tokio::spawn(async move {
            let mut lost = false;
            while let Some(state) = real.next().await {
                if !lost {
                    states.set(state);
                }
                lost |= state == ConnectionState::SessionLost;
            }
        });
        listener
    }
    fn session_timeout(&self) -> Duration {
        self.inner.session_timeout()
    }
    async fn put(&self, path: &str, value: &[u8], mode: Mode) -> registry_api::Result<()> {
        self.inner.put(path, value, mode).await
    }
    async fn get(&self, path: &str) -> registry_api::Result<Option<Vec<u8>>> {
        self.inner.get(path).await
    }
    async fn exists(&self, path: &str) -> registry_api::Result<bool> {
        self.inner.exists(path).await
    }
    async fn delete(&self, path: &str) -> registry_api::Result<()> {
        self.inner.delete(path).await
    }
    async fn children(&self, path: &str) -> registry_api::Result<Vec<String>> {
        self.inner.children(path).await
    }
    async fn subscribe(&self, prefix: &str) -> registry_api::Result<Subscription> {
        let mut real = self.inner.subscribe(prefix).await?;
        let defect = self.defect;
        if !matches!(
            defect,
            Defect::DropsRemovedEvents | Defect::RemovedWithoutValue | Defect::LosesEventsWhileCut
        ) {
            return Ok(real);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let mut cut_off = self.cut_off.subscribe();
        let mut cuts_seen = cut_off.borrow().0;
        let forward = tokio::spawn(async move {
            while let Some(mut event) = real.next().await {
                let cuts = cut_off.borrow().0;
                if defect == Defect::LosesEventsWhileCut && cuts != cuts_seen {
                    // Re-armed from "now" once the cut ends: what was committed meanwhile is lost.
                    let _ = cut_off.wait_for(|(_, cut)| !*cut).await;
                    while real.try_next().is_some() {}
                    cuts_seen = cuts;
                    continue;
                }
                let dropped =
                    defect == Defect::DropsRemovedEvents && event.kind == EventKind::Removed;
                if defect == Defect::RemovedWithoutValue && event.kind == EventKind::Removed {
                    event.value.clear();
                }
                if !dropped && tx.send(event).is_err() {
                    return;
                }
            }
        });
        Ok(Subscription::new(prefix, rx, move || forward.abort()))
    }
    async fn lock(&self, path: &str, timeout: Option<Duration>) -> registry_api::Result<LockGuard> {
        match self.defect {
            Defect::LockExcludesNobody => {
                // Each call locks a different hidden path, so nobody is ever excluded.
                let n = HIDDEN_LOCKS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                self.inner.lock(&format!("{path}-{n}"), timeout).await
            }
            Defect::DroppedLockKeepsClaim => {
                // The wait goes on without the caller; a guard nobody receives is never released.
                let (inner, path) = (self.inner.clone(), path.to_owned());
                let (reply, answer) = oneshot::channel();
                tokio::spawn(async move {
                    if let Err(Ok(orphan)) = reply.send(inner.lock(&path, timeout).await) {
                        std::mem::forget(orphan);
                    }
                });
                answer.await.unwrap_or(Err(RegistryError::Closed))
            }
            _ => self.inner.lock(path, timeout).await,
        }
    }
    async fn close(&self) -> registry_api::Result<()> {
        if self.defect == Defect::CloseKeepsEphemerals {
            return Ok(());
        }
        self.inner.close().await
    }
}

struct BrokenEnvironment {
    server: StandaloneServer,
    defect: Defect,
}

#[async_trait]
impl Environment for BrokenEnvironment {
    type Client = BrokenRegistry;

    async fn create() -> Result<Self, String> {
        unreachable!("built by `run_against` with a chosen defect")
    }
    async fn attach(_: &str) -> Result<Self, String> {
        Err("in-process only".to_owned())
    }
    fn describe(&self) -> String {
        String::new()
    }
    fn new_client(&self) -> Result<BrokenRegistry, RegistryError> {
        Ok(BrokenRegistry {
            inner: Arc::new(self.server.client()),
            defect: self.defect,
            cut_off: Arc::new(watch::channel((0, false)).0),
        })
    }
    fn unreachable_client(&self, _: Duration) -> Option<BrokenRegistry> {
        None
    }
    async fn cuttable_client(&self) -> Option<(BrokenRegistry, Box<dyn Cut>)> {
        let client = self.new_client().ok()?;
        let cut = BrokenCut {
            inner: client.inner.clone(),
            cut_off: client.cut_off.clone(),
        };
        Some((client, Box::new(cut)))
    }
    async fn expire_session(&self, client: &BrokenRegistry) -> Result<(), String> {
        client.inner.expire_session();
        Ok(())
    }
    fn session_timeout(&self) -> Duration {
        Duration::ZERO
    }
    async fn destroy(&self) {}
}

async fn run_against<F, Fut>(defect: Defect, case: F) -> CaseResult
where
    F: FnOnce(Arc<BrokenEnvironment>) -> Fut,
    Fut: std::future::Future<Output = CaseResult>,
{
    let env = Arc::new(BrokenEnvironment {
        server: StandaloneServer::new(),
        defect,
    });
    case(env).await
}

fn assert_fails_saying(outcome: CaseResult, expected: &str) {
    match outcome {
        Ok(()) => {
            panic!("the kit passed a broken backend; it should have failed saying {expected:?}")
        }
        Err(failure) => assert!(
            failure.0.contains(expected),
            "the failure should say {expected:?}, it said: {failure}"
        ),
    }
}

#[tokio::test]
async fn standalone_kit_fails_a_backend_that_drops_removed_events() {
    let outcome = run_against(
        Defect::DropsRemovedEvents,
        cases::subscribe_sees_added_updated_removed,
    )
    .await;
    assert_fails_saying(
        outcome,
        "expected Removed(/conformance/subscribe/k = \"v2\")",
    );
    let outcome = run_against(
        Defect::DropsRemovedEvents,
        cases::close_removes_ephemerals_and_frees_locks,
    )
    .await;
    assert_fails_saying(outcome, "Removed for each ephemeral of the closed client");
}

#[tokio::test]
async fn standalone_kit_fails_a_lock_that_excludes_nobody() {
    let outcome = run_against(
        Defect::LockExcludesNobody,
        cases::lock_excludes_another_holder,
    )
    .await;
    assert_fails_saying(outcome, "b must not get the lock while a holds it");
}

#[tokio::test]
async fn standalone_kit_fails_a_backend_whose_ephemerals_outlive_close() {
    let outcome = run_against(
        Defect::CloseKeepsEphemerals,
        cases::close_removes_ephemerals_and_frees_locks,
    )
    .await;
    assert_fails_saying(
        outcome,
        "a guard of a closed client should report itself invalid",
    );
}

#[tokio::test]
async fn standalone_kit_fails_a_lock_whose_dropped_calls_keep_their_claim() {
    let outcome = run_against(
        Defect::DroppedLockKeepsClaim,
        cases::a_dropped_lock_call_leaves_no_claim_behind,
    )
    .await;
    assert_fails_saying(outcome, "a dropped lock call of b left a claim behind");
}

#[tokio::test]
async fn standalone_kit_fails_removed_events_without_their_value() {
    let outcome = run_against(
        Defect::RemovedWithoutValue,
        cases::removed_carries_the_last_value_however_the_key_ends,
    )
    .await;
    assert_fails_saying(
        outcome,
        "expected Removed(/conformance/removed-values/single = \"s2\") as the next event",
    );
}

#[tokio::test]
async fn standalone_kit_fails_a_watch_that_loses_what_changed_while_cut_off() {
    let outcome = run_against(
        Defect::LosesEventsWhileCut,
        cases::a_watch_resumed_after_a_cut_delivers_the_missed_changes_once,
    )
    .await;
    assert_fails_saying(outcome, "expected the changes made during the cut");
}

#[tokio::test]
async fn standalone_kit_fails_a_client_that_never_comes_back_after_an_outage() {
    let outcome = run_against(
        Defect::StaysLostAfterExpiry,
        cases::an_outage_past_the_session_timeout_ends_in_a_new_session_with_the_ephemerals,
    )
    .await;
    assert_fails_saying(outcome, "expected Connected within");
}

#[tokio::test]
async fn standalone_kit_passes_the_cut_off_cases_without_a_defect() {
    // The cut itself is sound: a short cut loses nothing, a long one ends the session and the
    // client comes back.
    let resumed = run_against(
        Defect::LockExcludesNobody,
        cases::a_watch_resumed_after_a_cut_delivers_the_missed_changes_once,
    )
    .await;
    assert_eq!(resumed, Ok(()));
    let outage = run_against(
        Defect::LockExcludesNobody,
        cases::an_outage_past_the_session_timeout_ends_in_a_new_session_with_the_ephemerals,
    )
    .await;
    assert_eq!(outage, Ok(()));
    let values = run_against(
        Defect::LosesEventsWhileCut,
        cases::removed_carries_the_last_value_however_the_key_ends,
    )
    .await;
    assert_eq!(values, Ok(()));
}

#[tokio::test]
async fn standalone_kit_passes_the_same_wrapper_without_a_defect() {
    // The wrapper itself is sound: with the real standalone behaviour behind it, the cases pass.
    for defect in [Defect::DropsRemovedEvents, Defect::LockExcludesNobody] {
        let other = if defect == Defect::DropsRemovedEvents {
            run_against(defect, cases::lock_excludes_another_holder).await
        } else {
            run_against(defect, cases::subscribe_sees_added_updated_removed).await
        };
        assert_eq!(other, Ok(()), "{defect:?} should not break unrelated cases");
    }
    let cancellation = run_against(
        Defect::DropsRemovedEvents,
        cases::a_dropped_lock_call_leaves_no_claim_behind,
    )
    .await;
    assert_eq!(
        cancellation,
        Ok(()),
        "the lock wrapper is sound without its defect"
    );
}
