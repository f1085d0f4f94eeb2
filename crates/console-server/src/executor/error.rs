//! The one error type of the executors.

use std::path::PathBuf;

/// What can go wrong when starting or stopping an app.
///
/// `Clone + PartialEq + Eq` so that tests compare errors directly; new variants may be added.
///
/// # Notable errors
/// - [`ExecutorError::InvalidSpec`] is the user's mistake (HTTP 400); its message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExecutorError {
    /// The app's spec is not valid for this executor. `reason` names the field, e.g.
    /// `spec.command must be a non-empty array of strings`.
    #[error("invalid spec: {reason}")]
    InvalidSpec { reason: String },

    /// Reading `/proc` failed for a reason other than the process being gone.
    #[error("cannot read {}: {reason}", path.display())]
    Proc { path: PathBuf, reason: String },
}
