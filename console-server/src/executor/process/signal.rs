//! Signalling one process exactly: through a pidfd, so that a pid reused between the scan that
//! found the process and the signal is never hit.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::super::ExecutorError;
use super::super::proc_stat;
use super::members::Member;

/// The signals `stop` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Signal {
    Term,
    Kill,
}

impl Signal {
    fn number(self) -> libc::c_int {
        match self {
            Self::Term => libc::SIGTERM,
            Self::Kill => libc::SIGKILL,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Term => "SIGTERM",
            Self::Kill => "SIGKILL",
        }
    }
}

/// Sends `signal` to the process `member` names if it still is that process; a process that is
/// gone is not an error.
///
/// # Notable behaviors
/// The pidfd pins the process: once it is open, the start time read from `/proc` is the pinned
/// process's, and a signal through it never reaches a later holder of the pid. Kernels without
/// pidfds (before 5.3) get a plain `kill` after the same check.
///
/// # Notable errors
/// [`ExecutorError::Signal`] when the kernel refuses (for instance another user's process).
pub(super) fn send(member: Member, signal: Signal) -> Result<(), ExecutorError> {
    let error = |error: io::Error| ExecutorError::Signal {
        pid: member.pid.unsigned_abs(),
        signal: signal.name(),
        reason: error.to_string(),
    };
    let pidfd = match pidfd_open(member.pid) {
        Ok(pidfd) => Some(pidfd),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => None,
        Err(e) => return Err(error(e)),
    };
    if !member.is_alive() {
        return Ok(());
    }
    let sent = match &pidfd {
        Some(pidfd) => pidfd_send_signal(pidfd, signal.number()),
        None => kill(member.pid, signal.number()),
    };
    match sent {
        Err(e) if e.raw_os_error() != Some(libc::ESRCH) => Err(error(e)),
        _ => Ok(()),
    }
}

/// Refuses to act on a recorded process that this executor cannot have started: an app's
/// recorded process leads its own session or carries the app's key, and is never the console
/// itself or the leader of the console's group.
pub(super) fn refuse_foreign(
    pid: i32,
    stat: &proc_stat::ProcStat,
    carries_key: bool,
) -> Result<(), ExecutorError> {
    let reason = if (stat.session != pid || stat.pgrp != pid) && !carries_key {
        format!(
            "process {pid} neither leads its own session nor carries the app's key, so this \
             executor did not start it"
        )
    } else if u32::try_from(pid).is_ok_and(|pid| pid == std::process::id()) {
        format!("process {pid} is the console itself")
    } else if own_process_group().is_some_and(|own| own == pid) {
        format!("process {pid} leads the console's own process group")
    } else {
        return Ok(());
    };
    Err(ExecutorError::InvalidHandle { reason })
}

fn own_process_group() -> Option<i32> {
    let me = i32::try_from(std::process::id()).ok()?;
    proc_stat::read(me).ok().flatten().map(|stat| stat.pgrp)
}

fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags and touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("pidfd out of range"))?;
    // SAFETY: the kernel just returned this new descriptor, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn pidfd_send_signal(pidfd: &OwnedFd, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: pidfd_send_signal(2) with a descriptor we own, no siginfo (null is allowed) and
    // no flags.
    let sent = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if sent == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn kill(pid: i32, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: kill(2) has no memory-safety preconditions; `pid > 1` (members come from /proc
    // and never include the console), so it names exactly one process.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
