//! Which processes make up an app: the one definition that `probe` and `stop` share.
//!
//! A process belongs to the app instance that a [`ProcessHandle`] names when it has not exited,
//! is neither the console nor in the console's own session or process group, and
//! - it is the recorded process itself (same pid and start time); or
//! - it is in the recorded process's session or process group (the app was started with
//!   `setsid`, so its first pid names both) and started no earlier than the recorded process,
//!   unless another process now holds the recorded pid: the kernel hands out a pid again only
//!   once no process, group or session uses it, so then that session is someone else's; or
//! - its environment carries the app's key, `CONSOLE_APP_KEY=<cluster id>/<app id>` ([`APP_KEY_VAR`]).
//!   Every process the app starts inherits it, also one that left the session: a daemon that
//!   forks twice and calls `setsid`, as Flink's `bin/*.sh` scripts do.
//!
//! So an app is alive while any of its processes is, also after its first process exited
//! (`sh -c 'server & exit 0'`), and `stop` signals every one of them.
//!
//! # Notable behaviors
//! - The key is what finds a copy nobody recorded (the host-level guard before a start,
//!   `start_lock.rs`): any console of the cluster on this host computes the same key for an app.
//! - Once no process of a session is left, the kernel may hand its number out again; a later,
//!   unrelated session of that number whose leader has exited would then pass the session rule
//!   for a handle that still names the old one. That takes a pid wrap-around and that exact
//!   pattern, and `start` records a live process whenever it adopts, so the recorded pid is
//!   rarely one whose session has died.
//! - Not found: a process that cleared its environment (`env -i`) **and** left the session, and
//!   processes of another user (their environment cannot be read: nodes and apps run as the same
//!   user, or the node as root).
//! - A full scan reads every process's `stat`, and the `environ` of those that are not members by
//!   session. [`MemberCache`] keeps `probe` from scanning while a known member lives.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use super::super::ExecutorError;
use super::super::proc_stat::{self, Process};
use super::ProcessHandle;

/// The environment variable that carries an app's key in every process of the app.
pub const APP_KEY_VAR: &str = "CONSOLE_APP_KEY";

/// How many handles [`MemberCache`] remembers members for before it starts over.
const CACHED_HANDLES: usize = 4096;

/// One process, named exactly: pid and start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Member {
    pub pid: i32,
    pub start_time_ticks: u64,
}

impl Member {
    fn of(process: &Process) -> Self {
        Self {
            pid: process.pid,
            start_time_ticks: process.stat.start_time_ticks,
        }
    }

    /// Whether this very process still runs (not exited, pid not reused).
    pub(super) fn is_alive(self) -> bool {
        matches!(proc_stat::read(self.pid), Ok(Some(stat))
            if stat.start_time_ticks == self.start_time_ticks && !stat.has_exited())
    }
}

/// The membership rules for one handle (see the [module documentation](self)).
#[derive(Debug)]
pub(super) struct Membership {
    pid: i32,
    start_time_ticks: u64,
    /// Another process holds the recorded pid: its session and group are not the app's.
    pid_reused: bool,
    /// `CONSOLE_APP_KEY=<key>` for each key the app's processes may carry.
    key_entries: Vec<Vec<u8>>,
    console: Console,
}

impl Membership {
    /// The rules for the app instance of `handle` (its pid checked), whose processes carry one
    /// of `keys`.
    ///
    /// # Notable errors
    /// [`ExecutorError::Proc`] when `/proc` cannot tell.
    pub(super) fn new(
        pid: i32,
        handle: &ProcessHandle,
        keys: &[&str],
    ) -> Result<Self, ExecutorError> {
        let pid_reused = proc_stat::read(pid)?
            .is_some_and(|stat| stat.start_time_ticks != handle.start_time_ticks);
        Ok(Self {
            pid,
            start_time_ticks: handle.start_time_ticks,
            pid_reused,
            key_entries: keys.iter().map(|key| key_entry(key)).collect(),
            console: Console::current()?,
        })
    }

    /// Every process of the app now, in one scan of `/proc`.
    ///
    /// # Notable errors
    /// [`ExecutorError::Proc`] when `/proc` cannot be listed.
    pub(super) fn scan(&self) -> Result<Vec<Member>, ExecutorError> {
        Ok(proc_stat::scan()?
            .iter()
            .filter(|process| self.contains(process))
            .map(Member::of)
            .collect())
    }

    fn contains(&self, process: &Process) -> bool {
        let stat = &process.stat;
        if process.pid <= 1 || stat.has_exited() || self.console.includes(process) {
            return false;
        }
        let recorded = process.pid == self.pid && stat.start_time_ticks == self.start_time_ticks;
        let in_session = !self.pid_reused
            && (stat.session == self.pid || stat.pgrp == self.pid)
            && stat.start_time_ticks >= self.start_time_ticks;
        recorded
            || in_session
            || self
                .key_entries
                .iter()
                .any(|entry| proc_stat::environ_contains(process.pid, entry))
    }
}

/// The live processes that carry `key`, the oldest first, outside the console's own session
/// and group.
///
/// # Notable errors
/// [`ExecutorError::Proc`] when `/proc` cannot be listed.
pub(super) fn carrying_key(key: &str) -> Result<Vec<Process>, ExecutorError> {
    let console = Console::current()?;
    let entry = key_entry(key);
    let mut found: Vec<Process> = proc_stat::scan()?
        .into_iter()
        .filter(|process| {
            process.pid > 1
                && !process.stat.has_exited()
                && !console.includes(process)
                && proc_stat::environ_contains(process.pid, &entry)
        })
        .collect();
    found.sort_by_key(|process| (process.stat.start_time_ticks, process.pid));
    Ok(found)
}

fn key_entry(key: &str) -> Vec<u8> {
    format!("{APP_KEY_VAR}={key}").into_bytes()
}

/// The console's own process, session and group: never an app's, whatever a handle says.
#[derive(Debug, Clone, Copy)]
struct Console {
    pid: i32,
    session: i32,
    pgrp: i32,
}

impl Console {
    fn current() -> Result<Self, ExecutorError> {
        let pid = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
        let stat = proc_stat::read(pid)?.ok_or_else(|| ExecutorError::Proc {
            path: proc_stat::stat_path(pid),
            reason: "the console's own process is missing from /proc".to_owned(),
        })?;
        Ok(Self {
            pid,
            session: stat.session,
            pgrp: stat.pgrp,
        })
    }

    fn includes(&self, process: &Process) -> bool {
        process.pid == self.pid
            || process.stat.session == self.session
            || process.stat.pgrp == self.pgrp
    }
}

/// The members last found for each handle whose recorded process has exited, so that `probe`
/// answers from one `stat` read while one of them lives instead of scanning `/proc`.
#[derive(Debug, Default)]
pub(super) struct MemberCache {
    by_handle: Mutex<HashMap<(u32, u64), Vec<Member>>>,
}

impl MemberCache {
    /// Whether a member remembered for `handle` still runs.
    pub(super) fn any_alive(&self, handle: &ProcessHandle) -> bool {
        let remembered = self
            .lock()
            .get(&(handle.pid, handle.start_time_ticks))
            .cloned()
            .unwrap_or_default();
        remembered.into_iter().any(Member::is_alive)
    }

    pub(super) fn remember(&self, handle: &ProcessHandle, members: Vec<Member>) {
        let mut by_handle = self.lock();
        if by_handle.len() >= CACHED_HANDLES {
            by_handle.clear();
        }
        by_handle.insert((handle.pid, handle.start_time_ticks), members);
    }

    pub(super) fn forget(&self, handle: &ProcessHandle) {
        self.lock().remove(&(handle.pid, handle.start_time_ticks));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(u32, u64), Vec<Member>>> {
        self.by_handle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
