//! Flink for tests: the shared session cluster (`CONSOLE_TEST_FLINK_URL`, default
//! `http://127.0.0.1:8081`, started by `deploy/flink.sh start`) and the example job's jar.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The variable that names the shared cluster's REST endpoint.
pub const REST_URL_VAR: &str = "CONSOLE_TEST_FLINK_URL";

/// How to start the cluster, for failure messages.
pub const HOW_TO_START: &str = "start it with `deploy/flink.sh start` (or point CONSOLE_TEST_FLINK_URL at a running session cluster)";

/// The shared cluster's REST endpoint.
pub fn rest_url() -> String {
    std::env::var(REST_URL_VAR).unwrap_or_else(|_| "http://127.0.0.1:8081".to_owned())
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
