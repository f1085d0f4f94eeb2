//! Self-tests of the harness pieces the acceptance tests rely on: the binary, the proxy, the
//! process sweep, and the messages for a missing service. Real parts only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

use cluster_tests::processes::{self, RUN_TAG_VAR};
use cluster_tests::proxy::TcpProxy;
use cluster_tests::services::{MariaDb, ZkNamespace};
use cluster_tests::{binary, ports};
use sqlx::mysql::MySqlConnectOptions;
use sqlx::{ConnectOptions, Connection};

#[test]
fn the_binary_is_built_and_runs() {
    let path = binary::console_server();
    let output = Command::new(path).arg("--version").output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("console-server"));
}

fn options(host_port: &str) -> MySqlConnectOptions {
    let server = MariaDb::from_env();
    let mut options = MySqlConnectOptions::from_str(&format!("mysql://{host_port}"))
        .unwrap()
        .username(&server.username);
    if !server.password.is_empty() {
        options = options.password(&server.password);
    }
    options
}

#[tokio::test]
async fn mysql_a_cut_proxy_closes_connections_and_refuses_new_ones_until_restored() {
    let server = MariaDb::from_env();
    let proxy = TcpProxy::start(&server.host_port).await;
    let through = proxy.addr().to_string();
    let mut open = options(&through).connect().await.unwrap_or_else(|error| {
        panic!(
            "connecting through the proxy to {}: {error}",
            server.host_port
        )
    });
    let one: i64 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut open)
        .await
        .unwrap();
    assert_eq!(one, 1);

    proxy.cut();
    assert!(
        sqlx::query_scalar::<_, i64>("SELECT 1")
            .fetch_one(&mut open)
            .await
            .is_err(),
        "an open connection ends when the proxy is cut"
    );
    let refused = tokio::time::timeout(Duration::from_secs(5), options(&through).connect()).await;
    assert!(
        matches!(refused, Ok(Err(_))),
        "a new connection fails at once while cut: {refused:?}"
    );

    proxy.restore();
    let mut again = options(&through).connect().await.unwrap();
    let one: i64 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut again)
        .await
        .unwrap();
    assert_eq!(one, 1);
    let _ = again.close().await;
}

/// Starts `sleep` in a session of its own (like an app), with `tag` in its environment if given.
fn detached_sleep(tag: Option<&str>) -> std::process::Child {
    let mut command = Command::new("sleep");
    command
        .arg("1000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    if let Some(tag) = tag {
        command.env(RUN_TAG_VAR, tag);
    }
    command.spawn().unwrap()
}

#[test]
fn the_sweep_kills_tagged_processes_only() {
    let run = tempfile::tempdir().unwrap();
    let tag = run.path().display().to_string();
    let mut tagged = detached_sleep(Some(&tag));
    let mut untagged = detached_sleep(None);
    let tagged_pid = i32::try_from(tagged.id()).unwrap();
    let untagged_pid = i32::try_from(untagged.id()).unwrap();

    let found: Vec<i32> = processes::tagged(&tag).iter().map(|p| p.pid).collect();
    assert_eq!(found, vec![tagged_pid]);
    assert_eq!(processes::kill_tagged(&tag), 1);
    assert!(!processes::is_alive(tagged_pid));
    assert!(
        processes::is_alive(untagged_pid),
        "an untagged process is left alone"
    );

    untagged.kill().unwrap();
    let _ = untagged.wait();
    let _ = tagged.wait();
}

#[test]
fn the_sweep_spares_runs_in_progress_and_kills_what_ended_runs_left() {
    let run = tempfile::tempdir().unwrap();
    let tag = run.path().display().to_string();
    let lock = processes::RunLock::acquire(run.path());
    let mut app = detached_sleep(Some(&tag));
    let pid = i32::try_from(app.id()).unwrap();

    processes::kill_orphans_of_ended_runs(&std::env::temp_dir());
    assert!(processes::is_alive(pid), "the run holds its lock: spared");
    drop(lock);
    processes::kill_orphans_of_ended_runs(&std::env::temp_dir());
    assert!(
        processes::wait_gone(pid, Duration::from_secs(5)),
        "the run ended: killed"
    );
    let _ = app.wait();
}

#[tokio::test]
#[should_panic(expected = "deploy/mariadb.sh start")]
async fn mysql_a_missing_server_names_the_script_that_starts_it() {
    let server = MariaDb {
        host_port: format!("127.0.0.1:{}", ports::free_port()),
        ..MariaDb::from_env()
    };
    server.create_database("cluster_test_never").await;
}

#[tokio::test]
#[should_panic(expected = "deploy/zookeeper.sh start")]
async fn zk_a_missing_server_names_the_script_that_starts_it() {
    ZkNamespace::new(&format!("127.0.0.1:{}", ports::free_port())).await;
}

#[tokio::test]
async fn zk_deleting_a_namespace_removes_its_tree() {
    let servers = cluster_tests::services::zookeeper_servers();
    let namespace = ZkNamespace::new(&servers).await;
    let client = zookeeper_client::Client::connect(&servers).await.unwrap();
    let persistent =
        zookeeper_client::CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all());
    for path in [
        "",
        "/nodes",
        "/nodes/console",
        "/nodes/console/n1",
        "/leader",
    ] {
        client
            .create(&format!("{}{path}", namespace.path), b"x", &persistent)
            .await
            .unwrap();
    }
    namespace.delete().await;
    assert_eq!(client.check_stat(&namespace.path).await.unwrap(), None);
}
