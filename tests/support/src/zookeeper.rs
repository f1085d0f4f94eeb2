//! ZooKeeper for tests: the shared server, a namespace of one test that is deleted on drop, a
//! private server for tests that stop it, and a private ensemble for tests that kill a member.
//!
//! The shared server is `CONSOLE_TEST_ZK` (default `127.0.0.1:2181`, started by
//! `deploy/zookeeper.sh start`). It serves every test running at the same time, so a test that
//! stops or restarts a server uses a [`PrivateZookeeper`] (or cuts its clients off with a
//! [`crate::proxy::TcpProxy`]), never the shared one.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use zookeeper_client as zk;

use crate::deploy_script::DeployScript;
use crate::ports::free_port;
use crate::teardown;

mod ensemble;

pub use ensemble::PrivateEnsemble;

/// The variable that names the shared server.
pub const SERVERS_VAR: &str = "CONSOLE_TEST_ZK";

/// How long the server may take to answer the test before it fails.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// The shared test server, `host:port`: `CONSOLE_TEST_ZK`, or the one `deploy/zookeeper.sh
/// start` runs.
pub fn servers() -> String {
    std::env::var(SERVERS_VAR).unwrap_or_else(|_| "127.0.0.1:2181".to_owned())
}

/// Checks that ZooKeeper at `servers` answers.
///
/// # Notable errors
/// It does not: the message names `deploy/zookeeper.sh start` and `CONSOLE_TEST_ZK`.
pub async fn check(servers: &str) -> Result<(), String> {
    connect(servers, None).await.map(drop)
}

/// A raw client, authenticated with `digest` (`user:password`) if given. A refused connection
/// fails at once instead of being retried until the timeout.
async fn connect(servers: &str, digest: Option<&str>) -> Result<zk::Client, String> {
    let mut connector = zk::Client::connector();
    connector = connector
        .with_session_timeout(Duration::from_secs(10))
        .with_fail_eagerly();
    if let Some(digest) = digest {
        connector = connector.with_auth("digest", digest.as_bytes());
    }
    let how_to_start = "start it with `deploy/zookeeper.sh start` (or point CONSOLE_TEST_ZK at a \
                        running server)";
    match tokio::time::timeout(ANSWER_TIMEOUT, connector.connect(servers)).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(error)) => Err(format!(
            "ZooKeeper at {servers} does not answer ({error}); {how_to_start}"
        )),
        Err(_) => Err(format!(
            "ZooKeeper at {servers} did not answer within {ANSWER_TIMEOUT:?}; {how_to_start}"
        )),
    }
}

/// A namespace (a root path) of one test: `/<kind>-<random>`, deleted with everything below it
/// when dropped, also when the test panics. Nothing is created up front; the clients under test
/// create what they write.
#[derive(Debug)]
pub struct Namespace {
    servers: String,
    path: String,
    /// The credentials the namespace's nodes need, if they were created with a digest ACL.
    digest: Option<String>,
    /// `false` for a namespace another process owns ([`Namespace::attach`]).
    owned: bool,
    deleted: AtomicBool,
}

impl Namespace {
    /// A fresh namespace on `servers`, after checking that the server answers.
    ///
    /// # Panics
    /// When ZooKeeper does not answer, naming `deploy/zookeeper.sh start`.
    pub async fn new(servers: &str, kind: &str) -> Self {
        check(servers)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        Self {
            servers: servers.to_owned(),
            path: format!("/{kind}-{}", crate::unique_token()),
            digest: None,
            owned: true,
            deleted: AtomicBool::new(false),
        }
    }

    /// The namespace `path` on `servers` that another process made (a test's child process):
    /// this value never deletes it.
    pub fn attach(servers: &str, path: &str) -> Self {
        Self {
            servers: servers.to_owned(),
            path: path.to_owned(),
            digest: None,
            owned: false,
            deleted: AtomicBool::new(false),
        }
    }

    /// `host:port` of the server.
    pub fn servers(&self) -> &str {
        &self.servers
    }

    /// `/<kind>-<random>`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Deletes with the digest credentials `user:password`: for a namespace whose nodes carry a
    /// digest ACL.
    pub fn set_digest(&mut self, digest: &str) {
        self.digest = Some(digest.to_owned());
    }

    /// The session that owns each child of `<namespace><parent>` (`parent` starts with `/`), by
    /// name: its `ephemeralOwner`, `0` for a persistent znode. A client that kept its session
    /// keeps its ephemeral znodes with the same owner.
    ///
    /// # Notable errors
    /// The server does not answer, or `parent` does not exist.
    pub async fn ephemeral_owners(&self, parent: &str) -> Result<BTreeMap<String, i64>, String> {
        let client = connect(&self.servers, self.digest.as_deref()).await?;
        let parent = format!("{}{parent}", self.path);
        let children = client
            .list_children(&parent)
            .await
            .map_err(|error| format!("listing {parent}: {error}"))?;
        let mut owners = BTreeMap::new();
        for child in children {
            let path = format!("{parent}/{child}");
            match client.check_stat(&path).await {
                Ok(Some(stat)) => {
                    owners.insert(child, stat.ephemeral_owner);
                }
                Ok(None) => {}
                Err(error) => return Err(format!("stat of {path}: {error}")),
            }
        }
        Ok(owners)
    }

    /// Deletes the namespace and everything below it now; dropping it later does nothing more.
    /// Best effort: reports on stderr, never panics.
    pub async fn delete(&self) {
        self.deleted.store(true, Ordering::SeqCst);
        delete_namespace(&self.servers, &self.path, self.digest.as_deref()).await;
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if !self.owned || self.deleted.load(Ordering::SeqCst) {
            return;
        }
        let (servers, path, digest) =
            (self.servers.clone(), self.path.clone(), self.digest.clone());
        teardown::run_blocking(&format!("namespace {}", self.path), move || async move {
            delete_namespace(&servers, &path, digest.as_deref()).await;
        });
    }
}

async fn delete_namespace(servers: &str, path: &str, digest: Option<&str>) {
    let client = match connect(servers, digest).await {
        Ok(client) => client,
        Err(error) => {
            eprintln!("cannot delete namespace {path}: {error}");
            return;
        }
    };
    if let Err(error) = delete_tree(&client, path).await {
        eprintln!("cannot delete namespace {path}: {error}");
    }
}

/// Deletes `root` and its subtree, children first. Nodes that vanish meanwhile are fine.
async fn delete_tree(client: &zk::Client, root: &str) -> Result<(), zk::Error> {
    // Collect the tree breadth first, then delete deepest first.
    let mut nodes = vec![root.to_owned()];
    let mut index = 0;
    while index < nodes.len() {
        let node = nodes[index].clone();
        match client.list_children(&node).await {
            Ok(children) => {
                for child in children {
                    nodes.push(format!("{}/{child}", node.trim_end_matches('/')));
                }
            }
            Err(zk::Error::NoNode) => {}
            Err(error) => return Err(error),
        }
        index += 1;
    }
    for node in nodes.iter().rev() {
        match client.delete(node, None).await {
            Ok(()) | Err(zk::Error::NoNode) => {}
            // A child created after the listing (a client that was still running): again.
            Err(zk::Error::NotEmpty) => Box::pin(delete_tree(client, node)).await?,
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// A ZooKeeper of one test on a free port, run by the project's `deploy/zookeeper.sh` (with
/// `ZK_PORT` and `ZK_DIR` of its own): for tests that stop or restart the server. Dropping it
/// runs `deploy/zookeeper.sh clean` (stop, then delete its directory).
#[derive(Debug)]
pub struct PrivateZookeeper {
    port: u16,
    script: DeployScript,
}

impl PrivateZookeeper {
    /// Starts a server with its files in a temporary directory of its own and waits until it
    /// serves.
    ///
    /// # Panics
    /// With the script's output when it fails.
    pub async fn start() -> Self {
        Self::launch(None).await
    }

    /// Starts a server with its files under `dir` (e.g. a test's run directory, which a sweep
    /// for leftover processes knows) and waits until it serves.
    ///
    /// # Panics
    /// With the script's output when it fails.
    pub async fn start_in(dir: &Path) -> Self {
        Self::launch(Some(dir)).await
    }

    async fn launch(dir: Option<&Path>) -> Self {
        let port = free_port();
        let env = vec![("ZK_PORT", port.to_string())];
        let script = DeployScript::new("zookeeper.sh", env, "ZK_DIR", dir, "private-zookeeper-");
        script.run("start").await;
        Self { port, script }
    }

    /// `127.0.0.1:port`.
    pub fn servers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGTERM) and waits until its port is closed. The data directory, with
    /// the sessions, is kept.
    pub async fn stop(&self) {
        self.script.run("stop").await;
    }

    /// Starts it again after [`PrivateZookeeper::stop`] and waits until it serves.
    pub async fn resume(&self) {
        self.script.run("start").await;
    }
}
