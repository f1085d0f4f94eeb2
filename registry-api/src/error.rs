//! The one error type of the registry SPI.

use std::time::Duration;

/// What can go wrong when talking to a registry.
///
/// `Clone + PartialEq + Eq` so that tests can compare errors directly; new variants may be added
/// without a breaking change.
///
/// # Notable errors
/// - [`RegistryError::NotConnected`], [`RegistryError::SessionLost`] and
///   [`RegistryError::Transient`] are transient ([`RegistryError::is_transient`]): the client
///   reconnects (or builds a new session) by itself, or the backend's trouble passes, so retrying
///   later is the right reaction.
/// - [`RegistryError::Backend`] is what a retry is not expected to fix (a permission, a damaged
///   schema, a request the server refuses).
/// - [`RegistryError::Closed`] is final: the client was closed by its owner.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The path is not a valid registry path (see [`crate::path`]).
    #[error("invalid registry path {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },

    /// `connect` did not reach the backend within its timeout.
    #[error("could not connect to {backend} within {timeout:?}: {reason}")]
    ConnectTimeout {
        backend: &'static str,
        timeout: Duration,
        reason: String,
    },

    /// The client is not connected right now (suspended, or not yet connected).
    #[error("{backend} registry is not connected")]
    NotConnected { backend: &'static str },

    /// The client's session ended while the call was in flight; its ephemerals and locks are gone.
    #[error("{backend} registry session was lost")]
    SessionLost { backend: &'static str },

    /// The client was closed; it will not reconnect.
    #[error("registry client is closed")]
    Closed,

    /// The key is held by another session (for example another client's ephemeral key).
    #[error("conflict at {path:?}: {reason}")]
    Conflict { path: String, reason: String },

    /// A timed `lock` gave up because another holder kept the lock.
    #[error("timed out after {waited:?} waiting for lock {path:?}")]
    LockTimeout { path: String, waited: Duration },

    /// No backend of that name is linked into this program.
    #[error("unknown registry type {name:?}; known types: {}", known.join(", "))]
    UnknownType { name: String, known: Vec<String> },

    /// The backend's configuration is invalid; `key` names the offending key.
    #[error("invalid registry configuration: {key}: {message}")]
    Config { key: String, message: String },

    /// The backend failed in a way that passes by itself: the connection dropped or timed out,
    /// the server was busy, throttled the call or rolled it back (deadlock, lock wait timeout),
    /// or concurrent writers kept winning. Retrying later can succeed; whether a write that
    /// failed this way took effect is unknown.
    #[error("{backend} error: {message}")]
    Transient {
        backend: &'static str,
        message: String,
    },

    /// The backend reported an error that has no variant of its own and that retrying the same
    /// call is not expected to fix (a permission, a damaged schema, a refused request).
    #[error("{backend} error: {message}")]
    Backend {
        backend: &'static str,
        message: String,
    },
}

impl RegistryError {
    /// Whether retrying the same call later can succeed without anyone stepping in: the client
    /// reconnects or builds a new session by itself ([`RegistryError::NotConnected`],
    /// [`RegistryError::SessionLost`]), or the backend's trouble passes
    /// ([`RegistryError::Transient`]). Bad input, conflicts, permissions, a closed client and
    /// other [`RegistryError::Backend`] errors are not transient.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::NotConnected { .. } | Self::SessionLost { .. } | Self::Transient { .. }
        )
    }
}

/// Short for `Result<T, RegistryError>`.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

const _: () = {
    const fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<RegistryError>();
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_errors_that_pass_by_themselves_are_transient() {
        let transient = [
            RegistryError::NotConnected { backend: "b" },
            RegistryError::SessionLost { backend: "b" },
            RegistryError::Transient {
                backend: "b",
                message: "connection lost".to_owned(),
            },
        ];
        for error in transient {
            assert!(error.is_transient(), "{error:?}");
        }
        let lasting = [
            RegistryError::Backend {
                backend: "b",
                message: "not authorized".to_owned(),
            },
            RegistryError::Closed,
            RegistryError::Conflict {
                path: "/a".to_owned(),
                reason: "held".to_owned(),
            },
            RegistryError::InvalidPath {
                path: "a".to_owned(),
                reason: "relative".to_owned(),
            },
        ];
        for error in lasting {
            assert!(!error.is_transient(), "{error:?}");
        }
    }
}
