//! Self-tests of the harness pieces that do not need a console cluster.

use std::time::Duration;

use cluster_tests::binary;

#[test]
fn the_binary_is_built_and_runs() {
    let path = binary::console_server();
    let output = std::process::Command::new(path)
        .arg("--version")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("console-server"));
    let _ = Duration::ZERO;
}
