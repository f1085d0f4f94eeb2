//! Scenario 7: bad input is refused with JSON errors and changes nothing.

use cluster_tests::{Cluster, Options, RegistryKind};

use crate::{SETTLE, label};

/// The raw JSON of every app as node `api` lists it: the stored data, compared whole.
async fn stored_apps(api: &cluster_tests::Api) -> serde_json::Value {
    let answer = api.get("/api/v1/apps?page=1&size=500").await.unwrap();
    assert_eq!(answer.status, 200, "{answer}");
    answer.body
}

/// The token of test 7's cluster.
const TOKEN: &str = "cluster-test-token";

/// A call that must be refused with `expected`; sent with [`TOKEN`] unless told otherwise.
struct BadCall {
    what: &'static str,
    method: reqwest::Method,
    path: String,
    body: cluster_tests::Body,
    token: Option<String>,
    expected: u16,
}

impl BadCall {
    fn new(what: &'static str, method: reqwest::Method, path: &str, expected: u16) -> Self {
        Self {
            what,
            method,
            path: path.to_owned(),
            body: cluster_tests::Body::None,
            token: Some(TOKEN.to_owned()),
            expected,
        }
    }

    fn body(self, body: cluster_tests::Body) -> Self {
        Self { body, ..self }
    }

    fn token(self, token: Option<&str>) -> Self {
        Self {
            token: token.map(str::to_owned),
            ..self
        }
    }
}

/// 7. Bad input: each case answers its status with a JSON error body, and the stored apps are
///    unchanged afterwards. The cluster runs with `server.auth_token` set.
async fn bad_input_changes_nothing(kind: RegistryKind) {
    use cluster_tests::Body;
    use reqwest::Method;
    use serde_json::json;

    let cluster = Cluster::start(Options::new(kind, 2).auth_token(TOKEN)).await;
    let apps = cluster.create_marker_apps(2).await;
    let (idle, running) = (&apps[0], &apps[1]);
    cluster
        .start_and_wait_running(std::slice::from_ref(running), SETTLE)
        .await;
    let apis = cluster.live_apis();
    let before: Vec<serde_json::Value> = {
        let mut views = Vec::new();
        for (_, api) in &apis {
            views.push(stored_apps(api).await);
        }
        views
    };
    assert_eq!(before[0], before[1], "both nodes show the same apps");

    let valid_spec = cluster.marker_spec("never-created");
    let missing = "999999999";
    // Well over the API's 64 KiB body limit, small enough to be written before the answer.
    let too_large =
        json!({"name": "x".repeat(256 * 1024), "executor": "process", "spec": valid_spec})
            .to_string()
            .into_bytes();
    let create = |extra: serde_json::Value| {
        let mut body = json!({"name": "x", "executor": "process", "spec": valid_spec});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        Body::Json(body)
    };
    let app_path = |id: &dyn std::fmt::Display, action: &str| match action {
        "" => format!("/api/v1/apps/{id}"),
        action => format!("/api/v1/apps/{id}/{action}"),
    };
    use Method as M;
    let cases = [
        BadCall::new("malformed JSON", M::POST, "/api/v1/apps", 400)
            .body(Body::Raw(br#"{"name": "broken", "spec": "#.to_vec())),
        BadCall::new("an unknown field", M::POST, "/api/v1/apps", 400)
            .body(create(json!({"colour": "red"}))),
        BadCall::new("an unknown field in the spec", M::POST, "/api/v1/apps", 400).body(create(
            json!({"spec": {"command": ["true"], "colour": "red"}}),
        )),
        BadCall::new("a field of the wrong type", M::POST, "/api/v1/apps", 400)
            .body(create(json!({"name": 5}))),
        BadCall::new(
            "a non-numeric app id",
            M::GET,
            "/api/v1/apps/not-a-number",
            400,
        ),
        BadCall::new("a missing app", M::GET, &app_path(&missing, ""), 404),
        BadCall::new(
            "starting a missing app",
            M::POST,
            &app_path(&missing, "start"),
            404,
        ),
        BadCall::new(
            "deleting a missing app",
            M::DELETE,
            &app_path(&missing, ""),
            404,
        ),
        BadCall::new(
            "a missing task",
            M::GET,
            &format!("/api/v1/tasks/{missing}"),
            404,
        ),
        BadCall::new(
            "stopping a CREATED app",
            M::POST,
            &app_path(&idle.id, "stop"),
            409,
        ),
        BadCall::new(
            "restarting a CREATED app",
            M::POST,
            &app_path(&idle.id, "restart"),
            409,
        ),
        BadCall::new(
            "starting a RUNNING app",
            M::POST,
            &app_path(&running.id, "start"),
            409,
        ),
        BadCall::new(
            "deleting a RUNNING app",
            M::DELETE,
            &app_path(&running.id, ""),
            409,
        ),
        BadCall::new("a body over the limit", M::POST, "/api/v1/apps", 413)
            .body(Body::Raw(too_large)),
        BadCall::new("a wrong token", M::GET, "/api/v1/apps", 401).token(Some("wrong-token")),
        BadCall::new("no token", M::GET, "/api/v1/apps", 401).token(None),
        BadCall::new(
            "a wrong token on a valid create",
            M::POST,
            "/api/v1/apps",
            401,
        )
        .body(create(json!({})))
        .token(Some("wrong-token")),
        BadCall::new(
            "a wrong token on a legal stop",
            M::POST,
            &app_path(&running.id, "stop"),
            401,
        )
        .token(Some("wrong-token")),
    ];
    let mut failures = Vec::new();
    for (index, case) in cases.into_iter().enumerate() {
        let BadCall {
            what,
            method,
            path,
            body,
            token,
            expected,
        } = case;
        // Alternate between the nodes: any node answers any call.
        let (node, api) = &apis[index % apis.len()];
        let api = api.with_token(token.as_deref());
        let answer = match api.call(method.clone(), &path, body).await {
            Ok(answer) => answer,
            Err(error) => {
                failures.push(format!("{what} ({method} {path} via {node}): {error}"));
                continue;
            }
        };
        let code = answer.error_code();
        eprintln!(
            "{} test 7: {what}: {method} {path} via {node} -> {} {:?}",
            label(kind),
            answer.status,
            code
        );
        if answer.status != expected {
            failures.push(format!(
                "{what} ({method} {path} via {node}): expected {expected}, got {answer}"
            ));
        } else if let Err(error) = code {
            failures.push(format!("{what} ({method} {path} via {node}): {error}"));
        }
    }
    for (index, (node, api)) in apis.iter().enumerate() {
        let after = stored_apps(api).await;
        assert_eq!(
            after, before[index],
            "the stored apps changed, as node {node} shows them"
        );
    }
    assert!(
        failures.is_empty(),
        "wrong answers:\n{}",
        failures.join("\n")
    );
    assert_eq!(cluster.marker_lines(&running.name), 1);
    assert_eq!(cluster.marker_lines(&idle.name), 0);
}

each_registry!(bad_input_changes_nothing => zk_bad_input_is_refused_and_changes_nothing, mysql_bad_input_is_refused_and_changes_nothing, etcd_bad_input_is_refused_and_changes_nothing);
