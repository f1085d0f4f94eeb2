//! The node's feed of cluster changes into its [`EventHub`]: one task per node, running only
//! while at least one stream is open.
//!
//! Every [`POLL_INTERVAL`] it reads, from the shared database, the apps and tasks changed since
//! its cursor (minus [`OVERLAP`], because `updated_at` is taken by the writing node before its
//! transaction commits, on that node's clock), and publishes each row whose `version` it has
//! not published yet. So changes made through any node reach every node's streams. Deleted apps
//! are found by their count: when it differs from the ids the feed knows, it reads the ids
//! (primary key only) and publishes `app_deleted` for the missing ones. Membership comes from
//! the node's own [`Peers`](crate::node::peers::Peers) view, compared with the last round.
//!
//! Cost while someone listens: three indexed queries per round per node; none otherwise.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use serde_json::{Value, json};
use task_dispatch::{AppId, TaskId};

use super::hub::EventHub;
use crate::http::ApiState;
use crate::http::apps::AppView;
use crate::http::cluster::node_views;
use crate::http::tasks::TaskView;

/// How often the feed looks for changes.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How far back each round reads again, for late commits and clock skew between nodes.
pub const OVERLAP: Duration = Duration::from_secs(5);
/// The most rows of one table a round reads; more means the clients must reload (`resync`).
const ROUND_LIMIT: u32 = 2000;

/// Runs the feed until the hub says that nobody listens any more.
pub async fn run(state: ApiState) {
    let hub = state.events.clone();
    let mut feed = Feed::new(state);
    let mut ticks = tokio::time::interval(POLL_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::debug!("event feed started");
    loop {
        ticks.tick().await;
        if hub.feed_may_stop() {
            tracing::debug!("event feed stopped: no stream is open");
            return;
        }
        feed.round(&hub).await;
    }
}

/// What one feed run has published.
struct Feed {
    state: ApiState,
    cursor: i64,
    /// `(version, updated_at)` of the rows published within the overlap window.
    apps_seen: HashMap<AppId, (i64, i64)>,
    tasks_seen: HashMap<TaskId, (i64, i64)>,
    /// Every app id, once read; for finding deleted apps.
    app_ids: Option<BTreeSet<AppId>>,
    /// The last published view of each live node.
    nodes: BTreeMap<String, Value>,
}

impl Feed {
    fn new(state: ApiState) -> Self {
        let nodes = node_map(&state);
        Self {
            state,
            cursor: task_dispatch::unix_millis(),
            apps_seen: HashMap::new(),
            tasks_seen: HashMap::new(),
            app_ids: None,
            nodes,
        }
    }

    async fn round(&mut self, hub: &EventHub) {
        self.membership(hub);
        if let Err(error) = self.rows(hub).await {
            // The next round reads the same window again.
            tracing::debug!(%error, "event feed: reading changes failed");
        }
    }

    fn membership(&mut self, hub: &EventHub) {
        let now = node_map(&self.state);
        for (id, view) in &now {
            match self.nodes.get(id) {
                None => hub.publish("node_joined", view.clone()),
                Some(before) if before != view => hub.publish("node_changed", view.clone()),
                Some(_) => {}
            }
        }
        for id in self.nodes.keys() {
            if !now.contains_key(id) {
                hub.publish("node_left", json!({ "id": id }));
            }
        }
        self.nodes = now;
    }

    async fn rows(&mut self, hub: &EventHub) -> Result<(), task_dispatch::Error> {
        let store = self.state.dispatcher.store().clone();
        let since = self.cursor - i64::try_from(OVERLAP.as_millis()).unwrap_or(i64::MAX);
        let apps = store.apps_updated_since(since, ROUND_LIMIT).await?;
        let tasks = store.tasks_updated_since(since, ROUND_LIMIT).await?;
        let total = store.count_apps().await?;
        if apps.len() == ROUND_LIMIT as usize || tasks.len() == ROUND_LIMIT as usize {
            hub.publish("resync", json!({ "reason": "too_many_changes" }));
            self.apps_seen.clear();
            self.tasks_seen.clear();
            self.cursor = task_dispatch::unix_millis();
            return Ok(());
        }
        let mut newest = self.cursor;
        for app in apps {
            newest = newest.max(app.updated_at);
            self.app_ids
                .get_or_insert_with(BTreeSet::new)
                .insert(app.id);
            let seen = (app.version, app.updated_at);
            if self.apps_seen.insert(app.id, seen).map(|(v, _)| v) != Some(app.version) {
                let view = AppView::new(&self.state, app);
                hub.publish("app_changed", to_value(&view));
            }
        }
        for task in tasks {
            newest = newest.max(task.updated_at);
            let seen = (task.version, task.updated_at);
            if self.tasks_seen.insert(task.id, seen).map(|(v, _)| v) != Some(task.version) {
                hub.publish("task_changed", to_value(&TaskView::from(task)));
            }
        }
        self.cursor = newest;
        let window_start = self.cursor - i64::try_from(OVERLAP.as_millis()).unwrap_or(i64::MAX);
        self.apps_seen.retain(|_, (_, at)| *at >= window_start);
        self.tasks_seen.retain(|_, (_, at)| *at >= window_start);
        self.deletions(hub, total).await
    }

    /// Publishes `app_deleted` for apps that are gone, when the count says some are.
    async fn deletions(&mut self, hub: &EventHub, total: i64) -> Result<(), task_dispatch::Error> {
        let known = self.app_ids.as_ref().map_or(-1, |ids| ids.len() as i64);
        if known == total {
            return Ok(());
        }
        let now: BTreeSet<AppId> = self
            .state
            .dispatcher
            .store()
            .app_ids()
            .await?
            .into_iter()
            .collect();
        if let Some(before) = &self.app_ids {
            for gone in before.difference(&now) {
                hub.publish("app_deleted", json!({ "id": gone }));
            }
        }
        self.app_ids = Some(now);
        Ok(())
    }
}

fn node_map(state: &ApiState) -> BTreeMap<String, Value> {
    node_views(state)
        .into_iter()
        .map(|view| (view.id.clone(), to_value(&view)))
        .collect()
}

fn to_value(view: &impl serde::Serialize) -> Value {
    // The views are plain structs of strings and numbers: serializing them cannot fail.
    serde_json::to_value(view).unwrap_or(Value::Null)
}
