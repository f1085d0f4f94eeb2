//! The web console (issue 17) in a real headless Chromium, against real consoles: a
//! standalone node (sign in, 1,000 apps, create with a validation error, start pressed on the
//! page, app detail with its log), and a 3-node ZooKeeper cluster where a node is SIGKILLed
//! while the page is open (the page shows it gone and the apps' new owners without a reload).
//! `flink.rs`: a `flink` app's buttons (savepoint, stop without a savepoint, start without
//! restoring) and its savepoints on the detail page, on the shared Flink (issue 13).
//!
//! Each test writes screenshots of every page to a folder it prints (`screenshots of ...:`);
//! see [`browser::screenshot_dir`]. Chromium comes from `deploy/chromium.sh install`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod browser;
mod flink;

use std::time::Duration;

use cluster_tests::cluster::{Cluster, Options, RegistryKind};
use cluster_tests::node::Node;
use cluster_tests::{Api, binary, processes};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::time::Instant;

use browser::{Browser, screenshot_dir};

/// How many apps the standalone test lists (the page must stay usable at this size).
const MANY_APPS: usize = 1000;
const TOKEN: &str = "web-console-secret";

/// A standalone node (SQLite, in-process registry) with a token, in its own run directory.
struct Standalone {
    node: Node,
    run_dir: tempfile::TempDir,
    tag: String,
}

impl Standalone {
    async fn start() -> Self {
        Self::start_with("").await
    }

    /// A standalone node whose configuration has `extra` (YAML lines) appended.
    async fn start_with(extra: &str) -> Self {
        let run_dir = tempfile::Builder::new()
            .prefix("web-console-")
            .tempdir()
            .unwrap();
        let tag = run_dir.path().display().to_string();
        let mut node = Node::new(run_dir.path(), "solo", Some(TOKEN.to_owned()), &tag);
        let db = run_dir.path().join("console.db");
        let data = node.data_dir();
        node.start(binary::console_server(), &|port| {
            format!(
                "server: {{ host: 127.0.0.1, port: {port}, auth_token: {TOKEN} }}\n\
                 node: {{ id: solo, data_dir: {} }}\n\
                 database: {{ url: \"sqlite://{}\" }}\n\
                 registry: {{ type: standalone }}\n\
                 monitor: {{ interval_ms: 500 }}\n{extra}",
                data.display(),
                db.display()
            )
        })
        .await;
        test_support::wait::eventually("the node is ready", browser::PAGE, || async {
            node.api().ready().await.unwrap_or(false)
        })
        .await;
        Self { node, run_dir, tag }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.node.port())
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        processes::kill_tagged(&self.tag);
    }
}

#[tokio::test]
async fn standalone_web_console_signs_in_lists_1000_apps_and_starts_one() {
    let solo = Standalone::start().await;
    let api = solo.node.api();
    let created = Instant::now();
    futures::stream::iter(0..MANY_APPS)
        .map(|n| {
            let api = api.clone();
            async move {
                api.create_app(
                    &format!("bulk-{n:04}"),
                    "process",
                    json!({"command": ["true"]}),
                )
                .await
                .unwrap()
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    eprintln!(
        "measured: {MANY_APPS} apps created in {} ms",
        created.elapsed().as_millis()
    );

    let shots = screenshot_dir("standalone_web_console");
    let mut page = Browser::start(solo.run_dir.path(), &shots).await;
    page.goto(&format!("{}/#/cluster", solo.base())).await;
    // Nothing but the sign-in form until the token is given.
    page.until(
        "the sign-in form",
        "return !!document.querySelector('#signin #token')",
    )
    .await;
    assert_eq!(
        page.run("return document.querySelector('#nodes')", vec![])
            .await,
        Value::Null,
        "no data without the token"
    );
    page.screenshot("signin", "the token is asked for once; no data shown")
        .await;
    page.fill("#token", "wrong").await;
    page.click("#signin button[type=submit]").await;
    page.until(
        "the refusal",
        "const e = document.querySelector('#token-error'); return e && !e.hidden && e.textContent",
    )
    .await;
    page.fill("#token", TOKEN).await;
    page.click("#signin button[type=submit]").await;
    let registry = page
        .until(
            "the cluster page",
            "const r = document.querySelector('#registry-type'); return r && r.textContent",
        )
        .await;
    assert_eq!(registry, "standalone");
    page.until(
        "the live stream",
        "return document.querySelector('#live').dataset.state === 'up'",
    )
    .await;
    page.until(
        "the node row",
        "return document.querySelector('#nodes tbody tr[data-node=solo]')",
    )
    .await;
    page.screenshot(
        "cluster",
        "cluster page: registry, leader, the node with its uptime and owned apps, ownership bars",
    )
    .await;

    let clicked = Instant::now();
    page.click("#nav-apps").await;
    let summary = page
        .until("the first page of 1000 apps", "const s = document.querySelector('#apps-summary'); return s && /^1000 apps/.test(s.textContent) && s.textContent")
        .await;
    eprintln!(
        "measured: apps page with {MANY_APPS} apps shown {} ms after the click ({summary})",
        clicked.elapsed().as_millis()
    );
    assert_eq!(
        page.run(
            "return document.querySelectorAll('#apps tbody tr').length",
            vec![]
        )
        .await,
        json!(50),
        "one server-side page is rendered, not all apps"
    );
    page.screenshot("apps-1000", "apps page: 1,000 apps, 50 shown, paging")
        .await;
    page.click(".pager button:last-child").await;
    page.until(
        "page 2",
        "return /page 2 of 20/.test(document.querySelector('#apps-summary').textContent)",
    )
    .await;

    // Create an app through the form: the API's validation error shows next to the field.
    page.click("#new-app").await;
    page.fill("#app-name", "walkthrough").await;
    page.fill("#app-spec", r#"{"command": []}"#).await;
    page.click("#create-submit").await;
    let error = page
        .until("the spec's error next to the field", "const e = document.querySelector('#app-spec-error'); return e && !e.hidden && e.textContent")
        .await;
    assert!(error.as_str().unwrap().contains("command"), "{error}");
    page.screenshot(
        "create-error",
        "the create form with the API's validation error next to the spec field",
    )
    .await;
    let marker = solo.run_dir.path().join("hello.txt");
    page.fill(
        "#app-spec",
        &json!({"command": ["sh", "-c", format!("echo hello from the page | tee {}; exec sleep 300", marker.display())]}).to_string(),
    )
    .await;
    page.click("#create-submit").await;
    page.until(
        "the creation",
        "return /Created app/.test(document.querySelector('#create-app .ok').textContent)",
    )
    .await;

    page.fill("#filter-name", "walkthrough").await;
    page.click(".filters button[type=submit]").await;
    page.until("the filtered list", "return /^1 app matches/.test(document.querySelector('#apps-summary').textContent) && document.querySelectorAll('#apps tbody tr[data-app]').length === 1")
        .await;
    page.click("#apps tbody tr[data-app] button[data-action=start]")
        .await;
    page.until(
        "the confirmation",
        "return document.querySelector('#confirm').open",
    )
    .await;
    page.screenshot("confirm-start", "start asks for confirmation")
        .await;
    page.click("#confirm-ok").await;
    let state = page
        .until("the row shows RUNNING without a reload", "const c = document.querySelector('#apps tbody tr[data-app] td:nth-child(4)'); return c && c.textContent.includes('RUNNING') && c.textContent")
        .await;
    assert!(state.as_str().unwrap().contains("RUNNING"));
    page.until("the task shown as succeeded", "const t = document.querySelector('#task-feed li[data-done]'); return t && t.textContent.includes('SUCCEEDED')")
        .await;
    let apps = api.apps_paged(500).await.unwrap();
    let walk = apps.iter().find(|a| a.name == "walkthrough").unwrap();
    assert_eq!(walk.state, "RUNNING", "the API agrees");
    page.screenshot(
        "apps-started",
        "the app RUNNING after start was pressed, and its task SUCCEEDED",
    )
    .await;

    page.click("#apps tbody tr[data-app] th a").await;
    page.until(
        "the task history",
        "return document.querySelectorAll('#task-history tbody tr').length === 1",
    )
    .await;
    page.until(
        "the log tail",
        "return document.querySelector('#log').textContent.includes('hello from the page')",
    )
    .await;
    page.screenshot(
        "app-detail",
        "app detail: state, spec, handle, task history, log tail",
    )
    .await;
    page.close().await;
}

/// The victim: the node other than `n1` (which serves the page) that owns the most apps.
async fn busiest_other_node(cluster: &Cluster) -> (usize, String) {
    let apps = cluster.api(0).apps().await.unwrap();
    (1..cluster.len())
        .map(|index| {
            let id = cluster.node(index).id.clone();
            let owned = apps
                .iter()
                .filter(|a| a.owner.as_deref() == Some(&id))
                .count();
            (owned, index, id)
        })
        .max()
        .map(|(_, index, id)| (index, id))
        .unwrap()
}

const APP_ROWS: &str = "return [...document.querySelectorAll('#apps tbody tr[data-app]')].map(r => ({state: r.cells[3].textContent, owner: r.cells[4].textContent, adopted: r.cells[5].textContent}))";

#[tokio::test]
async fn zk_web_console_shows_a_killed_node_gone_and_the_new_owners_without_reload() {
    let mut cluster = Cluster::start(Options::new(RegistryKind::Zookeeper, 3)).await;
    let apps = cluster.create_marker_apps(9).await;
    cluster
        .start_and_wait_running(&apps, Duration::from_secs(60))
        .await;
    let (victim_index, victim) = busiest_other_node(&cluster).await;
    let base = cluster.api(0).base().to_owned();

    let shots = screenshot_dir("zk_web_console");
    let mut page = Browser::start(cluster.run_dir(), &shots).await;
    page.goto(&format!("{base}/#/cluster")).await;
    page.until(
        "three nodes",
        "return document.querySelectorAll('#nodes tbody tr').length === 3",
    )
    .await;
    page.until(
        "the registry",
        "return document.querySelector('#registry-type').textContent === 'zookeeper'",
    )
    .await;
    page.screenshot(
        "cluster-3-nodes",
        "three live nodes, the leader, the apps spread over them",
    )
    .await;
    let cluster_window = page.client.window().await.unwrap();
    let apps_window = page.client.new_window(false).await.unwrap().handle;
    page.client
        .switch_to_window(apps_window.clone())
        .await
        .unwrap();
    page.goto(&format!("{base}/#/apps")).await;
    let rows = page
        .until("nine running apps", &format!("const rows = (function(){{ {APP_ROWS} }})(); return rows.length === 9 && rows.every(r => r.state.includes('RUNNING')) && rows"))
        .await;
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .any(|r| r["owner"] == victim.as_str()),
        "{victim} owns some apps: {rows}"
    );
    page.screenshot(
        "apps-before-kill",
        &format!("nine apps RUNNING, some owned by {victim}"),
    )
    .await;
    for window in [&apps_window, &cluster_window] {
        page.client.switch_to_window(window.clone()).await.unwrap();
        page.run("window.loadedOnce = 'yes'", vec![]).await;
    }

    let killed = cluster.kill(victim_index).await;
    eprintln!("killed {victim} (SIGKILL)");
    page.client
        .switch_to_window(cluster_window.clone())
        .await
        .unwrap();
    page.until(
        &format!("{victim} gone from the cluster page"),
        &format!("const rows = [...document.querySelectorAll('#nodes tbody tr')]; return rows.length === 2 && !rows.some(r => r.dataset.node === '{victim}')"),
    )
    .await;
    eprintln!(
        "measured: the cluster page showed {victim} gone {} ms after the kill",
        killed.elapsed().as_millis()
    );
    assert_eq!(
        page.run("return window.loadedOnce", vec![]).await,
        "yes",
        "no reload"
    );
    page.client.switch_to_window(apps_window).await.unwrap();
    let rows = page
        .until(
            "every app owned and adopted by a live node",
            &format!("const rows = (function(){{ {APP_ROWS} }})(); return rows.length === 9 && rows.every(r => r.owner !== '{victim}' && r.owner === r.adopted && r.state.includes('RUNNING')) && rows"),
        )
        .await;
    eprintln!(
        "measured: the apps page showed the new owners {} ms after the kill",
        killed.elapsed().as_millis()
    );
    assert_eq!(
        page.run("return window.loadedOnce", vec![]).await,
        "yes",
        "no reload"
    );
    let api = Api::new(base.clone(), None);
    let now = api.apps().await.unwrap();
    for (row, app) in rows.as_array().unwrap().iter().zip(&now) {
        assert_eq!(
            row["owner"],
            app.owner.clone().unwrap(),
            "the page agrees with the API"
        );
    }
    page.screenshot(
        "apps-after-kill",
        &format!("the apps {victim} owned, adopted by the live nodes, still RUNNING"),
    )
    .await;

    // The ownership bars count the app leases in the task store: the victim's apps are on the
    // two live nodes, nothing is left on the victim.
    page.client.switch_to_window(cluster_window).await.unwrap();
    page.until(
        "the ownership bars show the nine apps on the two live nodes",
        &format!("const rows = [...document.querySelectorAll('#ownership li')]; return rows.length === 2 && !rows.some(r => r.dataset.node === '{victim}') && rows.reduce((sum, r) => sum + Number(r.dataset.count), 0) === 9"),
    )
    .await;
    assert_eq!(
        page.run("return window.loadedOnce", vec![]).await,
        "yes",
        "no reload"
    );
    page.screenshot(
        "cluster-after-kill",
        &format!("{victim} gone, two nodes left, its apps spread over them"),
    )
    .await;
    page.close().await;
}
