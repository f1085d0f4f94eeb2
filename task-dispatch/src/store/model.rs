//! The rows the store hands out: apps, tasks, node sessions, pages.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::affinity::HostId;
use crate::error::{Error, Result};
use crate::state::{Action, AppState};

/// An app id (a JSON number; the ring key is its decimal rendering).
pub type AppId = i64;
/// A task id (a JSON number).
pub type TaskId = i64;

/// One node session: a node id and the epoch it got when it (re)registered.
///
/// Every owner write carries it and is refused once the epoch is no longer current (see
/// [`Store::register_node`](crate::Store::register_node)).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeLease {
    /// The node id (by default `host:port`).
    pub node_id: String,
    /// Strictly increasing per node id across its sessions.
    pub epoch: i64,
}

impl fmt::Display for NodeLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.node_id, self.epoch)
    }
}

/// A stream application managed by the console.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct App {
    /// Assigned by the database.
    pub id: AppId,
    /// A human name (not unique).
    pub name: String,
    /// Which executor runs it (`process`, `flink`, ...).
    pub executor: String,
    /// The executor's input (for `process`: `{"command": [...]}`).
    pub spec: Value,
    /// Where it is in the state machine.
    pub state: AppState,
    /// The executor's record of the running app (pid and start time, job id); `None` when not
    /// started or stopped.
    pub handle: Option<Value>,
    /// Grows on every write; every transition is conditional on it.
    pub version: i64,
    /// The node session allowed to act on the app now (its owner's lease), if any.
    pub lease: Option<NodeLease>,
    /// Why the last action failed or why the app was found dead.
    pub last_error: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Milliseconds since the Unix epoch.
    pub updated_at: i64,
    /// The host a copy of the app may be running on, for an app tied to the machine that
    /// started it (a `process` app): set when it is claimed for a start, cleared once it is
    /// known to be gone (stopped, or found dead by a probe). Only nodes on that host may own
    /// it meanwhile (see [`crate::LiveSet`]); `None`: any node may.
    pub host: Option<HostId>,
    /// What the app reserves of its owner's capacity, running or not (issue 16): at least 1,
    /// set at creation. Counts only under the `bounded` assignment.
    pub weight: u32,
}

/// The largest app weight.
pub const MAX_APP_WEIGHT: u32 = 1_000_000;

/// What `Store::create_app` needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewApp {
    /// 1 to 255 characters.
    pub name: String,
    /// 1 to 64 characters.
    pub executor: String,
    /// Any JSON; the executor validates it.
    pub spec: Value,
    /// 1 to [`MAX_APP_WEIGHT`] (issue 16); 1 when a serialized `NewApp` leaves it out.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    /// Waiting for the owner to claim it.
    Pending,
    /// Claimed by a node session and running.
    Running,
    /// Done.
    Succeeded,
    /// Done with an error (in `Task::error`). Never deleted.
    Failed,
}

impl TaskStatus {
    /// Every status.
    pub const ALL: [Self; 4] = [Self::Pending, Self::Running, Self::Succeeded, Self::Failed];

    /// The stored and displayed name: `PENDING`, `RUNNING`, `SUCCEEDED`, `FAILED`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
        }
    }

    /// SUCCEEDED or FAILED.
    #[must_use]
    pub const fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskStatus {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| Error::Corrupt(format!("unknown task status {s:?}")))
    }
}

/// A start, stop or restart request for one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Assigned by the database; tasks of one app run in id order.
    pub id: TaskId,
    /// The app acted on.
    pub app_id: AppId,
    /// What to do.
    pub action: Action,
    /// Where the task is.
    pub status: TaskStatus,
    /// The node that claimed it last.
    pub claimed_by: Option<String>,
    /// The session epoch of that claim.
    pub claim_epoch: Option<i64>,
    /// How many times it was claimed (more than 1 when its owner died while running it).
    pub attempts: i64,
    /// Why it failed.
    pub error: Option<String>,
    /// The submitter's `Idempotency-Key`, unique across tasks.
    pub idempotency_key: Option<String>,
    /// Grows on every write; claims are conditional on it.
    pub version: i64,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Milliseconds since the Unix epoch.
    pub updated_at: i64,
    /// When it was first claimed.
    pub started_at: Option<i64>,
    /// When it reached SUCCEEDED or FAILED.
    pub finished_at: Option<i64>,
    /// What the request asked beyond the action, for the executor (a JSON object), if anything.
    /// Added, issue 13.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
}

impl Task {
    /// The session that claimed the task, if it is claimed.
    #[must_use]
    pub fn claim(&self) -> Option<NodeLease> {
        Some(NodeLease {
            node_id: self.claimed_by.clone()?,
            epoch: self.claim_epoch?,
        })
    }
}

/// The result of [`Store::submit_task`](crate::Store::submit_task).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The task (the first one, for a repeated idempotency key).
    pub task: Task,
    /// False when the idempotency key was seen before and nothing was inserted.
    pub created: bool,
    /// The app's host ([`App::host`]) as the submission read it, so that the submitter can
    /// tell the app's owner; `None` for a repeated key (nothing to tell).
    pub host: Option<HostId>,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items of the page, in id order.
    pub items: Vec<T>,
    /// How many items exist in all.
    pub total: i64,
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AppRow {
    id: i64,
    name: String,
    executor: String,
    spec: String,
    state: String,
    handle: Option<String>,
    version: i64,
    owner_node: Option<String>,
    owner_epoch: Option<i64>,
    last_error: Option<String>,
    created_at: i64,
    updated_at: i64,
    host: Option<String>,
    weight: i64,
}

impl TryFrom<AppRow> for App {
    type Error = Error;

    fn try_from(row: AppRow) -> Result<Self> {
        let corrupt = |what: &str, e: &dyn fmt::Display| {
            Error::Corrupt(format!("app {}: {what}: {e}", row.id))
        };
        let spec = serde_json::from_str(&row.spec).map_err(|e| corrupt("spec", &e))?;
        let handle = row
            .handle
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| corrupt("handle", &e))?;
        let state = row.state.parse().map_err(|e| corrupt("state", &e))?;
        let lease = match (row.owner_node, row.owner_epoch) {
            (Some(node_id), Some(epoch)) => Some(NodeLease { node_id, epoch }),
            _ => None,
        };
        Ok(Self {
            id: row.id,
            name: row.name,
            executor: row.executor,
            spec,
            state,
            handle,
            version: row.version,
            lease,
            last_error: row.last_error,
            created_at: row.created_at,
            updated_at: row.updated_at,
            host: row.host.map(HostId::new),
            weight: u32::try_from(row.weight)
                .ok()
                .filter(|weight| (1..=MAX_APP_WEIGHT).contains(weight))
                .ok_or_else(|| corrupt("weight", &row.weight))?,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct TaskRow {
    id: i64,
    app_id: i64,
    action: String,
    status: String,
    claimed_by: Option<String>,
    claim_epoch: Option<i64>,
    attempts: i64,
    error: Option<String>,
    idempotency_key: Option<String>,
    version: i64,
    created_at: i64,
    updated_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    params: Option<String>,
}

impl TryFrom<TaskRow> for Task {
    type Error = Error;

    fn try_from(row: TaskRow) -> Result<Self> {
        let action = row
            .action
            .parse()
            .map_err(|e| Error::Corrupt(format!("task {}: {e}", row.id)))?;
        Ok(Self {
            id: row.id,
            app_id: row.app_id,
            action,
            status: row.status.parse()?,
            claimed_by: row.claimed_by,
            claim_epoch: row.claim_epoch,
            attempts: row.attempts,
            error: row.error,
            idempotency_key: row.idempotency_key,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
            params: row
                .params
                .map(|text| serde_json::from_str(&text))
                .transpose()
                .map_err(|e| Error::Corrupt(format!("params of task {}: {e}", row.id)))?,
        })
    }
}
