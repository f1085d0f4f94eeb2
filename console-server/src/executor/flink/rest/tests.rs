//! The client's own behaviour without Flink: URLs, and how transport failures map to errors
//! (a refused connection, a server that never answers, an answer too large). The meaning of
//! Flink's answers is tested in `answers/tests.rs`; the real cluster in `tests/flink_rest.rs`.

use std::path::PathBuf;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::executor::flink::transport::MAX_ANSWER_BYTES;

fn short_timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(2),
        call: Duration::from_millis(300),
        ..Timeouts::default()
    }
}

/// A port on loopback that nothing listens on (bound, then released).
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// A server on loopback that reads one request and answers it with `response` (raw HTTP), or
/// never answers when `response` is `None`.
async fn serve_once(response: Option<Vec<u8>>) -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buffer = [0u8; 1024];
        while !request.windows(4).any(|window| window == b"\r\n\r\n") {
            let read = socket.read(&mut buffer).await.unwrap();
            if read == 0 {
                return;
            }
            request.extend_from_slice(&buffer[..read]);
        }
        match response {
            Some(response) => socket.write_all(&response).await.unwrap_or(()),
            // Hold the connection open without a word until the client gives up.
            None => {
                let _ = socket.read(&mut buffer).await;
            }
        }
    });
    (url, server)
}

#[test]
fn only_plain_http_urls_with_a_host_are_accepted() {
    for bad in [
        "",
        "127.0.0.1:8081",
        "ftp://127.0.0.1:8081",
        "http://127.0.0.1:8081/?x=1",
        "http://user:secret@127.0.0.1:8081",
        "unix:/tmp/flink.sock",
    ] {
        assert!(
            matches!(
                FlinkRestClient::new(bad),
                Err(FlinkError::InvalidUrl { .. })
            ),
            "{bad:?} was accepted"
        );
    }
    let client = FlinkRestClient::new("http://127.0.0.1:8081").unwrap();
    assert_eq!(client.rest_url().as_str(), "http://127.0.0.1:8081/");
}

#[test]
fn path_segments_are_appended_to_any_prefix_and_encoded() {
    let plain = FlinkRestClient::new("http://127.0.0.1:8081").unwrap();
    assert_eq!(
        plain.url(&["jobs", "overview"]).as_str(),
        "http://127.0.0.1:8081/jobs/overview"
    );
    let prefixed = FlinkRestClient::new("https://gateway.example/flink/").unwrap();
    assert_eq!(
        prefixed.url(&["jars", "a b?.jar", "run"]).as_str(),
        "https://gateway.example/flink/jars/a%20b%3F.jar/run"
    );
}

#[tokio::test]
async fn a_refused_connection_is_unreachable() {
    let url = format!("http://127.0.0.1:{}", closed_port().await);
    let client = FlinkRestClient::with_timeouts(&url, short_timeouts()).unwrap();
    match client.jobs_overview().await {
        Err(
            error @ FlinkError::Unreachable {
                call: "GET /jobs/overview",
                ..
            },
        ) => {
            assert!(error.is_unavailable());
            assert!(
                error.to_string().to_lowercase().contains("refused"),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_timeout() {
    let (url, server) = serve_once(None).await;
    let client = FlinkRestClient::with_timeouts(&url, short_timeouts()).unwrap();
    assert_eq!(
        client.cluster_overview().await,
        Err(FlinkError::Timeout {
            call: "GET /overview",
            timeout: Duration::from_millis(300)
        })
    );
    server.abort();
}

#[tokio::test]
async fn an_oversized_answer_is_refused() {
    let body = vec![b' '; MAX_ANSWER_BYTES + 1];
    let mut response =
        format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
    response.extend_from_slice(&body);
    let (url, server) = serve_once(Some(response)).await;
    let client = FlinkRestClient::new(&url).unwrap();
    match client.jobs_overview().await {
        Err(FlinkError::MalformedAnswer { reason, .. }) => {
            assert!(reason.contains("larger than"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    server.abort();
}

#[tokio::test]
async fn an_answer_is_read_through_the_decoders() {
    let body = br#"{"taskmanagers":1,"slots-total":4,"slots-available":3,"jobs-running":1,"flink-version":"2.3.0"}"#;
    let mut response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body);
    let (url, server) = serve_once(Some(response)).await;
    let overview = FlinkRestClient::new(&url)
        .unwrap()
        .cluster_overview()
        .await
        .unwrap();
    assert_eq!((overview.slots_available, overview.jobs_running), (3, 1));
    server.await.unwrap();
}

#[tokio::test]
async fn an_unreadable_jar_is_refused_before_anything_is_sent() {
    let client =
        FlinkRestClient::new(&format!("http://127.0.0.1:{}", closed_port().await)).unwrap();
    let missing = PathBuf::from("/nonexistent/job.jar");
    match client.upload_jar(&missing).await {
        Err(FlinkError::JarFile { path, .. }) => assert_eq!(path, missing),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_entry_class_that_is_not_a_class_name_is_refused_before_anything_is_sent() {
    let client =
        FlinkRestClient::new(&format!("http://127.0.0.1:{}", closed_port().await)).unwrap();
    let mut submission = JobSubmission::new("000000000000000000000000000000b1".parse().unwrap());
    submission.entry_class = Some("Main; rm -rf /".to_owned());
    let jar_id: JarId = "x.jar".parse().unwrap();
    assert!(matches!(
        client.run_jar(&jar_id, &submission).await,
        Err(FlinkError::InvalidRequest { .. })
    ));
}
