//! What a call to Flink's REST API can end in, other than success.

use std::path::PathBuf;
use std::time::Duration;

use super::ids::{JarId, JobId, TriggerId};
use super::model::SavepointFailure;

/// The error of every [`FlinkRestClient`](super::FlinkRestClient) call.
///
/// `Clone + PartialEq + Eq` so that tests compare errors directly; new variants may be added.
/// `call` names the endpoint, e.g. `"POST /jars/{jarid}/run"`.
///
/// # Notable errors
/// - [`FlinkError::Unreachable`] and [`FlinkError::Timeout`] say nothing about Flink's state: the
///   job may be running, and a request that timed out may have been carried out (a run may have
///   submitted its job). Callers report such an outcome as unknown, never as failed; see
///   [`FlinkError::is_unavailable`].
/// - [`FlinkError::JobNotFound`] and [`FlinkError::JarNotFound`]: Flink does not know the id. A
///   JobManager without HA forgets every job when it restarts (its jars stay in `web.upload.dir`
///   unless that directory is lost).
/// - [`FlinkError::JobAlreadyExists`]: a run with a job id that Flink has seen since it started
///   (running or terminated), refused without side effects.
/// - [`FlinkError::MalformedAnswer`]: Flink answered something this client does not accept
///   (a bad id, an unknown state, a missing field, another job id than requested).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlinkError {
    /// The REST URL given to the client cannot be used.
    #[error("invalid Flink REST URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },

    /// A request that this client refuses to send (for instance an empty entry class).
    #[error("invalid request to Flink: {reason}")]
    InvalidRequest { reason: String },

    /// The jar to upload cannot be read.
    #[error("cannot read jar {}: {reason}", path.display())]
    JarFile { path: PathBuf, reason: String },

    /// No HTTP answer: connection refused or reset, or the answer could not be read.
    #[error("Flink is unreachable ({call}): {reason}")]
    Unreachable { call: &'static str, reason: String },

    /// No complete answer within the call's timeout.
    #[error("Flink did not answer {call} within {timeout:?}")]
    Timeout {
        call: &'static str,
        timeout: Duration,
    },

    /// Flink has no job with this id (never submitted, or forgotten by a restarted JobManager).
    #[error("Flink has no job {job_id}")]
    JobNotFound { job_id: JobId },

    /// Flink has no uploaded jar with this id.
    #[error("Flink has no jar {jar_id}")]
    JarNotFound { jar_id: JarId },

    /// Flink has no savepoint operation with this trigger id for the job (never triggered, or
    /// forgotten: Flink keeps finished operations for a while, and a restart forgets them all).
    #[error("Flink has no savepoint operation {trigger_id} for job {job_id}")]
    TriggerNotFound {
        job_id: JobId,
        trigger_id: TriggerId,
    },

    /// A run with a job id that Flink already has. Flink 2.3 answers HTTP 400 with
    /// `DuplicateApplicationSubmissionException: Application has already been submitted.`
    /// (`DuplicateJobSubmissionException` in Flink 1.x), for a running job and for a terminated
    /// one alike; it starts nothing.
    #[error("Flink already has a job {job_id} (running or terminated)")]
    JobAlreadyExists { job_id: JobId },

    /// A savepoint operation (trigger or stop) ended without a savepoint.
    #[error("savepoint {trigger_id} of job {job_id} failed: {failure}")]
    SavepointFailed {
        job_id: JobId,
        trigger_id: TriggerId,
        failure: SavepointFailure,
    },

    /// A savepoint operation was still in progress when the caller stopped waiting.
    #[error("savepoint {trigger_id} of job {job_id} still in progress after {waited:?}")]
    SavepointPending {
        job_id: JobId,
        trigger_id: TriggerId,
        waited: Duration,
    },

    /// Any other answer with an error status. `errors` holds Flink's `errors` array, each entry
    /// cut down to its message and its deepest cause (the stack traces are dropped).
    #[error("Flink answered {call} with HTTP {status}: {}", join_errors(errors))]
    Http {
        call: &'static str,
        status: u16,
        errors: Vec<String>,
    },

    /// An answer this client does not accept.
    #[error("Flink's answer to {call} is malformed: {reason}")]
    MalformedAnswer { call: &'static str, reason: String },
}

impl FlinkError {
    /// Whether the call ended without telling anything about Flink's state: unreachable, timed
    /// out, or HTTP 502/503/504 (a proxy without upstream, a JobManager still electing its
    /// leader). A caller treats the outcome as unknown and tries again later.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Timeout { .. } => true,
            Self::Http { status, .. } => matches!(status, 502..=504),
            _ => false,
        }
    }
}

fn join_errors(errors: &[String]) -> String {
    if errors.is_empty() {
        "(no error message)".to_owned()
    } else {
        errors.join("; ")
    }
}

/// Longest summary kept of one entry of Flink's `errors` array.
const SUMMARY_CHARS: usize = 500;

/// Cuts one entry of Flink's `errors` array (usually a Java stack trace of nested exceptions) down
/// to a line a person can read: the deepest `Caused by:` message, or else the first line.
///
/// `"RestHandlerException: Could not execute application.\n\tat ...\nCaused by: ...\nCaused by:
/// java.lang.IllegalArgumentException: unknown argument --bogus\n\t... 8 more"` becomes
/// `"java.lang.IllegalArgumentException: unknown argument --bogus"`.
pub(super) fn summarize_flink_error(raw: &str) -> String {
    let lines = raw
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("at ") && !line.starts_with("..."))
        .filter(|line| {
            !line.starts_with("<Exception on server side") && !line.starts_with("End of exception")
        });
    let mut first = None;
    let mut deepest_cause = None;
    for line in lines {
        first.get_or_insert(line);
        if let Some(cause) = line.strip_prefix("Caused by:") {
            deepest_cause = Some(cause.trim());
        }
    }
    let summary = deepest_cause.or(first).unwrap_or("");
    summary.chars().take(SUMMARY_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_keep_the_deepest_cause() {
        let raw = "org.apache.flink.runtime.rest.handler.RestHandlerException: Could not execute application.\n\
            \tat org.apache.flink.runtime.webmonitor.handlers.JarRunHandler.lambda$handleRequest$1(JarRunHandler.java:114)\n\
            Caused by: org.apache.flink.util.FlinkRuntimeException: Could not execute application.\n\
            \t... 1 more\n\
            Caused by: java.lang.IllegalArgumentException: unknown argument --bogus\n\
            \t... 8 more\n";
        assert_eq!(
            summarize_flink_error(raw),
            "java.lang.IllegalArgumentException: unknown argument --bogus"
        );
    }

    #[test]
    fn summaries_fall_back_to_the_first_line() {
        assert_eq!(
            summarize_flink_error(
                "org.apache.flink.runtime.rest.NotFoundException: Job 01 not found\n\tat x.y(Z.java:1)\n"
            ),
            "org.apache.flink.runtime.rest.NotFoundException: Job 01 not found"
        );
        assert_eq!(
            summarize_flink_error(
                "<Exception on server side:\njava.lang.Exception: boom\n\nEnd of exception on server side>"
            ),
            "java.lang.Exception: boom"
        );
        assert_eq!(summarize_flink_error(""), "");
        assert_eq!(
            summarize_flink_error(&"x".repeat(2000)).len(),
            SUMMARY_CHARS
        );
    }

    #[test]
    fn only_transport_failures_and_gateway_statuses_are_unavailable() {
        let http = |status| FlinkError::Http {
            call: "GET /jobs/overview",
            status,
            errors: vec![],
        };
        assert!(http(503).is_unavailable());
        assert!(!http(500).is_unavailable());
        assert!(!http(400).is_unavailable());
        assert!(
            FlinkError::Timeout {
                call: "GET /jobs/overview",
                timeout: Duration::from_secs(1)
            }
            .is_unavailable()
        );
        assert!(
            !FlinkError::MalformedAnswer {
                call: "GET /jobs/overview",
                reason: "x".into()
            }
            .is_unavailable()
        );
        assert_eq!(
            http(500).to_string(),
            "Flink answered GET /jobs/overview with HTTP 500: (no error message)"
        );
    }
}
