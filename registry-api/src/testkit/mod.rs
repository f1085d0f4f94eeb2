//! The conformance kit: the semantics of [`crate::Registry`] as executable cases.
//!
//! A backend's test file implements [`Environment`] (how to make an isolated namespace and clients
//! in it) and calls one macro:
//!
//! ```text
//! mod zk_conformance {
//!     registry_api::registry_conformance_tests!(super::ZookeeperEnvironment);
//! }
//! ```
//!
//! which expands to one `#[test]` per case, named after the case, so a failing case is reported
//! by name with a message that says what was expected. The module carries the backend's test
//! prefix (`zk_`, `mysql_`, `standalone_`), so that filtering the tests by it (`cargo test zk_`)
//! runs the kit with the backend's other tests. Backends that live in one process only
//! (the `standalone` registry) use `registry_conformance_tests!(Env, single_process)`, which
//! leaves out the cases that need a server in another process: the SIGKILL crash cases, the
//! unreachable-server case and the cases that cut a client off ([`Environment::cuttable_client`]).
//!
//! Each case runs under a deadline, on a fresh environment that is destroyed afterwards. The
//! cases live in [`cases`].

pub mod cases;
mod child;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::connection::{ConnectionListener, ConnectionState};
use crate::error::RegistryError;
use crate::event::{Event, EventKind};
use crate::registry::Registry;
use crate::subscription::Subscription;

pub use child::{CrashedClient, crash_child_main, spawn_crash_child};

/// How the kit reaches a backend: an isolated namespace on a real server, and clients in it.
#[async_trait]
pub trait Environment: Sized + Send + Sync + 'static {
    /// The backend's client type.
    type Client: Registry;

    /// Sets up a fresh, isolated environment (a namespace or database with a unique name).
    ///
    /// # Notable errors
    /// A message saying how to start the service when it is not reachable: the kit never skips.
    async fn create() -> Result<Self, String>;

    /// Rebuilds the environment described by [`Environment::describe`] in a child process.
    async fn attach(description: &str) -> Result<Self, String>;

    /// A string from which [`Environment::attach`] can rebuild this environment.
    fn describe(&self) -> String;

    /// A new, unconnected client in this environment with its own session.
    fn new_client(&self) -> Result<Self::Client, RegistryError>;

    /// A client configured for a server that does not answer, with a connect timeout of
    /// `timeout`; `None` for in-process backends.
    fn unreachable_client(&self, timeout: Duration) -> Option<Self::Client>;

    /// A new, unconnected client whose connection to the server passes through a switch the
    /// case controls ([`Cut`]: a `test_support::proxy::TcpProxy` in front of the server, say);
    /// `None` for in-process backends.
    async fn cuttable_client(&self) -> Option<(Self::Client, Box<dyn Cut>)> {
        None
    }

    /// Ends `client`'s session the way the server would after a timeout (expire it, purge its
    /// heartbeat row, ...), without closing the client.
    async fn expire_session(&self, client: &Self::Client) -> Result<(), String>;

    /// The session timeout of the clients: how long a crashed client's ephemerals may outlive it.
    fn session_timeout(&self) -> Duration;

    /// The longest a lock waiter may take to notice a release (a poll interval on SQL backends).
    fn lock_wake_bound(&self) -> Duration {
        Duration::from_millis(200)
    }

    /// Whether every written value reaches subscribers. `false` for backends whose change
    /// notifications carry no data (ZooKeeper): they may skip an intermediate value of a key
    /// that was overwritten before it was read, but never reorder or repeat one.
    fn delivers_every_value(&self) -> bool {
        true
    }

    /// Removes the namespace or database. Runs after every case, passed or failed.
    async fn destroy(&self);
}

/// Takes a client's server away and gives it back, as a network outage would: see
/// [`Environment::cuttable_client`].
pub trait Cut: Send + Sync {
    /// Closes the client's connections and refuses new ones until [`Cut::restore`].
    fn cut(&self);
    /// Lets the client reach its server again.
    fn restore(&self);
}

/// A [`Cut`] made of a switch (a `test_support::proxy::TcpProxy`, say) and two of its methods:
/// `Switch::new(proxy, TcpProxy::cut, TcpProxy::pass)`.
pub struct Switch<T> {
    switch: T,
    cut: fn(&T),
    restore: fn(&T),
}

impl<T: Send + Sync> Switch<T> {
    pub fn new(switch: T, cut: fn(&T), restore: fn(&T)) -> Self {
        Self {
            switch,
            cut,
            restore,
        }
    }
}

impl<T: Send + Sync> Cut for Switch<T> {
    fn cut(&self) {
        (self.cut)(&self.switch)
    }

    fn restore(&self) {
        (self.restore)(&self.switch)
    }
}

impl<T> fmt::Debug for Switch<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Switch").finish_non_exhaustive()
    }
}

/// Why a case failed: what was expected and what happened.
#[derive(Clone, PartialEq, Eq)]
pub struct Failure(pub String);

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The result of one case.
pub type CaseResult = Result<(), Failure>;

/// Fails the case with a formatted message unless the condition holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($message:tt)+) => {
        if !$cond {
            return Err($crate::testkit::Failure(format!($($message)+)));
        }
    };
}

/// Adds what was being done to a registry error.
pub trait Context<T> {
    fn context(self, doing: impl fmt::Display) -> Result<T, Failure>;
}

impl<T> Context<T> for Result<T, RegistryError> {
    fn context(self, doing: impl fmt::Display) -> Result<T, Failure> {
        self.map_err(|error| Failure(format!("{doing} failed: {error}")))
    }
}

impl<T> Context<T> for Result<T, String> {
    fn context(self, doing: impl fmt::Display) -> Result<T, Failure> {
        self.map_err(|error| Failure(format!("{doing} failed: {error}")))
    }
}

/// How long a case may run in all before it is failed as hung.
fn case_deadline<E: Environment>(env: &E) -> Duration {
    Duration::from_secs(60) + env.session_timeout() * 4
}

/// Runs one case on a fresh environment under a deadline and panics with the failure message.
/// Called by the tests that [`registry_conformance_tests!`](crate::registry_conformance_tests)
/// generates.
pub fn run_case<E, F, Fut>(name: &str, case: F)
where
    E: Environment,
    F: FnOnce(Arc<E>) -> Fut,
    Fut: Future<Output = CaseResult>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => panic!("{name}: cannot build a Tokio runtime: {error}"),
    };
    let outcome = runtime.block_on(async {
        let env = match E::create().await {
            Ok(env) => Arc::new(env),
            Err(message) => {
                return Err(Failure(format!(
                    "cannot create the test environment: {message}"
                )));
            }
        };
        let deadline = case_deadline(&*env);
        let outcome = match tokio::time::timeout(deadline, case(env.clone())).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Failure(format!(
                "the case did not finish within {deadline:?}"
            ))),
        };
        env.destroy().await;
        outcome
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    if let Err(failure) = outcome {
        panic!("conformance case `{name}` failed: {failure}");
    }
}

/// A connected client, or a failure saying why not.
pub async fn connected<E: Environment>(env: &E) -> Result<E::Client, Failure> {
    let client = env.new_client().context("creating a client")?;
    client
        .connect(Duration::from_secs(15))
        .await
        .context("connecting a client")?;
    Ok(client)
}

/// Waits for the next event that `accept` takes, skipping others, until `within` passes.
pub async fn expect_event(
    subscription: &mut Subscription,
    within: Duration,
    expected: &str,
    accept: impl Fn(&Event) -> bool,
) -> Result<Event, Failure> {
    let mut skipped = Vec::new();
    let found = tokio::time::timeout(within, async {
        while let Some(event) = subscription.next().await {
            if accept(&event) {
                return Some(event);
            }
            skipped.push(event);
        }
        None
    })
    .await;
    match found {
        Ok(Some(event)) => Ok(event),
        Ok(None) => Err(Failure(format!(
            "expected {expected} on {}, but the subscription ended; saw {skipped:?}",
            subscription.prefix()
        ))),
        Err(_) => Err(Failure(format!(
            "expected {expected} on {} within {within:?}; saw {skipped:?}",
            subscription.prefix()
        ))),
    }
}

/// Waits for exactly this event as the next one on the subscription.
pub async fn expect_next(
    subscription: &mut Subscription,
    within: Duration,
    kind: EventKind,
    path: &str,
    value: &[u8],
) -> Result<(), Failure> {
    let expected = Event::new(kind, path, value);
    let event = next_event(subscription, within)
        .await
        .map_err(|Failure(why)| Failure(format!("expected {expected:?}, but {why}")))?;
    crate::ensure!(
        event == expected,
        "expected {expected:?} as the next event, got {event:?}"
    );
    Ok(())
}

/// The next event on the subscription, whatever it is, within `within`.
pub async fn next_event(
    subscription: &mut Subscription,
    within: Duration,
) -> Result<Event, Failure> {
    match tokio::time::timeout(within, subscription.next()).await {
        Ok(Some(event)) => Ok(event),
        Ok(None) => Err(Failure(format!(
            "the subscription to {} ended",
            subscription.prefix()
        ))),
        Err(_) => Err(Failure(format!(
            "no event on {} within {within:?}",
            subscription.prefix()
        ))),
    }
}

/// Waits until `listener` reports `state` (skipping other states), within `within`; answers
/// every state it reported on the way, `state` last.
pub async fn expect_state(
    listener: &mut ConnectionListener,
    within: Duration,
    state: ConnectionState,
) -> Result<Vec<ConnectionState>, Failure> {
    let mut seen = Vec::new();
    let reached = tokio::time::timeout(within, async {
        while let Some(next) = listener.next().await {
            seen.push(next);
            if next == state {
                return true;
            }
        }
        false
    })
    .await;
    match reached {
        Ok(true) => Ok(seen),
        Ok(false) => Err(Failure(format!(
            "expected {state:?}, but the listener ended; saw {seen:?}"
        ))),
        Err(_) => Err(Failure(format!(
            "expected {state:?} within {within:?}; saw {seen:?}"
        ))),
    }
}

/// Expands to one `#[test]` per conformance case for an [`Environment`].
///
/// `registry_conformance_tests!(Env)` runs every case, including the SIGKILL crash cases (they
/// re-run the test binary as a child process, through an `#[ignore]`d helper test that this
/// macro also generates) and the cases that cut a client off its server.
/// `registry_conformance_tests!(Env, single_process)` leaves out the cases that need a server
/// outside the process.
#[macro_export]
macro_rules! registry_conformance_tests {
    ($env:ty) => {
        $crate::registry_conformance_tests!($env, single_process);
        $crate::__registry_conformance_cases!($env;
            connect_to_an_unreachable_server_fails_within_the_timeout,
            an_outage_past_the_session_timeout_ends_in_a_new_session_with_the_ephemerals,
            a_watch_resumed_after_a_cut_delivers_the_missed_changes_once,
        );

        #[test]
        fn a_replacement_registration_survives_the_old_sessions_end() {
            $crate::testkit::run_case::<$env, _, _>(
                "a_replacement_registration_survives_the_old_sessions_end",
                |env| $crate::testkit::cases::a_replacement_registration_survives_the_old_sessions_end(
                    env,
                    module_path!(),
                ),
            );
        }

        #[test]
        fn crash_of_another_process_removes_its_ephemerals_and_frees_its_lock() {
            $crate::testkit::run_case::<$env, _, _>(
                "crash_of_another_process_removes_its_ephemerals_and_frees_its_lock",
                |env| $crate::testkit::cases::crash_of_another_process_removes_its_ephemerals_and_frees_its_lock(
                    env,
                    module_path!(),
                ),
            );
        }

        /// Not a test: the child process of the crash case, started by the kit.
        #[test]
        #[ignore = "helper process for the conformance crash case; the kit starts it itself"]
        fn registry_testkit_crash_child() {
            $crate::testkit::crash_child_main::<$env>();
        }
    };
    ($env:ty, single_process) => {
        $crate::__registry_conformance_cases!($env;
            connected_after_connect,
            connect_returns_within_its_timeout,
            connection_listener_sees_connected,
            put_get_and_overwrite,
            get_of_a_missing_key_is_none,
            exists_follows_put_and_delete,
            delete_is_recursive_and_missing_keys_are_fine,
            children_are_sorted_direct_and_include_implied_parents,
            prefixes_match_on_segment_boundaries,
            invalid_paths_are_rejected,
            subscribe_sees_added_updated_removed,
            removed_carries_the_last_value,
            events_arrive_in_commit_order_under_concurrent_writers,
            dropping_a_subscription_unsubscribes,
            ephemeral_of_another_session_is_not_overwritten,
            lock_excludes_another_holder,
            timed_lock_returns_when_held,
            release_lets_a_waiter_in_promptly,
            dropping_a_guard_releases_the_lock,
            fencing_tokens_strictly_increase,
            close_removes_ephemerals_and_frees_locks,
            session_loss_recreates_ephemerals_and_invalidates_locks,
            calls_after_close_fail_with_closed,
            leader_election_grants_one_and_fails_over,
            a_dropped_lock_call_leaves_no_claim_behind,
            a_lock_call_dropped_mid_acquisition_leaves_no_claim_behind,
            dropped_writes_are_recreated_as_asked_after_session_loss,
            a_dropped_close_still_ends_the_session,
            removed_carries_the_last_value_however_the_key_ends,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __registry_conformance_cases {
    ($env:ty; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::testkit::run_case::<$env, _, _>(
                    stringify!($case),
                    |env| $crate::testkit::cases::$case(env),
                );
            }
        )*
    };
}
