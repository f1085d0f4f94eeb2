//! The crash case's second process: the test binary re-run as a registry client that takes
//! ephemeral keys and a lock, says so, and waits to be killed with SIGKILL.

use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

use super::{Context, Environment, Failure};
use crate::event::Mode;
use crate::registry::Registry;

const ENV_VAR: &str = "REGISTRY_TESTKIT_CHILD_ENV";
const PLAN_VAR: &str = "REGISTRY_TESTKIT_CHILD_PLAN";
const READY: &str = "REGISTRY_TESTKIT_READY";

/// What the child process does before it waits to be killed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChildPlan {
    /// Ephemeral keys to put, with their values.
    pub ephemerals: Vec<(String, String)>,
    /// A lock to take and hold.
    pub lock: String,
}

/// A child process holding ephemerals and a lock, killed with SIGKILL when dropped at the latest.
#[derive(Debug)]
pub struct CrashedClient {
    child: Child,
    /// The fencing token of the lock the child holds.
    pub fencing_token: u64,
}

impl CrashedClient {
    /// Kills the child with SIGKILL and reaps it.
    pub async fn kill(mut self) -> Result<(), Failure> {
        self.child
            .kill()
            .await
            .map_err(|error| Failure(format!("SIGKILL of the child client failed: {error}")))
    }
}

/// The libtest name of the helper test generated in module `module_path`.
fn child_test_name(module_path: &str) -> String {
    match module_path.split_once("::") {
        Some((_crate, module)) => format!("{module}::registry_testkit_crash_child"),
        None => "registry_testkit_crash_child".to_owned(),
    }
}

/// The fencing token on the child's ready line, if `line` is one. libtest prints
/// `test <name> ... ` before the test's own output on the same line, so the marker is searched
/// for anywhere in the line, not only at its start.
fn ready_token(line: &str) -> Option<Option<u64>> {
    let at = line.find(READY)?;
    Some(line[at + READY.len()..].trim().parse::<u64>().ok())
}

/// Starts the test binary again as a client of `env` that carries out `plan`, and waits until it
/// reports that it holds everything.
pub async fn spawn_crash_child<E: Environment>(
    env: &E,
    module_path: &str,
    plan: &ChildPlan,
) -> Result<CrashedClient, Failure> {
    let exe = std::env::current_exe()
        .map_err(|error| Failure(format!("cannot find the test binary: {error}")))?;
    let plan_json = serde_json::to_string(plan)
        .map_err(|error| Failure(format!("cannot encode the child plan: {error}")))?;
    let name = child_test_name(module_path);
    let mut child = Command::new(exe)
        .args([
            name.as_str(),
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV_VAR, env.describe())
        .env(PLAN_VAR, plan_json)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| Failure(format!("cannot start the child client: {error}")))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| Failure("the child's stdout is not piped".to_owned()))?;
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(token) = ready_token(&line) {
                return token;
            }
            seen.push(line);
        }
        None
    })
    .await;
    match ready {
        Ok(Some(fencing_token)) => Ok(CrashedClient {
            child,
            fencing_token,
        }),
        outcome => {
            let _ = child.start_kill();
            let mut stderr = String::new();
            if let Some(mut err) = child.stderr.take() {
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), err.read_to_string(&mut stderr))
                        .await;
            }
            let why = if outcome.is_err() {
                "did not report ready within 60s"
            } else {
                "exited before reporting ready"
            };
            Err(Failure(format!(
                "the child client (test `{name}`) {why}; stdout: {seen:?}; stderr: {stderr}"
            )))
        }
    }
}

/// The body of the generated helper test: in a child started by [`spawn_crash_child`], connect,
/// carry out the plan, report ready and wait to be killed (or for the parent to go away).
pub fn crash_child_main<E: Environment>() {
    let (Ok(description), Ok(plan)) = (std::env::var(ENV_VAR), std::env::var(PLAN_VAR)) else {
        println!("registry_testkit_crash_child: run by the conformance kit only; nothing to do");
        return;
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => panic!("child: cannot build a runtime: {error}"),
    };
    if let Err(failure) = runtime.block_on(child_body::<E>(&description, &plan)) {
        panic!("child: {failure}");
    }
}

async fn child_body<E: Environment>(description: &str, plan: &str) -> Result<(), Failure> {
    let plan: ChildPlan = serde_json::from_str(plan)
        .map_err(|error| Failure(format!("bad plan {plan:?}: {error}")))?;
    let env = E::attach(description)
        .await
        .context("attaching to the environment")?;
    let client = super::connected(&env).await?;
    for (path, value) in &plan.ephemerals {
        client
            .put(path, value.as_bytes(), Mode::Ephemeral)
            .await
            .context(format_args!("child: put {path}"))?;
    }
    let guard = client
        .lock(&plan.lock, Some(Duration::from_secs(30)))
        .await
        .context(format_args!("child: lock {}", plan.lock))?;
    println!("{READY} {}", guard.fencing_token());
    // Hold everything until killed; if the parent dies, its end of stdin closes and we leave.
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
    drop(guard);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line_is_found_after_libtest_prefix() {
        assert_eq!(ready_token("REGISTRY_TESTKIT_READY 7"), Some(Some(7)));
        assert_eq!(
            ready_token("test registry_testkit_crash_child ... REGISTRY_TESTKIT_READY 12"),
            Some(Some(12))
        );
        assert_eq!(ready_token("running 1 test"), None);
    }

    #[test]
    fn child_test_name_drops_the_crate_name() {
        assert_eq!(
            child_test_name("conformance"),
            "registry_testkit_crash_child"
        );
        assert_eq!(
            child_test_name("conformance::zk"),
            "zk::registry_testkit_crash_child"
        );
    }
}
