//! The host-level start lock: on one host, one start of an app at a time, across every console
//! process of every cluster (locks are named by the app's key).
//!
//! A start takes the app's lock, looks for a running copy of the app (a process carrying its
//! key), adopts it or spawns, and releases. Two consoles that both believe they own an app (one
//! of them fenced and not yet aware of it, or paused between its checks and its spawn) therefore
//! never both spawn: the second finds the first one's copy. A start retried after its console
//! died between the spawn and the record finds the copy the same way.
//!
//! # Notable behaviors
//! - The lock is an `flock` on `/tmp/console-server-<uid>/start-<hash of the key>.lock`, so
//!   every node on the host shares it whatever its data directory or `TMPDIR`; the kernel
//!   releases it when its holder dies, however it dies. The descriptor is close-on-exec: apps
//!   never inherit it.
//! - The directory is the user's own (mode 0700); anything else there (another owner, wider
//!   permissions, a symlink) is an error, never used.
//! - The file is removed when the lock is released; a waiter that locked a file removed
//!   meanwhile notices (the path names another file, or none) and takes the lock again.
//! - A busy lock is polled: it is held for the few milliseconds of a scan and a spawn. After
//!   [`START_LOCK_WAIT`] the start is refused (a holder stopped with SIGSTOP must not block the
//!   app for ever; a later attempt tries again).

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use super::super::ExecutorError;

/// How long a start waits for another start of the same app on this host.
pub(super) const START_LOCK_WAIT: Duration = Duration::from_secs(10);

/// The longest pause between two attempts to take a busy lock.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Where the start locks of this user live.
#[derive(Debug, Clone)]
pub(super) struct StartLocks {
    dir: PathBuf,
}

impl StartLocks {
    /// `/tmp/console-server-<effective uid>`.
    pub(super) fn for_this_user() -> Self {
        // SAFETY: geteuid(2) always succeeds and touches no memory.
        let uid = unsafe { libc::geteuid() };
        Self {
            dir: PathBuf::from(format!("/tmp/console-server-{uid}")),
        }
    }

    /// The lock file of the app with `key`.
    pub(super) fn path(&self, key: &str) -> PathBuf {
        self.dir
            .join(format!("start-{:016x}.lock", fnv1a(key.as_bytes())))
    }

    /// Takes the start lock of the app with `key`, waiting up to [`START_LOCK_WAIT`] while
    /// another start holds it; `on_busy` runs at each busy attempt (a test hook).
    ///
    /// # Notable errors
    /// [`ExecutorError::StartLock`] when the directory or the file cannot be used;
    /// [`ExecutorError::Undetermined`] (a refusal) when the lock stays busy.
    ///
    /// # Cancellation safety
    /// Dropping the future while it waits leaves nothing held.
    pub(super) async fn acquire(
        &self,
        key: &str,
        mut on_busy: impl FnMut(),
    ) -> Result<StartLock, ExecutorError> {
        self.prepare_dir()?;
        let path = self.path(key);
        let deadline = Instant::now() + START_LOCK_WAIT;
        let mut pause = Duration::from_millis(5);
        loop {
            if let Some(lock) = StartLock::try_take(&path)? {
                return Ok(lock);
            }
            on_busy();
            let now = Instant::now();
            if now >= deadline {
                return Err(ExecutorError::Undetermined {
                    reason: format!(
                        "another start of this app on this host has held {} for {START_LOCK_WAIT:?}",
                        path.display()
                    ),
                });
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(RETRY_PAUSE);
        }
    }

    fn prepare_dir(&self) -> Result<(), ExecutorError> {
        let error = |reason: String| ExecutorError::StartLock {
            path: self.dir.clone(),
            reason,
        };
        match DirBuilder::new().mode(0o700).create(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(error(e.to_string())),
        }
        let found = std::fs::symlink_metadata(&self.dir).map_err(|e| error(e.to_string()))?;
        // SAFETY: geteuid(2) always succeeds and touches no memory.
        let uid = unsafe { libc::geteuid() };
        if found.is_dir() && found.uid() == uid && found.mode() & 0o077 == 0 {
            Ok(())
        } else {
            Err(error(format!(
                "must be a directory of user {uid} that nobody else may use (mode 0700); found \
                 {} of user {} with mode {:o}",
                if found.is_dir() {
                    "a directory"
                } else {
                    "something else"
                },
                found.uid(),
                found.mode() & 0o7777
            )))
        }
    }
}

/// A held start lock; released (and its file removed) when dropped.
#[derive(Debug)]
pub(super) struct StartLock {
    path: PathBuf,
    _file: File,
}

impl StartLock {
    /// Takes the lock without waiting; `None` while another holds it.
    fn try_take(path: &Path) -> Result<Option<Self>, ExecutorError> {
        let error = |e: io::Error| ExecutorError::StartLock {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)
                .map_err(error)?;
            // SAFETY: flock(2) on a descriptor we own; no memory is passed.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let e = io::Error::last_os_error();
                return if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                    Ok(None)
                } else {
                    Err(error(e))
                };
            }
            // The previous holder removes the file before it unlocks: if that happened between
            // our open and our lock, we hold a lock on a file nobody else will open.
            let locked = file.metadata().map_err(error)?;
            match std::fs::symlink_metadata(path) {
                Ok(now) if now.dev() == locked.dev() && now.ino() == locked.ino() => {
                    return Ok(Some(Self {
                        path: path.to_owned(),
                        _file: file,
                    }));
                }
                _ => continue,
            }
        }
    }
}

impl Drop for StartLock {
    fn drop(&mut self) {
        // Removed while still locked (the file closes after this body), so that no waiter is
        // left holding a file that stays behind.
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::debug!(path = %self.path.display(), error = %e, "cannot remove a start lock file");
        }
    }
}

/// FNV-1a, 64 bits: stable across builds and versions (the lock files of every node on the
/// host must agree). A collision only makes two apps' starts wait for each other.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_start_lock_names_are_stable() {
        // The reference values of FNV-1a 64.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let locks = StartLocks::for_this_user();
        assert_eq!(locks.path("c/1"), locks.path("c/1"));
        assert_ne!(locks.path("c/1"), locks.path("c/2"));
    }

    #[tokio::test]
    async fn process_start_lock_excludes_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let locks = StartLocks {
            dir: dir.path().join("locks"),
        };
        let key = "cluster/7";
        let held = locks.acquire(key, || {}).await.unwrap();
        assert!(locks.path(key).exists());
        assert!(
            StartLock::try_take(&locks.path(key)).unwrap().is_none(),
            "exclusive"
        );
        drop(held);
        assert!(!locks.path(key).exists(), "removed on release");
        let again = locks.acquire(key, || {}).await.unwrap();
        drop(again);
        let mode = std::fs::metadata(dir.path().join("locks")).unwrap().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[tokio::test]
    async fn process_start_lock_refuses_a_directory_others_may_write() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        let locks = StartLocks { dir: shared };
        assert!(matches!(
            locks.acquire("c/1", || {}).await,
            Err(ExecutorError::StartLock { reason, .. }) if reason.contains("mode 777")
        ));
    }
}
