//! A private ZooKeeper on a port of its own, for tests that stop or restart the server (the
//! shared one on 2181 serves every other test running at the same time).

use std::process::Stdio;

/// A ZooKeeper started by `deploy/zookeeper.sh` with `ZK_PORT` set to a free port; its data
/// directory is removed (`clean`) when this value is dropped.
#[derive(Debug)]
pub struct PrivateZookeeper {
    port: u16,
}

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/zookeeper.sh");

impl PrivateZookeeper {
    /// Starts a new server on a free port and waits until it serves.
    pub async fn start() -> Self {
        let port = free_port();
        let server = Self { port };
        server.run("start").await;
        server
    }

    /// `host:port` of this server.
    pub fn servers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts it again after `stop` (the data directory, with its sessions, is kept).
    pub async fn resume(&self) {
        self.run("start").await;
    }

    /// Stops the server and waits until its port is closed.
    pub async fn stop(&self) {
        self.run("stop").await;
    }

    async fn run(&self, command: &str) {
        let output = tokio::process::Command::new(SCRIPT)
            .arg(command)
            .env("ZK_PORT", self.port.to_string())
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap_or_else(|error| panic!("cannot run {SCRIPT} {command}: {error}"));
        assert!(
            output.status.success(),
            "ZK_PORT={} {SCRIPT} {command} failed: {}\n{}",
            self.port,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for PrivateZookeeper {
    fn drop(&mut self) {
        let cleaned = std::process::Command::new(SCRIPT)
            .arg("clean")
            .env("ZK_PORT", self.port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status();
        if !matches!(cleaned, Ok(status) if status.success()) {
            eprintln!("ZK_PORT={} {SCRIPT} clean failed: {cleaned:?}", self.port);
        }
    }
}

/// A local port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}
