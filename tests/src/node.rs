//! One `console-server` process: its directory, configuration, log, and signals.
//!
//! # Notable behaviors
//! - A node's directory is `<run>/<id>/`: `console.yaml` (rewritten on every start), `data/`
//!   (`node.data_dir`: the process executor's app logs) and `console.log`, which collects the
//!   process's stdout and stderr across restarts, each start after a `=== harness:` line.
//! - The process gets the test's environment minus every `CONSOLE*` variable (they would
//!   override the YAML), plus `RUST_LOG` (`CLUSTER_TESTS_LOG`, default `info`) and
//!   [`RUN_TAG_VAR`], which its apps inherit, plus the node's own
//!   variables ([`Node::set_env`]), set last.
//! - It is started with `PR_SET_PDEATHSIG = SIGKILL`: if the test process dies without its
//!   teardown, the kernel kills the console too. (Its apps run in sessions of their own and are
//!   found by their tag instead.)
//! - Dropping a [`Node`] SIGKILLs its process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use test_support::ports::free_port;
use test_support::wait::{self, poll_until};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::api::Api;
use crate::processes::{self, RUN_TAG_VAR};

/// How long a node may take from spawn to answering `/healthz`.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);

/// How many times a node is started on a new port when its port was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;

/// A `console-server` process of a test cluster (running or not).
#[derive(Debug)]
pub struct Node {
    pub id: String,
    port: u16,
    dir: PathBuf,
    token: Option<String>,
    run_tag: String,
    child: Option<Child>,
    starts: u32,
    /// Extra environment variables, set after every other one.
    env: Vec<(String, String)>,
    /// Run under this host name, in a UTS namespace of its own ([`Node::set_host_name`]).
    host_name: Option<String>,
    /// A client of the current port (one connection pool per node, reused by every probe).
    api: Api,
}

impl Node {
    /// A node that is not started yet; its directory is `<run_dir>/<id>`.
    pub fn new(run_dir: &Path, id: &str, token: Option<String>, run_tag: &str) -> Self {
        Self {
            id: id.to_owned(),
            port: 0,
            dir: run_dir.join(id),
            token,
            run_tag: run_tag.to_owned(),
            child: None,
            starts: 0,
            env: Vec::new(),
            host_name: None,
            api: Api::new("http://127.0.0.1:0".to_owned(), None),
        }
    }

    /// Sets the extra environment variables of the process from its next start on (they are
    /// set after the harness's own, so they override them).
    pub fn set_env(&mut self, env: Vec<(String, String)>) {
        self.env = env;
    }

    /// From the next start on, runs the process under host name `name`, as on another machine
    /// (`unshare --uts`, which needs root: the process executor and the node's host identity
    /// read the host name of their UTS namespace), or under the machine's own with `None`.
    pub fn set_host_name(&mut self, name: Option<String>) {
        self.host_name = name;
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory the node's files live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `node.data_dir`.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("console.yaml")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("console.log")
    }

    /// A client of this node's API, sending the cluster's token.
    pub fn api(&self) -> Api {
        Api::new(
            format!("http://127.0.0.1:{}", self.port),
            self.token.clone(),
        )
    }

    /// The console's pid while it runs.
    pub fn pid(&self) -> Option<i32> {
        self.child
            .as_ref()?
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
    }

    /// Whether the harness started the process and has not killed it or seen it exit (a crash
    /// shows up as failing calls; [`Node::exit_status`] tells).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The exit status if the process has exited by itself.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Starts the process with the configuration `yaml(port)` and waits until it answers
    /// `/healthz`. When the port is taken meanwhile (the node cannot bind), it is started again
    /// on another one.
    ///
    /// # Panics
    /// When the process exits or does not answer in time, with the tail of its log.
    pub async fn start(&mut self, binary: &Path, yaml: &dyn Fn(u16) -> String) {
        assert!(self.child.is_none(), "node {} is already running", self.id);
        fs::create_dir_all(self.data_dir()).expect("create the node's directory");
        let mut port = if self.port == 0 {
            free_port()
        } else {
            self.port
        };
        for attempt in 1..=PORT_ATTEMPTS {
            self.port = port;
            self.api = Api::new(format!("http://127.0.0.1:{port}"), self.token.clone());
            fs::write(self.config_path(), yaml(port)).expect("write the node's configuration");
            self.spawn(binary);
            match self.wait_listening().await {
                Ok(()) => return,
                Err(why) if attempt < PORT_ATTEMPTS && self.log_tail(5).contains("in use") => {
                    eprintln!(
                        "node {}: port {port} was taken ({why}); trying another",
                        self.id
                    );
                    self.child = None;
                    port = free_port();
                }
                Err(why) => {
                    panic!(
                        "node {} did not start: {why}\n{}",
                        self.id,
                        self.log_report(60)
                    )
                }
            }
        }
    }

    fn spawn(&mut self, binary: &Path) {
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the node's log");
        let _ = writeln!(
            log,
            "=== harness: start #{} of node {} on port {}: {} --config {}",
            self.starts,
            self.id,
            self.port,
            binary.display(),
            self.config_path().display()
        );
        let stderr = log.try_clone().expect("clone the log file handle");
        // Under another host name: unshare and sh exec in turn, so the pid stays the console's.
        let mut command = match &self.host_name {
            None => Command::new(binary),
            Some(name) => {
                let mut command = Command::new("unshare");
                command
                    .args(["--uts", "--", "sh", "-c"])
                    .arg(r#"printf %s "$0" > /proc/sys/kernel/hostname && exec "$@""#)
                    .arg(name)
                    .arg(binary);
                command
            }
        };
        command
            .arg("--config")
            .arg(self.config_path())
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr))
            .env(
                "RUST_LOG",
                std::env::var("CLUSTER_TESTS_LOG").unwrap_or_else(|_| "info".to_owned()),
            )
            .env("NO_COLOR", "1")
            .env(RUN_TAG_VAR, &self.run_tag)
            .kill_on_drop(true);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("CONSOLE") {
                command.env_remove(name);
            }
        }
        for (name, value) in &self.env {
            command.env(name, value);
        }
        // SAFETY: prctl(2) is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().unwrap_or_else(|error| {
            panic!(
                "cannot start {} for node {}: {error}",
                binary.display(),
                self.id
            )
        });
        self.child = Some(child);
    }

    async fn wait_listening(&mut self) -> Result<(), String> {
        let api = self.api();
        let started = Instant::now();
        loop {
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("it exited with {status}"));
            }
            if let Ok(true) = api.healthy().await {
                return Ok(());
            }
            if started.elapsed() > LISTEN_TIMEOUT {
                return Err(format!(
                    "it did not answer GET /healthz within {LISTEN_TIMEOUT:?}"
                ));
            }
            tokio::time::sleep(wait::POLL_INTERVAL).await;
        }
    }

    /// Waits until `/readyz` answers 200.
    ///
    /// # Panics
    /// When the node exits or is not ready within `timeout`, with the tail of its log.
    pub async fn wait_ready(&mut self, timeout: Duration) {
        let api = self.api();
        let id = self.id.clone();
        let outcome = poll_until(timeout, || {
            let api = api.clone();
            async move {
                match api.ready().await {
                    Ok(true) => Ok(()),
                    Ok(false) => Err("GET /readyz answers 503".to_owned()),
                    Err(error) => Err(error),
                }
            }
        })
        .await;
        if let Err(timed_out) = outcome {
            let exited = match &mut self.child {
                Some(child) => match child.try_wait() {
                    Ok(Some(status)) => format!(" (it exited with {status})"),
                    _ => String::new(),
                },
                None => " (it is not running)".to_owned(),
            };
            panic!(
                "node {id} not ready within {timeout:?}{exited}; last seen: {}\n{}",
                timed_out.last,
                self.log_report(60)
            );
        }
    }

    /// Sends SIGKILL and waits until the process is gone; answers when it was seen gone.
    pub async fn kill(&mut self) -> Instant {
        let mut child = self
            .child
            .take()
            .unwrap_or_else(|| panic!("node {} is not running", self.id));
        if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
            processes::signal(pid, libc::SIGKILL);
        }
        let _ = child.wait().await;
        Instant::now()
    }

    /// Sends SIGTERM; the process keeps running until it exits by itself
    /// ([`Node::wait_exit`]).
    pub fn terminate(&self) {
        let pid = self
            .pid()
            .unwrap_or_else(|| panic!("node {} is not running", self.id));
        processes::signal(pid, libc::SIGTERM);
    }

    /// Waits for the process to exit by itself; answers its status and when it was seen.
    ///
    /// # Panics
    /// When it is still running after `timeout` (it is SIGKILLed then).
    pub async fn wait_exit(&mut self, timeout: Duration) -> (ExitStatus, Instant) {
        let mut child = self
            .child
            .take()
            .unwrap_or_else(|| panic!("node {} is not running", self.id));
        match tokio::time::timeout(timeout, child.wait()).await {
            Ok(Ok(status)) => (status, Instant::now()),
            Ok(Err(error)) => panic!("waiting for node {}: {error}", self.id),
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                panic!(
                    "node {} did not exit within {timeout:?} (SIGKILLed now)\n{}",
                    self.id,
                    self.log_report(60)
                )
            }
        }
    }

    /// SIGKILLs the process if it runs and reaps it (blocking: for teardown).
    pub fn kill_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
                processes::signal(pid, libc::SIGKILL);
                processes::wait_gone(pid, Duration::from_secs(5));
            }
            let _ = child.try_wait();
        }
    }

    /// The last `lines` lines of the node's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let Ok(bytes) = fs::read(self.log_path()) else {
            return String::new();
        };
        let text = String::from_utf8_lossy(&bytes);
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The log tail with a header naming the node and the file, for failure messages.
    pub fn log_report(&self, lines: usize) -> String {
        format!(
            "----- node {}: last {lines} lines of {} -----\n{}\n----- end of node {} -----",
            self.id,
            self.log_path().display(),
            self.log_tail(lines),
            self.id
        )
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill_now();
    }
}
