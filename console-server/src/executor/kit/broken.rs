//! The kit can fail: in-memory executors run through the cases. The correct one passes every
//! case (the kit asks nothing the contract does not); each broken one fails the case that
//! guards against its defect, saying what was expected. Pure logic, so in-memory is right here.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::super::{AppRef, Executor, ExecutorError, Handle, Liveness, TaskRef};
use super::{CaseResult, Target, cases, outcome_of};

/// Where a fake handle's copy is, as the executor sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Place {
    Here,
    Elsewhere,
    Unreadable,
}

/// What [`Handle::Fake`] carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FakeHandle {
    pub copy: u64,
    pub place: Place,
}

// The defects, as the `DEFECT` parameter of `FakeExecutor`.
/// None: the contract.
const CORRECT: u8 = 0;
/// `start` starts a copy whatever runs.
const STARTS_ALWAYS: u8 = 1;
/// `start` adopts a recorded running copy but never looks for an unrecorded one.
const NO_GUARD: u8 = 2;
/// A foreign handle is dead to `probe`, and `start` and `stop` act on it.
const FOREIGN_IS_DEAD: u8 = 3;
/// `stop` of an app that is not running fails.
const STOP_OF_DEAD_FAILS: u8 = 4;
/// `probe` of a dead app starts it again.
const PROBE_RESTARTS: u8 = 5;
/// `start` with an undeterminable previous handle starts a copy.
const UNDETERMINED_STARTS: u8 = 6;

/// The copies that run, by copy id: the app each belongs to.
#[derive(Debug, Default)]
struct World {
    next_copy: u64,
    running: BTreeMap<u64, i64>,
}

impl World {
    fn start(&mut self, app_id: i64) -> u64 {
        self.next_copy += 1;
        self.running.insert(self.next_copy, app_id);
        self.next_copy
    }

    fn copy_of(&self, app_id: i64) -> Option<u64> {
        self.running
            .iter()
            .find_map(|(copy, app)| (*app == app_id).then_some(*copy))
    }
}

#[derive(Debug, Default)]
struct FakeExecutor<const DEFECT: u8> {
    world: Arc<Mutex<World>>,
}

impl<const DEFECT: u8> FakeExecutor<DEFECT> {
    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn here(copy: u64) -> Handle {
    Handle::Fake(FakeHandle {
        copy,
        place: Place::Here,
    })
}

fn foreign_host() -> ExecutorError {
    ExecutorError::ForeignHost {
        pid: 0,
        handle_host: "elsewhere".to_owned(),
        this_host: "here".to_owned(),
    }
}

fn undetermined() -> ExecutorError {
    ExecutorError::Undetermined {
        reason: "unreadable".to_owned(),
    }
}

#[async_trait]
impl<const DEFECT: u8> Executor for FakeExecutor<DEFECT> {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn validate_spec(&self, _spec: &serde_json::Value) -> Result<(), ExecutorError> {
        Ok(())
    }

    async fn start(
        &self,
        app: &AppRef<'_>,
        _task: TaskRef<'_>,
        previous: Option<&Handle>,
    ) -> Result<Handle, ExecutorError> {
        let mut world = self.world();
        if DEFECT != STARTS_ALWAYS {
            if let Some(Handle::Fake(previous)) = previous {
                match previous.place {
                    Place::Elsewhere if DEFECT != FOREIGN_IS_DEAD => return Err(foreign_host()),
                    Place::Unreadable if DEFECT != UNDETERMINED_STARTS => {
                        return Err(undetermined());
                    }
                    Place::Here if world.running.contains_key(&previous.copy) => {
                        return Ok(here(previous.copy));
                    }
                    _ => {}
                }
            }
            if DEFECT != NO_GUARD
                && let Some(copy) = world.copy_of(app.id)
            {
                return Ok(here(copy));
            }
        }
        Ok(here(world.start(app.id)))
    }

    async fn stop(
        &self,
        _app: &AppRef<'_>,
        _task: TaskRef<'_>,
        handle: &Handle,
    ) -> Result<(), ExecutorError> {
        let Handle::Fake(handle) = handle else {
            return Err(undetermined());
        };
        match handle.place {
            Place::Elsewhere if DEFECT != FOREIGN_IS_DEAD => return Err(foreign_host()),
            Place::Unreadable => return Err(undetermined()),
            _ => {}
        }
        let stopped = self.world().running.remove(&handle.copy).is_some();
        if !stopped && DEFECT == STOP_OF_DEAD_FAILS {
            return Err(ExecutorError::StillRunning {
                pid: 0,
                waited: Duration::ZERO,
            });
        }
        Ok(())
    }

    async fn probe(&self, app: &AppRef<'_>, handle: &Handle) -> Liveness {
        let Handle::Fake(handle) = handle else {
            return Liveness::Unknown {
                reason: "not a fake handle".to_owned(),
            };
        };
        let dead = || Liveness::Dead {
            reason: "gone".to_owned(),
        };
        match handle.place {
            Place::Elsewhere if DEFECT == FOREIGN_IS_DEAD => return dead(),
            Place::Elsewhere | Place::Unreadable => {
                return Liveness::Unknown {
                    reason: "cannot see it".to_owned(),
                };
            }
            Place::Here => {}
        }
        let mut world = self.world();
        if world.running.contains_key(&handle.copy) {
            return Liveness::Alive;
        }
        if DEFECT == PROBE_RESTARTS && world.copy_of(app.id).is_none() {
            world.start(app.id);
        }
        dead()
    }
}

/// A fresh world and a fake executor with `DEFECT`.
#[derive(Debug, Default)]
struct FakeTarget<const DEFECT: u8> {
    executor: FakeExecutor<DEFECT>,
}

#[async_trait]
impl<const DEFECT: u8> Target for FakeTarget<DEFECT> {
    async fn create() -> Result<Self, String> {
        Ok(Self::default())
    }

    fn executor(&self) -> &dyn Executor {
        &self.executor
    }

    fn long_running_spec(&self) -> serde_json::Value {
        serde_json::json!({})
    }

    async fn copies(&self, app: &AppRef<'_>) -> Result<usize, String> {
        let world = self.executor.world();
        Ok(world.running.values().filter(|id| **id == app.id).count())
    }

    async fn kill_behind_the_back(&self, app: &AppRef<'_>) -> Result<(), String> {
        self.executor.world().running.retain(|_, id| *id != app.id);
        Ok(())
    }

    fn foreign(&self, handle: &Handle) -> Handle {
        relocated(handle, Place::Elsewhere)
    }

    fn undeterminable(&self, handle: &Handle) -> Handle {
        relocated(handle, Place::Unreadable)
    }

    /// Short: a broken executor's case fails by timing out on a count that never comes.
    fn settle(&self) -> Duration {
        Duration::from_millis(300)
    }

    async fn destroy(&self) {}
}

fn relocated(handle: &Handle, place: Place) -> Handle {
    match handle {
        Handle::Fake(fake) => Handle::Fake(FakeHandle {
            copy: fake.copy,
            place,
        }),
        other => other.clone(),
    }
}

/// The correct fake passes the whole kit.
mod fake_conformance {
    super::super::executor_conformance_tests!(super::FakeTarget<{ super::CORRECT }>);
}

/// The failure message of `case` run against a fake with `DEFECT`.
fn failure<const DEFECT: u8, Fut>(case: fn(Arc<FakeTarget<DEFECT>>) -> Fut) -> String
where
    Fut: std::future::Future<Output = CaseResult>,
{
    match outcome_of::<FakeTarget<DEFECT>, _, _>(case) {
        Ok(()) => panic!("the kit passed an executor with defect {DEFECT}"),
        Err(failure) => failure.0,
    }
}

#[test]
fn kit_catches_an_executor_that_starts_beside_a_running_copy() {
    let message = failure::<STARTS_ALWAYS, _>(cases::a_repeated_start_adopts_the_recorded_copy);
    assert!(
        message.contains("with the running app's handle answered"),
        "{message}"
    );
}

#[test]
fn kit_catches_an_executor_that_forgets_an_unrecorded_copy() {
    let message = failure::<NO_GUARD, _>(cases::a_start_whose_handle_was_lost_adopts_the_copy);
    assert!(message.contains("has 1 copies"), "{message}");
}

#[test]
fn kit_catches_an_executor_that_declares_a_foreign_app_dead() {
    let message =
        failure::<FOREIGN_IS_DEAD, _>(cases::a_foreign_handle_is_never_dead_and_never_acted_on);
    assert!(
        message.contains("the foreign handle probed Dead"),
        "{message}"
    );
}

#[test]
fn kit_catches_an_executor_whose_stop_of_a_dead_app_fails() {
    let message = failure::<STOP_OF_DEAD_FAILS, _>(cases::stopping_a_dead_app_succeeds);
    assert!(message.contains("stop of the dead app failed"), "{message}");
}

#[test]
fn kit_catches_an_executor_whose_probe_restarts_the_app() {
    let message = failure::<PROBE_RESTARTS, _>(cases::probing_changes_nothing);
    assert!(
        message.contains("probing a dead app left 1 copies"),
        "{message}"
    );
}

#[test]
fn kit_catches_an_executor_that_starts_beside_an_undeterminable_copy() {
    let message = failure::<UNDETERMINED_STARTS, _>(
        cases::an_undeterminable_handle_is_never_dead_and_never_acted_on,
    );
    assert!(message.contains("expected a refusal"), "{message}");
}
