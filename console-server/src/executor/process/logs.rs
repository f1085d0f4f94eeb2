//! Reading the log of a `process` app: where it is, and its last lines.
//!
//! A `process` app writes stdout and stderr to `<log_dir>/<app_id>.log` of the node that
//! started it (`node.data_dir/apps/`). Its handle records that path and the host, so any node
//! on the same host can read the log of a running app, whoever started it; a stopped app's
//! handle is gone, and only the node that started it finds the file, in its own log dir.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::{ProcessExecutor, ProcessHandle};

/// The most bytes a tail reads from the end of a log, whatever the number of lines asked.
pub const TAIL_MAX_BYTES: u64 = 1024 * 1024;

/// Where the log of one app is, seen from this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogPlace {
    /// This node can read it at this path.
    Here(PathBuf),
    /// The app runs on another host (its handle says which); only a node there can read it.
    OtherHost { host: String },
    /// Not on this node: the app is not running and its log is not in this node's log dir.
    NotHere,
}

/// Finds and reads `process` apps' logs for this node. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppLogs {
    log_dir: PathBuf,
    host_name: String,
}

impl ProcessExecutor {
    /// The log finder of this executor's host and log dir.
    pub fn app_logs(&self) -> AppLogs {
        AppLogs {
            log_dir: self.log_dir.clone(),
            host_name: self.host.host_name.clone(),
        }
    }
}

impl AppLogs {
    /// Where the log of app `app_id` is, given the handle recorded in its row (if any). A
    /// handle that is not a process handle counts as none.
    pub fn locate(&self, app_id: i64, handle: Option<&serde_json::Value>) -> LogPlace {
        let recorded = handle
            .filter(|value| value.get("executor").and_then(|e| e.as_str()) == Some("process"))
            .and_then(|value| serde_json::from_value::<ProcessHandle>(value.clone()).ok());
        if let Some(handle) = recorded {
            if handle.host != self.host_name {
                return LogPlace::OtherHost { host: handle.host };
            }
            if handle.log_path.is_file() {
                return LogPlace::Here(handle.log_path);
            }
        }
        let own = self.log_dir.join(format!("{app_id}.log"));
        if own.is_file() {
            LogPlace::Here(own)
        } else {
            LogPlace::NotHere
        }
    }
}

/// The last `lines` lines of the file (at most [`TAIL_MAX_BYTES`] from its end), and whether
/// the file holds more than what is returned. Invalid UTF-8 is replaced, not refused (apps
/// print what they like). Blocking: call it from `spawn_blocking`.
///
/// # Notable errors
/// The file cannot be opened or read.
pub fn read_tail(path: &Path, lines: usize) -> io::Result<(Vec<String>, bool)> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    let start = size.saturating_sub(TAIL_MAX_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.take(TAIL_MAX_BYTES).read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let mut all: Vec<&str> = text.lines().collect();
    // A window that starts inside the file may start inside a line: drop that part.
    if start > 0 && !all.is_empty() {
        all.remove(0);
    }
    let more = start > 0 || all.len() > lines;
    let tail = all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|line| (*line).to_owned())
        .collect();
    Ok((tail, more))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::io::Write;

    use super::*;

    #[test]
    fn the_tail_is_the_last_lines_and_says_when_there_is_more() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.log");
        let mut file = File::create(&path).unwrap();
        for n in 1..=5 {
            writeln!(file, "line {n}").unwrap();
        }
        file.write_all(b"bad \xff byte").unwrap();
        assert_eq!(
            read_tail(&path, 2).unwrap(),
            (
                vec!["line 5".to_owned(), "bad \u{fffd} byte".to_owned()],
                true
            )
        );
        let (all, more) = read_tail(&path, 100).unwrap();
        assert_eq!((all.len(), more), (6, false));
        assert!(read_tail(&dir.path().join("none.log"), 1).is_err());
    }

    #[test]
    fn a_huge_log_is_read_from_its_last_megabyte_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("2.log");
        let mut file = File::create(&path).unwrap();
        let line = "x".repeat(999);
        for _ in 0..2000 {
            writeln!(file, "{line}").unwrap();
        }
        writeln!(file, "last").unwrap();
        let (tail, more) = read_tail(&path, 5000).unwrap();
        assert!(more);
        assert_eq!(tail.last().map(String::as_str), Some("last"));
        assert!(tail.len() < 1100, "read {} lines", tail.len());
        assert!(
            tail.iter().all(|l| l == "last" || l.len() == 999),
            "no partial line"
        );
    }

    #[test]
    fn the_log_is_found_from_the_handle_or_the_own_log_dir() {
        let dir = tempfile::tempdir().unwrap();
        let logs = AppLogs {
            log_dir: dir.path().to_owned(),
            host_name: "here".to_owned(),
        };
        let handle = |host: &str, path: &Path| {
            serde_json::json!({"executor": "process", "pid": 5, "start_time_ticks": 1,
                "boot_id": "b", "host": host, "log_path": path})
        };
        let elsewhere = dir.path().join("elsewhere.log");
        File::create(&elsewhere).unwrap();
        assert_eq!(
            logs.locate(7, Some(&handle("here", &elsewhere))),
            LogPlace::Here(elsewhere.clone())
        );
        assert_eq!(
            logs.locate(7, Some(&handle("there", &elsewhere))),
            LogPlace::OtherHost {
                host: "there".to_owned()
            }
        );
        assert_eq!(logs.locate(7, None), LogPlace::NotHere);
        File::create(dir.path().join("7.log")).unwrap();
        assert_eq!(
            logs.locate(7, None),
            LogPlace::Here(dir.path().join("7.log"))
        );
    }
}
