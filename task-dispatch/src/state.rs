//! The app state machine: one transition table, in one place.
//!
//! ```text
//! CREATED ──start──▶ STARTING ──ok──▶ RUNNING ──stop──▶ STOPPING ──ok──▶ STOPPED
//!                       │                │                 │                │
//!                       └─error─▶ FAILED ◀─probe dead──────┘─error          └─start─▶ STARTING
//! FAILED: start, stop or restart.   restart = stop, then start (RUNNING or FAILED only).
//! RUNNING ──savepoint──▶ RUNNING (the app runs on throughout; a failed savepoint leaves it so)
//! ```
//!
//! Every write of a transition is a conditional update on the app's `version` (see
//! `store`), so two writers can never both move the same app; this module only decides which
//! moves are legal.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The state of an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AppState {
    /// Created, never started.
    Created,
    /// A start action is running.
    Starting,
    /// Started and, as far as the last probe knows, alive.
    Running,
    /// A stop action is running.
    Stopping,
    /// Stopped on request.
    Stopped,
    /// An action failed or the app died; `last_error` says why.
    Failed,
}

/// A user-requested action on an app, carried by a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Start the app.
    Start,
    /// Stop the app.
    Stop,
    /// Stop the app, then start it again.
    Restart,
    /// Take a savepoint of the running app, which runs on (added, issue 13: `flink` apps).
    Savepoint,
}

/// One step of an action: the executor call made while the app is in `during`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// `AppActions::start`: STARTING, then RUNNING on success.
    Start,
    /// `AppActions::stop`: STOPPING, then STOPPED on success.
    Stop,
    /// `AppActions::savepoint`: the app stays RUNNING before, during and after, also when the
    /// call fails (a savepoint that could not be taken does not stop the job).
    Savepoint,
}

impl Phase {
    /// The state the app is in while this phase runs.
    #[must_use]
    pub const fn during(self) -> AppState {
        match self {
            Self::Start => AppState::Starting,
            Self::Stop => AppState::Stopping,
            Self::Savepoint => AppState::Running,
        }
    }

    /// The state after the phase succeeds. A failed phase always leads to [`AppState::Failed`].
    #[must_use]
    pub const fn on_success(self) -> AppState {
        match self {
            Self::Start | Self::Savepoint => AppState::Running,
            Self::Stop => AppState::Stopped,
        }
    }

    /// Whether a failure of this phase makes the app FAILED: a start or stop that failed
    /// leaves the app in an unknown half-way state; a savepoint that failed leaves it running.
    #[must_use]
    pub const fn fails_app_on_error(self) -> bool {
        !matches!(self, Self::Savepoint)
    }
}

/// THE transition table: every (state, action) pair that is allowed, with its phases.
/// Anything not listed is refused with [`IllegalTransition`].
const TRANSITIONS: &[(AppState, Action, &[Phase])] = &[
    (AppState::Created, Action::Start, &[Phase::Start]),
    (AppState::Stopped, Action::Start, &[Phase::Start]),
    (AppState::Failed, Action::Start, &[Phase::Start]),
    (AppState::Running, Action::Stop, &[Phase::Stop]),
    (AppState::Failed, Action::Stop, &[Phase::Stop]),
    (
        AppState::Running,
        Action::Restart,
        &[Phase::Stop, Phase::Start],
    ),
    (
        AppState::Failed,
        Action::Restart,
        &[Phase::Stop, Phase::Start],
    ),
    (AppState::Running, Action::Savepoint, &[Phase::Savepoint]),
];

/// An action that is not allowed in the app's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} an app that is {from}")]
pub struct IllegalTransition {
    /// The state the app was in (or would be in once its queued tasks are done).
    pub from: AppState,
    /// The refused action.
    pub action: Action,
}

/// The phases of `action` from `from`, in order.
///
/// # Notable errors
/// [`IllegalTransition`] for every pair not in the table, including any action on an app whose
/// previous action is still running (STARTING, STOPPING).
pub fn plan(from: AppState, action: Action) -> Result<&'static [Phase], IllegalTransition> {
    TRANSITIONS
        .iter()
        .find(|(state, act, _)| *state == from && *act == action)
        .map(|(_, _, phases)| *phases)
        .ok_or(IllegalTransition { from, action })
}

/// Where the app will be once every queued action has run and succeeded: the state that a
/// newly submitted action is checked against (the HTTP layer answers 409 when it is refused).
///
/// `queued` are the actions of the app's unfinished tasks in submission order. When `current`
/// is STARTING or STOPPING the first of them is the one running now (a claim moves the app
/// into that state atomically), so it is taken as done rather than checked again.
///
/// # Notable errors
/// [`IllegalTransition`] if a queued action is itself illegal on the way.
pub fn projected<I>(current: AppState, queued: I) -> Result<AppState, IllegalTransition>
where
    I: IntoIterator<Item = Action>,
{
    let mut queued = queued.into_iter();
    let mut state = current;
    if matches!(current, AppState::Starting | AppState::Stopping)
        && let Some(running) = queued.next()
    {
        state = running.final_state();
    }
    queued.try_fold(state, |state, action| {
        plan(state, action)?;
        Ok(action.final_state())
    })
}

/// Where a re-claimed action resumes: the app's state says which phase was running when the
/// previous owner died. `None` if the state does not belong to the action (then the action is
/// planned afresh from that state).
#[must_use]
pub fn resume(state: AppState, action: Action) -> Option<&'static [Phase]> {
    let phases: &'static [Phase] = match action {
        Action::Start => &[Phase::Start],
        Action::Stop => &[Phase::Stop],
        Action::Restart => &[Phase::Stop, Phase::Start],
        Action::Savepoint => &[Phase::Savepoint],
    };
    let at = phases.iter().position(|phase| phase.during() == state)?;
    Some(&phases[at..])
}

impl AppState {
    /// Every state, in lifecycle order.
    pub const ALL: [Self; 6] = [
        Self::Created,
        Self::Starting,
        Self::Running,
        Self::Stopping,
        Self::Stopped,
        Self::Failed,
    ];

    /// The stored and displayed name: `CREATED`, `STARTING`, ...
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Created => "CREATED",
            Self::Starting => "STARTING",
            Self::Running => "RUNNING",
            Self::Stopping => "STOPPING",
            Self::Stopped => "STOPPED",
            Self::Failed => "FAILED",
        }
    }

    /// STARTING, RUNNING or STOPPING: the app may have a live process, so it is monitored by its
    /// owner and cannot be deleted.
    #[must_use]
    pub const fn is_active(self) -> bool {
        matches!(self, Self::Starting | Self::Running | Self::Stopping)
    }

    /// CREATED, RUNNING, STOPPED or FAILED: no action is under way. An executor's refusal puts
    /// an app back in such a state; one that was mid-action before the claim (its previous owner
    /// died) becomes FAILED instead, since nothing will finish that action.
    #[must_use]
    pub const fn is_settled(self) -> bool {
        !matches!(self, Self::Starting | Self::Stopping)
    }

    /// Whether a probe that finds the app dead moves it to FAILED: only RUNNING apps are
    /// probed; a STARTING or STOPPING app belongs to its running task.
    #[must_use]
    pub const fn fails_when_found_dead(self) -> bool {
        matches!(self, Self::Running)
    }
}

impl Action {
    /// Every action.
    pub const ALL: [Self; 4] = [Self::Start, Self::Stop, Self::Restart, Self::Savepoint];

    /// The state the app ends in when the action succeeds.
    #[must_use]
    pub const fn final_state(self) -> AppState {
        match self {
            Self::Start | Self::Restart | Self::Savepoint => AppState::Running,
            Self::Stop => AppState::Stopped,
        }
    }

    /// The stored and displayed name: `start`, `stop`, `restart`, `savepoint`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Restart => "restart",
            Self::Savepoint => "savepoint",
        }
    }
}

impl fmt::Display for AppState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not an [`AppState`] or [`Action`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownName {
    /// `"app state"` or `"action"`.
    pub kind: &'static str,
    /// The text that did not parse.
    pub value: String,
}

impl FromStr for AppState {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownName {
                kind: "app state",
                value: s.to_owned(),
            })
    }
}

impl FromStr for Action {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|action| action.as_str() == s)
            .ok_or_else(|| UnknownName {
                kind: "action",
                value: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_allows_exactly_the_documented_moves() {
        use Action::*;
        use AppState::*;
        let allowed = |from, action| plan(from, action).is_ok();
        for from in AppState::ALL {
            assert_eq!(
                allowed(from, Start),
                matches!(from, Created | Stopped | Failed),
                "{from}"
            );
            assert_eq!(
                allowed(from, Stop),
                matches!(from, Running | Failed),
                "{from}"
            );
            assert_eq!(
                allowed(from, Restart),
                matches!(from, Running | Failed),
                "{from}"
            );
            assert_eq!(allowed(from, Savepoint), from == Running, "{from}");
        }
        assert_eq!(plan(Running, Savepoint), Ok(&[Phase::Savepoint][..]));
        assert_eq!(Phase::Savepoint.during(), Running);
        assert_eq!(Phase::Savepoint.on_success(), Running);
        assert!(!Phase::Savepoint.fails_app_on_error());
        assert!(Phase::Start.fails_app_on_error() && Phase::Stop.fails_app_on_error());
        assert_eq!(plan(Running, Restart), Ok(&[Phase::Stop, Phase::Start][..]));
    }

    #[test]
    fn refusal_names_the_state_and_action() {
        let err = plan(AppState::Stopped, Action::Stop).unwrap_err();
        assert_eq!(err.to_string(), "cannot stop an app that is STOPPED");
    }

    #[test]
    fn projection_runs_queued_actions_as_if_they_succeed() {
        use Action::*;
        assert_eq!(projected(AppState::Created, [Start]), Ok(AppState::Running));
        assert_eq!(
            projected(AppState::Created, [Start, Stop, Start]),
            Ok(AppState::Running)
        );
        assert_eq!(
            projected(AppState::Created, [Start, Start]),
            Err(IllegalTransition {
                from: AppState::Running,
                action: Start
            })
        );
        // While a start is running, a stop is accepted: it will run after the start.
        assert_eq!(
            projected(AppState::Starting, [Start, Stop]),
            Ok(AppState::Stopped)
        );
        assert!(projected(AppState::Starting, [Start, Start]).is_err());
        // A savepoint keeps the app RUNNING: a stop may follow it, a start may not.
        assert_eq!(
            projected(AppState::Running, [Savepoint, Stop]),
            Ok(AppState::Stopped)
        );
        assert!(projected(AppState::Running, [Savepoint]).is_ok_and(|s| plan(s, Start).is_err()));
        assert!(projected(AppState::Created, [Start]).is_ok_and(|s| plan(s, Savepoint).is_ok()));
        // A transitional state without its task (should not happen) refuses everything.
        assert!(projected(AppState::Starting, []).is_ok_and(|s| plan(s, Stop).is_err()));
    }

    #[test]
    fn resume_picks_the_phase_that_was_running() {
        assert_eq!(
            resume(AppState::Stopping, Action::Restart),
            Some(&[Phase::Stop, Phase::Start][..])
        );
        assert_eq!(
            resume(AppState::Starting, Action::Restart),
            Some(&[Phase::Start][..])
        );
        assert_eq!(
            resume(AppState::Starting, Action::Start),
            Some(&[Phase::Start][..])
        );
        assert_eq!(resume(AppState::Running, Action::Start), None);
        // A savepoint runs with the app RUNNING: a re-claim takes it again from there.
        assert_eq!(
            resume(AppState::Running, Action::Savepoint),
            Some(&[Phase::Savepoint][..])
        );
        assert_eq!(resume(AppState::Failed, Action::Savepoint), None);
    }

    #[test]
    fn names_round_trip() {
        for state in AppState::ALL {
            assert_eq!(state.as_str().parse(), Ok(state));
            assert_eq!(
                serde_json::to_string(&state).unwrap(),
                format!("\"{state}\"")
            );
        }
        for action in Action::ALL {
            assert_eq!(action.as_str().parse(), Ok(action));
        }
        assert!("running".parse::<AppState>().is_err());
    }
}
