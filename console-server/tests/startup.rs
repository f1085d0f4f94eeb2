//! Start-up of the real binary: what it refuses, with one line on stderr naming the cause.
//! The tests are `standalone_…`: the binary runs with the embedded default (standalone
//! registry, SQLite) in a temporary directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a refused start-up may take; a binary still running then has not refused.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(30);

/// Runs `console-server` in `dir` with `env` (and no other `CONSOLE…` variable) until it exits;
/// one still running after [`REFUSAL_DEADLINE`] is killed and the test fails.
fn run(dir: &std::path::Path, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_console-server"));
    command
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CONSOLE") {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied());
    let mut child = command.spawn().unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > REFUSAL_DEADLINE {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!(
                "console-server still ran after {REFUSAL_DEADLINE:?} with {env:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(test_support::wait::POLL_INTERVAL);
    }
    child.wait_with_output().unwrap()
}

/// Whether `GET /healthz` on `addr` answers 200.
fn answers_healthz(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut answer = String::new();
    stream
        .write_all(b"GET /healthz HTTP/1.0\r\nHost: test\r\n\r\n")
        .is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.0 200")
}

/// Stderr's lines, for asserting on the one line an operator sees.
fn stderr_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Issue 12, finding 6: the container image bound 0.0.0.0 with auth off, so anyone who
/// reached the port could run commands. Now the node refuses before it listens.
#[test]
fn standalone_listening_beyond_loopback_without_a_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for host in ["0.0.0.0", "::"] {
        let output = run(dir.path(), &[("CONSOLE__SERVER__HOST", host)]);
        assert_eq!(output.status.code(), Some(2), "{host}: {output:?}");
        let lines = stderr_lines(&output);
        assert_eq!(lines.len(), 1, "{host}: one line: {lines:?}");
        assert!(
            lines[0].contains("server.auth_token") && lines[0].contains("configuration error"),
            "{host}: {lines:?}"
        );
    }
    assert!(
        !dir.path().join("data").exists(),
        "nothing was created before the refusal"
    );
}

/// Issue 12, finding 15: two consoles on one data directory (one SQLite store) each took the
/// other's apps and fenced each other in a loop. The second now exits at once, saying which
/// lock is held and by which pid.
#[test]
fn standalone_a_second_console_on_one_data_directory_exits_naming_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let first_port = test_support::ports::free_port().to_string();
    let mut first = Command::new(env!("CARGO_BIN_EXE_console-server"))
        .current_dir(dir.path())
        .env("CONSOLE__SERVER__PORT", &first_port)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let healthz = format!("127.0.0.1:{first_port}");
    let started = Instant::now();
    // The port is bound before the node starts; /healthz answers once it holds its locks.
    while !answers_healthz(&healthz) {
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first console exited"
        );
        assert!(
            started.elapsed() < REFUSAL_DEADLINE,
            "the first console does not listen"
        );
        std::thread::sleep(test_support::wait::POLL_INTERVAL);
    }

    let second_port = test_support::ports::free_port().to_string();
    let second = run(dir.path(), &[("CONSOLE__SERVER__PORT", &second_port)]);
    let _ = first.kill();
    let _ = first.wait();
    assert_eq!(second.status.code(), Some(1), "{second:?}");
    let lines = stderr_lines(&second);
    assert_eq!(lines.len(), 1, "one line: {lines:?}");
    assert!(
        lines[0].contains("data/console.lock")
            && lines[0].contains(&format!("pid {}", first.id()))
            && lines[0].contains("in use by another console-server"),
        "{lines:?}"
    );
}
