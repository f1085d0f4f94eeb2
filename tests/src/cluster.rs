//! A test cluster: N `console-server` nodes on loopback sharing one registry and one task store,
//! each piece private to the test, all of it removed at the end.
//!
//! # Notable behaviors
//! - Isolation: a run directory `$TMPDIR/cluster-test-XXXXXX` (node files, app markers), a
//!   MariaDB database `cluster_test_<token>_store` for `database.url`, and a ZooKeeper
//!   namespace `/cluster-test-<token>`, an etcd namespace `/cluster-test-<token>` or a MariaDB
//!   database `cluster_test_<token>_registry`.
//! - Teardown (on drop, also when the test panics): SIGKILL every node, SIGKILL every process
//!   tagged with the run (the apps, which outlive their console by design), stop the proxy, drop
//!   the databases and the namespace (or clean the private ZooKeeper), remove the run directory. When
//!   the test failed, the tail of every node's log is printed and the run directory is kept.
//! - At most `CLUSTER_TESTS_PARALLEL` clusters (default 2) exist at once in a test process:
//!   [`Cluster::start`] waits for a slot. Two cores do not keep the timing assertions honest
//!   under more load than that.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};
use test_support::etcd::{self, PrivateEtcd};
use test_support::mariadb::{MariaDb, TestDatabase};
use test_support::proxy::TcpProxy;
use test_support::wait::{eventually, poll_until};
use test_support::zookeeper::{self, Namespace, PrivateEnsemble, PrivateZookeeper};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::api::{Api, App, NodeInfo};
use crate::binary;
use crate::node::Node;
use crate::processes::{self, RUN_TAG_VAR};

/// How long a cluster may take to start and agree on its members.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Which registry backend the nodes use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryKind {
    Zookeeper,
    Mysql,
    Etcd,
}

impl RegistryKind {
    /// `registry.type`.
    pub fn config_name(self) -> &'static str {
        match self {
            Self::Zookeeper => "zookeeper",
            Self::Mysql => "mysql",
            Self::Etcd => "etcd",
        }
    }
}

/// How to build a cluster. [`Options::new`] gives the short test timings.
#[derive(Debug, Clone)]
pub struct Options {
    pub registry: RegistryKind,
    pub nodes: usize,
    /// `server.auth_token`; `None` leaves auth off.
    pub auth_token: Option<String>,
    /// `registry.*.session_timeout_ms`.
    pub session_timeout: Duration,
    /// `registry.mysql.heartbeat_interval_ms` (MySQL only).
    pub heartbeat_interval: Duration,
    /// `monitor.interval_ms`.
    pub monitor_interval: Duration,
    /// Run a ZooKeeper or etcd of the test's own instead of the shared one (ZooKeeper and etcd
    /// only).
    pub private_server: bool,
    /// Run a ZooKeeper ensemble of this many members of the test's own (ZooKeeper only; wins
    /// over `private_server`): every node gets all members in `registry.zookeeper.servers`.
    pub private_ensemble: Option<usize>,
    /// Reach MariaDB (store, and registry when it is MySQL) through a [`TcpProxy`] the test can
    /// cut.
    pub database_proxy: bool,
    /// Give every node proxies of its own, one to the registry and one to the task database
    /// ([`NodeProxies`]), so that a test can cut one node from either or both. One registry
    /// server only (not an ensemble).
    pub node_proxies: bool,
    /// Extra environment variables of every node process, set after the harness's own (so
    /// `RUST_LOG` here wins over `CLUSTER_TESTS_LOG`), e.g. the benchmark hooks
    /// `CONSOLE_BENCHMARK_EXECUTOR=noop`.
    pub env: Vec<(String, String)>,
    /// Host names of the first nodes (`n1` gets the first), each run in a UTS namespace of its
    /// own as on a machine of its own (`unshare --uts`, root only); further nodes and an empty
    /// list keep the machine's own.
    pub host_names: Vec<String>,
}

impl Options {
    /// `nodes` nodes on `registry`, with ZooKeeper and etcd sessions of 2 s, MySQL heartbeats of
    /// 200 ms and sessions of 1 s, and a monitor interval of 500 ms.
    pub fn new(registry: RegistryKind, nodes: usize) -> Self {
        let session_timeout = match registry {
            RegistryKind::Zookeeper | RegistryKind::Etcd => Duration::from_millis(2000),
            RegistryKind::Mysql => Duration::from_millis(1000),
        };
        Self {
            registry,
            nodes,
            auth_token: None,
            session_timeout,
            heartbeat_interval: Duration::from_millis(200),
            monitor_interval: Duration::from_millis(500),
            private_server: false,
            private_ensemble: None,
            database_proxy: false,
            node_proxies: false,
            env: Vec::new(),
            host_names: Vec::new(),
        }
    }

    /// Sets `name=value` in every node's environment (see [`Options::env`](Options#structfield.env)).
    #[must_use]
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.retain(|(existing, _)| existing != name);
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Runs node `n<i+1>` under host name `names[i]` (see [`Options::host_names`](Options#structfield.host_names)).
    #[must_use]
    pub fn host_names(mut self, names: &[&str]) -> Self {
        self.host_names = names.iter().map(|name| (*name).to_owned()).collect();
        self
    }

    #[must_use]
    pub fn auth_token(mut self, token: &str) -> Self {
        self.auth_token = Some(token.to_owned());
        self
    }

    #[must_use]
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    #[must_use]
    pub fn private_server(mut self) -> Self {
        self.private_server = true;
        self
    }

    /// See [`Options::private_ensemble`](Options#structfield.private_ensemble).
    #[must_use]
    pub fn private_ensemble(mut self, members: usize) -> Self {
        self.private_ensemble = Some(members);
        self
    }

    #[must_use]
    pub fn node_proxies(mut self) -> Self {
        self.node_proxies = true;
        self
    }

    #[must_use]
    pub fn database_proxy(mut self) -> Self {
        self.database_proxy = true;
        self
    }
}

/// The process-wide limit on clusters that exist at once.
fn slots() -> Arc<Semaphore> {
    static SLOTS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    SLOTS
        .get_or_init(|| {
            let permits = std::env::var("CLUSTER_TESTS_PARALLEL")
                .ok()
                .and_then(|value| value.parse().ok())
                .filter(|permits| *permits > 0)
                .unwrap_or(2);
            Arc::new(Semaphore::new(permits))
        })
        .clone()
}

/// One node's own ways to the registry and to the task database ([`Options::node_proxies`]):
/// cut or black-hole one for a partition between that node and that service only. With the
/// MySQL registry they are two proxies to the same server (registry URL, store URL).
#[derive(Debug)]
pub struct NodeProxies {
    /// Between the node and its registry server.
    pub registry: TcpProxy,
    /// Between the node and the task database.
    pub database: TcpProxy,
}

/// See the [module documentation](self).
#[derive(Debug)]
pub struct Cluster {
    options: Options,
    run_dir: PathBuf,
    binary: &'static Path,
    mariadb: MariaDb,
    store_db: TestDatabase,
    registry_db: Option<TestDatabase>,
    namespace: Option<Namespace>,
    zookeeper: Option<PrivateZookeeper>,
    ensemble: Option<PrivateEnsemble>,
    etcd_namespace: Option<etcd::Namespace>,
    etcd: Option<PrivateEtcd>,
    proxy: Option<TcpProxy>,
    node_proxies: Vec<NodeProxies>,
    nodes: Vec<Node>,
    /// Marks the run as in progress for the sweep of other test processes.
    _run_lock: processes::RunLock,
    _slot: OwnedSemaphorePermit,
}

impl Cluster {
    /// Creates the test's databases and namespace, starts `options.nodes` nodes and waits until
    /// every node is ready and sees all the others.
    ///
    /// # Panics
    /// When a service does not answer (naming the script that starts it), or a node does not
    /// start (with its log).
    pub async fn start(options: Options) -> Self {
        let slot = slots()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let binary = binary::console_server();
        static SWEEP: OnceLock<()> = OnceLock::new();
        SWEEP.get_or_init(|| processes::kill_orphans_of_ended_runs(&std::env::temp_dir()));

        let run_dir = tempfile::Builder::new()
            .prefix("cluster-test-")
            .tempdir()
            .expect("create the run directory")
            .keep();
        let run_lock = processes::RunLock::acquire(&run_dir);
        let token = test_support::unique_token();
        let mariadb = MariaDb::from_env();
        let store_db = mariadb
            .create_database(&format!("cluster_test_{token}_store"))
            .await;
        let mut cluster = Self {
            options: options.clone(),
            run_dir,
            binary,
            mariadb: mariadb.clone(),
            store_db,
            registry_db: None,
            namespace: None,
            zookeeper: None,
            ensemble: None,
            etcd_namespace: None,
            etcd: None,
            proxy: None,
            node_proxies: Vec::new(),
            nodes: Vec::new(),
            _run_lock: run_lock,
            _slot: slot,
        };
        match options.registry {
            RegistryKind::Zookeeper => {
                let servers = if let Some(members) = options.private_ensemble {
                    let ensemble =
                        PrivateEnsemble::start(members, Some(&cluster.run_dir.join("zookeeper")))
                            .await;
                    let servers = ensemble.servers();
                    cluster.ensemble = Some(ensemble);
                    servers
                } else if options.private_server {
                    let server =
                        PrivateZookeeper::start_in(&cluster.run_dir.join("zookeeper")).await;
                    let servers = server.servers();
                    cluster.zookeeper = Some(server);
                    servers
                } else {
                    zookeeper::servers()
                };
                cluster.namespace = Some(Namespace::new(&servers, "cluster-test").await);
            }
            RegistryKind::Etcd => {
                let endpoints = if options.private_server {
                    let server = PrivateEtcd::start(Some(&cluster.run_dir.join("etcd"))).await;
                    let endpoints = server.endpoints();
                    cluster.etcd = Some(server);
                    endpoints
                } else {
                    etcd::endpoints()
                };
                cluster.etcd_namespace =
                    Some(etcd::Namespace::new(&endpoints, "cluster-test").await);
            }
            RegistryKind::Mysql => {
                cluster.registry_db = Some(
                    mariadb
                        .create_database(&format!("cluster_test_{token}_registry"))
                        .await,
                );
            }
        }
        if options.database_proxy {
            cluster.proxy = Some(TcpProxy::start(&mariadb.host_port).await);
        }
        for _ in 0..options.nodes {
            cluster.add_node_unready().await;
        }
        cluster.wait_converged(START_TIMEOUT).await;
        cluster
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The MariaDB server the cluster runs against.
    pub fn mariadb(&self) -> &MariaDb {
        &self.mariadb
    }

    /// The name of the task-store database (`database.url`) the nodes share.
    pub fn store_database(&self) -> &str {
        self.store_db.name()
    }

    /// The name of the registry database (MySQL registry only).
    pub fn registry_database(&self) -> Option<&str> {
        self.registry_db.as_ref().map(|database| database.name())
    }

    pub fn session_timeout(&self) -> Duration {
        self.options.session_timeout
    }

    pub fn monitor_interval(&self) -> Duration {
        self.options.monitor_interval
    }

    /// The run directory; also the tag every process of the run carries.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    fn run_tag(&self) -> String {
        self.run_dir.display().to_string()
    }

    /// The proxy in front of MariaDB ([`Options::database_proxy`]).
    ///
    /// # Panics
    /// When the cluster has none.
    pub fn proxy(&self) -> &TcpProxy {
        self.proxy
            .as_ref()
            .expect("the cluster runs without a proxy")
    }

    /// Node `index`'s own proxies ([`Options::node_proxies`]).
    ///
    /// # Panics
    /// When the cluster runs without them.
    pub fn node_proxies(&self, index: usize) -> &NodeProxies {
        self.node_proxies
            .get(index)
            .expect("the cluster runs without per-node proxies")
    }

    /// The test's own etcd ([`Options::private_server`]).
    ///
    /// # Panics
    /// When the cluster uses the shared one.
    pub fn etcd(&self) -> &PrivateEtcd {
        self.etcd
            .as_ref()
            .expect("the cluster uses the shared etcd")
    }

    /// The test's own ZooKeeper ([`Options::private_server`]).
    ///
    /// # Panics
    /// When the cluster uses the shared one.
    pub fn zookeeper(&self) -> &PrivateZookeeper {
        self.zookeeper
            .as_ref()
            .expect("the cluster uses the shared ZooKeeper")
    }

    /// The test's own ZooKeeper ensemble ([`Options::private_ensemble`]).
    ///
    /// # Panics
    /// When the cluster runs on a single ZooKeeper server.
    pub fn ensemble(&self) -> &PrivateEnsemble {
        self.ensemble
            .as_ref()
            .expect("the cluster runs without a private ensemble")
    }

    /// The ZooKeeper namespace the nodes use (ZooKeeper registry only).
    ///
    /// # Panics
    /// With another registry.
    pub fn zookeeper_namespace(&self) -> &Namespace {
        self.namespace
            .as_ref()
            .expect("the cluster uses no ZooKeeper registry")
    }

    /// Every node ever started, by index (`n1` is index 0).
    pub fn node(&self, index: usize) -> &Node {
        &self.nodes[index]
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The API of node `index`.
    pub fn api(&self, index: usize) -> Api {
        self.nodes[index].api()
    }

    /// Indices of the nodes whose process runs.
    pub fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|index| self.nodes[*index].is_running())
            .collect()
    }

    /// Ids of the nodes whose process runs.
    pub fn live_ids(&self) -> BTreeSet<String> {
        self.live()
            .into_iter()
            .map(|index| self.nodes[index].id.clone())
            .collect()
    }

    /// APIs of the nodes whose process runs, with their ids.
    pub fn live_apis(&self) -> Vec<(String, Api)> {
        self.live()
            .into_iter()
            .map(|index| (self.nodes[index].id.clone(), self.nodes[index].api()))
            .collect()
    }

    /// The registry server's `host:port` (one server), which a node proxy forwards to.
    fn registry_upstream(&self) -> String {
        let address = match self.options.registry {
            RegistryKind::Zookeeper => self.namespace.as_ref().map(|n| n.servers().to_owned()),
            RegistryKind::Etcd => self
                .etcd_namespace
                .as_ref()
                .map(|n| n.endpoints().to_owned()),
            RegistryKind::Mysql => Some(self.mariadb.host_port.clone()),
        }
        .expect("the registry is set up before the nodes");
        let address = address.trim_start_matches("http://").to_owned();
        assert!(
            !address.contains(','),
            "per-node proxies need a single registry server, not {address}"
        );
        address
    }

    /// Node `index`'s configuration (its proxies, when it has them).
    fn config_template(&self, index: usize) -> ConfigTemplate {
        let own = self.node_proxies.get(index);
        let database_host = match (own, &self.proxy) {
            (Some(own), _) => own.database.addr().to_string(),
            (None, Some(proxy)) => proxy.addr().to_string(),
            (None, None) => self.mariadb.host_port.clone(),
        };
        let registry_host = own.map(|own| own.registry.addr().to_string());
        let registry = match self.options.registry {
            RegistryKind::Zookeeper => {
                let namespace = self.namespace.as_ref().expect("a ZooKeeper namespace");
                RegistrySection::Zookeeper {
                    servers: registry_host.unwrap_or_else(|| namespace.servers().to_owned()),
                    namespace: namespace.path().to_owned(),
                }
            }
            RegistryKind::Etcd => {
                let namespace = self.etcd_namespace.as_ref().expect("an etcd namespace");
                RegistrySection::Etcd {
                    endpoints: registry_host.unwrap_or_else(|| namespace.endpoints().to_owned()),
                    namespace: namespace.path().to_owned(),
                }
            }
            RegistryKind::Mysql => {
                let database = self.registry_db.as_ref().expect("a registry database");
                let host = registry_host.unwrap_or_else(|| database_host.clone());
                RegistrySection::Mysql {
                    url: format!("mysql://{host}/{}", database.name()),
                    username: self.mariadb.username.clone(),
                    password: self.mariadb.password.clone(),
                }
            }
        };
        ConfigTemplate {
            store_url: self.mariadb.url(&database_host, self.store_db.name()),
            registry,
            options: self.options.clone(),
        }
    }

    /// Starts node `n<len+1>` and waits until it answers `/healthz` (not `/readyz`).
    async fn add_node_unready(&mut self) -> usize {
        self.add_node_unready_with_env(&[]).await
    }

    /// As [`Cluster::add_node_unready`], with `extra` added to this one node's environment.
    async fn add_node_unready_with_env(&mut self, extra: &[(&str, &str)]) -> usize {
        let id = format!("n{}", self.nodes.len() + 1);
        let mut node = Node::new(
            &self.run_dir,
            &id,
            self.options.auth_token.clone(),
            &self.run_tag(),
        );
        if self.options.node_proxies {
            let registry = TcpProxy::start(&self.registry_upstream()).await;
            let database = TcpProxy::start(&self.mariadb.host_port).await;
            self.node_proxies.push(NodeProxies { registry, database });
        }
        let mut env = self.options.env.clone();
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        node.set_env(env);
        node.set_host_name(self.options.host_names.get(self.nodes.len()).cloned());
        let template = self.config_template(self.nodes.len());
        let data_dir = node.data_dir();
        node.start(self.binary, &|port| template.yaml(&id, &data_dir, port))
            .await;
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// Starts one more node and waits until the whole cluster has converged on it.
    pub async fn add_node(&mut self) -> usize {
        let index = self.add_node_unready().await;
        self.wait_converged(START_TIMEOUT).await;
        index
    }

    /// Starts one more node with `extra` in its environment (a failpoint for this node only)
    /// and waits until the whole cluster has converged on it.
    pub async fn add_node_with_env(&mut self, extra: &[(&str, &str)]) -> usize {
        let index = self.add_node_unready_with_env(extra).await;
        self.wait_converged(START_TIMEOUT).await;
        index
    }

    /// Starts node `index` again (after a kill or exit) on its old port if it is free, and waits
    /// until the cluster has converged.
    pub async fn restart(&mut self, index: usize) {
        assert!(
            !self.nodes[index].is_running(),
            "node {} still runs",
            self.nodes[index].id
        );
        let template = self.config_template(index);
        let binary = self.binary;
        let node = &mut self.nodes[index];
        let id = node.id.clone();
        let data_dir = node.data_dir();
        node.start(binary, &|port| template.yaml(&id, &data_dir, port))
            .await;
        self.wait_converged(START_TIMEOUT).await;
    }

    /// SIGKILLs node `index`; answers when its process was seen gone.
    pub async fn kill(&mut self, index: usize) -> Instant {
        self.nodes[index].kill().await
    }

    /// Sends SIGTERM to node `index`, waits for it to exit (at most `timeout`) and answers its
    /// exit status and when it was seen.
    pub async fn terminate(
        &mut self,
        index: usize,
        timeout: Duration,
    ) -> (std::process::ExitStatus, Instant) {
        self.nodes[index].terminate();
        self.nodes[index].wait_exit(timeout).await
    }

    /// Node `index` itself, for signals and waits the cluster does not wrap.
    pub fn node_mut(&mut self, index: usize) -> &mut Node {
        &mut self.nodes[index]
    }

    /// Waits until every running node answers `/readyz` 200 and lists exactly the running nodes.
    ///
    /// # Panics
    /// When that does not happen within `timeout`, with every node's log.
    pub async fn wait_converged(&mut self, timeout: Duration) {
        let started = Instant::now();
        for index in self.live() {
            let left = timeout.saturating_sub(started.elapsed());
            self.nodes[index].wait_ready(left).await;
        }
        let expected = self.live_ids();
        let apis = self.live_apis();
        let report = self.log_reports(40);
        let left = timeout.saturating_sub(started.elapsed());
        let outcome = poll_until(left, || {
            let apis = apis.clone();
            let expected = expected.clone();
            async move {
                for (id, api) in &apis {
                    if !api.ready().await? {
                        return Err(format!("node {id} is not ready"));
                    }
                    let seen: BTreeSet<String> =
                        api.nodes().await?.into_iter().map(|node| node.id).collect();
                    if seen != expected {
                        return Err(format!("node {id} lists {seen:?}, expected {expected:?}"));
                    }
                }
                Ok(())
            }
        })
        .await;
        if let Err(timed_out) = outcome {
            panic!(
                "the cluster did not converge on {expected:?} within {timeout:?}; last seen: {}\n{report}",
                timed_out.last
            );
        }
    }

    /// The spec of a "marker" app: it appends a line to `<run>/markers/<name>` when it starts,
    /// then sleeps. The number of lines is the number of times it was started.
    pub fn marker_spec(&self, name: &str) -> Value {
        let markers = self.run_dir.join("markers");
        std::fs::create_dir_all(&markers).expect("create the markers directory");
        let marker = markers.join(name);
        json!({
            "command": [
                "sh",
                "-c",
                format!(
                    "echo \"started pid $$ app $CONSOLE_APP_ID\" >> '{}'; exec sleep 100000",
                    marker.display()
                ),
            ],
            "env": { RUN_TAG_VAR: self.run_tag() },
        })
    }

    /// How many times the marker app `name` has started.
    pub fn marker_lines(&self, name: &str) -> usize {
        std::fs::read_to_string(self.run_dir.join("markers").join(name))
            .map(|text| text.lines().count())
            .unwrap_or(0)
    }

    /// Live processes of this run that belong to app `app_id` (by `CONSOLE_APP_ID`).
    pub fn app_processes(&self, app_id: &str) -> Vec<processes::ProcessInfo> {
        processes::tagged(&self.run_tag())
            .into_iter()
            .filter(|process| process.env("CONSOLE_APP_ID") == Some(app_id))
            .collect()
    }

    /// Creates `count` marker apps `app-01`, `app-02`, ... through the nodes in turn.
    pub async fn create_marker_apps(&self, count: usize) -> Vec<App> {
        let apis = self.live_apis();
        let mut apps = Vec::with_capacity(count);
        for index in 0..count {
            let name = format!("app-{:02}", index + 1);
            let (id, api) = &apis[index % apis.len()];
            let app = api
                .create_app(&name, "process", self.marker_spec(&name))
                .await
                .unwrap_or_else(|error| panic!("creating {name} on node {id}: {error}"));
            assert_eq!(app.state, "CREATED", "a new app: {app:?}");
            apps.push(app);
        }
        apps
    }

    /// Starts every app in `apps` through the nodes in turn and waits until all are RUNNING
    /// with a process that has written its marker (RUNNING only says the process exists).
    pub async fn start_and_wait_running(&self, apps: &[App], timeout: Duration) -> Vec<App> {
        self.submit_starts(apps, &self.live()).await;
        self.wait_running(apps, timeout).await
    }

    /// Submits a start of every app in `apps` through the nodes `through` (indexes) in turn.
    pub async fn submit_starts(&self, apps: &[App], through: &[usize]) {
        for (index, app) in apps.iter().enumerate() {
            let node = through[index % through.len()];
            self.api(node)
                .submit(&app.id, "start")
                .await
                .unwrap_or_else(|error| {
                    panic!(
                        "starting app {} via {}: {error}",
                        app.id,
                        self.node(node).id
                    )
                });
        }
    }

    /// Waits until every app in `apps` is RUNNING with a process that has written its marker.
    pub async fn wait_running(&self, apps: &[App], timeout: Duration) -> Vec<App> {
        let apis = self.live_apis();
        let api = apis[0].1.clone();
        let ids: BTreeSet<String> = apps.iter().map(|app| app.id.0.clone()).collect();
        let ids = &ids;
        eventually(
            &format!("the {} apps are RUNNING with a live process", ids.len()),
            timeout,
            || {
                let api = api.clone();
                async move {
                    let apps: Vec<App> = api
                        .apps()
                        .await?
                        .into_iter()
                        .filter(|app| ids.contains(&app.id.0))
                        .collect();
                    let not_running: Vec<String> = apps
                        .iter()
                        .filter(|app| {
                            app.state != "RUNNING"
                                || !app.pid().is_some_and(processes::is_alive)
                                || self.marker_lines(&app.name) == 0
                        })
                        .map(|app| format!("{}={}", app.name, app.state))
                        .collect();
                    if apps.len() == ids.len() && not_running.is_empty() {
                        Ok(apps)
                    } else {
                        Err(format!(
                            "{} of {} apps listed, not running: {not_running:?}",
                            apps.len(),
                            ids.len()
                        ))
                    }
                }
            },
        )
        .await
    }

    /// Every running node's list of all apps.
    pub async fn views(&self) -> Result<Vec<(String, Vec<App>)>, String> {
        let mut views = Vec::new();
        for (id, api) in self.live_apis() {
            let apps = api.apps().await.map_err(|error| format!("{id}: {error}"))?;
            views.push((id, apps));
        }
        Ok(views)
    }

    /// Every running node's `GET /api/v1/cluster/nodes`.
    pub async fn node_lists(&self) -> Result<Vec<(String, Vec<NodeInfo>)>, String> {
        let mut lists = Vec::new();
        for (id, api) in self.live_apis() {
            let nodes = api
                .nodes()
                .await
                .map_err(|error| format!("{id}: {error}"))?;
            lists.push((id, nodes));
        }
        Ok(lists)
    }

    /// The tail of every node's log, for failure messages.
    pub fn log_reports(&self, lines: usize) -> String {
        self.nodes
            .iter()
            .map(|node| node.log_report(lines))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The parts of a node's YAML that all nodes share.
#[derive(Debug, Clone)]
struct ConfigTemplate {
    store_url: String,
    registry: RegistrySection,
    options: Options,
}

#[derive(Debug, Clone)]
enum RegistrySection {
    Zookeeper {
        servers: String,
        namespace: String,
    },
    Mysql {
        url: String,
        username: String,
        password: String,
    },
    Etcd {
        endpoints: String,
        namespace: String,
    },
}

impl ConfigTemplate {
    /// The YAML of node `id` listening on `port` (DESIGN.md "Configuration", plus `node.data_dir`,
    /// `registry.zookeeper.connect_timeout_ms`). Strings are written as JSON strings, which YAML
    /// reads as double-quoted scalars.
    fn yaml(&self, id: &str, data_dir: &Path, port: u16) -> String {
        let quote = |text: &str| Value::String(text.to_owned()).to_string();
        let options = &self.options;
        let session_ms = options.session_timeout.as_millis();
        let registry = match &self.registry {
            RegistrySection::Zookeeper { servers, namespace } => format!(
                "  zookeeper:\n    servers: {}\n    namespace: {}\n    session_timeout_ms: {session_ms}\n    connect_timeout_ms: 10000\n",
                quote(servers),
                quote(namespace)
            ),
            RegistrySection::Etcd {
                endpoints,
                namespace,
            } => format!(
                "  etcd:\n    endpoints: {}\n    namespace: {}\n    session_timeout_ms: {session_ms}\n",
                quote(endpoints),
                quote(namespace)
            ),
            RegistrySection::Mysql {
                url,
                username,
                password,
            } => format!(
                "  mysql:\n    url: {}\n    username: {}\n    password: {}\n    heartbeat_interval_ms: {}\n    session_timeout_ms: {session_ms}\n",
                quote(url),
                quote(username),
                quote(password),
                options.heartbeat_interval.as_millis()
            ),
        };
        format!(
            "# Written by the cluster test harness.\n\
             server:\n  host: \"127.0.0.1\"\n  port: {port}\n  auth_token: {token}\n\
             node:\n  id: {id}\n  data_dir: {data_dir}\n\
             database:\n  url: {store_url}\n\
             registry:\n  type: {kind}\n{registry}\
             monitor:\n  interval_ms: {monitor}\n",
            token = quote(options.auth_token.as_deref().unwrap_or_default()),
            id = quote(id),
            data_dir = quote(&data_dir.display().to_string()),
            store_url = quote(&self.store_url),
            kind = options.registry.config_name(),
            monitor = options.monitor_interval.as_millis(),
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        if failed {
            eprintln!("{}", self.log_reports(60));
        }
        for node in &mut self.nodes {
            node.kill_now();
        }
        // `deploy/zookeeper.sh clean` of a private server (its command line names the run
        // directory, so it would be killed as a tagged process otherwise), after its namespace.
        if let Some(server) = self.zookeeper.take() {
            drop(self.namespace.take());
            drop(server);
        }
        if let Some(ensemble) = self.ensemble.take() {
            drop(self.namespace.take());
            drop(ensemble);
        }
        if let Some(server) = self.etcd.take() {
            drop(self.etcd_namespace.take());
            drop(server);
        }
        let killed = processes::kill_tagged(&self.run_tag());
        if killed > 0 && !failed {
            eprintln!(
                "teardown killed {killed} app processes of {}",
                self.run_dir.display()
            );
        }
        // The proxy's tasks live on the test's runtime; stop them before blocking below.
        self.proxy = None;
        // Each guard cleans up on a thread of its own (this runs inside the test's runtime, or
        // while unwinding) and waits for it; the store database goes when the fields drop.
        drop(self.registry_db.take());
        drop(self.namespace.take());
        drop(self.etcd_namespace.take());
        if failed || std::env::var_os("CLUSTER_TESTS_KEEP").is_some() {
            eprintln!(
                "kept the run directory {} (node logs, configs, markers)",
                self.run_dir.display()
            );
        } else if let Err(error) = std::fs::remove_dir_all(&self.run_dir) {
            eprintln!("cannot remove {}: {error}", self.run_dir.display());
        }
    }
}
