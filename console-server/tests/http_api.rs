//! The HTTP API of one real node (standalone registry, SQLite, the process executor), driven
//! through its router without a socket. The tests are `standalone_…`, after the registry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use console_server::{Console, ConsoleConfig};
use serde_json::{Value, json};
use test_support::console_env::{self, CLUSTER_SECRET};
use test_support::{eventually, signing};
use tower::ServiceExt;

/// How long the node may take to get where a test waits for it (ready, an app's state).
const SETTLE: Duration = Duration::from_secs(15);

/// A node in a temporary directory; its app processes are killed when it is dropped.
struct TestNode {
    console: Option<Console>,
    dir: tempfile::TempDir,
    token: Option<&'static str>,
}

impl TestNode {
    async fn start(token: Option<&'static str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let env = console_env::standalone("test-node", dir.path(), token);
        let config = ConsoleConfig::load_with_env(None, env).unwrap();
        let console = Console::start(&config, 10_000).await.unwrap();
        let node = Self {
            console: Some(console),
            dir,
            token,
        };
        eventually("the node is ready", SETTLE, || async {
            node.call(Method::GET, "/readyz", None).await.0 == StatusCode::OK
        })
        .await;
        node
    }

    async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = self.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        };
        self.send(request.unwrap()).await
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let router = self.console.as_ref().unwrap().router();
        let response = router.oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, body)
    }

    async fn create_app(&self, command: &str) -> Value {
        let (status, app) = self
            .call(
                Method::POST,
                "/api/v1/apps",
                Some(json!({"name": "app", "executor": "process", "spec": {"command": ["sh", "-c", command]}})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{app}");
        app
    }

    async fn app(&self, id: i64) -> Value {
        let (status, app) = self
            .call(Method::GET, &format!("/api/v1/apps/{id}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{app}");
        app
    }

    async fn wait_for_state(&self, id: i64, state: &str) -> Value {
        eventually(&format!("app {id} is {state}"), SETTLE, || async {
            self.app(id).await["state"] == state
        })
        .await;
        self.app(id).await
    }

    fn marker(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        // Apps run detached: kill the ones started in this node's directory.
        console_env::kill_processes_naming(self.dir.path());
        drop(self.console.take());
    }
}

#[tokio::test]
async fn standalone_walkthrough_create_start_see_running_stop() {
    let node = TestNode::start(None).await;
    let marker = node.marker("marker");
    let app = node
        .create_app(&format!(
            "echo started >> {}; exec sleep 300",
            marker.display()
        ))
        .await;
    let id = app["id"].as_i64().unwrap();
    assert_eq!(app["state"], "CREATED");
    assert_eq!(app["owner"], "test-node");
    assert_eq!(app["placement"], json!({"host": null, "unowned": null}));

    let (status, accepted) = node
        .call(Method::POST, &format!("/api/v1/apps/{id}/start"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert_eq!(accepted["action"], "start");
    assert_eq!(accepted["status"], "PENDING");
    let running = node.wait_for_state(id, "RUNNING").await;
    assert!(running["handle"]["pid"].as_i64().unwrap() > 1, "{running}");
    // A process runs on this node's host: the app is pinned there while it may run.
    let (_, nodes) = node.call(Method::GET, "/api/v1/cluster/nodes", None).await;
    let host_id = nodes[0]["host_id"].as_str().unwrap().to_owned();
    assert!(host_id.contains('/'), "<host name>/<machine id>: {host_id}");
    assert_eq!(running["placement"]["host"], host_id.as_str(), "{running}");
    assert_eq!(running["owner"], "test-node");
    // RUNNING means the process exists; its shell writes the marker a moment later.
    eventually("the app wrote its marker", SETTLE, || async {
        std::fs::read_to_string(&marker).unwrap_or_default() == "started\n"
    })
    .await;

    let task = accepted["task_id"].as_i64().unwrap();
    let (status, task) = node
        .call(Method::GET, &format!("/api/v1/tasks/{task}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(task["status"], "SUCCEEDED", "{task}");
    assert_eq!(task["owner"], "test-node");
    assert_eq!(task["attempts"], 1);

    let (status, _) = node
        .call(Method::POST, &format!("/api/v1/apps/{id}/stop"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let stopped = node.wait_for_state(id, "STOPPED").await;
    assert!(stopped["handle"].is_null(), "{stopped}");
    assert!(stopped["placement"]["host"].is_null(), "{stopped}");

    let (status, list) = node
        .call(Method::GET, "/api/v1/apps?page=1&size=10", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["total"], 1);
    let (status, nodes) = node.call(Method::GET, "/api/v1/cluster/nodes", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(nodes[0]["id"], "test-node");
    eventually("the node is shown as leader", SETTLE, || async {
        node.call(Method::GET, "/api/v1/cluster/nodes", None)
            .await
            .1[0]["leader"]
            == true
    })
    .await;

    let (status, _) = node
        .call(Method::DELETE, &format!("/api/v1/apps/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = node
        .call(Method::GET, &format!("/api/v1/apps/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Issue 16: an app's weight is given at creation (default 1), shown with the app, and changed
/// with `PUT /api/v1/apps/{id}/weight` while the app is idle only; the node lists its capacity,
/// the weight it owns and how it splits the apps.
#[tokio::test]
async fn standalone_weights_are_set_shown_and_changed_only_while_idle() {
    let node = TestNode::start(None).await;
    let light = node.create_app("exec sleep 300").await;
    assert_eq!(light["weight"], 1, "{light}");
    let (status, heavy) = node
        .call(
            Method::POST,
            "/api/v1/apps",
            Some(json!({"name": "heavy", "spec": {"command": ["sh", "-c", "exec sleep 300"]}, "weight": 16})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{heavy}");
    assert_eq!(heavy["weight"], 16);
    let id = light["id"].as_i64().unwrap();
    let weight_uri = format!("/api/v1/apps/{id}/weight");
    let (status, resized) = node
        .call(Method::PUT, &weight_uri, Some(json!({"weight": 4})))
        .await;
    assert_eq!(status, StatusCode::OK, "{resized}");
    assert_eq!(resized["weight"], 4);
    let (_, shown) = node
        .call(Method::GET, &format!("/api/v1/apps/{id}"), None)
        .await;
    assert_eq!(shown["weight"], 4);
    let (_, nodes) = node.call(Method::GET, "/api/v1/cluster/nodes", None).await;
    assert_eq!(nodes[0]["capacity"], 1, "{nodes}");
    assert_eq!(nodes[0]["assignment"], "rendezvous", "{nodes}");

    let (status, _) = node
        .call(Method::POST, &format!("/api/v1/apps/{id}/start"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    node.wait_for_state(id, "RUNNING").await;
    let (status, refused) = node
        .call(Method::PUT, &weight_uri, Some(json!({"weight": 2})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["error"]["code"], "conflict");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("before changing its weight"),
        "{refused}"
    );
    // The running app counts in what the node owns: the weight it had when it started.
    eventually("the node publishes the weight it owns", SETTLE, || async {
        node.call(Method::GET, "/api/v1/cluster/nodes", None)
            .await
            .1[0]["owned_weight"]
            == 4
    })
    .await;
}

#[tokio::test]
async fn standalone_a_dead_app_is_marked_failed_by_the_monitor() {
    let node = TestNode::start(None).await;
    let app = node
        .create_app(&format!("exec sleep 300 # {}", node.dir.path().display()))
        .await;
    let id = app["id"].as_i64().unwrap();
    node.call(Method::POST, &format!("/api/v1/apps/{id}/start"), None)
        .await;
    let running = node.wait_for_state(id, "RUNNING").await;
    let pid = running["handle"]["pid"].as_i64().unwrap();
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let failed = node.wait_for_state(id, "FAILED").await;
    let reason = failed["last_error"].as_str().unwrap();
    assert!(
        reason.contains(&pid.to_string()),
        "the reason should name the process: {reason}"
    );
}

/// Every refused request: its status, its JSON error code, and no change to stored apps.
#[tokio::test]
async fn standalone_bad_input_is_refused_with_json_errors_and_changes_nothing() {
    let node = TestNode::start(Some("s3cret")).await;
    let app = node.create_app("exec sleep 300").await;
    let id = app["id"].as_i64().unwrap();
    let (_, before) = node.call(Method::GET, "/api/v1/apps", None).await;

    let raw = |method: Method, uri: &str, body: &str, token: Option<&str>| {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        request.body(Body::from(body.to_owned())).unwrap()
    };
    // A node-to-node call signed with the cluster's key, as a peer sends it.
    let signed = |uri: &str, body: &str| {
        let key = signing::key_from_secret(CLUSTER_SECRET);
        Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                signing::HEADER,
                signing::sign(&key, "POST", uri, body.as_bytes(), "peer"),
            )
            .body(Body::from(body.to_owned()))
            .unwrap()
    };
    let too_large = format!(
        "{{\"name\": \"{}\", \"spec\": {{}}}}",
        "x".repeat(100 * 1024)
    );
    let cases: Vec<(&str, Request<Body>, StatusCode, &str)> = vec![
        (
            "malformed JSON",
            raw(Method::POST, "/api/v1/apps", "{\"name\":", Some("s3cret")),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "unknown field",
            raw(
                Method::POST,
                "/api/v1/apps",
                r#"{"name":"a","spec":{"command":["true"]},"owner":"me"}"#,
                Some("s3cret"),
            ),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "bad spec",
            raw(
                Method::POST,
                "/api/v1/apps",
                r#"{"name":"a","spec":{"command":[]}}"#,
                Some("s3cret"),
            ),
            StatusCode::BAD_REQUEST,
            "invalid_spec",
        ),
        (
            "unknown executor",
            raw(
                Method::POST,
                "/api/v1/apps",
                r#"{"name":"a","executor":"yarn","spec":{}}"#,
                Some("s3cret"),
            ),
            StatusCode::BAD_REQUEST,
            "invalid_spec",
        ),
        (
            "empty name",
            raw(
                Method::POST,
                "/api/v1/apps",
                r#"{"name":" ","spec":{"command":["true"]}}"#,
                Some("s3cret"),
            ),
            StatusCode::BAD_REQUEST,
            "invalid_name",
        ),
        (
            "a NUL in the name",
            raw(
                Method::POST,
                "/api/v1/apps",
                r#"{"name":"a\u0000b","spec":{"command":["true"]}}"#,
                Some("s3cret"),
            ),
            StatusCode::BAD_REQUEST,
            "invalid_name",
        ),
        (
            "a line break in the name",
            raw(
                Method::POST,
                "/api/v1/apps",
                r#"{"name":"a\nb","spec":{"command":["true"]}}"#,
                Some("s3cret"),
            ),
            StatusCode::BAD_REQUEST,
            "invalid_name",
        ),
        (
            "a weight of 0",
            raw(
                Method::POST,
                "/api/v1/apps",
                r#"{"name":"a","spec":{"command":["true"]},"weight":0}"#,
                Some("s3cret"),
            ),
            StatusCode::BAD_REQUEST,
            "invalid_weight",
        ),
        (
            "a weight over 1,000,000",
            raw(
                Method::POST,
                "/api/v1/apps",
                r#"{"name":"a","spec":{"command":["true"]},"weight":1000001}"#,
                Some("s3cret"),
            ),
            StatusCode::BAD_REQUEST,
            "invalid_weight",
        ),
        (
            "a weight change to 0",
            raw(
                Method::PUT,
                "/api/v1/apps/1/weight",
                r#"{"weight":0}"#,
                Some("s3cret"),
            ),
            StatusCode::BAD_REQUEST,
            "invalid_weight",
        ),
        (
            "a weight change without a weight",
            raw(
                Method::PUT,
                "/api/v1/apps/1/weight",
                r#"{}"#,
                Some("s3cret"),
            ),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "a weight change of a missing app",
            raw(
                Method::PUT,
                "/api/v1/apps/424242/weight",
                r#"{"weight":2}"#,
                Some("s3cret"),
            ),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "missing app",
            raw(Method::GET, "/api/v1/apps/424242", "", Some("s3cret")),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "missing task",
            raw(Method::GET, "/api/v1/tasks/424242", "", Some("s3cret")),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "non-numeric id",
            raw(Method::GET, "/api/v1/apps/abc", "", Some("s3cret")),
            StatusCode::BAD_REQUEST,
            "invalid_path",
        ),
        (
            "illegal transition",
            raw(
                Method::POST,
                &format!("/api/v1/apps/{id}/stop"),
                "",
                Some("s3cret"),
            ),
            StatusCode::CONFLICT,
            "illegal_transition",
        ),
        (
            "body too large",
            raw(Method::POST, "/api/v1/apps", &too_large, Some("s3cret")),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            "no token",
            raw(Method::GET, "/api/v1/apps", "", None),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "wrong token",
            raw(Method::GET, "/api/v1/apps", "", Some("guess")),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "bad page",
            raw(Method::GET, "/api/v1/apps?page=0", "", Some("s3cret")),
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "unknown route",
            raw(Method::GET, "/api/v2/apps", "", Some("s3cret")),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "wrong method",
            raw(Method::PUT, "/api/v1/apps", "", Some("s3cret")),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            "departure notice with an unknown field",
            signed(
                "/internal/v1/left",
                r#"{"node_id":"x","started_at":1,"why":"bored"}"#,
            ),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "wake-up naming no app",
            signed("/internal/v1/wake", r#"{"app_ids":[]}"#),
            StatusCode::BAD_REQUEST,
            "invalid_wake",
        ),
        (
            "wake-up naming too many apps",
            signed(
                "/internal/v1/wake",
                &serde_json::json!({ "app_ids": (0..1025).collect::<Vec<i64>>() }).to_string(),
            ),
            StatusCode::BAD_REQUEST,
            "invalid_wake",
        ),
        (
            "departure notice without a signature",
            raw(
                Method::POST,
                "/internal/v1/left",
                r#"{"node_id":"x","started_at":1}"#,
                None,
            ),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "departure notice with the user's token but no signature",
            raw(
                Method::POST,
                "/internal/v1/left",
                r#"{"node_id":"x","started_at":1}"#,
                Some("s3cret"),
            ),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
    ];
    for (what, request, status, code) in cases {
        let (got, body) = node.send(request).await;
        assert_eq!(got, status, "{what}: {body}");
        assert_eq!(body["error"]["code"], code, "{what}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}: {body}"
        );
    }
    // Health needs no token.
    let (status, _) = node.send(raw(Method::GET, "/healthz", "", None)).await;
    assert_eq!(status, StatusCode::OK);
    // A departure notice of an unknown node, or one naming this node, changes nothing.
    let (_, nodes_before) = node.call(Method::GET, "/api/v1/cluster/nodes", None).await;
    let me = nodes_before[0]["id"].as_str().unwrap().to_owned();
    let started_at = nodes_before[0]["started_at"].as_i64().unwrap();
    for notice in [
        serde_json::json!({"node_id": "elsewhere:1", "started_at": 1}),
        serde_json::json!({"node_id": me, "started_at": started_at}),
    ] {
        let (status, _) = node
            .send(signed("/internal/v1/left", &notice.to_string()))
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{notice}");
    }
    // Wake-ups, one app or several (issue 15), are hints: 204, nothing changes.
    for wake in [
        serde_json::json!({"app_id": id, "task_id": 1}),
        serde_json::json!({"app_ids": [id, 424_242]}),
    ] {
        let (status, _) = node
            .send(signed("/internal/v1/wake", &wake.to_string()))
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{wake}");
    }
    let (_, nodes_after) = node.call(Method::GET, "/api/v1/cluster/nodes", None).await;
    assert_eq!(nodes_after[0]["id"], nodes_before[0]["id"]);
    assert_eq!(nodes_after.as_array().map(Vec::len), Some(1));
    let (_, after) = node.call(Method::GET, "/api/v1/apps", None).await;
    assert_eq!(
        before, after,
        "refused requests must not change stored apps"
    );
}

#[tokio::test]
async fn standalone_idempotency_key_returns_the_first_task() {
    let node = TestNode::start(None).await;
    let app = node.create_app("exec sleep 300").await;
    let id = app["id"].as_i64().unwrap();
    let start = || {
        Request::builder()
            .method(Method::POST)
            .uri(format!("/api/v1/apps/{id}/start"))
            .header("Idempotency-Key", "deploy-42")
            .body(Body::empty())
            .unwrap()
    };
    let (first_status, first) = node.send(start()).await;
    let (second_status, second) = node.send(start()).await;
    assert_eq!(first_status, StatusCode::ACCEPTED);
    assert_eq!(second_status, StatusCode::ACCEPTED, "{second}");
    assert_eq!(first["task_id"], second["task_id"]);
    node.wait_for_state(id, "RUNNING").await;
    node.call(Method::POST, &format!("/api/v1/apps/{id}/stop"), None)
        .await;
    node.wait_for_state(id, "STOPPED").await;

    // The task outlives its app; a repeat for the deleted app is a request for a missing app.
    let (status, _) = node
        .call(Method::DELETE, &format!("/api/v1/apps/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, replay) = node.send(start()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{replay}");
    assert_eq!(replay["error"]["code"], "not_found", "{replay}");
}

#[tokio::test]
async fn standalone_metrics_are_prometheus_text() {
    let node = TestNode::start(None).await;
    node.call(Method::GET, "/api/v1/apps", None).await;
    let request = Request::builder()
        .uri("/metrics")
        .body(Body::empty())
        .unwrap();
    let (status, body) = node.send(request).await;
    assert_eq!(status, StatusCode::OK);
    let text = body.as_str().unwrap();
    for metric in [
        "console_http_requests_total{method=\"GET\",route=\"/api/v1/apps\",status=\"200\"} 1",
        "console_tasks{status=\"PENDING\"} 0",
        "console_owned_apps",
        "console_registry_state{state=\"connected\"} 1",
        "console_dispatch_latency_seconds_count",
    ] {
        assert!(text.contains(metric), "missing {metric} in:\n{text}");
    }
}

/// Any method token is a valid request line; each used to become a label value of
/// `console_http_requests_total`, so 3,000 requests with made-up methods grew `/metrics` from
/// 2.5 KB to 399 KB. Now they share the label `other`.
#[tokio::test]
async fn standalone_made_up_methods_do_not_grow_the_metrics() {
    let node = TestNode::start(None).await;
    let metrics = || async {
        let request = Request::builder()
            .uri("/metrics")
            .body(Body::empty())
            .unwrap();
        let (status, body) = node.send(request).await;
        assert_eq!(status, StatusCode::OK);
        body.as_str().unwrap().to_owned()
    };
    // One of each first, so that the series the flood adds to exist before the baseline.
    for method in ["GET", "BREW"] {
        let request = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri("/api/v1/apps")
            .body(Body::empty())
            .unwrap();
        node.send(request).await;
    }
    metrics().await;
    let before = metrics().await;
    for _ in 0..3_000 {
        let method = format!("X{}", uuid::Uuid::new_v4().simple()).to_uppercase();
        let request = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri("/api/v1/apps")
            .body(Body::empty())
            .unwrap();
        let (status, _) = node.send(request).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
    }
    let after = metrics().await;
    eprintln!(
        "measured: /metrics {} bytes before and {} bytes after 3,000 made-up methods",
        before.len(),
        after.len()
    );
    let series = |text: &str| {
        text.lines()
            .filter(|line| line.starts_with("console_http_requests_total{"))
            .count()
    };
    assert_eq!(series(&after), series(&before), "{after}");
    assert!(
        after.contains(
            "console_http_requests_total{method=\"other\",route=\"/api/v1/apps\",status=\"405\"} 3001"
        ),
        "{after}"
    );
}

/// Issue 15: `POST /api/v1/apps/actions` answers every id as a single action would, in order,
/// and refuses malformed requests with 400 before queuing anything.
#[tokio::test]
async fn standalone_bulk_actions_answer_per_id() {
    let node = TestNode::start(Some("bulk-token")).await;
    let a = node.create_app("exec sleep 300").await["id"]
        .as_i64()
        .unwrap();
    let b = node.create_app("exec sleep 300").await["id"]
        .as_i64()
        .unwrap();
    let (status, body) = node
        .call(
            Method::POST,
            "/api/v1/apps/actions",
            Some(json!({"action": "start", "ids": [a, b, a, 999_999]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let results = body["results"].as_array().unwrap();
    let statuses: Vec<i64> = results
        .iter()
        .map(|r| r["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, [202, 202, 409, 404], "{body}");
    assert_eq!(results[0]["id"], a);
    assert_eq!(results[0]["task"]["action"], "start");
    assert_eq!(results[2]["error"]["code"], "illegal_transition", "{body}");
    assert_eq!(results[3]["error"]["code"], "not_found", "{body}");
    node.wait_for_state(a, "RUNNING").await;
    node.wait_for_state(b, "RUNNING").await;

    let (status, body) = node
        .call(
            Method::POST,
            "/api/v1/apps/actions",
            Some(json!({"action": "stop", "ids": [a, b]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == 202),
        "{body}"
    );
    node.wait_for_state(a, "STOPPED").await;

    let too_many: Vec<i64> = (1..=10_001).collect();
    for (bad, code) in [
        (json!({"action": "start", "ids": []}), "invalid_body"),
        (json!({"action": "launch", "ids": [a]}), "invalid_body"),
        (json!({"action": "savepoint", "ids": [a]}), "invalid_body"),
        (
            json!({"action": "start", "ids": [a], "force": true}),
            "invalid_body",
        ),
        (json!({"action": "start", "ids": too_many}), "too_many_ids"),
    ] {
        let (status, body) = node
            .call(Method::POST, "/api/v1/apps/actions", Some(bad.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"]["code"], code, "{bad}: {body}");
    }
    // Without the token, nothing.
    let request = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/apps/actions")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"action": "start", "ids": [a]}).to_string(),
        ))
        .unwrap();
    assert_eq!(node.send(request).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(node.app(a).await["state"], "STOPPED");
}

/// Issue 13: the optional body of an action is checked before anything is queued: keys by
/// action, types, and only for `flink` apps; no body and `{}` ask nothing.
#[tokio::test]
async fn standalone_action_bodies_are_checked() {
    let node = TestNode::start(None).await;
    let app = node.create_app("exec sleep 300").await["id"]
        .as_i64()
        .unwrap();
    for (action, body, code) in [
        ("stop", json!({"savepoint": false}), "invalid_body"),
        ("stop", json!({"savepoint": "no"}), "invalid_body"),
        ("start", json!({"restore": ""}), "invalid_body"),
        ("start", json!({"savepoint": false}), "invalid_body"),
        ("start", json!({"restore": "none"}), "invalid_body"),
        ("start", json!(["restore"]), "invalid_body"),
    ] {
        let (status, answer) = node
            .call(
                Method::POST,
                &format!("/api/v1/apps/{app}/{action}"),
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{action} {body}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{action} {body}: {answer}");
    }
    let (status, answer) = node
        .call(
            Method::POST,
            &format!("/api/v1/apps/{app}/start"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    node.wait_for_state(app, "RUNNING").await;
    // A savepoint (added, issue 13) applies to flink apps only, running or not.
    let (status, answer) = node
        .call(Method::POST, &format!("/api/v1/apps/{app}/savepoint"), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"]["code"], "savepoint_unsupported", "{answer}");
    let (status, answer) = node
        .call(Method::POST, "/api/v1/apps/999999/savepoint", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    let (status, answer) = node
        .call(Method::POST, &format!("/api/v1/apps/{app}/stop"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    node.wait_for_state(app, "STOPPED").await;
}
