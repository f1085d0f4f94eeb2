//! Group commit of submissions (issue 15): [`Dispatcher::submit`](super::Dispatcher::submit)
//! calls arriving while a batch is being written wait and go together in the next batch, one
//! transaction ([`Store::submit_tasks`]). Nothing waits on purpose: a lone submission is
//! written at once; under load (the previous batch held more than one) the writer waits for
//! more for [`LINGER`](super::batcher::LINGER), up to [`MAX_BATCH`].
//!
//! # Guarantees
//! - Each caller gets the answer a lone [`Store::submit_task_if_reachable`] would give, its own
//!   409 or 404 included; submissions for one app are checked in the order they reached the
//!   queue, each against the state the earlier ones project.
//! - Cancellation: a caller that stops waiting does not withdraw its submission; the task may
//!   be queued all the same (as with a lone call whose answer was lost).

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::Shared;
use crate::affinity::HostId;
use crate::error::{Error, Result};
use crate::store::{Submission, Submitted};

/// The largest batch: bounds one transaction's locks and its statement.
pub const MAX_BATCH: usize = 256;

struct Request {
    submission: Submission,
    answer: oneshot::Sender<Result<Submitted>>,
}

/// The queue in front of the batch writer. Cheap to clone.
#[derive(Debug, Clone)]
pub(super) struct Submitter {
    queue: mpsc::UnboundedSender<Request>,
    /// Off ([`DispatcherConfig::group_commit`]): each submission is written alone, at once.
    ///
    /// [`DispatcherConfig::group_commit`]: super::DispatcherConfig::group_commit
    group_commit: bool,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.submission.fmt(f)
    }
}

impl Submitter {
    /// Starts the batch writer; it ends when every [`Submitter`] is dropped.
    pub(super) fn start(shared: Arc<Shared>) -> Self {
        let (queue, requests) = mpsc::unbounded_channel();
        let group_commit = shared.config.group_commit;
        tokio::spawn(write_batches(shared.clone(), requests));
        Self {
            queue,
            group_commit,
            shared,
        }
    }

    /// Queues `submission` and waits for its answer.
    pub(super) async fn submit(&self, submission: Submission) -> Result<Submitted> {
        if !self.group_commit {
            let live = self.shared.view().live;
            return self
                .shared
                .store
                .submit_one(&submission, &|host: &HostId| live.has_host(host))
                .await;
        }
        let (answer, answered) = oneshot::channel();
        self.queue
            .send(Request { submission, answer })
            .map_err(|_| Error::Stopped)?;
        answered.await.map_err(|_| Error::Stopped)?
    }
}

async fn write_batches(shared: Arc<Shared>, mut requests: mpsc::UnboundedReceiver<Request>) {
    // A pool of its own: each shape of the batch's statements is prepared on few connections.
    let store = shared
        .store
        .dedicated(super::owner_batches::WRITER_CONNECTIONS);
    let mut batch = Vec::new();
    let mut last_len = 0;
    while requests.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // Under load, let the batch fill for a moment (see `batcher::LINGER`).
        if last_len > 1 {
            super::batcher::fill(&mut requests, &mut batch, MAX_BATCH).await;
        }
        last_len = batch.len();
        let submissions: Vec<Submission> = batch.iter().map(|r| r.submission.clone()).collect();
        let live = shared.view().live;
        let answers = store
            .submit_tasks(&submissions, |host| live.has_host(host))
            .await;
        shared
            .stats
            .submission_batches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for (request, answer) in batch.drain(..).zip(answers) {
            // A caller that gave up is not waiting any more.
            let _ = request.answer.send(answer);
        }
    }
}
