//! A private ZooKeeper for one test, run by the project's `deploy/zookeeper.sh` on a free port
//! with its files in the test's directory; for tests that stop the server (the shared one serves
//! every other test running at the same time).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::binary::workspace_root;
use crate::ports::free_port;

/// See the [module documentation](self). Dropping it runs `deploy/zookeeper.sh clean` (stop, then
/// delete its directory).
#[derive(Debug)]
pub struct PrivateZookeeper {
    port: u16,
    dir: PathBuf,
}

fn script() -> PathBuf {
    workspace_root().join("deploy/zookeeper.sh")
}

impl PrivateZookeeper {
    /// Starts a server on a free port with its files under `dir`, and waits until it serves.
    ///
    /// # Panics
    /// With the script's output when it fails.
    pub async fn start(dir: &Path) -> Self {
        let server = Self {
            port: free_port(),
            dir: dir.to_owned(),
        };
        server.run("start").await;
        server
    }

    /// `127.0.0.1:port`.
    pub fn servers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGTERM) and waits until its port is closed. The data directory, with
    /// the sessions, is kept.
    pub async fn stop(&self) {
        self.run("stop").await;
    }

    /// Starts it again after [`PrivateZookeeper::stop`] and waits until it serves.
    pub async fn resume(&self) {
        self.run("start").await;
    }

    async fn run(&self, command: &str) {
        let script = script();
        let output = tokio::process::Command::new(&script)
            .arg(command)
            .env("ZK_PORT", self.port.to_string())
            .env("ZK_DIR", &self.dir)
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap_or_else(|error| panic!("cannot run {} {command}: {error}", script.display()));
        assert!(
            output.status.success(),
            "ZK_PORT={} ZK_DIR={} {} {command} failed:\n{}{}",
            self.port,
            self.dir.display(),
            script.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for PrivateZookeeper {
    fn drop(&mut self) {
        let script = script();
        let cleaned = std::process::Command::new(&script)
            .arg("clean")
            .env("ZK_PORT", self.port.to_string())
            .env("ZK_DIR", &self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status();
        if !matches!(cleaned, Ok(status) if status.success()) {
            eprintln!(
                "ZK_PORT={} {} clean failed: {cleaned:?}",
                self.port,
                script.display()
            );
        }
    }
}
