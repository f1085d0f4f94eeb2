//! The answer decoders against answers recorded from a real Flink 2.3 cluster
//! (`../testdata/record.sh`), and against those answers made malformed.

use serde_json::Value;

use super::*;
use crate::executor::flink::ids::TriggerId;
use crate::executor::flink::model::{
    CancelOutcome, JobState, SavepointFailureKind, SavepointStatus,
};

/// A recorded answer with the status Flink gave it (`record.sh` checks the statuses).
macro_rules! recorded {
    ($name:literal, $status:literal) => {
        Answer {
            status: $status,
            body: include_bytes!(concat!("../testdata/", $name, ".json")).to_vec(),
        }
    };
}

/// A value of a recorded answer, e.g. the job id that a test then asks for.
fn value_at(answer: &Answer, pointer: &str) -> String {
    let json: Value = serde_json::from_slice(&answer.body).unwrap();
    json.pointer(pointer).unwrap().as_str().unwrap().to_owned()
}

fn job_id_at(answer: &Answer, pointer: &str) -> JobId {
    value_at(answer, pointer).parse().unwrap()
}

/// `answer` with the value at `pointer` replaced.
fn with(answer: &Answer, pointer: &str, value: Value) -> Answer {
    let mut json: Value = serde_json::from_slice(&answer.body).unwrap();
    *json.pointer_mut(pointer).unwrap() = value;
    Answer {
        status: answer.status,
        body: serde_json::to_vec(&json).unwrap(),
    }
}

fn assert_malformed<T: std::fmt::Debug>(result: Result<T, FlinkError>, expected: &str) {
    match result {
        Err(FlinkError::MalformedAnswer { reason, .. }) => {
            assert!(reason.contains(expected), "{reason:?} lacks {expected:?}");
        }
        other => panic!("expected a malformed answer ({expected}), got {other:?}"),
    }
}

fn other_job_id() -> JobId {
    "ffffffffffffffffffffffffffffff01".parse().unwrap()
}

#[test]
fn cluster_overview_counts_slots() {
    let overview = cluster_overview(&recorded!("overview", 200)).unwrap();
    assert_eq!(overview.task_managers, 1);
    assert_eq!(overview.slots_total, 4);
    assert_eq!(overview.flink_version, "2.3.0");
    let impossible = with(&recorded!("overview", 200), "/slots-available", 5.into());
    assert_malformed(cluster_overview(&impossible), "more slots available");
}

#[test]
fn an_upload_names_the_jar_that_the_list_shows() {
    let upload = recorded!("jars_upload", 200);
    let jar_id = upload_jar(&upload).unwrap();
    assert!(
        jar_id
            .as_str()
            .ends_with("_console-flink-example-d99e832eded873d0.jar")
    );
    let listed = jars(&recorded!("jars", 200)).unwrap();
    let jar = listed.iter().find(|jar| jar.id == jar_id).unwrap();
    assert_eq!(jar.entry_classes, ["console.example.CounterJob"]);

    assert_malformed(
        upload_jar(&with(&upload, "/status", "failure".into())),
        "status",
    );
    assert_malformed(
        upload_jar(&with(&upload, "/filename", "/tmp/".into())),
        "jar id",
    );
    let bad_list = with(&recorded!("jars", 200), "/files/0/id", "../x.jar".into());
    assert_malformed(jars(&bad_list), "files[0].id");
}

#[test]
fn a_run_returns_the_job_id_asked_for() {
    let answer = recorded!("jars_run", 200);
    let jar_id: JarId = "some.jar".parse().unwrap();
    let job_id = job_id_at(&answer, "/jobid");
    assert_eq!(run_jar(&answer, &jar_id, job_id), Ok(job_id));
    assert_malformed(run_jar(&answer, &jar_id, other_job_id()), "instead of");
    assert_malformed(
        run_jar(&with(&answer, "/jobid", "42".into()), &jar_id, job_id),
        "jobid",
    );
}

#[test]
fn a_second_run_of_a_job_id_is_job_already_exists() {
    let jar_id: JarId = "some.jar".parse().unwrap();
    let job_id = other_job_id();
    assert_eq!(
        run_jar(&recorded!("jars_run_duplicate", 400), &jar_id, job_id),
        Err(FlinkError::JobAlreadyExists { job_id })
    );
}

#[test]
fn a_run_of_an_unknown_jar_is_jar_not_found_though_flink_says_500() {
    let jar_id: JarId = "nonexistent.jar".parse().unwrap();
    assert_eq!(
        run_jar(
            &recorded!("jars_run_unknown_jar", 500),
            &jar_id,
            other_job_id()
        ),
        Err(FlinkError::JarNotFound { jar_id })
    );
}

#[test]
fn a_failing_main_is_an_http_error_naming_the_programs_exception() {
    let jar_id: JarId = "some.jar".parse().unwrap();
    match run_jar(
        &recorded!("jars_run_main_failed", 400),
        &jar_id,
        other_job_id(),
    ) {
        Err(FlinkError::Http {
            status: 400,
            errors,
            ..
        }) => assert_eq!(
            errors,
            [
                "java.lang.IllegalArgumentException: unknown argument --bogus \
              (known: --output, --rate, --keys, --checkpoint-interval-ms)"
            ]
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn job_details_give_state_and_task_counts() {
    let running = recorded!("job_running", 200);
    let job_id = job_id_at(&running, "/jid");
    let info = job(&running, job_id).unwrap();
    assert_eq!(info.state, JobState::Running);
    assert_eq!(info.name, "console-example-counter");
    assert!(info.tasks.all_running(), "{:?}", info.tasks);
    assert_eq!(info.ended_at_ms, None);
    assert_malformed(job(&running, other_job_id()), "asked for job");
    assert_malformed(
        job(&with(&running, "/state", "LOST".into()), job_id),
        "state",
    );

    let failed = recorded!("job_failed", 200);
    let info = job(&failed, job_id_at(&failed, "/jid")).unwrap();
    assert_eq!(info.state, JobState::Failed);
    assert!(info.ended_at_ms.is_some());
    assert_eq!((info.tasks.failed, info.tasks.total), (1, 2));

    assert_eq!(
        job(&recorded!("job_not_found", 404), other_job_id()),
        Err(FlinkError::JobNotFound {
            job_id: other_job_id()
        })
    );
}

#[test]
fn the_jobs_overview_lists_every_job_once() {
    let answer = recorded!("jobs_overview", 200);
    let jobs = jobs_overview(&answer).unwrap();
    for state in [JobState::Finished, JobState::Canceled, JobState::Failed] {
        assert!(jobs.iter().any(|job| job.state == state), "no {state} job");
    }
    assert!(
        jobs.iter()
            .all(|job| job.ended_at_ms.is_some() == job.state.is_terminal())
    );

    let mut json: Value = serde_json::from_slice(&answer.body).unwrap();
    let first = json["jobs"][0].clone();
    json["jobs"].as_array_mut().unwrap().push(first);
    let twice = Answer {
        status: 200,
        body: serde_json::to_vec(&json).unwrap(),
    };
    assert_malformed(jobs_overview(&twice), "listed twice");
    assert_malformed(
        jobs_overview(&with(&answer, "/jobs/0/jid", "x".into())),
        "jobs[0].jid",
    );
    assert_malformed(
        jobs_overview(&with(&answer, "/jobs/0/tasks/running", 99.into())),
        "more tasks",
    );
}

#[test]
fn cancel_is_idempotent_except_for_jobs_that_ended_otherwise() {
    let job_id = other_job_id();
    assert_eq!(
        cancel(&recorded!("cancel", 202), job_id),
        Ok(CancelOutcome::Requested)
    );
    assert_eq!(
        cancel(&recorded!("cancel_canceled", 202), job_id),
        Ok(CancelOutcome::Requested)
    );
    assert_eq!(
        cancel(&recorded!("cancel_finished", 409), job_id),
        Ok(CancelOutcome::AlreadyTerminated)
    );
    assert_eq!(
        cancel(&recorded!("cancel_not_found", 404), job_id),
        Err(FlinkError::JobNotFound { job_id })
    );
}

#[test]
fn savepoint_triggers_echo_the_trigger_id() {
    for (answer, call) in [
        (recorded!("savepoint_trigger", 202), TRIGGER),
        (recorded!("stop", 202), STOP),
    ] {
        let trigger_id: TriggerId = value_at(&answer, "/request-id").parse().unwrap();
        assert_eq!(
            savepoint_triggered(&answer, call, other_job_id(), trigger_id),
            Ok(())
        );
        let other: TriggerId = "0000000000000000000000000000000f".parse().unwrap();
        assert_malformed(
            savepoint_triggered(&answer, call, other_job_id(), other),
            "instead of",
        );
    }
}

#[test]
fn savepoint_status_goes_from_in_progress_to_a_location() {
    let (job_id, trigger_id) = (
        other_job_id(),
        "000000000000000000000000000000a1".parse().unwrap(),
    );
    assert_eq!(
        savepoint_status(
            &recorded!("savepoint_status_in_progress", 200),
            job_id,
            trigger_id
        ),
        Ok(SavepointStatus::InProgress)
    );
    for answer in [
        recorded!("savepoint_status_completed", 200),
        recorded!("stop_status_completed", 200),
    ] {
        let location = value_at(&answer, "/operation/location");
        assert!(location.starts_with("file:/"), "{location}");
        assert_eq!(
            savepoint_status(&answer, job_id, trigger_id),
            Ok(SavepointStatus::Completed(location.parse().unwrap()))
        );
        let empty = with(&answer, "/operation/location", "".into());
        assert_malformed(
            savepoint_status(&empty, job_id, trigger_id),
            "operation.location",
        );
        let neither = with(&answer, "/operation/location", Value::Null);
        assert_malformed(
            savepoint_status(&neither, job_id, trigger_id),
            "exactly one",
        );
    }
    let unknown = with(
        &recorded!("savepoint_status_in_progress", 200),
        "/status/id",
        "DONE".into(),
    );
    assert_malformed(savepoint_status(&unknown, job_id, trigger_id), "DONE");
    assert_eq!(
        savepoint_status(
            &recorded!("savepoint_status_unknown_trigger", 404),
            job_id,
            trigger_id
        ),
        Err(FlinkError::TriggerNotFound { job_id, trigger_id })
    );
}

#[test]
fn savepoint_failures_say_whether_the_job_is_gone_or_not_running_yet() {
    let (job_id, trigger_id) = (
        other_job_id(),
        "000000000000000000000000000000a1".parse().unwrap(),
    );
    let failure = |answer| match savepoint_status(&answer, job_id, trigger_id) {
        Ok(SavepointStatus::Failed(failure)) => failure,
        other => panic!("{other:?}"),
    };
    let gone = failure(recorded!("savepoint_status_job_not_found", 200));
    assert_eq!(gone.kind, SavepointFailureKind::JobNotFound);
    assert!(
        gone.message.contains("Could not find Flink job"),
        "{}",
        gone.message
    );
    let early = failure(recorded!("savepoint_status_tasks_not_running", 200));
    assert_eq!(early.kind, SavepointFailureKind::TasksNotRunning);
    assert!(!early.message.contains("\tat "), "{}", early.message);
}

#[test]
fn checkpoints_name_the_savepoint_a_job_was_restored_from() {
    let job_id = other_job_id();
    let fresh = checkpoints(&recorded!("checkpoints_not_restored", 200), job_id).unwrap();
    assert_eq!(fresh.restored, None);

    // record.sh restored this job from the savepoint of its stop.
    let stop_location = value_at(
        &recorded!("stop_status_completed", 200),
        "/operation/location",
    );
    let restored = checkpoints(&recorded!("checkpoints_restored", 200), job_id).unwrap();
    let from = restored.restored.unwrap();
    assert!(from.is_savepoint);
    assert_eq!(from.location.unwrap().as_str(), stop_location);

    assert_eq!(
        checkpoints(&recorded!("checkpoints_not_found", 404), job_id),
        Err(FlinkError::JobNotFound { job_id })
    );
    let bad = with(
        &recorded!("checkpoints_restored", 200),
        "/latest/restored/external_path",
        " ".into(),
    );
    assert_malformed(checkpoints(&bad, job_id), "latest.restored.external_path");
}

#[test]
fn exceptions_give_the_root_cause_of_a_failure() {
    let job_id = other_job_id();
    let failed = exceptions(&recorded!("exceptions_failed", 200), job_id).unwrap();
    let latest = failed.latest().unwrap();
    assert_eq!(latest.class, "org.apache.flink.runtime.JobException");
    assert_eq!(
        latest.root_cause,
        "java.nio.file.NoSuchFileException: /nonexistent/dir/out.txt"
    );
    let none = exceptions(&recorded!("exceptions_none", 200), job_id).unwrap();
    assert!(none.entries.is_empty() && none.latest().is_none());
}

#[test]
fn a_404_that_is_not_about_a_job_stays_an_http_error() {
    let job_id = other_job_id();
    match checkpoints(&recorded!("not_a_route", 404), job_id) {
        Err(FlinkError::Http {
            status: 404,
            errors,
            ..
        }) => {
            assert!(
                errors[0].starts_with("Unable to load requested file"),
                "{errors:?}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn answers_that_are_not_json_are_malformed_and_errors_that_are_not_json_are_kept() {
    let garbage = Answer {
        status: 200,
        body: b"<html>proxy</html>".to_vec(),
    };
    assert_malformed(jobs_overview(&garbage), "expected value");
    let bad_gateway = Answer {
        status: 502,
        body: b"<html>bad gateway</html>".to_vec(),
    };
    let error = jobs_overview(&bad_gateway).unwrap_err();
    assert!(error.is_unavailable());
    assert_eq!(
        error,
        FlinkError::Http {
            call: JOBS_OVERVIEW,
            status: 502,
            errors: vec!["<html>bad gateway</html>".to_owned()]
        }
    );
}
