//! The proxy's three modes, against a local echo server and against MariaDB.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use sqlx::{ConnectOptions, Connection};
use test_support::mariadb::MariaDb;
use test_support::proxy::TcpProxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long a read waits for bytes that must not come.
const SILENCE: Duration = Duration::from_millis(300);

/// A server on loopback that sends back what it reads; answers its `host:port`.
async fn echo_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

/// Sends `message` and reads its echo, failing after 5 s.
async fn round_trip(stream: &mut TcpStream, message: &[u8]) {
    stream.write_all(message).await.unwrap();
    let mut echoed = vec![0; message.len()];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut echoed))
        .await
        .expect("the echo comes back")
        .unwrap();
    assert_eq!(echoed, message);
}

/// Whether the peer closed `stream` (a read answers the end of the stream or an error) within
/// 5 s.
async fn is_closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn a_black_hole_forwards_nothing_and_closes_nothing_until_it_passes_again() {
    let proxy = TcpProxy::start(&echo_server().await).await;
    let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
    round_trip(&mut open, b"before").await;

    proxy.black_hole();
    open.write_all(b"held").await.unwrap();
    let mut late = TcpStream::connect(proxy.addr()).await.unwrap();
    late.write_all(b"late").await.unwrap();
    let mut buf = [0; 4];
    assert!(
        tokio::time::timeout(SILENCE, open.read(&mut buf))
            .await
            .is_err(),
        "nothing comes back through a black hole, not even the end of the stream"
    );
    assert!(
        tokio::time::timeout(SILENCE, late.read(&mut buf))
            .await
            .is_err(),
        "a connection made during a black hole is accepted and stays silent"
    );

    proxy.pass();
    for (stream, held) in [(&mut open, b"held"), (&mut late, b"late")] {
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut buf))
            .await
            .expect("held bytes are delivered once the proxy passes")
            .unwrap();
        assert_eq!(&buf, held);
        round_trip(stream, b"after").await;
    }
}

#[tokio::test]
async fn a_cut_closes_connections_and_closes_new_ones_until_it_passes_again() {
    let proxy = TcpProxy::start(&echo_server().await).await;
    let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
    round_trip(&mut open, b"before").await;
    proxy.black_hole();
    let mut held = TcpStream::connect(proxy.addr()).await.unwrap();

    proxy.cut();
    assert!(is_closed(&mut open).await, "an open connection ends");
    assert!(
        is_closed(&mut held).await,
        "a connection held by a black hole ends"
    );
    let mut refused = TcpStream::connect(proxy.addr()).await.unwrap();
    assert!(
        is_closed(&mut refused).await,
        "a new connection ends at once"
    );

    proxy.pass();
    let mut again = TcpStream::connect(proxy.addr()).await.unwrap();
    round_trip(&mut again, b"after").await;
}

#[tokio::test]
async fn mysql_a_cut_proxy_closes_connections_and_refuses_new_ones_until_restored() {
    let server = MariaDb::from_env();
    let proxy = TcpProxy::start(&server.host_port).await;
    let through = proxy.addr().to_string();
    let mut open = server
        .connect_options(&through, None)
        .connect()
        .await
        .unwrap_or_else(|error| {
            panic!(
                "connecting through the proxy to {}: {error}",
                server.host_port
            )
        });
    let one: i64 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut open)
        .await
        .unwrap();
    assert_eq!(one, 1);

    proxy.cut();
    assert!(
        sqlx::query_scalar::<_, i64>("SELECT 1")
            .fetch_one(&mut open)
            .await
            .is_err(),
        "an open connection ends when the proxy is cut"
    );
    let refused = tokio::time::timeout(
        Duration::from_secs(5),
        server.connect_options(&through, None).connect(),
    )
    .await;
    assert!(
        matches!(refused, Ok(Err(_))),
        "a new connection fails at once while cut: {refused:?}"
    );

    proxy.pass();
    let mut again = server
        .connect_options(&through, None)
        .connect()
        .await
        .unwrap();
    let one: i64 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut again)
        .await
        .unwrap();
    assert_eq!(one, 1);
    let _ = again.close().await;
}
