//! How a call travels: the timeouts, the URL of each call, the size cap on answers, and how
//! transport failures become [`FlinkError`]s.

use std::time::Duration;

use reqwest::{Method, Response, Url};

use super::answers::Answer;
use super::error::FlinkError;
use super::rest::FlinkRestClient;

/// Largest answer body read; Flink's largest (exception histories with stack traces) are far
/// smaller. A bigger one is refused as malformed rather than held in memory.
pub(super) const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// How long the calls may take.
///
/// # Notable behaviors
/// A call that runs out of time fails with [`FlinkError::Timeout`]; what it asked for may still
/// happen (a run whose answer was late may have submitted its job: run it again with the same
/// job id and Flink answers [`FlinkError::JobAlreadyExists`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing the TCP connection.
    pub connect: Duration,
    /// Every call but the two below, from sending to the end of the answer.
    pub call: Duration,
    /// `POST /jars/{id}/run`, which runs the program's `main` in the JobManager before answering
    /// (0.5 s for a small job, a few seconds for the first job of a fresh cluster).
    pub run: Duration,
    /// `POST /jars/upload`, which carries the whole jar.
    pub upload: Duration,
    /// Pause between two polls of a savepoint operation in [`FlinkRestClient::await_savepoint`].
    pub poll_interval: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(2),
            call: Duration::from_secs(10),
            run: Duration::from_secs(30),
            upload: Duration::from_secs(60),
            poll_interval: Duration::from_millis(100),
        }
    }
}

impl FlinkRestClient {
    /// The base URL plus `segments`, each percent-encoded as one path segment.
    pub(super) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        // `with_timeouts` refused URLs that cannot be a base, so there are path segments.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    pub(super) fn request(&self, method: Method, segments: &[&str]) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(segments))
    }

    pub(super) async fn get(
        &self,
        call: &'static str,
        segments: &[&str],
    ) -> Result<Answer, FlinkError> {
        let request = self.request(Method::GET, segments);
        self.send(call, request, self.timeouts.call).await
    }

    /// Sends `request` and reads the whole answer within `timeout`.
    pub(super) async fn send(
        &self,
        call: &'static str,
        request: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<Answer, FlinkError> {
        let exchange = async {
            let response = request.send().await?;
            read_answer(call, response).await
        };
        match tokio::time::timeout(timeout, exchange).await {
            Err(_elapsed) => Err(FlinkError::Timeout { call, timeout }),
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) if error.is_timeout() => Err(FlinkError::Timeout { call, timeout }),
            Ok(Err(error)) => Err(FlinkError::Unreachable {
                call,
                reason: error_chain(&error),
            }),
        }
    }
}

/// Reads the body, refusing one larger than [`MAX_ANSWER_BYTES`]. The outer `Result` is the
/// transport's, the inner one this client's verdict.
async fn read_answer(
    call: &'static str,
    mut response: Response,
) -> Result<Result<Answer, FlinkError>, reqwest::Error> {
    let status = response.status().as_u16();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Ok(Err(FlinkError::MalformedAnswer {
                call,
                reason: format!("answer larger than {MAX_ANSWER_BYTES} bytes"),
            }));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Ok(Answer { status, body }))
}

/// The error and its sources on one line: reqwest's own message ("error sending request") says
/// little without the cause ("Connection refused").
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
