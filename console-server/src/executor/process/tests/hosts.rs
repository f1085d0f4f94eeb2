//! Finding 5 of issue 12, the executor's side: a handle from another host (another host name,
//! or the same host name on another machine) is never dead, and this node neither stops nor
//! replaces its process.

use super::*;

fn starts(fixture: &Fixture, app_id: i64) -> usize {
    let prefix = format!("[console] starting app {app_id} ");
    lines(&fixture.executor.log_path(app_id))
        .iter()
        .filter(|line| line.starts_with(&prefix))
        .count()
}

#[tokio::test]
async fn process_handles_from_another_host_are_unknown_and_refused() {
    let fixture = Fixture::new(Duration::from_secs(5));
    let marker = fixture.marker("marker");
    let spec = script_spec("echo started >> \"$1\"; exec sleep 300", &marker);
    let app = app(31, &spec);
    let mut guard = KillOnDrop::default();
    guard.guard_app(&fixture.executor, 31);
    let handle = fixture.executor.start(&app, TASK, None).await.unwrap();
    guard.guard(&handle);
    let pid = process(&handle).pid;
    let this_host = &fixture.executor.host;

    let mut renamed = process(&handle).clone();
    renamed.host = "elsewhere.example".to_owned();
    // A VM cloned from this one: same host name, another machine id.
    let mut clone = process(&handle).clone();
    clone.machine_id = "0123456789abcdef0123456789abcdef".to_owned();
    for foreign in [renamed, clone] {
        let refusal = ExecutorError::ForeignHost {
            pid,
            handle_host: format!(
                "host {:?} (machine id {})",
                foreign.host, foreign.machine_id
            ),
            this_host: format!(
                "host {:?} (machine id {})",
                this_host.host_name, this_host.machine_id
            ),
        };
        assert!(refusal.is_refusal());
        let foreign = Handle::Process(foreign);
        assert_eq!(
            fixture.executor.probe(&app, &foreign).await,
            Liveness::Unknown {
                reason: refusal.to_string()
            },
            "another host is unknown, never dead"
        );
        assert_eq!(
            fixture.executor.stop(&app, TASK, &foreign).await,
            Err(refusal.clone())
        );
        assert_eq!(
            fixture.executor.start(&app, TASK, Some(&foreign)).await,
            Err(refusal)
        );
    }
    assert!(
        refusal_message_names_both_hosts(&fixture, &handle),
        "the message says where"
    );
    assert_eq!(fixture.executor.probe(&app, &handle).await, Liveness::Alive);
    assert_eq!(
        starts(&fixture, 31),
        1,
        "a foreign handle never leads to a start"
    );
    fixture.executor.stop(&app, TASK, &handle).await.unwrap();
}

fn refusal_message_names_both_hosts(fixture: &Fixture, handle: &Handle) -> bool {
    let mut foreign = process(handle).clone();
    foreign.host = "elsewhere.example".to_owned();
    let message = fixture.executor.foreign_host(&foreign).to_string();
    message.starts_with(&format!(
        "on another host: process {} runs on host \"elsewhere.example\"",
        foreign.pid
    )) && message.contains(&format!(
        "this node on host {:?}",
        fixture.executor.host.host_name
    ))
}

#[tokio::test]
async fn process_handles_recorded_before_machine_ids_name_the_host_by_name() {
    let fixture = Fixture::new(Duration::from_secs(5));
    let spec = script_spec("exec sleep 300", &fixture.marker("unused"));
    let app = app(32, &spec);
    let mut guard = KillOnDrop::default();
    guard.guard_app(&fixture.executor, 32);
    let handle = fixture.executor.start(&app, TASK, None).await.unwrap();
    guard.guard(&handle);
    assert_eq!(
        process(&handle).machine_id,
        fixture.executor.host.machine_id,
        "recorded"
    );

    let mut old = process(&handle).clone();
    old.machine_id = String::new();
    let old = Handle::Process(old);
    assert_eq!(fixture.executor.probe(&app, &old).await, Liveness::Alive);
    assert_eq!(
        fixture
            .executor
            .start(&app, TASK, Some(&old))
            .await
            .unwrap(),
        old,
        "adopted"
    );
    fixture.executor.stop(&app, TASK, &old).await.unwrap();
    assert!(matches!(
        fixture.executor.probe(&app, &handle).await,
        Liveness::Dead { .. }
    ));
}

#[test]
fn process_refusals_are_the_errors_that_may_leave_a_copy_running() {
    let undetermined = ExecutorError::Undetermined {
        reason: "cannot read /proc".to_owned(),
    };
    assert!(undetermined.is_refusal());
    for acted_or_failed in [
        ExecutorError::InvalidSpec {
            reason: "x".to_owned(),
        },
        ExecutorError::Spawn {
            program: "x".to_owned(),
            reason: "y".to_owned(),
        },
        ExecutorError::StillRunning {
            pid: 2,
            waited: Duration::from_secs(1),
        },
    ] {
        assert!(!acted_or_failed.is_refusal(), "{acted_or_failed:?}");
    }
}
