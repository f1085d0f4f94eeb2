//! Issue 12, finding 16: a start that waits on the database longer than the request timeout
//! used to be answered 503 while its task was inserted after all, so the client saw a failure
//! for an action that ran. Actions are no longer cut by `server.request_timeout_ms`: the answer
//! says what happened.

use std::time::Duration;

use cluster_tests::{Cluster, Options, RegistryKind};
use sqlx::Connection;
use test_support::mariadb::TestDatabase;
use test_support::wait::{self, eventually};
use tokio::time::Instant;

use crate::SETTLE;

/// The request timeout of the node under test.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(1000);

#[tokio::test]
async fn zk_a_start_slower_than_the_request_timeout_is_answered_with_its_task() {
    let cluster = Cluster::start(Options::new(RegistryKind::Zookeeper, 1).env(
        "CONSOLE__SERVER__REQUEST_TIMEOUT_MS",
        &REQUEST_TIMEOUT.as_millis().to_string(),
    ))
    .await;
    let api = cluster.api(0);
    let app = api
        .create_app("slow", "process", cluster.marker_spec("slow"))
        .await
        .unwrap();

    // Hold the app's row: the submission's transaction waits for it.
    let mut blocker = TestDatabase::attach(cluster.store_database())
        .connect()
        .await;
    let mut held = blocker.begin().await.unwrap();
    sqlx::query("SELECT id FROM apps WHERE id = ? FOR UPDATE")
        .bind(app.id.0.parse::<i64>().unwrap())
        .fetch_all(&mut *held)
        .await
        .unwrap();
    let sent = Instant::now();
    let start = tokio::spawn({
        let api = api.clone();
        let id = app.id.clone();
        async move { api.act(&id, "start").await }
    });
    // Past the request timeout with the row still held.
    while sent.elapsed() < REQUEST_TIMEOUT * 2 {
        assert!(
            !start.is_finished(),
            "the start was answered while its app's row was held: {:?}",
            start.await
        );
        tokio::time::sleep(wait::POLL_INTERVAL).await;
    }
    held.rollback().await.unwrap();
    let answer = start.await.unwrap().unwrap();
    eprintln!(
        "measured: a start held {} ms by a row lock was answered {} after {} ms",
        (REQUEST_TIMEOUT * 2).as_millis(),
        answer.status,
        sent.elapsed().as_millis()
    );
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let task = answer.body["task_id"].clone();
    eventually("the answered task runs", SETTLE, || async {
        let app = api.app(&app.id).await?;
        if app.state == "RUNNING" {
            Ok(())
        } else {
            Err(format!("{app:?}"))
        }
    })
    .await;
    assert!(task.is_i64(), "{:?}", answer.body);
}
