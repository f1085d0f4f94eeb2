//! The web console's API additions (issue 17) on one real node served on a real socket
//! (standalone registry, SQLite, the process executor): `GET /api/v1/events` (server-sent
//! events, resume, a client that goes away), `GET /api/v1/apps/{id}/log`, the app filters and
//! task history, `GET /api/v1/cluster`, and the page's assets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use console_server::{Console, ConsoleConfig};
use serde_json::{Value, json};
use test_support::{console_env, eventually};

/// How long the node may take to get where a test waits for it.
const SETTLE: Duration = Duration::from_secs(15);

/// A node in a temporary directory, served on a loopback port; its apps are killed on drop.
struct ServedNode {
    base: String,
    dir: tempfile::TempDir,
    token: Option<&'static str>,
    client: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
    _console: Console,
}

impl ServedNode {
    async fn start(token: Option<&'static str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let env = console_env::standalone("web-node", dir.path(), token);
        let config = ConsoleConfig::load_with_env(None, env).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let console = Console::start(&config, port).await.unwrap();
        let router = console.router();
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        let node = Self {
            base: format!("http://127.0.0.1:{port}"),
            dir,
            token,
            client: reqwest::Client::new(),
            server,
            _console: console,
        };
        eventually("the node is ready", SETTLE, || async {
            node.get("/readyz").await.0 == 200
        })
        .await;
        node
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, format!("{}{path}", self.base));
        match self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn create(&self, name: &str, command: &str) -> i64 {
        let (status, app) = self
            .call(
                reqwest::Method::POST,
                "/api/v1/apps",
                Some(json!({"name": name, "spec": {"command": ["sh", "-c", command]}})),
            )
            .await;
        assert_eq!(status, 201, "{app}");
        app["id"].as_i64().unwrap()
    }

    async fn act(&self, id: i64, action: &str) -> Value {
        let (status, accepted) = self
            .call(
                reqwest::Method::POST,
                &format!("/api/v1/apps/{id}/{action}"),
                None,
            )
            .await;
        assert_eq!(status, 202, "{accepted}");
        accepted
    }

    async fn wait_for_state(&self, id: i64, state: &str) {
        eventually(&format!("app {id} is {state}"), SETTLE, || async {
            self.get(&format!("/api/v1/apps/{id}")).await.1["state"] == state
        })
        .await;
    }

    /// A metric's value from `/metrics`.
    async fn metric(&self, name: &str) -> Result<i64, String> {
        let (_, text) = self.get("/metrics").await;
        let text = text.as_str().unwrap_or_default().to_owned();
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .and_then(|value| value.trim().parse().ok())
            .ok_or_else(|| format!("no {name} in /metrics"))
    }

    async fn events(&self, last_event_id: Option<&str>) -> EventReader {
        let mut request = self.request(reqwest::Method::GET, "/api/v1/events");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        EventReader {
            response,
            buffer: String::new(),
        }
    }
}

impl Drop for ServedNode {
    fn drop(&mut self) {
        self.server.abort();
        // Apps run detached: kill the ones started in this node's directory.
        console_env::kill_processes_naming(self.dir.path());
    }
}

/// One server-sent event.
#[derive(Debug, Clone)]
struct Sse {
    name: String,
    id: Option<String>,
    data: Value,
}

/// Reads events off a streaming answer.
struct EventReader {
    response: reqwest::Response,
    buffer: String,
}

impl EventReader {
    /// The next event (comments skipped), within [`SETTLE`].
    async fn next(&mut self) -> Sse {
        tokio::time::timeout(SETTLE, async {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    if let Some(event) = parse(&block) {
                        return event;
                    }
                    continue;
                }
                let chunk = self
                    .response
                    .chunk()
                    .await
                    .unwrap()
                    .expect("the stream ended");
                self.buffer.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await
        .expect("an event within the deadline")
    }

    /// Reads events until one satisfies `wanted`; returns it and those before it.
    async fn until(&mut self, what: &str, wanted: impl Fn(&Sse) -> bool) -> (Sse, Vec<Sse>) {
        let mut before = Vec::new();
        let deadline = tokio::time::Instant::now() + SETTLE;
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {what} within {SETTLE:?}; got {before:?}"
            );
            let event = self.next().await;
            if wanted(&event) {
                return (event, before);
            }
            before.push(event);
        }
    }
}

fn parse(block: &str) -> Option<Sse> {
    let (mut name, mut id, mut data) = (None, None, Vec::new());
    for line in block.lines() {
        if let Some(value) = line.strip_prefix("event:") {
            name = Some(value.trim().to_owned());
        } else if let Some(value) = line.strip_prefix("id:") {
            id = Some(value.trim().to_owned());
        } else if let Some(value) = line.strip_prefix("data:") {
            data.push(value.trim_start().to_owned());
        }
    }
    Some(Sse {
        name: name?,
        id,
        data: serde_json::from_str(&data.join("\n")).unwrap(),
    })
}

#[tokio::test]
async fn standalone_events_carry_app_task_and_deletion_changes_and_resume() {
    let node = ServedNode::start(None).await;
    let mut stream = node.events(None).await;
    let hello = stream.next().await;
    assert_eq!(hello.name, "hello");
    assert_eq!(hello.data["node"], "web-node");
    assert_eq!(hello.data["resumed"], false);
    assert!(hello.id.is_none());

    let id = node.create("watched", "exec sleep 300").await;
    let task = node.act(id, "start").await["task_id"].clone();
    let (running, before_running) = stream
        .until("app_changed RUNNING", |e| {
            e.name == "app_changed" && e.data["id"] == id && e.data["state"] == "RUNNING"
        })
        .await;
    assert_eq!(running.data["owner"], "web-node");
    assert_eq!(running.data["adopted_by"], "web-node");
    assert!(running.data["handle"]["pid"].as_i64().unwrap() > 1);
    // The feed reads apps, then tasks, not in one snapshot: a task row committed between the
    // two reads comes a round before its app row. So the SUCCEEDED may precede the RUNNING.
    let is_done = |e: &Sse| {
        e.name == "task_changed" && e.data["id"] == task && e.data["status"] == "SUCCEEDED"
    };
    let (done, mut after_mark) = match before_running.iter().position(is_done) {
        Some(at) => {
            let mut after = before_running[at + 1..].to_vec();
            after.push(running.clone());
            (before_running[at].clone(), after)
        }
        None => (
            stream.until("task_changed SUCCEEDED", is_done).await.0,
            Vec::new(),
        ),
    };
    assert_eq!(done.data["action"], "start");
    let mark = done.id.clone().expect("sequenced events have ids");

    // Stop and delete through the API; the stream names the deletion. (Rows of different
    // apps and tasks are not ordered among each other, so the STOPPED row may come first.)
    let stop = node.act(id, "stop").await["task_id"].clone();
    node.wait_for_state(id, "STOPPED").await;
    let (status, _) = node
        .call(reqwest::Method::DELETE, &format!("/api/v1/apps/{id}"), None)
        .await;
    assert_eq!(status, 204);
    let (deleted, before_deletion) = stream
        .until("app_deleted", |e| {
            e.name == "app_deleted" && e.data["id"] == id
        })
        .await;
    after_mark.extend(before_deletion);
    assert!(
        after_mark.iter().any(|e| e.name == "task_changed"
            && e.data["id"] == stop
            && e.data["status"] == "SUCCEEDED"),
        "{after_mark:?}"
    );

    // A client that reconnects with the id it saw last gets what came after it, in order.
    let mut resumed = node.events(Some(&mark)).await;
    let hello = resumed.next().await;
    assert_eq!(hello.data["resumed"], true, "{hello:?}");
    let (replayed_deletion, replayed) = resumed
        .until("the replayed app_deleted", |e| e.name == "app_deleted")
        .await;
    let ids = |events: &[Sse]| events.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(&replayed),
        ids(&after_mark),
        "the same events, same ids, same order"
    );
    assert_eq!(replayed_deletion.id, deleted.id);
    // One it cannot resume from gets a resync instead.
    for unknown in ["not-an-id", "1-1"] {
        let mut stale = node.events(Some(unknown)).await;
        assert_eq!(stale.next().await.data["resumed"], false);
        let resync = stale.next().await;
        assert_eq!(resync.name, "resync", "{resync:?}");
        assert_eq!(resync.data["reason"], "resume_unavailable");
    }
}

#[tokio::test]
async fn standalone_a_client_that_disconnects_mid_stream_frees_its_stream_and_the_feed() {
    let node = ServedNode::start(None).await;
    assert_eq!(node.metric("console_event_feeds").await, Ok(0));
    let mut first = node.events(None).await;
    let mut second = node.events(None).await;
    assert_eq!(first.next().await.name, "hello");
    assert_eq!(second.next().await.name, "hello");
    eventually("two streams, one feed", SETTLE, || async {
        node.metric("console_event_streams").await == Ok(2)
            && node.metric("console_event_feeds").await == Ok(1)
    })
    .await;
    // Mid-stream: an event is on its way when the first client goes away.
    let id = node.create("x", "exit 0").await;
    first
        .until("app_changed", |e| {
            e.name == "app_changed" && e.data["id"] == id
        })
        .await;
    drop(first);
    eventually("the dropped stream is forgotten", SETTLE, || async {
        node.metric("console_event_streams").await == Ok(1)
    })
    .await;
    // The other stream goes on.
    node.act(id, "start").await;
    second
        .until("task_changed", |e| {
            e.name == "task_changed" && e.data["app_id"] == id
        })
        .await;
    drop(second);
    eventually("no stream and no feed left", SETTLE, || async {
        node.metric("console_event_streams").await == Ok(0)
            && node.metric("console_event_feeds").await == Ok(0)
    })
    .await;
}

#[tokio::test]
async fn standalone_log_tail_and_its_bad_input() {
    let node = ServedNode::start(None).await;
    let id = node
        .create(
            "logger",
            "for i in 1 2 3 4 5; do echo line $i; done; exec sleep 300",
        )
        .await;
    let (status, error) = node.get(&format!("/api/v1/apps/{id}/log")).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (404, Some("no_log")),
        "{error}"
    );
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("never been started"),
        "{error}"
    );
    node.act(id, "start").await;
    node.wait_for_state(id, "RUNNING").await;
    let log = eventually("five lines in the log", SETTLE, || async {
        let (status, log) = node.get(&format!("/api/v1/apps/{id}/log?tail=2")).await;
        (status == 200 && log["lines"] == json!(["line 4", "line 5"]))
            .then_some(log.clone())
            .ok_or(log.to_string())
    })
    .await;
    assert_eq!(log["node"], "web-node");
    assert_eq!(log["truncated"], true);
    let (_, whole) = node.get(&format!("/api/v1/apps/{id}/log")).await;
    assert_eq!(whole["truncated"], false, "{whole}");
    assert!(
        whole["lines"][0].as_str().unwrap().starts_with("[console]"),
        "{whole}"
    );

    for bad in ["tail=0", "tail=5001", "tail=-1", "tail=ten", "lines=3"] {
        let (status, error) = node.get(&format!("/api/v1/apps/{id}/log?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {error}");
        assert_eq!(error["error"]["code"], "invalid_query", "{bad}");
    }
    let (status, error) = node.get("/api/v1/apps/999999/log").await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, _) = node.get("/api/v1/apps/nine/log").await;
    assert_eq!(status, 400);

    // A stopped app's log stays readable on the node that started it.
    node.act(id, "stop").await;
    node.wait_for_state(id, "STOPPED").await;
    let (status, log) = node.get(&format!("/api/v1/apps/{id}/log?tail=1")).await;
    assert_eq!(status, 200, "{log}");
}

#[tokio::test]
async fn standalone_app_filters_task_history_and_cluster_summary() {
    let node = ServedNode::start(None).await;
    let orders = node.create("Orders-EU", "exec sleep 300").await;
    node.create("orders-us", "exec sleep 300").await;
    node.create("billing", "exec sleep 300").await;
    node.act(orders, "start").await;
    node.wait_for_state(orders, "RUNNING").await;

    let names = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, page) = node.get("/api/v1/apps?name=ORDERS").await;
    assert_eq!(
        (names(&page), page["total"].clone()),
        (vec!["Orders-EU".into(), "orders-us".into()], json!(2))
    );
    let (_, page) = node.get("/api/v1/apps?state=running").await;
    assert_eq!(names(&page), ["Orders-EU"]);
    let (_, page) = node
        .get("/api/v1/apps?state=CREATED,RUNNING&name=bill&size=1")
        .await;
    assert_eq!(
        (names(&page), page["total"].clone()),
        (vec!["billing".into()], json!(1))
    );
    let (status, error) = node.get("/api/v1/apps?state=SLEEPING").await;
    assert_eq!(status, 400);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("SLEEPING")
    );

    node.act(orders, "stop").await;
    node.wait_for_state(orders, "STOPPED").await;
    let (status, history) = node.get(&format!("/api/v1/apps/{orders}/tasks")).await;
    assert_eq!(status, 200);
    assert_eq!(history["total"], 2);
    assert_eq!(history["items"][0]["action"], "stop", "newest first");
    assert_eq!(history["items"][1]["owner"], "web-node");
    let (status, _) = node
        .get(&format!("/api/v1/apps/{orders}/tasks?size=201"))
        .await;
    assert_eq!(status, 400);
    let (status, _) = node.get("/api/v1/apps/999999/tasks").await;
    assert_eq!(status, 404);

    let (status, summary) = node.get("/api/v1/cluster").await;
    assert_eq!(status, 200);
    assert_eq!(summary["registry"], "standalone");
    assert_eq!(summary["database"], "sqlite");
    assert_eq!(summary["node"], "web-node");
    assert_eq!(summary["session"], "connected");
    assert_eq!(summary["nodes"], 1);
    assert_eq!(
        summary["apps"],
        json!({"total": 3, "by_state": {"CREATED": 2, "STOPPED": 1}})
    );
}

#[tokio::test]
async fn standalone_page_is_served_with_a_strict_policy_and_the_data_needs_the_token() {
    let node = ServedNode::start(Some("s3cret")).await;
    let anonymous = reqwest::Client::new();
    let page = anonymous
        .get(format!("{}/", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["cache-control"], "no-cache");
    let html = page.text().await.unwrap();
    assert!(html.contains("/ui/js/main.js"));
    assert!(!html.contains("<script>"), "no inline script");

    let etag = headers["etag"].clone();
    let again = anonymous
        .get(format!("{}/", node.base))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304, "revalidation");
    let script = anonymous
        .get(format!("{}/ui/js/live.js", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), 200);
    assert_eq!(
        script.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let missing = anonymous
        .get(format!("{}/ui/js/../../console.db", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // The data needs the token, the stream included.
    for path in ["/api/v1/cluster", "/api/v1/events", "/api/v1/apps/1/log"] {
        let answer = anonymous
            .get(format!("{}{path}", node.base))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 401, "{path}");
    }
    let mut stream = node.events(None).await;
    assert_eq!(stream.next().await.name, "hello");
}
