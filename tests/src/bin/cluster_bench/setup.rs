//! One cluster of the bench: starting it, creating apps and bringing them to a state (set-up,
//! not measured), waiting until they settle, tearing it down.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cluster_tests::{Api, App, Cluster, Id, Options, RegistryKind, eventually};
use futures::stream::{self, StreamExt};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::cli::{Args, Mode, run_label};
use crate::measure::{metric, ms};
use crate::report::{emit, report_logs};

/// How long a batch of tasks (throughput, set-up) may take to finish.
const BATCH_TIMEOUT: Duration = Duration::from_secs(300);
/// How long apps may take to settle on their owners (failover, handoff, one node left).
pub const MOVE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a SIGTERMed node may take to exit.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(60);
/// The size of the app pages the bench reads (the API's maximum).
const PAGE: usize = 500;

/// One cluster of the bench and the apps it created.
pub struct Bench {
    pub registry: RegistryKind,
    pub mode: Mode,
    pub args: Args,
    pub cluster: Cluster,
    /// Apps created so far, in creation order.
    apps: Vec<Id>,
}

/// The outcome of a batch of submissions.
pub struct Batch {
    pub submitted_in: Duration,
    pub errors: Vec<String>,
}

impl Bench {
    /// Starts 3 nodes with the noop executor, dispatching as `mode` does.
    pub async fn start(registry: RegistryKind, mode: Mode, args: &Args) -> Self {
        Self::start_with(registry, mode, args, |options| options).await
    }

    /// [`Bench::start`] with the options changed by `configure` (more environment, another
    /// monitor interval).
    pub async fn start_with(
        registry: RegistryKind,
        mode: Mode,
        args: &Args,
        configure: impl FnOnce(Options) -> Options,
    ) -> Self {
        let mut options = Options::new(registry, 3).env("CONSOLE_BENCHMARK_EXECUTOR", "noop");
        if registry == RegistryKind::Mysql {
            options.heartbeat_interval = Duration::from_millis(args.mysql_heartbeat_ms);
            options.session_timeout = Duration::from_millis(args.mysql_session_ms);
        }
        if mode == Mode::Baseline {
            options = options.env("CONSOLE_BENCHMARK_DISPATCH", "streampark");
        }
        let options = configure(options);
        let started = Instant::now();
        let cluster = Cluster::start(options).await;
        eprintln!(
            "cluster of 3 nodes ({}, {}) ready in {} ms: run directory {}",
            registry.config_name(),
            mode.name(),
            ms(started.elapsed()),
            cluster.run_dir().display()
        );
        Self {
            registry,
            mode,
            args: args.clone(),
            cluster,
            apps: Vec::new(),
        }
    }

    /// Reports the warnings and errors in the node logs, then tears the cluster down.
    pub fn finish(self) {
        report_logs(&self.cluster);
        drop(self.cluster);
    }

    /// `zookeeper ours`: how warnings name this run.
    pub fn label(&self) -> String {
        run_label(self.registry, self.mode)
    }

    /// Prints the JSON line of `scenario`.
    pub fn emit(&self, scenario: &str, fields: Value) {
        emit(scenario, self.registry, self.mode, fields);
    }

    /// Prints the JSON line of `scenario` with the registry timings its figures depend on: the
    /// session timeout and, with MySQL, the heartbeat (the registry's own statements and its
    /// event latency scale with it).
    pub fn emit_with_registry_timings(&self, scenario: &str, mut fields: Value) {
        if let Some(object) = fields.as_object_mut() {
            object.insert(
                "session_timeout_ms".into(),
                json!(self.cluster.session_timeout().as_millis()),
            );
            if self.registry == RegistryKind::Mysql {
                object.insert(
                    "heartbeat_interval_ms".into(),
                    json!(self.cluster.options().heartbeat_interval.as_millis()),
                );
            }
        }
        self.emit(scenario, fields);
    }

    /// The running nodes' APIs, in node order (one client each, reused by every call).
    pub fn apis(&self) -> Vec<(String, Api)> {
        self.cluster.live_apis()
    }

    /// The API of the first running node.
    pub fn first_api(&self) -> Api {
        match self.apis().into_iter().next() {
            Some((_, api)) => api,
            None => panic!("no node is running"),
        }
    }

    /// The API of a running node other than `node_id`.
    pub fn api_other_than(&self, node_id: &str) -> Api {
        match self.apis().into_iter().find(|(id, _)| id != node_id) {
            Some((_, api)) => api,
            None => panic!("no running node other than {node_id}"),
        }
    }

    /// The first `count` apps, in creation order; creates the missing ones.
    pub async fn apps(&mut self, count: usize) -> Vec<Id> {
        if self.apps.len() < count {
            self.create_apps(count).await;
        }
        self.apps[..count].to_vec()
    }

    /// Creates apps until there are `count`.
    async fn create_apps(&mut self, count: usize) {
        let apis = self.apis();
        let first = self.apps.len();
        let started = Instant::now();
        let created: Vec<Result<App, String>> = stream::iter(first..count)
            .map(|index| {
                let (_, api) = apis[index % apis.len()].clone();
                async move {
                    api.create_app(&format!("bench-{index:05}"), "noop", json!({}))
                        .await
                }
            })
            .buffered(self.args.concurrency)
            .collect()
            .await;
        for app in created {
            match app {
                Ok(app) => self.apps.push(app.id),
                Err(error) => panic!("creating an app: {error}"),
            }
        }
        eprintln!(
            "created {} noop apps in {} ms",
            count - first,
            ms(started.elapsed())
        );
    }

    /// Submits `action` (`start` or `stop`) for every app of `ids` that is not yet where the
    /// action leads (RUNNING; STOPPED or CREATED) and waits until all are there (set-up, not
    /// measured).
    pub async fn ensure_state(&self, ids: &[Id], action: &str) {
        let done = |state: &str| match action {
            "start" => state == "RUNNING",
            _ => matches!(state, "STOPPED" | "CREATED"),
        };
        let wanted_states = if action == "start" {
            "RUNNING"
        } else {
            "STOPPED or CREATED"
        };
        let api = self.first_api();
        let apps = all_apps(&api)
            .await
            .unwrap_or_else(|error| panic!("listing apps: {error}"));
        let todo: Vec<Id> = ids
            .iter()
            .filter(|id| apps.get(*id).is_none_or(|app| !done(&app.state)))
            .cloned()
            .collect();
        if todo.is_empty() {
            return;
        }
        let started = Instant::now();
        let batch = self.submit_all(&todo, action).await;
        if !batch.errors.is_empty() {
            panic!(
                "set-up: {} of {} {action} submissions failed, e.g. {}",
                batch.errors.len(),
                todo.len(),
                batch.errors[0]
            );
        }
        wait_no_unfinished(&api).await;
        let wanted: BTreeSet<&Id> = ids.iter().collect();
        eventually(
            &format!("{} apps are {wanted_states}", ids.len()),
            BATCH_TIMEOUT,
            || {
                let api = api.clone();
                let wanted = &wanted;
                async move {
                    let apps = all_apps(&api).await?;
                    let wrong: Vec<String> = wanted
                        .iter()
                        .filter(|id| apps.get(**id).is_none_or(|app| !done(&app.state)))
                        .map(|id| {
                            format!(
                                "{id}={}",
                                apps.get(*id).map_or("missing", |app| app.state.as_str())
                            )
                        })
                        .take(10)
                        .collect();
                    if wrong.is_empty() {
                        Ok(())
                    } else {
                        Err(format!("not {wanted_states}: {wrong:?}"))
                    }
                }
            },
        )
        .await;
        eprintln!(
            "set-up: {action} of {} apps done in {} ms",
            todo.len(),
            ms(started.elapsed())
        );
    }

    /// Submits `action` for every app in `ids`, `--concurrency` at a time, spread over the
    /// nodes in turn.
    pub async fn submit_all(&self, ids: &[Id], action: &str) -> Batch {
        let apis = self.apis();
        let started = Instant::now();
        let outcomes: Vec<Result<(), String>> = stream::iter(ids.iter().enumerate())
            .map(|(index, id)| {
                let (node, api) = apis[index % apis.len()].clone();
                async move {
                    api.submit(id, action)
                        .await
                        .map(|_| ())
                        .map_err(|error| format!("{action} of app {id} via {node}: {error}"))
                }
            })
            .buffer_unordered(self.args.concurrency)
            .collect()
            .await;
        Batch {
            submitted_in: started.elapsed(),
            errors: outcomes.into_iter().filter_map(Result::err).collect(),
        }
    }

    /// Waits until every app of `ids` is RUNNING and adopted by its owner, the owner being a
    /// running node; reads the apps through `api` (the first running node's if `None`).
    pub async fn wait_settled(&self, ids: &[Id], api: Option<Api>) {
        let api = api.unwrap_or_else(|| self.first_api());
        let live = self.cluster.live_ids();
        let wanted: BTreeSet<Id> = ids.iter().cloned().collect();
        eventually(
            "every app is RUNNING and adopted by its (live) owner",
            MOVE_TIMEOUT,
            || settled(&api, &wanted, &live),
        )
        .await;
    }
}

/// Every app by id, read in pages of [`PAGE`].
pub async fn all_apps(api: &Api) -> Result<BTreeMap<Id, App>, String> {
    Ok(api
        .apps_paged(PAGE)
        .await?
        .into_iter()
        .map(|app| (app.id.clone(), app))
        .collect())
}

/// Whether every app of `wanted` is RUNNING with `owner` in `live` and `adopted_by == owner`.
pub async fn settled(
    api: &Api,
    wanted: &BTreeSet<Id>,
    live: &BTreeSet<String>,
) -> Result<(), String> {
    let apps = all_apps(api).await?;
    let mut wrong = Vec::new();
    for id in wanted {
        let Some(app) = apps.get(id) else {
            wrong.push(format!("{id} missing"));
            continue;
        };
        let owner_live = app.owner.as_ref().is_some_and(|owner| live.contains(owner));
        if app.state != "RUNNING" || !owner_live || app.adopted_by != app.owner {
            wrong.push(format!(
                "{id}: {} owner {:?} adopted_by {:?}",
                app.state, app.owner, app.adopted_by
            ));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} apps not settled, e.g. {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(5)]
        ))
    }
}

/// Waits until one node's `/metrics` shows no PENDING or RUNNING task (cluster-wide).
pub async fn wait_no_unfinished(api: &Api) {
    eventually("no task is PENDING or RUNNING", BATCH_TIMEOUT, || async {
        let text = api.metrics().await?;
        let pending = metric(&text, "console_tasks{status=\"PENDING\"}")
            .ok_or_else(|| "no console_tasks{status=\"PENDING\"} in /metrics".to_owned())?;
        let running = metric(&text, "console_tasks{status=\"RUNNING\"}").unwrap_or(0.0);
        if pending + running == 0.0 {
            Ok(())
        } else {
            Err(format!("{pending} PENDING, {running} RUNNING"))
        }
    })
    .await;
}
