//! What Flink's answers mean: one function per endpoint, from (HTTP status, body) to a checked
//! value or a typed error. No I/O, so they are tested against answers recorded from a real
//! Flink 2.3 cluster (`testdata/`, see `testdata/record.sh`).
//!
//! Every field that is used is checked (ids are 32 hex digits and the ones asked for, states are
//! known names, locations non-empty single lines); fields that are not used are ignored, so a
//! newer Flink that adds fields still works.

use std::fmt::Display;
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use super::error::{FlinkError, summarize_flink_error};
use super::ids::{JarId, JobId};
use super::model::{ClusterOverview, UploadedJar, cut};

pub(super) const OVERVIEW: &str = "GET /overview";
pub(super) const UPLOAD: &str = "POST /jars/upload";
pub(super) const JARS: &str = "GET /jars";
pub(super) const RUN: &str = "POST /jars/{jarid}/run";
pub(super) const JOBS_OVERVIEW: &str = "GET /jobs/overview";
pub(super) const JOB: &str = "GET /jobs/{jobid}";
pub(super) const CANCEL: &str = "PATCH /jobs/{jobid}?mode=cancel";
pub(super) const STOP: &str = "POST /jobs/{jobid}/stop";
pub(super) const TRIGGER: &str = "POST /jobs/{jobid}/savepoints";
pub(super) const SAVEPOINT_STATUS: &str = "GET /jobs/{jobid}/savepoints/{triggerid}";
pub(super) const CHECKPOINTS: &str = "GET /jobs/{jobid}/checkpoints";
pub(super) const EXCEPTIONS: &str = "GET /jobs/{jobid}/exceptions";

/// An HTTP answer: its status and (size-capped) body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    /// Flink's `errors` array (`{"errors": ["..."]}`), unsummarized; the start of the body when
    /// it is something else.
    fn errors(&self) -> Vec<String> {
        #[derive(Deserialize)]
        struct Errors {
            errors: Vec<String>,
        }
        match serde_json::from_slice::<Errors>(&self.body) {
            Ok(errors) => errors.errors,
            Err(_) if self.body.is_empty() => Vec::new(),
            Err(_) => vec![cut(&String::from_utf8_lossy(&self.body))],
        }
    }

    fn errors_mention(&self, needles: &[&str]) -> bool {
        self.errors()
            .iter()
            .any(|error| needles.iter().any(|needle| error.contains(needle)))
    }

    fn job_not_found(&self) -> bool {
        self.status == 404
            && self.errors_mention(&[
                "NotFoundException: Job",
                "Job could not be found",
                "FlinkJobNotFoundException",
            ])
    }

    fn http_error(&self, call: &'static str) -> FlinkError {
        FlinkError::Http {
            call,
            status: self.status,
            errors: self
                .errors()
                .iter()
                .map(|error| summarize_flink_error(error))
                .collect(),
        }
    }

    /// The body as `T` if the status is `expected`, else the error that `other` picks (or a plain
    /// [`FlinkError::Http`]).
    fn expect<T: DeserializeOwned>(
        &self,
        call: &'static str,
        expected: u16,
        other: impl FnOnce(&Self) -> Option<FlinkError>,
    ) -> Result<T, FlinkError> {
        if self.status != expected {
            return Err(other(self).unwrap_or_else(|| self.http_error(call)));
        }
        let mut json = serde_json::Deserializer::from_slice(&self.body);
        serde_path_to_error::deserialize(&mut json).map_err(|error| malformed(call, error))
    }
}

fn malformed(call: &'static str, reason: impl Display) -> FlinkError {
    FlinkError::MalformedAnswer {
        call,
        reason: reason.to_string(),
    }
}

/// serde `deserialize_with` for any `FromStr` type: checks the string where it is read, so the
/// error names the field's path.
fn parsed<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: Display,
{
    String::deserialize(deserializer)?
        .parse()
        .map_err(serde::de::Error::custom)
}

/// A name that is shown to people: non-empty, at most 1000 characters.
fn checked_name(call: &'static str, what: &str, name: String) -> Result<String, FlinkError> {
    if name.is_empty() || name.chars().count() > 1000 {
        return Err(malformed(
            call,
            format!("{what} {:?} is empty or too long", cut(&name)),
        ));
    }
    Ok(name)
}

/// `GET /overview`.
pub(super) fn cluster_overview(answer: &Answer) -> Result<ClusterOverview, FlinkError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "kebab-case")]
    struct Wire {
        taskmanagers: u32,
        slots_total: u32,
        slots_available: u32,
        jobs_running: u32,
        flink_version: String,
    }
    let wire: Wire = answer.expect(OVERVIEW, 200, |_| None)?;
    if wire.slots_available > wire.slots_total {
        return Err(malformed(OVERVIEW, "more slots available than there are"));
    }
    Ok(ClusterOverview {
        task_managers: wire.taskmanagers,
        slots_total: wire.slots_total,
        slots_available: wire.slots_available,
        jobs_running: wire.jobs_running,
        flink_version: checked_name(OVERVIEW, "flink-version", wire.flink_version)?,
    })
}

/// `POST /jars/upload`: `{"filename": "<upload dir>/<uuid>_<name>.jar", "status": "success"}`;
/// the jar's id is the file name.
pub(super) fn upload_jar(answer: &Answer) -> Result<JarId, FlinkError> {
    #[derive(Deserialize)]
    struct Wire {
        filename: String,
        status: String,
    }
    let wire: Wire = answer.expect(UPLOAD, 200, |_| None)?;
    if wire.status != "success" {
        return Err(malformed(UPLOAD, format!("status {:?}", cut(&wire.status))));
    }
    let file_name = wire.filename.rsplit('/').next().unwrap_or_default();
    file_name.parse().map_err(|error| malformed(UPLOAD, error))
}

/// `GET /jars`.
pub(super) fn jars(answer: &Answer) -> Result<Vec<UploadedJar>, FlinkError> {
    #[derive(Deserialize)]
    struct Wire {
        files: Vec<JarWire>,
    }
    #[derive(Deserialize)]
    struct JarWire {
        id: JarId,
        name: String,
        uploaded: i64,
        #[serde(default)]
        entry: Option<Vec<EntryWire>>,
    }
    #[derive(Deserialize)]
    struct EntryWire {
        name: String,
    }
    let wire: Wire = answer.expect(JARS, 200, |_| None)?;
    wire.files
        .into_iter()
        .map(|jar| {
            Ok(UploadedJar {
                id: jar.id,
                name: checked_name(JARS, "jar name", jar.name)?,
                uploaded_at_ms: jar.uploaded,
                entry_classes: jar
                    .entry
                    .unwrap_or_default()
                    .into_iter()
                    .map(|entry| checked_name(JARS, "entry class", entry.name))
                    .collect::<Result<_, _>>()?,
            })
        })
        .collect()
}

/// `POST /jars/{jarid}/run`: `{"jobid": "...", "applicationId": "..."}`, the id asked for.
///
/// A second run of a job id is HTTP 400 with `DuplicateApplicationSubmissionException` (Flink 2.3;
/// `DuplicateJobSubmissionException` before); an unknown jar is HTTP **500** with `Jar file ...
/// does not exist`; a failing `main` is HTTP 400 with the program's exception as deepest cause.
pub(super) fn run_jar(answer: &Answer, jar_id: &JarId, job_id: JobId) -> Result<JobId, FlinkError> {
    #[derive(Deserialize)]
    struct Wire {
        jobid: JobId,
    }
    let wire: Wire = answer.expect(RUN, 200, |answer| {
        if answer.errors_mention(&[
            "DuplicateApplicationSubmissionException",
            "DuplicateJobSubmissionException",
        ]) {
            Some(FlinkError::JobAlreadyExists { job_id })
        } else if answer.errors_mention(&["does not exist"]) && answer.errors_mention(&["Jar file"])
        {
            Some(FlinkError::JarNotFound {
                jar_id: jar_id.clone(),
            })
        } else {
            None
        }
    })?;
    if wire.jobid != job_id {
        return Err(malformed(
            RUN,
            format!("Flink ran job {} instead of {job_id}", wire.jobid),
        ));
    }
    Ok(wire.jobid)
}

mod jobs;
mod savepoints;

pub(super) use jobs::{cancel, exceptions, job, jobs_overview};
pub(super) use savepoints::{checkpoints, savepoint_status, savepoint_triggered};

#[cfg(test)]
mod tests;
