//! Issue 12, finding 10: slow clients. A request whose headers never finish used to keep its
//! connection (and a file descriptor) forever; enough of them made the node refuse everything,
//! its own registry and database reconnects included. The real binary now closes a connection
//! that does not deliver its headers within `server.header_read_timeout_ms`, serves at most
//! `server.max_connections` at once, and still keeps an event stream open for as long as the
//! client reads it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use test_support::eventually;
use test_support::wait::holds_for;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long the node may take to get where a test waits for it.
const SETTLE: Duration = Duration::from_secs(30);

/// A request cut off before the blank line that ends its headers.
const HALF_SENT: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Slow: ";

/// A `console-server` process with the embedded default in a temporary directory, killed on drop.
struct Node {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Node {
    async fn start(env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = test_support::ports::free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_console-server"));
        command
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .env("CONSOLE__SERVER__PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("CONSOLE") && name != "CONSOLE__SERVER__PORT" {
                command.env_remove(name);
            }
        }
        let node = Self {
            child: command.envs(env.iter().copied()).spawn().unwrap(),
            port,
            _dir: dir,
        };
        eventually("the node answers /readyz", SETTLE, || {
            node.answers("/readyz")
        })
        .await;
        node
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn answers(&self, path: &str) -> bool {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        client
            .get(self.url(path))
            .send()
            .await
            .is_ok_and(|response| response.status() == 200)
    }

    /// A connection that sent [`HALF_SENT`] and nothing more.
    async fn half_sent_request(&self) -> TcpStream {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).await.unwrap();
        stream.write_all(HALF_SENT).await.unwrap();
        stream
    }

    /// How many client connections the process holds open (accepted sockets on its port, from
    /// its descriptors and the kernel's TCP table; the ones still in the accept queue belong to
    /// no process and are not counted).
    fn accepted_connections(&self) -> usize {
        let pid = self.child.id();
        let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
            .filter_map(|target| {
                let target = target.to_string_lossy().into_owned();
                Some(
                    target
                        .strip_prefix("socket:[")?
                        .strip_suffix(']')?
                        .to_owned(),
                )
            })
            .collect();
        let port = format!("{:04X}", self.port);
        ["tcp", "tcp6"]
            .iter()
            .filter_map(|table| std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).ok())
            .flat_map(|table| table.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
            .filter(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.len() > 9
                    && fields[1].ends_with(&format!(":{port}"))
                    && fields[3] == "01"
                    && inodes.contains(fields[9])
            })
            .count()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads until the server closes `stream`; what it sent before (a 408, say) is returned.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    tokio::time::timeout(SETTLE, stream.read_to_end(&mut answer))
        .await
        .unwrap_or_else(|_| panic!("a half-sent request is still open after {SETTLE:?}"))
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn standalone_half_sent_requests_are_closed_and_event_streams_stay_open() {
    let node = Node::start(&[("CONSOLE__SERVER__HEADER_READ_TIMEOUT_MS", "500")]).await;
    let client = reqwest::Client::new();
    let mut events = client.get(node.url("/api/v1/events")).send().await.unwrap();
    assert_eq!(events.status(), 200);

    let mut slow = node.half_sent_request().await;
    let answer = read_until_closed(&mut slow).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "closed with {answer:?}"
    );

    // The header-read timeout has passed for the event stream too; it must still deliver.
    let created = client
        .post(node.url("/api/v1/apps"))
        .json(&json!({"name": "after-timeout", "spec": {"command": ["true"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let mut seen = String::new();
    while !seen.contains("after-timeout") {
        let chunk = tokio::time::timeout(SETTLE, events.chunk())
            .await
            .expect("the event stream went quiet")
            .expect("the event stream failed")
            .expect("the server ended the event stream");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("app_changed"), "{seen}");
}

#[tokio::test]
async fn standalone_slow_clients_cannot_exhaust_the_descriptors() {
    const CAP: usize = 16;
    // Fewer than the listen backlog (128), so that every connect completes: the ones over the
    // cap wait in the kernel's accept queue.
    const SLOW: usize = 64;
    let node = Node::start(&[
        ("CONSOLE__SERVER__MAX_CONNECTIONS", "16"),
        // Long enough that no slow connection is closed while the test looks.
        ("CONSOLE__SERVER__HEADER_READ_TIMEOUT_MS", "120000"),
    ])
    .await;
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        slow.push(node.half_sent_request().await);
    }
    eventually(
        "the node took max_connections of the slow clients",
        SETTLE,
        || async { node.accepted_connections() >= CAP },
    )
    .await;
    holds_for(
        "the node holds at most max_connections client connections",
        Duration::from_secs(2),
        || async { node.accepted_connections() <= CAP },
    )
    .await;

    // Once the slow ones go, the node serves again.
    drop(slow);
    eventually(
        "the node answers after the slow clients left",
        SETTLE,
        || node.answers("/healthz"),
    )
    .await;
}
