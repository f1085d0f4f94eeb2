//! Exclusive use of a node's local files: one console per data directory (and per SQLite file).
//!
//! Two consoles on one `node.data_dir`, or one SQLite store, would each believe they own the
//! same apps and fence each other in a loop. The first to start holds an exclusive `flock(2)` on
//! a lock file there for as long as it runs; a second one exits at start-up naming the lock and
//! the pid written in it.
//!
//! # Notable behaviors
//! - The kernel drops the lock when the holder exits, however it exits (SIGKILL included): a
//!   stale lock file never blocks a restart.
//! - The file is opened close-on-exec, so the apps the node starts do not inherit the lock and
//!   cannot keep it after the console is gone.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The lock file in `node.data_dir`.
pub const DATA_DIR_LOCK: &str = "console.lock";

/// Why a lock could not be taken. `Display` is the operator's line.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{what} is in use by another console-server ({holder}): {} is locked", path.display())]
    Held {
        what: String,
        path: PathBuf,
        /// "pid N" when the holder wrote it, else "pid unknown".
        holder: String,
    },
    #[error("cannot lock {what} ({}): {source}", path.display())]
    Io {
        what: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Locks held by this process until it is dropped.
#[derive(Debug, Default)]
pub struct DataLocks {
    files: Vec<File>,
}

impl DataLocks {
    /// Takes the exclusive lock on `path` (created if missing, with its directory) for `what`
    /// (`"node.data_dir data"`), and writes this process's pid into it.
    ///
    /// # Notable errors
    /// [`LockError::Held`] when another process holds it, naming its pid when written.
    pub fn acquire(&mut self, what: &str, path: &Path) -> Result<(), LockError> {
        let io = |source| LockError::Io {
            what: what.to_owned(),
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        // Rust opens files with O_CLOEXEC: the node's apps do not inherit the lock.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        // SAFETY: flock on a descriptor this function owns; no memory is shared.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() != std::io::ErrorKind::WouldBlock {
                return Err(io(error));
            }
            let mut text = String::new();
            let holder = match file.read_to_string(&mut text) {
                Ok(_) if text.trim().parse::<u32>().is_ok() => format!("pid {}", text.trim()),
                _ => "pid unknown".to_owned(),
            };
            return Err(LockError::Held {
                what: what.to_owned(),
                path: path.to_owned(),
                holder,
            });
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        self.files.push(file);
        Ok(())
    }
}

/// The SQLite file of a `sqlite:` URL, if the store is a file (not `:memory:`).
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let file = rest.split('?').next().unwrap_or_default();
    if file.is_empty() || file.contains(":memory:") || url.contains("mode=memory") {
        return None;
    }
    Some(PathBuf::from(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_told_who_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join(DATA_DIR_LOCK);
        let mut first = DataLocks::default();
        first.acquire("node.data_dir sub", &path).unwrap();
        // flock locks belong to the open file: a second open, even in this process, conflicts.
        let error = DataLocks::default()
            .acquire("node.data_dir sub", &path)
            .unwrap_err();
        let line = error.to_string();
        assert!(
            line.contains(&format!("pid {}", std::process::id()))
                && line.contains(&path.display().to_string()),
            "{line}"
        );
        drop(first);
        DataLocks::default()
            .acquire("node.data_dir sub", &path)
            .unwrap();
    }

    #[test]
    fn the_sqlite_file_of_a_url() {
        assert_eq!(
            sqlite_file("sqlite://data/console.db"),
            Some(PathBuf::from("data/console.db"))
        );
        assert_eq!(
            sqlite_file("sqlite:/var/x.db?mode=rwc"),
            Some(PathBuf::from("/var/x.db"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("mysql://h/db"), None);
    }
}
