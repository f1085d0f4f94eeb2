//! The configuration of a one-node console a test starts in its own process (`Console::start`):
//! `CONSOLE__…` variables for `ConsoleConfig::load_with_env`.

use std::path::Path;

/// The `cluster.secret` of [`standalone`] consoles; sign `/internal/*` calls with
/// `crate::signing::key_from_secret(CLUSTER_SECRET)`.
pub const CLUSTER_SECRET: &str = "test-cluster-secret";

/// A standalone node `node_id` whose data directory (`dir/data`) and SQLite task store
/// (`dir/console.db`) are under `dir`, monitoring every 200 ms, with [`CLUSTER_SECRET`] and,
/// when given, `server.auth_token`.
pub fn standalone(node_id: &str, dir: &Path, auth_token: Option<&str>) -> Vec<(String, String)> {
    let mut env = vec![
        ("CONSOLE__NODE__ID", node_id.to_owned()),
        (
            "CONSOLE__NODE__DATA_DIR",
            dir.join("data").display().to_string(),
        ),
        (
            "CONSOLE__DATABASE__URL",
            format!("sqlite://{}", dir.join("console.db").display()),
        ),
        ("CONSOLE__MONITOR__INTERVAL_MS", "200".to_owned()),
        ("CONSOLE__CLUSTER__SECRET", CLUSTER_SECRET.to_owned()),
    ];
    if let Some(token) = auth_token {
        env.push(("CONSOLE__SERVER__AUTH_TOKEN", token.to_owned()));
    }
    env.into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
}

/// Sends SIGKILL to every process (but this one) whose command line names `dir`: the apps a
/// console started in a test's directory run detached and outlive it.
pub fn kill_processes_naming(dir: &Path) {
    let needle = dir.display().to_string();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&needle)
            && u32::try_from(pid).ok() != Some(std::process::id())
        {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}
