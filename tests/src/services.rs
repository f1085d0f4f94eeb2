//! The shared services a cluster runs against, and the private corner of each that one test owns:
//! a ZooKeeper namespace `/cluster-test-<random>` or MariaDB databases `cluster_test_<random>_*`,
//! deleted again when the test ends (also when it fails).
//!
//! | variable | default | started by |
//! |---|---|---|
//! | `CONSOLE_TEST_ZK` | `127.0.0.1:2181` | `deploy/zookeeper.sh start` |
//! | `CONSOLE_TEST_MYSQL_URL` | `mysql://root@127.0.0.1:3306` | `deploy/mariadb.sh start` |
//!
//! A service that does not answer fails the test with a message naming the script that starts
//! it; nothing is skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::str::FromStr;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};
use zookeeper_client as zk;

/// How long a service may take to answer the harness before the test fails.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// The shared ZooKeeper: `CONSOLE_TEST_ZK`, or the one `deploy/zookeeper.sh start` runs.
pub fn zookeeper_servers() -> String {
    std::env::var("CONSOLE_TEST_ZK").unwrap_or_else(|_| "127.0.0.1:2181".to_owned())
}

/// A random lowercase hex token for unique names.
pub fn unique_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

async fn zk_connect(servers: &str) -> Result<zk::Client, String> {
    // Fail at once on a refused connection instead of retrying until the timeout.
    let connecting = zk::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .with_fail_eagerly()
        .connect(servers);
    match tokio::time::timeout(ANSWER_TIMEOUT, connecting).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(error)) => Err(format!(
            "ZooKeeper at {servers} does not answer ({error}); start it with \
             `deploy/zookeeper.sh start` (or point CONSOLE_TEST_ZK at a running server)"
        )),
        Err(_) => Err(format!(
            "ZooKeeper at {servers} did not answer within {ANSWER_TIMEOUT:?}; start it with \
             `deploy/zookeeper.sh start` (or point CONSOLE_TEST_ZK at a running server)"
        )),
    }
}

/// A ZooKeeper namespace of one test. The console creates it; [`ZkNamespace::delete`] removes it
/// with everything below.
#[derive(Debug, Clone)]
pub struct ZkNamespace {
    pub servers: String,
    /// `/cluster-test-<random>`.
    pub path: String,
}

impl ZkNamespace {
    /// A fresh name on `servers`, after checking that the server answers.
    ///
    /// # Panics
    /// When ZooKeeper does not answer, naming `deploy/zookeeper.sh start`.
    pub async fn new(servers: &str) -> Self {
        let client = zk_connect(servers)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        drop(client);
        Self {
            servers: servers.to_owned(),
            path: format!("/cluster-test-{}", unique_token()),
        }
    }

    /// Deletes the namespace and everything below it (best effort: reports, never panics).
    pub async fn delete(&self) {
        let client = match zk_connect(&self.servers).await {
            Ok(client) => client,
            Err(error) => {
                eprintln!("cannot delete namespace {}: {error}", self.path);
                return;
            }
        };
        if let Err(error) = delete_tree(&client, &self.path).await {
            eprintln!("cannot delete namespace {}: {error}", self.path);
        }
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
            // A child created after the listing (a console that was still running): retry once.
            Err(zk::Error::NotEmpty) => Box::pin(delete_tree(client, node)).await?,
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// The MariaDB server of the tests, from `CONSOLE_TEST_MYSQL_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MariaDb {
    /// `host:port`.
    pub host_port: String,
    pub username: String,
    pub password: String,
}

impl MariaDb {
    /// The server named by `CONSOLE_TEST_MYSQL_URL` (default `mysql://root@127.0.0.1:3306`).
    pub fn from_env() -> Self {
        let url = std::env::var("CONSOLE_TEST_MYSQL_URL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_owned());
        let rest = url
            .strip_prefix("mysql://")
            .or_else(|| url.strip_prefix("mariadb://"))
            .unwrap_or(&url);
        let authority = rest.split('/').next().unwrap_or_default();
        let (user_info, host_port) = authority.rsplit_once('@').unwrap_or(("root", authority));
        let (username, password) = user_info.split_once(':').unwrap_or((user_info, ""));
        Self {
            host_port: host_port.to_owned(),
            username: username.to_owned(),
            password: password.to_owned(),
        }
    }

    /// `mysql://user[:password]@host_port/database`: the URL form `database.url` takes.
    pub fn url_with_credentials(&self, host_port: &str, database: &str) -> String {
        if self.password.is_empty() {
            format!("mysql://{}@{host_port}/{database}", self.username)
        } else {
            format!(
                "mysql://{}:{}@{host_port}/{database}",
                self.username, self.password
            )
        }
    }

    /// A connection of the harness's user to the server, no default database (for status
    /// reads and administration).
    ///
    /// # Notable errors
    /// The server does not answer (the message names `deploy/mariadb.sh start`).
    pub async fn connect(&self) -> Result<MySqlConnection, String> {
        self.admin().await
    }

    async fn admin(&self) -> Result<MySqlConnection, String> {
        let mut options = MySqlConnectOptions::from_str(&format!("mysql://{}", self.host_port))
            .map_err(|error| format!("bad CONSOLE_TEST_MYSQL_URL: {error}"))?
            .username(&self.username);
        if !self.password.is_empty() {
            options = options.password(&self.password);
        }
        match tokio::time::timeout(ANSWER_TIMEOUT, options.connect()).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error)) => Err(format!(
                "MariaDB at {} does not answer ({error}); start it with `deploy/mariadb.sh start` \
                 (or point CONSOLE_TEST_MYSQL_URL at a server where this user may create databases)",
                self.host_port
            )),
            Err(_) => Err(format!(
                "MariaDB at {} did not answer within {ANSWER_TIMEOUT:?}; start it with \
                 `deploy/mariadb.sh start`",
                self.host_port
            )),
        }
    }

    /// Creates the empty database `name`.
    ///
    /// # Panics
    /// When the server does not answer (naming `deploy/mariadb.sh start`) or refuses.
    pub async fn create_database(&self, name: &str) -> TestDatabase {
        let mut admin = self.admin().await.unwrap_or_else(|error| panic!("{error}"));
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE `{name}`")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|error| panic!("cannot create database {name}: {error}"));
        let _ = admin.close().await;
        TestDatabase {
            server: self.clone(),
            name: name.to_owned(),
        }
    }
}

/// A database one test created; [`TestDatabase::drop_database`] removes it.
#[derive(Debug, Clone)]
pub struct TestDatabase {
    pub server: MariaDb,
    pub name: String,
}

impl TestDatabase {
    /// Ends every connection still using the database, then drops it (best effort: reports,
    /// never panics).
    pub async fn drop_database(&self) {
        let mut admin = match self.server.admin().await {
            Ok(admin) => admin,
            Err(error) => {
                eprintln!("cannot drop test database {}: {error}", self.name);
                return;
            }
        };
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT CAST(ID AS SIGNED) FROM information_schema.PROCESSLIST \
             WHERE DB = ? AND ID <> CONNECTION_ID()",
        )
        .bind(&self.name)
        .fetch_all(&mut admin)
        .await
        .unwrap_or_default();
        for id in ids {
            let _ = sqlx::query(AssertSqlSafe(format!("KILL {id}")))
                .execute(&mut admin)
                .await;
        }
        if let Err(error) = sqlx::query(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS `{}`",
            self.name
        )))
        .execute(&mut admin)
        .await
        {
            eprintln!("cannot drop test database {}: {error}", self.name);
        }
        let _ = admin.close().await;
    }
}
