//! A `flink` app on the page (issue 13): on a standalone node with the `flink` executor on the
//! shared Flink session cluster, the apps page offers Savepoint, Stop without a savepoint and
//! Start fresh (without restoring) and they do what they say, as the API and Flink confirm; the
//! detail page lists the savepoint.

use std::panic::AssertUnwindSafe;

use cluster_tests::Api;
use cluster_tests::api::Body;
use futures::FutureExt;
use serde_json::{Value, json};

use super::browser::{Browser, screenshot_dir};
use super::{Standalone, TOKEN};

/// The state cell of the only app row.
const ROW_STATE: &str = "const c = document.querySelector('#apps tbody tr[data-app] td:nth-child(4)'); return c && c.textContent";

/// Presses the row's button `action`, confirms, and waits until the task it made is shown
/// SUCCEEDED in the feed (the newest item).
async fn press(page: &mut Browser, action: &str, shot: &str) {
    page.click(&format!(
        "#apps tbody tr[data-app] button[data-action={action}]"
    ))
    .await;
    page.until(
        "the confirmation",
        "return document.querySelector('#confirm').open",
    )
    .await;
    page.click("#confirm-ok").await;
    page.until(
        &format!("the {action} task shown as succeeded"),
        "const t = document.querySelector('#task-feed li'); return t && t.dataset.done && t.textContent.includes('SUCCEEDED')",
    )
    .await;
    page.screenshot(shot, &format!("after {action} was pressed"))
        .await;
}

async fn app(api: &Api, id: &cluster_tests::Id) -> cluster_tests::App {
    api.app(id).await.unwrap()
}

async fn savepoints(api: &Api, id: &cluster_tests::Id) -> Vec<Value> {
    let answer = api
        .get(&format!("/api/v1/apps/{id}/savepoints"))
        .await
        .unwrap();
    answer.body.as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn standalone_web_console_savepoints_stops_and_starts_a_flink_app_as_asked() {
    let flink_url = test_support::flink::shared().await;
    let run = tempfile::Builder::new()
        .prefix("web-console-flink-")
        .tempdir()
        .unwrap();
    let savepoint_dir = run.path().join("savepoints");
    let solo = Standalone::start_with(&format!(
        "executors: {{ flink: {{ rest_url: \"{flink_url}\", savepoint_dir: \"{}\" }} }}\n",
        savepoint_dir.display()
    ))
    .await;
    let api = solo.node.api();
    let output = run.path().join("counter.txt");
    let created = api
        .create_app(
            "counter",
            "flink",
            json!({"jar": test_support::flink::example_jar(), "args": ["--output", output], "parallelism": 1}),
        )
        .await
        .unwrap();
    let id = created.id.clone();
    api.submit(&id, "start").await.unwrap();

    let outcome = AssertUnwindSafe(on_the_page(&solo, &api, &id, &flink_url))
        .catch_unwind()
        .await;
    // Whatever happened, no job of this test is left on the shared cluster.
    cancel_job_of(&api, &id, &flink_url).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Cancels the job the app's handle names, if it runs (best effort).
async fn cancel_job_of(api: &Api, id: &cluster_tests::Id, flink_url: &str) {
    let Ok(app) = api.app(id).await else { return };
    if let Some(job) = app.handle.as_ref().and_then(|h| h["job_id"].as_str()) {
        let url = format!("{flink_url}/jobs/{job}?mode=cancel");
        let _ = reqwest::Client::new().patch(&url).send().await;
    }
}

async fn on_the_page(solo: &Standalone, api: &Api, id: &cluster_tests::Id, flink_url: &str) {
    let shots = screenshot_dir("flink_web_console");
    let mut page = Browser::start(solo.run_dir.path(), &shots).await;
    page.goto(&format!("{}/#/apps", solo.base())).await;
    page.until(
        "the sign-in form",
        "return !!document.querySelector('#signin #token')",
    )
    .await;
    page.fill("#token", TOKEN).await;
    page.click("#signin button[type=submit]").await;
    page.until(
        "the app RUNNING",
        &format!("{ROW_STATE}.includes('RUNNING')"),
    )
    .await;
    assert_eq!(
        page.run(ROW_STATE, vec![]).await,
        json!("RUNNING"),
        "the state cell shows the state only (no placement hint for a flink app)"
    );
    let running = app(api, id).await;
    let job = running.handle.as_ref().unwrap()["job_id"].clone();

    // Savepoint: the job runs on; the savepoint is listed as manual.
    press(&mut page, "savepoint", "flink-savepoint").await;
    let after = app(api, id).await;
    assert_eq!(
        (
            after.state.as_str(),
            &after.handle.as_ref().unwrap()["job_id"]
        ),
        ("RUNNING", &job)
    );
    let listed = savepoints(api, id).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["kind"], "manual");

    // Stop without a savepoint: a cancel, nothing new listed.
    press(&mut page, "stop-no-savepoint", "flink-stopped").await;
    page.until(
        "the app STOPPED",
        &format!("{ROW_STATE}.includes('STOPPED')"),
    )
    .await;
    assert_eq!(
        savepoints(api, id).await.len(),
        1,
        "a cancel took a savepoint"
    );
    let flink_job = reqwest::get(format!("{flink_url}/jobs/{}", job.as_str().unwrap()))
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(flink_job["state"], "CANCELED", "{flink_job}");

    // Start fresh: a new job that restores nothing, although a savepoint exists.
    press(&mut page, "start-fresh", "flink-started-fresh").await;
    page.until(
        "the app RUNNING again",
        &format!("{ROW_STATE}.includes('RUNNING')"),
    )
    .await;
    let fresh = app(api, id).await;
    let handle = fresh.handle.clone().unwrap();
    assert_ne!(handle["job_id"], job);
    assert!(handle.get("restored_from").is_none(), "{handle}");

    // The detail page lists the savepoint.
    page.click("#apps tbody tr[data-app] th a").await;
    let kinds = page
        .until(
            "the savepoints table",
            "const rows = [...document.querySelectorAll('#savepoints tbody tr')]; return rows.length && rows.map(r => r.dataset.kind)",
        )
        .await;
    assert_eq!(kinds, json!(["manual"]));
    page.run(
        "document.querySelector('#savepoints').scrollIntoView()",
        vec![],
    )
    .await;
    page.screenshot("flink-detail", "the app's savepoints on its detail page")
        .await;
    page.close().await;

    let answer = api
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/apps/{id}/stop"),
            Body::Json(json!({"savepoint": false})),
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 202, "{answer}");
    test_support::wait::eventually("the app STOPPED", super::browser::PAGE, || async {
        app(api, id).await.state == "STOPPED"
    })
    .await;
}
