//! Distributed locks with fencing tokens.

use std::fmt;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::error::Result;

/// Proof of holding a lock, returned by [`crate::Registry::lock`].
///
/// # Notable behaviors
/// - [`LockGuard::fencing_token`] strictly increases across all holders of the same path, so a
///   resource that remembers the highest token it has seen can reject a stale holder's writes.
/// - The lock is released by [`LockGuard::release`] or, in the background, when the guard is
///   dropped. A holder whose session ends loses the lock; [`LockGuard::is_valid`] turns false
///   and [`LockGuard::lost`] completes.
/// - Locks are not re-entrant: a second `lock` of the same path by the same client waits like any
///   other.
pub struct LockGuard {
    path: String,
    fencing_token: u64,
    validity: watch::Receiver<bool>,
    release: Option<Box<dyn LockRelease>>,
}

/// How a backend frees one lock it granted. Implemented by backends, called by [`LockGuard`].
#[async_trait]
pub trait LockRelease: Send + Sync + 'static {
    /// Frees the lock if this holder still holds it; freeing a lock already lost is not an error.
    async fn release(self: Box<Self>) -> Result<()>;

    /// Frees the lock without waiting, when the guard is dropped. The default spawns
    /// [`LockRelease::release`] on the current Tokio runtime (if there is one; without a runtime
    /// the lock is freed when the session ends).
    fn release_in_background(self: Box<Self>) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = self.release().await {
                    tracing::warn!(%error, "releasing a dropped lock guard failed; the lock is freed when the session ends");
                }
            });
        }
    }
}

impl LockGuard {
    /// Built by backends. `validity` holds `true` while the lock is held; the backend sets it to
    /// `false` (or drops the sender) when the holder's session ends.
    pub fn new(
        path: impl Into<String>,
        fencing_token: u64,
        validity: watch::Receiver<bool>,
        release: Box<dyn LockRelease>,
    ) -> Self {
        Self {
            path: path.into(),
            fencing_token,
            validity,
            release: Some(release),
        }
    }

    /// The locked path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// This holder's fencing token: greater than every earlier holder's token for this path.
    pub fn fencing_token(&self) -> u64 {
        self.fencing_token
    }

    /// Whether the lock is still held (the holder's session has not ended).
    pub fn is_valid(&self) -> bool {
        self.validity.has_changed().is_ok() && *self.validity.borrow()
    }

    /// Completes when the lock is lost (the holder's session ended).
    ///
    /// # Cancellation safety
    /// Cancel-safe.
    pub async fn lost(&self) {
        let mut validity = self.validity.clone();
        // An error means the backend dropped the sender: the session is over.
        let _ = validity.wait_for(|valid| !*valid).await;
    }

    /// Frees the lock now and waits until the backend confirms.
    ///
    /// # Notable errors
    /// Backend errors; the lock is then freed when the session ends.
    ///
    /// # Cancellation safety
    /// Cancel-safe: the release runs on a task of its own (on a Tokio runtime), so a dropped call
    /// still frees the lock.
    pub async fn release(mut self) -> Result<()> {
        let Some(release) = self.release.take() else {
            return Ok(());
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return release.release().await;
        };
        match runtime.spawn(release.release()).await {
            Ok(outcome) => outcome,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            // The runtime is shutting down, and with it the caller: nobody sees this, and the
            // lock is freed when the session ends.
            Err(_) => Ok(()),
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release.release_in_background();
        }
    }
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("path", &self.path)
            .field("fencing_token", &self.fencing_token)
            .field("valid", &self.is_valid())
            .finish()
    }
}
