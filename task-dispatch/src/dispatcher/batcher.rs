//! Group commit for the owner's statements (issue 15): calls of one kind (queue reads, claims,
//! outcomes, adoptions) arriving from many app workers while one batch is being written go
//! together in the next one, one statement for all. Nothing waits on purpose: a lone call is
//! written at once, alone; under load the batches grow by themselves, up to a bound.
//!
//! # Guarantees
//! - Each caller gets its own answer, the one the single call would have given (the store's
//!   batch functions promise that); one batch of a kind is written at a time, in arrival order.
//! - Cancellation: a caller that stopped waiting before its batch is written (a worker dropped
//!   on session loss) is left out of it, so nothing is written on behalf of a dropped worker
//!   once the batch starts. A batch already sent to the database completes.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};

/// A call waiting for its batch.
struct Call<Req, Resp> {
    request: Req,
    answer: oneshot::Sender<Resp>,
}

/// The queue in front of one kind of batched statement. Cheap to clone.
#[derive(Debug)]
pub(super) struct Batcher<Req, Resp> {
    queue: mpsc::UnboundedSender<Call<Req, Resp>>,
}

impl<Req, Resp> Clone for Batcher<Req, Resp> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<Req, Resp> std::fmt::Debug for Call<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Call")
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> Batcher<Req, Resp> {
    /// Starts the writer: `write` answers a batch of at most `max` requests, in order, one
    /// answer each. It ends when every handle is dropped.
    pub(super) fn start<F, Fut>(max: usize, write: F) -> Self
    where
        F: Fn(Vec<Req>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<Resp>> + Send + 'static,
    {
        let (queue, calls) = mpsc::unbounded_channel();
        tokio::spawn(write_batches(calls, max, write));
        Self { queue }
    }

    /// Queues `request` and waits for its answer.
    pub(super) async fn call(&self, request: Req) -> Result<Resp> {
        let (answer, answered) = oneshot::channel();
        self.queue
            .send(Call { request, answer })
            .map_err(|_| Error::Stopped)?;
        answered.await.map_err(|_| Error::Stopped)
    }
}

async fn write_batches<Req, Resp, F, Fut>(
    mut calls: mpsc::UnboundedReceiver<Call<Req, Resp>>,
    max: usize,
    write: F,
) where
    F: Fn(Vec<Req>) -> Fut,
    Fut: Future<Output = Vec<Resp>>,
{
    let mut batch: Vec<Call<Req, Resp>> = Vec::new();
    let mut last_len = 0;
    while calls.recv_many(&mut batch, max).await > 0 {
        if last_len > 1 {
            fill(&mut calls, &mut batch, max).await;
        }
        last_len = batch.len();
        // Callers that gave up are not written for.
        batch.retain(|call| !call.answer.is_closed());
        if batch.is_empty() {
            continue;
        }
        let (requests, answers): (Vec<Req>, Vec<oneshot::Sender<Resp>>) = batch
            .drain(..)
            .map(|call| (call.request, call.answer))
            .unzip();
        let written = write(requests).await;
        for (answer, response) in answers.into_iter().zip(written) {
            // A caller that gave up meanwhile is not waiting any more.
            let _ = answer.send(response);
        }
    }
}

/// How long a writer under load waits for more calls before it writes a batch: only after a
/// batch of more than one call (under load), so a lone call is never delayed; the batches
/// that form meanwhile save statements (and the database's CPU) for a millisecond or so of
/// latency (the timer's resolution).
pub(super) const LINGER: std::time::Duration = std::time::Duration::from_micros(500);

/// Adds to `batch` (up to `max`) what arrives within [`LINGER`].
pub(super) async fn fill<T>(
    calls: &mut mpsc::UnboundedReceiver<T>,
    batch: &mut Vec<T>,
    max: usize,
) {
    let deadline = tokio::time::Instant::now() + LINGER;
    while batch.len() < max {
        let room = max - batch.len();
        match tokio::time::timeout_at(deadline, calls.recv_many(batch, room)).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    #[tokio::test]
    async fn every_caller_gets_its_own_answer() {
        let batcher: Batcher<u32, u32> = Batcher::start(4, |requests: Vec<u32>| async move {
            requests.into_iter().map(|r| r * 10).collect()
        });
        let calls: Vec<_> = (0..20).map(|i| batcher.call(i)).collect();
        let answers = futures::future::join_all(calls).await;
        let answers: Vec<u32> = answers.into_iter().map(|a| a.unwrap()).collect();
        assert_eq!(answers, (0..20).map(|i| i * 10).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_caller_that_gave_up_is_left_out() {
        let (seen_tx, mut seen) = mpsc::unbounded_channel();
        let (gate_tx, gate) = tokio::sync::watch::channel(false);
        let batcher: Batcher<u32, u32> = Batcher::start(8, move |requests: Vec<u32>| {
            let (seen_tx, mut gate) = (seen_tx.clone(), gate.clone());
            async move {
                let _ = seen_tx.send(requests.clone());
                // The first batch waits for the test, so the next calls queue behind it.
                let _ = gate.wait_for(|open| *open).await;
                requests
            }
        });
        let mut first = Box::pin(batcher.call(1));
        assert!((&mut first).now_or_never().is_none());
        assert_eq!(seen.recv().await, Some(vec![1]));
        // Both queued while the writer is busy (a call is queued on its first poll); the
        // first of them stops waiting.
        let mut dropped = Box::pin(batcher.call(2));
        let mut kept = Box::pin(batcher.call(3));
        assert!((&mut dropped).now_or_never().is_none());
        assert!((&mut kept).now_or_never().is_none());
        drop(dropped);
        gate_tx.send(true).unwrap();
        assert_eq!(first.await.unwrap(), 1);
        assert_eq!(kept.await.unwrap(), 3);
        assert_eq!(seen.recv().await, Some(vec![3]));
    }
}
