//! The Flink REST client against a real Flink 2.3 session cluster: the one `deploy/flink.sh start`
//! runs (`CONSOLE_TEST_FLINK_URL`, default `http://127.0.0.1:8081`), with the example job of
//! `deploy/flink.sh example-jar` (a keyed counter that appends `key=k0 count=N seq=S` lines to the
//! file named by `--output`).
//!
//! The cluster is shared with other tests: every test uses job ids of its own and cancels the jobs
//! it started, also when it fails (see [`Jobs`]). Durations are printed as `measured:` lines
//! (`-- --nocapture`); nothing is asserted about them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use console_server::flink::{
    CancelOutcome, FlinkError, FlinkRestClient, JarId, JobId, JobInfo, JobState, JobSubmission,
    SavepointLocation, TriggerId,
};
use test_support::flink::counter_lines;
use tokio::sync::OnceCell;

/// How long a condition may take before a test fails: generous, for a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(60);

fn flink_url() -> String {
    test_support::flink::rest_url()
}

/// A client of the shared cluster, after checking that it answers with free task slots.
async fn flink() -> FlinkRestClient {
    let url = flink_url();
    let client = FlinkRestClient::new(&url).unwrap();
    match client.cluster_overview().await {
        Ok(overview) if overview.slots_total > 0 => client,
        Ok(overview) => panic!(
            "Flink at {url} has no task slots ({overview:?}); is its TaskManager running? \
             (deploy/flink.sh status, deploy/flink.sh start)"
        ),
        Err(error) => panic!(
            "Flink at {url} does not answer ({error}); start it with `deploy/flink.sh start` \
             (or point CONSOLE_TEST_FLINK_URL at a running session cluster)"
        ),
    }
}

fn example_jar() -> PathBuf {
    test_support::flink::example_jar()
}

/// The example jar, uploaded once per test process (the tests run it in parallel).
async fn uploaded_jar(client: &FlinkRestClient) -> JarId {
    static JAR: OnceCell<JarId> = OnceCell::const_new();
    JAR.get_or_init(|| async { client.upload_jar(&example_jar()).await.unwrap() })
        .await
        .clone()
}

fn new_job_id() -> JobId {
    JobId::from_bytes(*uuid::Uuid::new_v4().as_bytes())
}

fn new_trigger_id() -> TriggerId {
    TriggerId::from_bytes(*uuid::Uuid::new_v4().as_bytes())
}

/// A run of the example job writing its counter to `output`.
fn counter_job(job_id: JobId, output: &Path) -> JobSubmission {
    let mut submission = JobSubmission::new(job_id);
    submission.args = vec!["--output".to_owned(), output.display().to_string()];
    submission.parallelism = std::num::NonZeroU32::new(1);
    submission
}

/// The jobs a test started; dropping it cancels them (also when the test panics), so the shared
/// cluster's slots are free for the other tests.
struct Jobs {
    url: String,
    started: Mutex<Vec<JobId>>,
}

impl Jobs {
    fn new() -> Self {
        Self {
            url: flink_url(),
            started: Mutex::new(Vec::new()),
        }
    }

    /// Remembers `job_id` for clean-up, then runs it.
    async fn run(
        &self,
        client: &FlinkRestClient,
        jar: &JarId,
        submission: &JobSubmission,
    ) -> Result<JobId, FlinkError> {
        self.started.lock().unwrap().push(submission.job_id);
        client.run_jar(jar, submission).await
    }
}

impl Drop for Jobs {
    fn drop(&mut self) {
        let jobs = std::mem::take(&mut *self.started.lock().unwrap());
        let url = self.url.clone();
        // Drop cannot await, and the test's runtime may be shutting down: a runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async {
                let client = FlinkRestClient::new(&url).unwrap();
                for job_id in jobs {
                    match client.cancel_job(job_id).await {
                        Ok(_) | Err(FlinkError::JobNotFound { .. }) => {}
                        Err(error) => eprintln!("clean-up: cannot cancel job {job_id}: {error}"),
                    }
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// Polls `check` until it yields a value, failing the test after [`DEADLINE`].
async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every task of the job runs (a savepoint needs that) and returns the job.
async fn all_tasks_running(client: &FlinkRestClient, job_id: JobId) -> JobInfo {
    wait_for(&format!("all tasks of job {job_id} to run"), || async {
        let job = client.job(job_id).await.unwrap();
        assert!(!job.state.is_terminal(), "job {job_id} ended: {job:?}");
        (job.state == JobState::Running && job.tasks.all_running()).then_some(job)
    })
    .await
}

async fn job_reaches(client: &FlinkRestClient, job_id: JobId, state: JobState) {
    wait_for(&format!("job {job_id} to be {state}"), || async {
        (client.job(job_id).await.unwrap().state == state).then_some(())
    })
    .await;
}

async fn lines_at_least(output: &Path, lines: usize) -> Vec<(u64, u64)> {
    wait_for(
        &format!("{lines} lines in {}", output.display()),
        || async {
            let counts = counter_lines(output);
            (counts.len() >= lines).then_some(counts)
        },
    )
    .await
}

#[tokio::test]
async fn flink_an_uploaded_jar_is_listed_with_its_main_class() {
    let client = flink().await;
    let jar = uploaded_jar(&client).await;
    let listed = client.jars().await.unwrap();
    let entry = listed.iter().find(|listed| listed.id == jar).unwrap();
    assert_eq!(entry.entry_classes, ["console.example.CounterJob"]);
}

#[tokio::test]
async fn flink_a_job_id_is_run_once_and_refused_after() {
    let client = flink().await;
    let jar = uploaded_jar(&client).await;
    // Declared first, dropped last: the jobs are cancelled before their files go.
    let dir = tempfile::tempdir().unwrap();
    let jobs = Jobs::new();
    let job_id = new_job_id();
    let submission = counter_job(job_id, &dir.path().join("out.txt"));

    let submitted = Instant::now();
    assert_eq!(jobs.run(&client, &jar, &submission).await, Ok(job_id));
    let answered = submitted.elapsed();
    all_tasks_running(&client, job_id).await;
    println!(
        "measured: run answered after {answered:?}, all tasks RUNNING after {:?}",
        submitted.elapsed()
    );

    assert_eq!(
        client.run_jar(&jar, &submission).await,
        Err(FlinkError::JobAlreadyExists { job_id })
    );
    let listed: Vec<_> = client
        .jobs_overview()
        .await
        .unwrap()
        .into_iter()
        .filter(|job| job.id == job_id)
        .collect();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].state, JobState::Running);

    assert_eq!(
        client.cancel_job(job_id).await,
        Ok(CancelOutcome::Requested)
    );
    job_reaches(&client, job_id, JobState::Canceled).await;
    assert_eq!(
        client.cancel_job(job_id).await,
        Ok(CancelOutcome::Requested)
    );
    // An ended job keeps its id: a retried start cannot submit it a second time either.
    assert_eq!(
        client.run_jar(&jar, &submission).await,
        Err(FlinkError::JobAlreadyExists { job_id })
    );
}

#[tokio::test]
async fn flink_stop_with_savepoint_then_restore_continues_the_counter() {
    let client = flink().await;
    let jar = uploaded_jar(&client).await;
    // Declared first, dropped last: the jobs are cancelled before their files go.
    let dir = tempfile::tempdir().unwrap();
    let jobs = Jobs::new();
    let output = dir.path().join("counter.txt");
    let first = new_job_id();
    jobs.run(&client, &jar, &counter_job(first, &output))
        .await
        .unwrap();
    all_tasks_running(&client, first).await;
    lines_at_least(&output, 3).await;

    // A savepoint while running: the job runs on.
    let manual = new_trigger_id();
    client.trigger_savepoint(first, manual, None).await.unwrap();
    let taken = client
        .await_savepoint(first, manual, DEADLINE)
        .await
        .unwrap();
    assert!(taken.as_str().contains("savepoint-"), "{taken}");
    assert_eq!(client.job(first).await.unwrap().state, JobState::Running);

    let stop = new_trigger_id();
    let stopping = Instant::now();
    client
        .stop_with_savepoint(first, stop, None, false)
        .await
        .unwrap();
    let location = client.await_savepoint(first, stop, DEADLINE).await.unwrap();
    println!(
        "measured: stop with savepoint completed after {:?}",
        stopping.elapsed()
    );
    assert_ne!(location, taken);
    job_reaches(&client, first, JobState::Finished).await;
    let before = counter_lines(&output);
    let &(last_count, last_seq) = before.last().unwrap();

    // The stopped job is gone for stops, savepoints and cancels alike.
    let again = new_trigger_id();
    client
        .stop_with_savepoint(first, again, None, false)
        .await
        .unwrap();
    assert_eq!(
        client.await_savepoint(first, again, DEADLINE).await,
        Err(FlinkError::JobNotFound { job_id: first })
    );
    assert_eq!(
        client.cancel_job(first).await,
        Ok(CancelOutcome::AlreadyTerminated)
    );

    let second = new_job_id();
    let mut restore = counter_job(second, &output);
    restore.restore_from = Some(location.clone());
    let submitted = Instant::now();
    jobs.run(&client, &jar, &restore).await.unwrap();
    all_tasks_running(&client, second).await;
    println!(
        "measured: restored job all tasks RUNNING after {:?}",
        submitted.elapsed()
    );
    let restored = client.checkpoints(second).await.unwrap().restored.unwrap();
    assert!(restored.is_savepoint);
    assert_eq!(restored.location.as_ref(), Some(&location));

    let after = lines_at_least(&output, before.len() + 1).await;
    assert_eq!(
        after[before.len()],
        (last_count + 1, last_seq + 1),
        "the restored job's first line continues the counter and the sequence"
    );
    assert_eq!(
        client.cancel_job(second).await,
        Ok(CancelOutcome::Requested)
    );
}

#[tokio::test]
async fn flink_unknown_ids_are_typed_errors() {
    let client = flink().await;
    let job_id = new_job_id();
    let trigger_id = new_trigger_id();
    let not_found = Err(FlinkError::JobNotFound { job_id });
    assert_eq!(client.job(job_id).await.map(|_| ()), not_found);
    assert_eq!(client.cancel_job(job_id).await.map(|_| ()), not_found);
    assert_eq!(client.checkpoints(job_id).await.map(|_| ()), not_found);
    assert_eq!(client.exceptions(job_id).await.map(|_| ()), not_found);
    assert_eq!(
        client.savepoint_status(job_id, trigger_id).await,
        Err(FlinkError::TriggerNotFound { job_id, trigger_id })
    );
    // Flink accepts the operation and fails it afterwards.
    client
        .stop_with_savepoint(job_id, trigger_id, None, false)
        .await
        .unwrap();
    assert_eq!(
        client
            .await_savepoint(job_id, trigger_id, DEADLINE)
            .await
            .map(|_| ()),
        not_found
    );
    let jar_id: JarId = "00000000-0000-0000-0000-000000000000_missing.jar"
        .parse()
        .unwrap();
    assert_eq!(
        client.run_jar(&jar_id, &JobSubmission::new(job_id)).await,
        Err(FlinkError::JarNotFound { jar_id })
    );
}

#[tokio::test]
async fn flink_a_failing_job_names_its_root_cause() {
    let client = flink().await;
    let jar = uploaded_jar(&client).await;
    let jobs = Jobs::new();
    let job_id = new_job_id();
    let unwritable = Path::new("/nonexistent/console-flink-test/out.txt");
    jobs.run(&client, &jar, &counter_job(job_id, unwritable))
        .await
        .unwrap();
    // The job restarts (the example enables checkpointing, hence restarts); its history keeps why.
    let cause = wait_for("a failure in the exception history", || async {
        let history = client.exceptions(job_id).await.unwrap();
        history.latest().map(|latest| latest.root_cause.clone())
    })
    .await;
    assert_eq!(
        cause,
        format!(
            "java.nio.file.NoSuchFileException: {}",
            unwritable.display()
        )
    );
    assert_eq!(
        client.cancel_job(job_id).await,
        Ok(CancelOutcome::Requested)
    );
    job_reaches(&client, job_id, JobState::Canceled).await;
}

#[tokio::test]
async fn flink_a_savepoint_to_a_chosen_directory_lands_there() {
    let client = flink().await;
    let jar = uploaded_jar(&client).await;
    // Declared first, dropped last: the jobs are cancelled before their files go.
    let dir = tempfile::tempdir().unwrap();
    let jobs = Jobs::new();
    let job_id = new_job_id();
    jobs.run(
        &client,
        &jar,
        &counter_job(job_id, &dir.path().join("out.txt")),
    )
    .await
    .unwrap();
    all_tasks_running(&client, job_id).await;
    let target: SavepointLocation = dir
        .path()
        .join("savepoints")
        .display()
        .to_string()
        .parse()
        .unwrap();
    let trigger_id = new_trigger_id();
    client
        .trigger_savepoint(job_id, trigger_id, Some(&target))
        .await
        .unwrap();
    let location = client
        .await_savepoint(job_id, trigger_id, DEADLINE)
        .await
        .unwrap();
    let path = location.as_str().trim_start_matches("file:");
    assert!(
        path.starts_with(target.as_str()),
        "{location} is not under {target}"
    );
    assert!(
        Path::new(path).join("_metadata").is_file(),
        "{path}/_metadata is missing"
    );
    // The same trigger id again starts nothing new and reports the same savepoint.
    client
        .trigger_savepoint(job_id, trigger_id, Some(&target))
        .await
        .unwrap();
    assert_eq!(
        client.await_savepoint(job_id, trigger_id, DEADLINE).await,
        Ok(location)
    );
    assert_eq!(
        client.cancel_job(job_id).await,
        Ok(CancelOutcome::Requested)
    );
}
