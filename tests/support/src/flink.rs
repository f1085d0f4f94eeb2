//! Flink for tests: the shared session cluster (`CONSOLE_TEST_FLINK_URL`, default
//! `http://127.0.0.1:8081`, started by `deploy/flink.sh start`), the example job's jar, and a
//! private session cluster for tests that kill its JobManager ([`PrivateFlink`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::deploy_script::DeployScript;
use crate::ports::free_port;

/// The variable that names the shared cluster's REST endpoint.
pub const REST_URL_VAR: &str = "CONSOLE_TEST_FLINK_URL";

/// How to start the cluster, for failure messages.
pub const HOW_TO_START: &str = "start it with `deploy/flink.sh start` (or point CONSOLE_TEST_FLINK_URL at a running session cluster)";

/// The shared cluster's REST endpoint.
pub fn rest_url() -> String {
    std::env::var(REST_URL_VAR).unwrap_or_else(|_| "http://127.0.0.1:8081".to_owned())
}

/// The shared cluster's REST endpoint, once it answers `GET /overview`.
///
/// # Panics
/// When it does not answer, naming `deploy/flink.sh start` and `CONSOLE_TEST_FLINK_URL`.
pub async fn shared() -> String {
    let url = rest_url();
    if let Err(error) = reqwest::get(format!("{url}/overview"))
        .await
        .and_then(reqwest::Response::error_for_status)
    {
        panic!("Flink at {url} does not answer ({error}); {HOW_TO_START}");
    }
    url
}

/// The example job's jar (a keyed counter appending `key=k0 count=N seq=S` lines to its
/// `--output` file), built once per source version by `deploy/flink.sh example-jar`.
///
/// # Panics
/// With the script's output when it fails.
pub fn example_jar() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/flink.sh");
    let output = Command::new(&script)
        .arg("example-jar")
        .output()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", script.display()));
    assert!(
        output.status.success(),
        "deploy/flink.sh example-jar failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// The `(count, seq)` of each complete line the example job wrote to `output` (a line being
/// written has no newline yet and is left out).
///
/// # Panics
/// On a complete line without `count=` or `seq=`: the job writes no such line.
pub fn counter_lines(output: &Path) -> Vec<(u64, u64)> {
    let text = std::fs::read_to_string(output).unwrap_or_default();
    text.split_inclusive('\n')
        .filter_map(|line| line.strip_suffix('\n'))
        .map(|line| {
            let field = |name: &str| {
                line.split(' ')
                    .find_map(|part| part.strip_prefix(name))
                    .and_then(|value| value.parse().ok())
                    .unwrap_or_else(|| {
                        panic!("line {line:?} of {} has no {name}", output.display())
                    })
            };
            (field("count="), field("seq="))
        })
        .collect()
}

/// A Flink session cluster of one test on free ports, run by the project's `deploy/flink.sh`
/// (with `FLINK_REST_PORT`, `FLINK_RPC_PORT`, `FLINK_RUN_DIR` and `FLINK_TASK_SLOTS` of its own):
/// for tests that kill its JobManager, and for benchmarks that need more slots than the shared
/// cluster's 4. Dropping it runs `deploy/flink.sh clean` (stop, then delete its run directory).
///
/// # Notable behaviors
/// A cold start takes about 7 s on two idle cores (REST up, a TaskManager registered), more on
/// a busy machine.
#[derive(Debug)]
pub struct PrivateFlink {
    rest_port: u16,
    script: DeployScript,
}

impl PrivateFlink {
    /// Starts a cluster with `slots` task slots, its files in a temporary directory of its own,
    /// and waits until a TaskManager has registered its slots.
    ///
    /// # Panics
    /// With the script's output when it fails.
    pub async fn start(slots: u32) -> Self {
        let rest_port = free_port();
        let env = vec![
            ("FLINK_REST_PORT", rest_port.to_string()),
            ("FLINK_RPC_PORT", free_port().to_string()),
            ("FLINK_TASK_SLOTS", slots.to_string()),
        ];
        let script = DeployScript::new("flink.sh", env, "FLINK_RUN_DIR", None, "private-flink-");
        script.run("start").await;
        Self { rest_port, script }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn rest_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.rest_port)
    }

    /// The cluster's run directory (`FLINK_RUN_DIR`): config, logs, pid files.
    pub fn run_dir(&self) -> &Path {
        self.script.dir()
    }

    /// SIGKILL of the JobManager's JVM (the pid `deploy/flink.sh` recorded); returns once the
    /// process is gone. Without Flink HA its jobs are lost; the TaskManager lives on.
    ///
    /// # Panics
    /// When the pid file is missing or the process outlives SIGKILL by 10 s.
    pub async fn kill_jobmanager(&self) {
        let pid_file = self.run_dir().join("jobmanager.pid");
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or_else(|| panic!("no pid in {}", pid_file.display()));
        // Safety: kill(2) has no memory effects; the pid is the JobManager's, from the script.
        let killed = unsafe { libc::kill(pid, libc::SIGKILL) };
        assert_eq!(
            killed,
            0,
            "kill -9 {pid}: {}",
            std::io::Error::last_os_error()
        );
        crate::wait::eventually(
            &format!("the JobManager (pid {pid}) is gone"),
            Duration::from_secs(10),
            || async { !process_runs(pid) },
        )
        .await;
    }

    /// `deploy/flink.sh restart`: stops what runs (the TaskManager gracefully, which ends the
    /// tasks of lost jobs at once) and starts a fresh cluster on the same ports and directory.
    pub async fn restart(&self) {
        self.script.run("restart").await;
    }
}

/// Whether `pid` names a process that is not a zombie.
fn process_runs(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the command name's closing parenthesis.
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}
