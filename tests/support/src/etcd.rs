//! etcd for tests: the shared server, a namespace of one test that is deleted on drop, and a
//! private server for tests that stop it.
//!
//! The shared server is `CONSOLE_TEST_ETCD` (default `127.0.0.1:2379`, started by
//! `deploy/etcd.sh start`). It serves every test running at the same time, so a test that stops
//! a server uses a [`PrivateEtcd`] (or cuts its clients off with a [`crate::proxy::TcpProxy`]).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, DeleteOptions};

use crate::deploy_script::DeployScript;
use crate::ports::free_port;
use crate::teardown;

/// The variable that names the shared server.
pub const ENDPOINTS_VAR: &str = "CONSOLE_TEST_ETCD";

/// How long the server may take to answer the test before it fails.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// The shared test server, `host:port`: `CONSOLE_TEST_ETCD`, or the one `deploy/etcd.sh start`
/// runs.
pub fn endpoints() -> String {
    std::env::var(ENDPOINTS_VAR).unwrap_or_else(|_| "127.0.0.1:2379".to_owned())
}

/// A raw client of `endpoints` that has answered a read.
///
/// # Notable errors
/// It does not answer: the message names `deploy/etcd.sh start` and `CONSOLE_TEST_ETCD`.
pub async fn client(endpoints: &str) -> Result<Client, String> {
    let how_to_start =
        "start it with `deploy/etcd.sh start` (or point CONSOLE_TEST_ETCD at a running server)";
    let answered = tokio::time::timeout(ANSWER_TIMEOUT, async {
        let options = ConnectOptions::new().with_connect_timeout(Duration::from_secs(2));
        let mut client =
            Client::connect(endpoints.split(',').collect::<Vec<_>>(), Some(options)).await?;
        client.get("/", None).await?;
        Ok::<_, etcd_client::Error>(client)
    })
    .await;
    match answered {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(error)) => Err(format!(
            "etcd at {endpoints} does not answer ({error}); {how_to_start}"
        )),
        Err(_) => Err(format!(
            "etcd at {endpoints} did not answer within {ANSWER_TIMEOUT:?}; {how_to_start}"
        )),
    }
}

/// A namespace (a key prefix) of one test: `/<kind>-<random>`, deleted with everything below it
/// when dropped, also when the test panics.
#[derive(Debug)]
pub struct Namespace {
    endpoints: String,
    path: String,
    /// `false` for a namespace another process owns ([`Namespace::attach`]).
    owned: bool,
    deleted: AtomicBool,
}

impl Namespace {
    /// A fresh namespace on `endpoints`, after checking that the server answers.
    ///
    /// # Panics
    /// When etcd does not answer, naming `deploy/etcd.sh start`.
    pub async fn new(endpoints: &str, kind: &str) -> Self {
        client(endpoints)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        Self {
            endpoints: endpoints.to_owned(),
            path: format!("/{kind}-{}", crate::unique_token()),
            owned: true,
            deleted: AtomicBool::new(false),
        }
    }

    /// The namespace `path` on `endpoints` that another process made: never deleted by this value.
    pub fn attach(endpoints: &str, path: &str) -> Self {
        Self {
            endpoints: endpoints.to_owned(),
            path: path.to_owned(),
            owned: false,
            deleted: AtomicBool::new(false),
        }
    }

    /// `host:port` of the server.
    pub fn endpoints(&self) -> &str {
        &self.endpoints
    }

    /// `/<kind>-<random>`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Deletes every key of the namespace now; dropping it later does nothing more. Best
    /// effort: reports on stderr, never panics.
    pub async fn delete(&self) {
        self.deleted.store(true, Ordering::SeqCst);
        delete_namespace(&self.endpoints, &self.path).await;
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if !self.owned || self.deleted.load(Ordering::SeqCst) {
            return;
        }
        let (endpoints, path) = (self.endpoints.clone(), self.path.clone());
        teardown::run_blocking(&format!("namespace {}", self.path), move || async move {
            delete_namespace(&endpoints, &path).await;
        });
    }
}

async fn delete_namespace(endpoints: &str, path: &str) {
    let deleted = match client(endpoints).await {
        Ok(mut client) => {
            let below = format!("{path}/");
            client
                .delete(below, Some(DeleteOptions::new().with_prefix()))
                .await
                .map_err(|error| error.to_string())
        }
        Err(error) => Err(error),
    };
    if let Err(error) = deleted {
        eprintln!("cannot delete etcd namespace {path}: {error}");
    }
}

/// An etcd of one test on free ports, run by the project's `deploy/etcd.sh` (with `ETCD_PORT`,
/// `ETCD_PEER_PORT` and `ETCD_DIR` of its own): for tests that stop the server. Dropping it
/// runs `deploy/etcd.sh clean`.
#[derive(Debug)]
pub struct PrivateEtcd {
    port: u16,
    script: DeployScript,
}

impl PrivateEtcd {
    /// Starts a server with its files under `dir` (a test's run directory, say; a temporary
    /// directory of its own when `None`) and waits until it serves.
    ///
    /// # Panics
    /// With the script's output when it fails.
    pub async fn start(dir: Option<&Path>) -> Self {
        let port = free_port();
        let env = vec![
            ("ETCD_PORT", port.to_string()),
            ("ETCD_PEER_PORT", free_port().to_string()),
        ];
        let script = DeployScript::new("etcd.sh", env, "ETCD_DIR", dir, "private-etcd-");
        script.run("start").await;
        Self { port, script }
    }

    /// `127.0.0.1:port`.
    pub fn endpoints(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the server and waits until its port is closed; the data (leases too) is kept.
    pub async fn stop(&self) {
        self.script.run("stop").await;
    }

    /// Starts it again after [`PrivateEtcd::stop`] and waits until it serves.
    pub async fn resume(&self) {
        self.script.run("start").await;
    }
}
