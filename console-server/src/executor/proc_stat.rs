//! Reading Linux's `/proc`: a process's identity (pid + start time), state, process group and
//! session, its environment, every process of the host in one scan, and the host's identity
//! (machine id + host name + boot id).
//!
//! A pid alone does not name a process: pids are reused. A pid plus its start time (clock ticks
//! since boot, field 22 of `/proc/<pid>/stat`) plus the boot id does.

use std::io;
use std::path::{Path, PathBuf};

use super::ExecutorError;

const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";
const HOST_NAME_PATH: &str = "/proc/sys/kernel/hostname";
/// Where systemd (and `dbus-uuidgen`) keep the machine id; the second is the older location.
const MACHINE_ID_PATHS: [&str; 2] = ["/etc/machine-id", "/var/lib/dbus/machine-id"];

/// The fields of `/proc/<pid>/stat` that the executor uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// The state letter: `R`, `S`, `D`, `T`, `Z` (zombie), `X` (dead), ...
    pub state: char,
    /// Process group id.
    pub pgrp: i32,
    /// Session id.
    pub session: i32,
    /// Start time in clock ticks since boot (field 22).
    pub start_time_ticks: u64,
}

impl ProcStat {
    /// Whether the process has exited (a zombie waiting for its parent, or dead).
    pub fn has_exited(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// The path of a process's stat file.
pub fn stat_path(pid: i32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/stat"))
}

/// Reads `/proc/<pid>/stat`; `Ok(None)` when there is no such process.
///
/// # Notable errors
/// [`ExecutorError::Proc`] when the file exists but cannot be read or parsed.
pub fn read(pid: i32) -> Result<Option<ProcStat>, ExecutorError> {
    let path = stat_path(pid);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text).map(Some).ok_or_else(|| ExecutorError::Proc {
            path,
            reason: format!("unexpected format: {text:?}"),
        }),
        // ESRCH: the process went away between open and read.
        Err(error)
            if error.kind() == io::ErrorKind::NotFound
                || error.raw_os_error() == Some(libc::ESRCH) =>
        {
            Ok(None)
        }
        Err(error) => Err(proc_error(&path, &error)),
    }
}

/// Parses the text of `/proc/<pid>/stat`.
///
/// The command name (field 2) is in parentheses and may itself contain spaces and parentheses,
/// so the fields are counted from the *last* `)`.
pub fn parse(text: &str) -> Option<ProcStat> {
    let (_, after_comm) = text.rsplit_once(')')?;
    let fields: Vec<&str> = after_comm.split_ascii_whitespace().collect();
    // fields[0] is field 3 (state), so field N is fields[N - 3].
    let state = fields.first()?.chars().next()?;
    let pgrp = fields.get(5 - 3)?.parse().ok()?;
    let session = fields.get(6 - 3)?.parse().ok()?;
    let start_time_ticks = fields.get(22 - 3)?.parse().ok()?;
    Some(ProcStat {
        state,
        pgrp,
        session,
        start_time_ticks,
    })
}

/// A process found by [`scan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Process {
    pub pid: i32,
    pub stat: ProcStat,
}

/// Every process in `/proc` whose stat could be read, zombies included: one pass over the
/// directory. Processes that vanish during the scan are skipped.
///
/// # Notable errors
/// [`ExecutorError::Proc`] when `/proc` cannot be listed.
pub fn scan() -> Result<Vec<Process>, ExecutorError> {
    let proc_dir = Path::new("/proc");
    let entries = std::fs::read_dir(proc_dir).map_err(|error| proc_error(proc_dir, &error))?;
    Ok(entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        // A process we may not read, or that vanished, is not evidence either way; skip it.
        .filter_map(|pid| {
            Some(Process {
                pid,
                stat: read(pid).ok()??,
            })
        })
        .collect())
}

/// Whether the environment process `pid` was started with (`/proc/<pid>/environ`) holds
/// `entry` (`NAME=value`, byte for byte). `false` when it cannot be read: the process is gone,
/// or belongs to another user (only root and the same user may read it).
pub fn environ_contains(pid: i32, entry: &[u8]) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|environ| environ.split(|byte| *byte == 0).any(|item| item == entry))
}

/// Which machine, and which boot of it, this console runs on.
///
/// A machine is its machine id **and** its host name: two VMs cloned from one image share a
/// host name (and sometimes, wrongly, a machine id), and containers on one kernel share the boot
/// id but neither of the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostIdentity {
    /// `/etc/machine-id` (or `/var/lib/dbus/machine-id`): drawn once per installation. Empty
    /// when neither file exists (a minimal container); the host name alone names the machine then.
    pub machine_id: String,
    /// The kernel's host name.
    pub host_name: String,
    /// A random id the kernel draws at every boot.
    pub boot_id: String,
}

impl HostIdentity {
    /// Reads the machine id, the host name and the boot id.
    ///
    /// # Notable errors
    /// [`ExecutorError::Proc`] when the host name or the boot id cannot be read, or a machine id
    /// file exists but cannot be read.
    pub fn current() -> Result<Self, ExecutorError> {
        let mut machine_id = String::new();
        for path in MACHINE_ID_PATHS {
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    machine_id = text.trim().to_owned();
                    break;
                }
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(proc_error(Path::new(path), &error)),
            }
        }
        Ok(Self {
            machine_id,
            host_name: read_trimmed(HOST_NAME_PATH)?,
            boot_id: read_trimmed(BOOT_ID_PATH)?,
        })
    }
}

fn read_trimmed(path: &str) -> Result<String, ExecutorError> {
    std::fs::read_to_string(path)
        .map(|text| text.trim().to_owned())
        .map_err(|error| proc_error(Path::new(path), &error))
}

fn proc_error(path: &Path, error: &io::Error) -> ExecutorError {
    ExecutorError::Proc {
        path: path.to_owned(),
        reason: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_stat_parses_command_names_with_spaces_and_parentheses() {
        let text = "4242 (my (odd) name) S 1 4240 4239 0 -1 4194304 100 0 0 0 1 2 0 0 20 0 1 0 \
                    987654 1234567 89 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        assert_eq!(
            parse(text),
            Some(ProcStat {
                state: 'S',
                pgrp: 4240,
                session: 4239,
                start_time_ticks: 987654,
            })
        );
    }

    #[test]
    fn process_stat_rejects_truncated_text() {
        assert_eq!(parse("4242 (sh) S 1 4240"), None);
        assert_eq!(parse("no parentheses at all"), None);
    }

    #[test]
    fn process_stat_of_this_process_is_readable_and_alive() {
        let me = i32::try_from(std::process::id()).unwrap();
        let stat = read(me).unwrap().unwrap();
        assert!(!stat.has_exited());
        assert!(stat.start_time_ticks > 0);
        let found = scan().unwrap();
        // The state letter may change between the two reads (running, then sleeping): the
        // process is the same one if its pid and start time are.
        assert!(
            found
                .iter()
                .any(|p| p.pid == me && p.stat.start_time_ticks == stat.start_time_ticks),
            "{found:?}"
        );
    }

    #[test]
    fn process_stat_of_a_missing_pid_is_none() {
        // Above the kernel's maximum pid (2^22), so it can never exist.
        assert_eq!(read(i32::MAX).unwrap(), None);
        assert!(!environ_contains(i32::MAX, b"PATH"));
    }

    #[test]
    fn process_host_identity_is_read() {
        let host = HostIdentity::current().unwrap();
        assert!(!host.host_name.is_empty());
        assert_eq!(host.boot_id.len(), 36, "boot id {:?}", host.boot_id);
        if Path::new(MACHINE_ID_PATHS[0]).exists() {
            assert_eq!(
                host.machine_id.len(),
                32,
                "machine id {:?}",
                host.machine_id
            );
        }
    }

    #[test]
    fn process_environ_of_this_process_is_read_entry_by_entry() {
        let me = i32::try_from(std::process::id()).unwrap();
        let path = std::env::var("PATH").unwrap();
        assert!(environ_contains(me, format!("PATH={path}").as_bytes()));
        assert!(!environ_contains(me, format!("PATH={path}x").as_bytes()));
        assert!(!environ_contains(me, b"PATH"), "a prefix is not an entry");
    }
}
