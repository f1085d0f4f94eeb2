//! Where the `console-server` binary is: built once per test process with the `cargo` that runs
//! the tests, and found from cargo's own build report.
//!
//! `CARGO_BIN_EXE_console-server` only exists for the integration tests of the package that owns
//! the binary, and stable cargo cannot depend on another package's binary. So the first caller
//! runs `cargo build -p console-server --bin console-server --message-format=json-render-diagnostics`
//! in the workspace and takes the `executable` of the `compiler-artifact` message. That path is
//! right whatever `CARGO_TARGET_DIR`, `--target-dir` or profile is in use, and the build is a
//! no-op when the binary is fresh (as after `cargo test --workspace`, which builds it anyway).
//! The build uses `--release` when the tests themselves were built without debug assertions.
//!
//! `CONSOLE_SERVER_BIN=/path/to/console-server` skips the build and uses that file, e.g. to test
//! an installed binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The environment variable that names a prebuilt binary.
pub const BIN_VAR: &str = "CONSOLE_SERVER_BIN";

/// The path of the `console-server` binary; builds it on the first call of this process.
///
/// # Panics
/// With cargo's report when the build fails, or when `CONSOLE_SERVER_BIN` names no file.
pub fn console_server() -> &'static Path {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BINARY.get_or_init(locate) {
        Ok(path) => path,
        Err(error) => panic!("cannot get the console-server binary: {error}"),
    }
}

/// The workspace root: the parent of this crate's directory.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives inside the workspace")
}

fn locate() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(BIN_VAR) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("{BIN_VAR}={} is not a file", path.display()))
        };
    }
    build()
}

fn build() -> Result<PathBuf, String> {
    // `CARGO` is set by cargo for the processes it runs; fall back to the one on PATH.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(&cargo);
    command
        .current_dir(workspace_root())
        .args([
            "build",
            "--package",
            "console-server",
            "--bin",
            "console-server",
            "--message-format=json-render-diagnostics",
        ])
        .stdin(Stdio::null());
    if !cfg!(debug_assertions) {
        command.arg("--release");
    }
    let output = command
        .output()
        .map_err(|error| format!("cannot run {cargo:?} build: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "`cargo build -p console-server` failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| {
            message["reason"] == "compiler-artifact"
                && message["target"]["name"] == "console-server"
        })
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| {
            format!(
                "`cargo build -p console-server` reported no console-server executable; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
}
