//! A TCP proxy between a client and the database that a test can blackhole: while it is
//! blackholed, bytes stop flowing both ways on every connection (old and new), as when a network
//! path goes dark; no connection is reset, so the client can only notice by timing out.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Proxy {
    pub addr: SocketAddr,
    dark: Arc<watch::Sender<bool>>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy on 127.0.0.1 to `upstream` (host:port).
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (dark, _) = watch::channel(false);
        let dark = Arc::new(dark);
        let upstream = upstream.to_owned();
        let task = {
            let dark = dark.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let dark = dark.subscribe();
                    let upstream = upstream.clone();
                    tokio::spawn(async move {
                        let Ok(server) = TcpStream::connect(&upstream).await else {
                            return;
                        };
                        let (client_read, client_write) = client.into_split();
                        let (server_read, server_write) = server.into_split();
                        tokio::select! {
                            _ = pump(client_read, server_write, dark.clone()) => {}
                            _ = pump(server_read, client_write, dark) => {}
                        }
                    });
                }
            })
        };
        Self { addr, dark, task }
    }

    /// Stops (`true`) or resumes (`false`) all traffic.
    pub fn set_dark(&self, dark: bool) {
        self.dark.send_replace(dark);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies bytes while the light is on; holds them (reads nothing more) while it is dark, and
/// drops whatever was read at the moment it went dark.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut dark: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if dark.wait_for(|dark| !*dark).await.is_err() {
            return;
        }
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = dark.wait_for(|dark| *dark) => continue,
        };
        if *dark.borrow() {
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
