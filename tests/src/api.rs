//! A client of one node's HTTP API (DESIGN.md, "HTTP API"), with the answers the tests read.
//!
//! Calls answer `Result<_, String>`: an `Err` is a transport failure or an answer that does not
//! have the documented shape, described for the failure message (probes pass it on as their
//! observation). [`Api::call`] gives the raw [`Answer`] for tests that check statuses themselves.

use std::fmt;
use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

/// How long one HTTP call may take: generous, so that a slow node shows up as a wrong answer
/// rather than a hung test.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// An id the API hands out (app or task): a JSON number or string, kept as text for URLs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(pub String);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(text) => Ok(Self(text)),
            Value::Number(number) => Ok(Self(number.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "an id must be a number or a string, got {other}"
            ))),
        }
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `GET /api/v1/apps/{id}`.
#[derive(Debug, Clone, Deserialize)]
pub struct App {
    pub id: Id,
    pub name: String,
    pub executor: String,
    pub spec: Value,
    pub state: String,
    pub owner: Option<String>,
    /// The node holding the app's lease (it has adopted the app; DESIGN.md, issue 6).
    #[serde(default)]
    pub adopted_by: Option<String>,
    pub last_error: Option<String>,
    /// The executor's record; for `process`: `{"executor":"process","pid":..,"start_time_ticks":..}`.
    #[serde(default)]
    pub handle: Option<Value>,
    /// `{"host","unowned"}`: the host a copy may run on, why the app has no owner (issue 12).
    #[serde(default)]
    pub placement: Value,
    /// What the app reserves of its owner (issue 16).
    #[serde(default)]
    pub weight: u64,
}

impl App {
    /// The pid in the process executor's handle.
    pub fn pid(&self) -> Option<i32> {
        let pid = self.handle.as_ref()?.get("pid")?.as_i64()?;
        i32::try_from(pid).ok()
    }

    /// The process start time (clock ticks since boot) in the handle.
    pub fn start_time_ticks(&self) -> Option<u64> {
        self.handle.as_ref()?.get("start_time_ticks")?.as_u64()
    }
}

/// `GET /api/v1/cluster/nodes`, one element.
#[derive(Debug, Clone, Deserialize)]
pub struct NodeInfo {
    pub id: String,
    pub host: String,
    pub port: u16,
    pub leader: bool,
    pub owned_apps: u64,
    /// The machine the node runs on, `<host name>/<machine id>` (issue 12).
    #[serde(default)]
    pub host_id: Option<String>,
    /// `node.capacity` (issue 16).
    #[serde(default)]
    pub capacity: u64,
    /// The weight the node owns, as it last published (issue 16).
    #[serde(default)]
    pub owned_weight: u64,
    /// How the node splits the apps: `rendezvous` or `bounded(epsilon=<ε>)` (issue 16).
    #[serde(default)]
    pub assignment: Option<String>,
}

/// `GET /api/v1/tasks/{id}`.
#[derive(Debug, Clone, Deserialize)]
pub struct Task {
    pub id: Id,
    pub app_id: Id,
    pub action: String,
    pub status: String,
    pub owner: Option<String>,
    pub attempts: Option<u64>,
    pub error: Option<String>,
}

impl Task {
    /// SUCCEEDED or FAILED.
    pub fn is_finished(&self) -> bool {
        matches!(self.status.as_str(), "SUCCEEDED" | "FAILED")
    }
}

/// The 202 answer of `POST /api/v1/apps/{id}/start|stop|restart`.
#[derive(Debug, Clone, Deserialize)]
pub struct Submitted {
    pub task_id: Id,
    pub app_id: Id,
    pub action: String,
    pub status: String,
}

/// A raw answer: status, content type and body (JSON, or `Value::String` of the text if it is
/// not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Value,
}

impl Answer {
    /// Parses the body as `T`, or describes why the answer is not one.
    pub fn parse<T: serde::de::DeserializeOwned>(&self, expected: u16) -> Result<T, String> {
        if self.status != expected {
            return Err(format!("expected {expected}, got {self}"));
        }
        serde_json::from_value(self.body.clone())
            .map_err(|error| format!("unexpected body ({error}): {self}"))
    }

    /// The `{"error": {"code", "message"}}` body, if the answer has one with non-empty strings.
    pub fn error_code(&self) -> Result<&str, String> {
        let json_type = self
            .content_type
            .as_deref()
            .is_some_and(|value| value.starts_with("application/json"));
        if !json_type {
            return Err(format!("the error answer is not JSON: {self}"));
        }
        let code = self.body["error"]["code"].as_str().unwrap_or_default();
        let message = self.body["error"]["message"].as_str().unwrap_or_default();
        if code.is_empty() || message.is_empty() {
            return Err(format!(
                "the error body lacks error.code or error.message: {self}"
            ));
        }
        Ok(code)
    }
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = self.body.to_string();
        let shown: String = body.chars().take(600).collect();
        let cut = if shown.len() < body.len() { "…" } else { "" };
        write!(f, "{} {shown}{cut}", self.status)
    }
}

/// `error` and its sources, e.g. `error sending request: connection refused`.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// What to send as a request body.
#[derive(Debug, Clone)]
pub enum Body {
    None,
    Json(Value),
    /// Sent as given with `Content-Type: application/json`: for malformed or huge bodies.
    Raw(Vec<u8>),
}

/// The HTTP API of one node at `base` (`http://127.0.0.1:port`).
#[derive(Debug, Clone)]
pub struct Api {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Api {
    /// A client of `base`; `token` is sent as `Authorization: Bearer` on every call.
    pub fn new(base: String, token: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(Duration::from_secs(2))
            .no_proxy()
            .build()
            .unwrap_or_else(|error| panic!("cannot build an HTTP client: {error}"));
        Self { base, token, http }
    }

    /// The same node with another token (or none).
    pub fn with_token(&self, token: Option<&str>) -> Self {
        Self {
            token: token.map(str::to_owned),
            ..self.clone()
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// One call; a transport failure is an `Err`.
    pub async fn call(&self, method: Method, path: &str, body: Body) -> Result<Answer, String> {
        self.call_with_headers(method, path, body, &[]).await
    }

    /// [`Api::call`] with extra headers (a node-to-node signature, for instance).
    pub async fn call_with_headers(
        &self,
        method: Method,
        path: &str,
        body: Body,
        headers: &[(&str, String)],
    ) -> Result<Answer, String> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method.clone(), &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        request = match body {
            Body::None => request,
            Body::Json(value) => request.json(&value),
            Body::Raw(bytes) => request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes),
        };
        let response = request
            .send()
            .await
            .map_err(|error| format!("{method} {url}: {}", chain(&error)))?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let bytes = response
            .bytes()
            .await
            .map_err(|error| format!("{method} {url}: reading the body: {}", chain(&error)))?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok(Answer {
            status,
            content_type,
            body,
        })
    }

    pub async fn get(&self, path: &str) -> Result<Answer, String> {
        self.call(Method::GET, path, Body::None).await
    }

    /// `GET /healthz` answers 200.
    pub async fn healthy(&self) -> Result<bool, String> {
        Ok(self.get("/healthz").await?.status == 200)
    }

    /// `GET /readyz`: 200 is ready, 503 is not; anything else is an `Err`.
    pub async fn ready(&self) -> Result<bool, String> {
        let answer = self.get("/readyz").await?;
        match answer.status {
            200 => Ok(true),
            503 => Ok(false),
            _ => Err(format!("GET /readyz: {answer}")),
        }
    }

    /// `GET /api/v1/cluster/nodes`.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, String> {
        self.get("/api/v1/cluster/nodes").await?.parse(200)
    }

    /// `POST /api/v1/apps`.
    pub async fn create_app(&self, name: &str, executor: &str, spec: Value) -> Result<App, String> {
        self.create_app_with(json!({"name": name, "executor": executor, "spec": spec}))
            .await
    }

    /// `POST /api/v1/apps` with this body (for fields beyond name, executor and spec, such as
    /// `weight`).
    pub async fn create_app_with(&self, body: Value) -> Result<App, String> {
        self.call(Method::POST, "/api/v1/apps", Body::Json(body))
            .await?
            .parse(201)
    }

    /// Every app, reading `GET /api/v1/apps` page by page (50 a page).
    pub async fn apps(&self) -> Result<Vec<App>, String> {
        self.apps_paged(50).await
    }

    /// Every app, reading `GET /api/v1/apps` in pages of `size` (at most 500).
    pub async fn apps_paged(&self, size: usize) -> Result<Vec<App>, String> {
        #[derive(Deserialize)]
        struct Page {
            items: Vec<App>,
            total: usize,
        }
        let mut apps = Vec::new();
        for page in 1.. {
            let answer = self
                .get(&format!("/api/v1/apps?page={page}&size={size}"))
                .await?;
            let Page { items, total } = answer.parse(200)?;
            let empty = items.is_empty();
            apps.extend(items);
            if apps.len() >= total || empty {
                break;
            }
        }
        Ok(apps)
    }

    /// `GET /api/v1/apps/{id}`.
    pub async fn app(&self, id: &Id) -> Result<App, String> {
        self.get(&format!("/api/v1/apps/{id}")).await?.parse(200)
    }

    /// `POST /api/v1/apps/{id}/{action}`, raw.
    pub async fn act(&self, id: &Id, action: &str) -> Result<Answer, String> {
        self.call(
            Method::POST,
            &format!("/api/v1/apps/{id}/{action}"),
            Body::None,
        )
        .await
    }

    /// `POST /api/v1/apps/{id}/{action}`, expecting 202.
    pub async fn submit(&self, id: &Id, action: &str) -> Result<Submitted, String> {
        self.act(id, action).await?.parse(202)
    }

    /// `GET /metrics`: the Prometheus text.
    pub async fn metrics(&self) -> Result<String, String> {
        let answer = self.get("/metrics").await?;
        match (answer.status, answer.body) {
            (200, Value::String(text)) => Ok(text),
            (status, body) => Err(format!("GET /metrics: {status} {body}")),
        }
    }

    /// `GET /api/v1/tasks/{id}`.
    pub async fn task(&self, id: &Id) -> Result<Task, String> {
        self.get(&format!("/api/v1/tasks/{id}")).await?.parse(200)
    }

    /// Waits until task `id` is SUCCEEDED or FAILED, for at most `within`, and answers it.
    ///
    /// # Panics
    /// When it is not finished by then, with the task as last read.
    pub async fn finished_task(&self, id: &Id, within: Duration) -> Task {
        crate::eventually(&format!("task {id} finishes"), within, || async {
            let task = self.task(id).await?;
            if task.is_finished() {
                Ok(task)
            } else {
                Err(format!("{task:?}"))
            }
        })
        .await
    }
}
