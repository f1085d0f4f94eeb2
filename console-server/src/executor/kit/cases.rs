//! The cases: one rule of the [`Executor`](super::super::Executor) contract each. Every case
//! takes a fresh [`Target`] and answers a [`CaseResult`] whose failure says what was expected.
//! A new case goes here and into the list of `executor_conformance_tests!` (`kit/mod.rs`).
//!
//! Copies are always counted by the target, never by the executor under test: an executor that
//! starts a second copy and reports one cannot pass.

use std::sync::Arc;

use super::super::{ExecutorError, Handle, Liveness};
use super::{
    CaseResult, Context, KitApp, Target, ensure, expect_copies, expect_liveness, retried, task,
};

fn is_alive(liveness: &Liveness) -> bool {
    matches!(liveness, Liveness::Alive)
}

fn is_dead(liveness: &Liveness) -> bool {
    matches!(liveness, Liveness::Dead { .. })
}

fn is_unknown(liveness: &Liveness) -> bool {
    matches!(liveness, Liveness::Unknown { .. })
}

/// Fails unless `result` is a refusal: nothing done, the app may run.
fn ensure_refusal<T: std::fmt::Debug>(result: Result<T, ExecutorError>, call: &str) -> CaseResult {
    match result {
        Err(error) if error.is_refusal() => Ok(()),
        other => ensure(false, || {
            format!("{call}: expected a refusal (ExecutorError::is_refusal), got {other:?}")
        }),
    }
}

/// A start runs exactly one copy, probe sees it, and a stop returns once it is gone.
pub async fn a_start_runs_one_copy_until_stopped<T: Target>(target: Arc<T>) -> CaseResult {
    let app = KitApp::new(&*target, 1);
    let executor = target.executor();
    let handle = executor
        .start(&app.as_ref(), task(1), None)
        .await
        .context("start")?;
    expect_liveness(&*target, &app, &handle, is_alive, "Alive").await?;
    expect_copies(&*target, &app, 1).await?;
    executor
        .stop(&app.as_ref(), task(2), &handle)
        .await
        .context("stop")?;
    let left = target
        .copies(&app.as_ref())
        .await
        .context("counting copies")?;
    ensure(left == 0, || {
        format!("stop returned with {left} copies still running")
    })?;
    expect_liveness(&*target, &app, &handle, is_dead, "Dead").await
}

/// A start given the recorded handle of a running app adopts it: same handle, no new copy,
/// whether it is the same task run again or a new start task.
pub async fn a_repeated_start_adopts_the_recorded_copy<T: Target>(target: Arc<T>) -> CaseResult {
    let app = KitApp::new(&*target, 2);
    let executor = target.executor();
    let first = executor
        .start(&app.as_ref(), task(1), None)
        .await
        .context("start")?;
    expect_copies(&*target, &app, 1).await?;
    for (what, again) in [
        ("the same task again", retried(task(1))),
        ("a new task", task(2)),
    ] {
        let adopted = executor
            .start(&app.as_ref(), again, Some(&first))
            .await
            .context(format!("start by {what}"))?;
        ensure(adopted == first, || {
            format!(
                "start by {what} with the running app's handle answered {adopted:?}, not {first:?}"
            )
        })?;
        expect_copies(&*target, &app, 1).await?;
    }
    executor
        .stop(&app.as_ref(), task(3), &first)
        .await
        .context("stop")
}

/// A start re-run after its owner died between the start and the record (the handle is lost:
/// no `previous`) finds the running copy instead of starting a second one.
pub async fn a_start_whose_handle_was_lost_adopts_the_copy<T: Target>(
    target: Arc<T>,
) -> CaseResult {
    let app = KitApp::new(&*target, 3);
    let executor = target.executor();
    let lost = executor
        .start(&app.as_ref(), task(1), None)
        .await
        .context("start")?;
    expect_copies(&*target, &app, 1).await?;
    let found = executor
        .start(&app.as_ref(), retried(task(1)), None)
        .await
        .context("the re-run start")?;
    expect_copies(&*target, &app, 1).await?;
    expect_liveness(&*target, &app, &found, is_alive, "Alive").await?;
    executor
        .stop(&app.as_ref(), task(2), &found)
        .await
        .context("stop through the found handle")?;
    let left = target
        .copies(&app.as_ref())
        .await
        .context("counting copies")?;
    ensure(left == 0, || {
        format!("stop through the found handle left {left} copies running")
    })?;
    expect_liveness(&*target, &app, &lost, is_dead, "Dead").await
}

/// Once the app died, a start with its handle starts exactly one new copy.
pub async fn a_start_after_a_death_starts_one_new_copy<T: Target>(target: Arc<T>) -> CaseResult {
    let app = KitApp::new(&*target, 4);
    let executor = target.executor();
    let first = executor
        .start(&app.as_ref(), task(1), None)
        .await
        .context("start")?;
    expect_copies(&*target, &app, 1).await?;
    target
        .kill_behind_the_back(&app.as_ref())
        .await
        .context("killing the app")?;
    expect_liveness(&*target, &app, &first, is_dead, "Dead").await?;
    let second = executor
        .start(&app.as_ref(), task(2), Some(&first))
        .await
        .context("the start after the death")?;
    ensure(second != first, || {
        format!("the start after the death answered the dead handle {first:?}")
    })?;
    expect_copies(&*target, &app, 1).await?;
    expect_liveness(&*target, &app, &second, is_alive, "Alive").await?;
    executor
        .stop(&app.as_ref(), task(3), &second)
        .await
        .context("stop")
}

/// Stopping an app that died by itself succeeds, and so does stopping it again.
pub async fn stopping_a_dead_app_succeeds<T: Target>(target: Arc<T>) -> CaseResult {
    let app = KitApp::new(&*target, 5);
    let executor = target.executor();
    let handle = executor
        .start(&app.as_ref(), task(1), None)
        .await
        .context("start")?;
    expect_copies(&*target, &app, 1).await?;
    target
        .kill_behind_the_back(&app.as_ref())
        .await
        .context("killing the app")?;
    expect_liveness(&*target, &app, &handle, is_dead, "Dead").await?;
    executor
        .stop(&app.as_ref(), task(2), &handle)
        .await
        .context("stop of the dead app")?;
    executor
        .stop(&app.as_ref(), retried(task(2)), &handle)
        .await
        .context("stop of the dead app again")?;
    expect_copies(&*target, &app, 0).await
}

/// Probing a running app and a dead one, many times, changes neither.
pub async fn probing_changes_nothing<T: Target>(target: Arc<T>) -> CaseResult {
    let app = KitApp::new(&*target, 6);
    let executor = target.executor();
    let handle = executor
        .start(&app.as_ref(), task(1), None)
        .await
        .context("start")?;
    expect_liveness(&*target, &app, &handle, is_alive, "Alive").await?;
    for _ in 0..5 {
        let liveness = executor.probe(&app.as_ref(), &handle).await;
        ensure(is_alive(&liveness), || {
            format!("a running app probed {liveness:?}")
        })?;
    }
    expect_copies(&*target, &app, 1).await?;
    target
        .kill_behind_the_back(&app.as_ref())
        .await
        .context("killing the app")?;
    expect_liveness(&*target, &app, &handle, is_dead, "Dead").await?;
    for _ in 0..5 {
        let liveness = executor.probe(&app.as_ref(), &handle).await;
        ensure(is_dead(&liveness), || {
            format!("a dead app probed {liveness:?}")
        })?;
    }
    let copies = target
        .copies(&app.as_ref())
        .await
        .context("counting copies")?;
    ensure(copies == 0, || {
        format!("probing a dead app left {copies} copies running")
    })
}

/// A handle from where this executor cannot see the app is unknown, never dead; start and stop
/// refuse it, and the app runs on untouched.
pub async fn a_foreign_handle_is_never_dead_and_never_acted_on<T: Target>(
    target: Arc<T>,
) -> CaseResult {
    let app = KitApp::new(&*target, 7);
    let executor = target.executor();
    let handle = executor
        .start(&app.as_ref(), task(1), None)
        .await
        .context("start")?;
    expect_copies(&*target, &app, 1).await?;
    let foreign = target.foreign(&handle);
    never_dead_never_acted_on(&*target, &app, &handle, &foreign, "foreign", true).await
}

/// A handle whose liveness cannot be established is unknown, never dead; a start refuses it
/// (it could make a second copy), a stop fails (a refusal, or the handle is unusable), and the
/// app runs on untouched.
pub async fn an_undeterminable_handle_is_never_dead_and_never_acted_on<T: Target>(
    target: Arc<T>,
) -> CaseResult {
    let app = KitApp::new(&*target, 8);
    let executor = target.executor();
    let handle = executor
        .start(&app.as_ref(), task(1), None)
        .await
        .context("start")?;
    expect_copies(&*target, &app, 1).await?;
    let undeterminable = target.undeterminable(&handle);
    never_dead_never_acted_on(
        &*target,
        &app,
        &handle,
        &undeterminable,
        "undeterminable",
        false,
    )
    .await
}

async fn never_dead_never_acted_on<T: Target>(
    target: &T,
    app: &KitApp,
    running: &Handle,
    unseen: &Handle,
    what: &str,
    stop_refuses: bool,
) -> CaseResult {
    let executor = target.executor();
    for _ in 0..3 {
        let liveness = executor.probe(&app.as_ref(), unseen).await;
        ensure(is_unknown(&liveness), || {
            format!("the {what} handle probed {liveness:?}, not Unknown")
        })?;
    }
    ensure_refusal(
        executor.start(&app.as_ref(), task(2), Some(unseen)).await,
        &format!("start with the {what} handle"),
    )?;
    let stopped = executor.stop(&app.as_ref(), task(3), unseen).await;
    if stop_refuses {
        ensure_refusal(stopped, &format!("stop with the {what} handle"))?;
    } else {
        ensure(stopped.is_err(), || {
            format!("stop with the {what} handle succeeded")
        })?;
    }
    ensure(
        executor
            .savepoint(&app.as_ref(), task(5), unseen)
            .await
            .is_err(),
        || format!("a savepoint through the {what} handle succeeded"),
    )?;
    expect_copies(target, app, 1).await?;
    expect_liveness(target, app, running, is_alive, "Alive").await?;
    executor
        .stop(&app.as_ref(), task(4), running)
        .await
        .context("stop")
}

/// A savepoint leaves the app running, one copy, and a re-run of the same task (its owner died)
/// answers the same savepoint instead of taking a second. An executor that takes no savepoints
/// says so ([`ExecutorError::Unsupported`]) and touches nothing.
pub async fn a_savepoint_leaves_the_app_running<T: Target>(target: Arc<T>) -> CaseResult {
    let app = KitApp::new(&*target, 9);
    let executor = target.executor();
    let handle = executor
        .start(&app.as_ref(), task(1), None)
        .await
        .context("start")?;
    expect_copies(&*target, &app, 1).await?;
    let taken = executor.savepoint(&app.as_ref(), task(2), &handle).await;
    if executor.takes_savepoints() {
        let first = taken.context("savepoint")?;
        let again = executor
            .savepoint(&app.as_ref(), retried(task(2)), &handle)
            .await
            .context("the re-run savepoint")?;
        ensure(again == first, || {
            format!("the re-run of the savepoint task took {again}, not the first run's {first}")
        })?;
        let next = executor
            .savepoint(&app.as_ref(), task(3), &handle)
            .await
            .context("a second savepoint task")?;
        ensure(next != first, || {
            format!("a new savepoint task answered the previous savepoint {first}")
        })?;
    } else {
        ensure(
            matches!(taken, Err(ExecutorError::Unsupported { .. })),
            || format!("an executor without savepoints answered {taken:?}, not Unsupported"),
        )?;
    }
    expect_copies(&*target, &app, 1).await?;
    expect_liveness(&*target, &app, &handle, is_alive, "Alive").await?;
    executor
        .stop(&app.as_ref(), task(4), &handle)
        .await
        .context("stop")
}
