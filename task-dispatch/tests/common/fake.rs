//! A fake executor over a shared "world" of running apps, recording every call, for the
//! in-process dispatcher tests. Only the executor is fake: the database, the dispatchers and
//! their runtimes are real.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use task_dispatch::{
    ActionContext, ActionError, App, AppActions, AppId, Dispatcher, Liveness, OwnerNotifier, Phase,
    TaskId,
};

/// One executor call, as seen by the fake.
#[derive(Debug, Clone)]
pub struct Call {
    pub node: String,
    pub app_id: AppId,
    pub task_id: TaskId,
    pub phase: Phase,
    pub attempt: i64,
    /// The session epoch of the lease the caller acted under (`app.lease`).
    pub epoch: Option<i64>,
    /// Global order of call starts.
    pub seq: u64,
    /// The call returned (false: dropped mid-way, or still running).
    pub completed: bool,
    pub failed: bool,
}

/// What every node's fake executor shares: the running apps, the call log, the checks.
#[derive(Debug, Default)]
pub struct World {
    running: Mutex<HashSet<AppId>>,
    calls: Mutex<Vec<Call>>,
    in_flight: Mutex<HashMap<AppId, String>>,
    pub overlaps: Mutex<Vec<String>>,
    probes: Mutex<HashMap<String, u64>>,
    seq: AtomicU64,
    rng: Mutex<u64>,
    /// Per mille of start/stop calls that fail.
    pub fail_per_mille: AtomicU64,
    /// Upper bound of a call's random duration, in ms.
    pub max_delay_ms: AtomicU64,
    /// Apps whose next probe reports dead (then removed from the set).
    pub kill_on_probe: Mutex<HashSet<AppId>>,
    /// Apps whose calls do not return until released.
    held: Mutex<HashSet<AppId>>,
    /// Whether apps are tied to the host that starts them (`AppActions::is_host_bound`).
    pub host_bound: std::sync::atomic::AtomicBool,
}

impl World {
    pub fn new(seed: u64, fail_per_mille: u64, max_delay_ms: u64) -> Arc<Self> {
        Arc::new(Self {
            rng: Mutex::new(seed | 1),
            fail_per_mille: AtomicU64::new(fail_per_mille),
            max_delay_ms: AtomicU64::new(max_delay_ms),
            ..Self::default()
        })
    }

    pub fn random(&self, bound: u64) -> u64 {
        let mut state = self.rng.lock().unwrap();
        // xorshift64
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state % bound.max(1)
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub fn is_running(&self, app: AppId) -> bool {
        self.running.lock().unwrap().contains(&app)
    }

    /// The app's process dies (found by the next probe).
    pub fn crash(&self, app: AppId) {
        self.running.lock().unwrap().remove(&app);
    }

    pub fn in_flight_on(&self, node: &str) -> Vec<AppId> {
        self.in_flight
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, n)| n.as_str() == node)
            .map(|(app, _)| *app)
            .collect()
    }

    /// Calls on `app` block until [`World::release`].
    pub fn hold(&self, app: AppId) {
        self.held.lock().unwrap().insert(app);
    }

    pub fn release(&self, app: AppId) {
        self.held.lock().unwrap().remove(&app);
    }

    fn is_held(&self, app: AppId) -> bool {
        self.held.lock().unwrap().contains(&app)
    }

    pub fn probes_by(&self, node: &str) -> u64 {
        self.probes.lock().unwrap().get(node).copied().unwrap_or(0)
    }

    pub fn starts_by(&self, node: &str, app: AppId) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.node == node && c.app_id == app && c.phase == Phase::Start)
            .count()
    }
}

/// The fake executor of one node.
#[derive(Debug, Clone)]
pub struct FakeActions {
    pub node: String,
    pub world: Arc<World>,
}

/// Marks an app busy for the duration of a call; a second concurrent call is an overlap.
struct InFlight {
    world: Arc<World>,
    app: AppId,
    index: usize,
}

impl InFlight {
    fn enter(world: &Arc<World>, node: &str, app: &App, cx: &ActionContext, phase: Phase) -> Self {
        let (epoch, app) = (app.lease.as_ref().map(|lease| lease.epoch), app.id);
        let mut in_flight = world.in_flight.lock().unwrap();
        if let Some(other) = in_flight.insert(app, node.to_owned()) {
            world.overlaps.lock().unwrap().push(format!(
                "app {app}: {node} started {phase:?} of task {} while {other} was still acting",
                cx.task_id
            ));
        }
        let mut calls = world.calls.lock().unwrap();
        calls.push(Call {
            node: node.to_owned(),
            app_id: app,
            task_id: cx.task_id,
            phase,
            attempt: cx.attempt,
            epoch,
            seq: world.seq.fetch_add(1, Ordering::SeqCst),
            completed: false,
            failed: false,
        });
        Self {
            world: world.clone(),
            app,
            index: calls.len() - 1,
        }
    }

    fn complete(self, failed: bool) {
        let mut calls = self.world.calls.lock().unwrap();
        calls[self.index].completed = true;
        calls[self.index].failed = failed;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.world.in_flight.lock().unwrap().remove(&self.app);
    }
}

impl FakeActions {
    async fn act(&self, app: &App, cx: &ActionContext, phase: Phase) -> Result<Value, ActionError> {
        let guard = InFlight::enter(&self.world, &self.node, app, cx, phase);
        let delay = self
            .world
            .random(self.world.max_delay_ms.load(Ordering::Relaxed) + 1);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        while self.world.is_held(app.id) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let fail = self.world.random(1000) < self.world.fail_per_mille.load(Ordering::Relaxed);
        let result = if fail {
            Err(ActionError::new(format!(
                "{phase:?} of app {} failed (injected)",
                app.id
            )))
        } else {
            let mut running = self.world.running.lock().unwrap();
            match phase {
                // Safe to repeat: an app already running is adopted, not started twice.
                Phase::Start => {
                    running.insert(app.id);
                    Ok(json!({"pid": 1000 + app.id, "node": self.node}))
                }
                Phase::Stop => {
                    running.remove(&app.id);
                    Ok(Value::Null)
                }
                // The app runs on.
                Phase::Savepoint => Ok(Value::Null),
            }
        };
        guard.complete(result.is_err());
        result
    }
}

#[async_trait]
impl AppActions for FakeActions {
    async fn start(&self, app: &App, cx: &ActionContext) -> Result<Value, ActionError> {
        self.act(app, cx, Phase::Start).await
    }

    async fn stop(&self, app: &App, cx: &ActionContext) -> Result<(), ActionError> {
        self.act(app, cx, Phase::Stop).await.map(|_| ())
    }

    async fn savepoint(&self, app: &App, cx: &ActionContext) -> Result<(), ActionError> {
        self.act(app, cx, Phase::Savepoint).await.map(|_| ())
    }

    fn is_host_bound(&self, _app: &App) -> bool {
        self.world.host_bound.load(Ordering::Relaxed)
    }

    async fn probe(&self, app: &App) -> Liveness {
        *self
            .world
            .probes
            .lock()
            .unwrap()
            .entry(self.node.clone())
            .or_default() += 1;
        if self.world.kill_on_probe.lock().unwrap().remove(&app.id) {
            self.world.crash(app.id);
        }
        if self.world.is_running(app.id) {
            Liveness::Alive
        } else {
            Liveness::Dead {
                reason: format!("process of app {} is gone", app.id),
            }
        }
    }
}

/// Signals owners in-process, as the console would over its registry or HTTP.
#[derive(Debug, Default)]
pub struct InProcessNotifier {
    pub nodes: Mutex<HashMap<String, Dispatcher>>,
}

#[async_trait]
impl OwnerNotifier for InProcessNotifier {
    async fn notify(&self, owner: &str, app_id: AppId, _task_id: TaskId) {
        let target = self.nodes.lock().unwrap().get(owner).cloned();
        if let Some(dispatcher) = target {
            dispatcher.wake(app_id);
        }
    }
}
