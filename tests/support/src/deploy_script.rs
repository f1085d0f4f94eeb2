//! A private server run by one of the project's `deploy/<service>.sh` scripts, with a port and a
//! directory of its own: the common part of [`crate::zookeeper::PrivateZookeeper`],
//! [`crate::zookeeper::PrivateEnsemble`], [`crate::etcd::PrivateEtcd`] and
//! [`crate::flink::PrivateFlink`].

use std::path::{Path, PathBuf};
use std::process::Stdio;

/// `deploy/<name>` of this workspace plus the environment that makes its server private.
#[derive(Debug)]
pub(crate) struct DeployScript {
    script: PathBuf,
    /// The server's directory (the value of the script's directory variable).
    dir: PathBuf,
    env: Vec<(&'static str, String)>,
    /// The directory when the server made it itself; deleted with this value.
    _own_dir: Option<tempfile::TempDir>,
}

impl DeployScript {
    /// `deploy/<name>` with `env` (port and directory variables), its files under `dir` or, when
    /// `None`, under a temporary directory named `<prefix>…` that lives as long as this value.
    /// `env` gets `(dir_var, <the directory>)` appended.
    pub(crate) fn new(
        name: &str,
        mut env: Vec<(&'static str, String)>,
        dir_var: &'static str,
        dir: Option<&Path>,
        prefix: &str,
    ) -> Self {
        let own_dir = match dir {
            Some(_) => None,
            None => Some(
                tempfile::Builder::new()
                    .prefix(prefix)
                    .tempdir()
                    .unwrap_or_else(|error| {
                        panic!("cannot create a directory for {name}: {error}")
                    }),
            ),
        };
        let dir = dir
            .map(Path::to_owned)
            .or_else(|| own_dir.as_ref().map(|own| own.path().to_owned()))
            .unwrap_or_default();
        env.push((dir_var, dir.display().to_string()));
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .nth(2)
            .unwrap_or_else(|| panic!("test-support lives in <workspace>/tests/support"));
        Self {
            script: workspace.join("deploy").join(name),
            dir,
            env,
            _own_dir: own_dir,
        }
    }

    /// The server's directory: its files, pid files and logs.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn command(&self, action: &str, extra: &[(&str, String)]) -> std::process::Command {
        let mut command = std::process::Command::new(&self.script);
        command
            .arg(action)
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .envs(extra.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null());
        command
    }

    /// `VAR=value … deploy/<name>`, for messages.
    fn describe(&self, action: &str, extra: &[(&str, String)]) -> String {
        let mut words: Vec<String> = self
            .env
            .iter()
            .map(|(name, value)| (*name, value))
            .chain(extra.iter().map(|(name, value)| (*name, value)))
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        words.push(format!("{} {action}", self.script.display()));
        words.join(" ")
    }

    /// Runs `deploy/<name> <action>` (the scripts wait until the server serves or has stopped).
    ///
    /// # Panics
    /// With the script's output when it fails.
    pub(crate) async fn run(&self, action: &str) {
        self.run_with(action, &[]).await;
    }

    /// [`DeployScript::run`] with `extra` added to the environment of this one run (e.g. the
    /// member of an ensemble to act on).
    ///
    /// # Panics
    /// With the script's output when it fails.
    pub(crate) async fn run_with(&self, action: &str, extra: &[(&str, String)]) {
        let output = tokio::process::Command::from(self.command(action, extra))
            .output()
            .await
            .unwrap_or_else(|error| panic!("cannot run {}: {error}", self.describe(action, extra)));
        assert!(
            output.status.success(),
            "{} failed:\n{}{}",
            self.describe(action, extra),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for DeployScript {
    /// `deploy/<name> clean`: stops the server and deletes its files. Best effort: reports on
    /// stderr, never panics.
    fn drop(&mut self) {
        let cleaned = self.command("clean", &[]).stdout(Stdio::null()).status();
        if !matches!(cleaned, Ok(status) if status.success()) {
            eprintln!("{} failed: {cleaned:?}", self.describe("clean", &[]));
        }
    }
}
