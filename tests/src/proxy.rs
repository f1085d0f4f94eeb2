//! A TCP proxy on loopback that a test can cut, to take a service away from the nodes without
//! stopping the shared server.
//!
//! # Notable behaviors
//! - [`TcpProxy::cut`] closes every open connection (the peers see them end, as when a server
//!   stops) and, until [`TcpProxy::restore`], closes every new connection at once, so connecting
//!   fails fast as it does against a stopped server. The listening port stays the proxy's, so
//!   nobody else can take it meanwhile.
//! - The proxy runs on the runtime of the test that started it and stops when dropped.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// See the [module documentation](self).
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    upstream: String,
    /// `true` while cut. Every connection task watches it and ends when it turns `true`.
    cut: Arc<watch::Sender<bool>>,
    accepting: JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on a free port of 127.0.0.1 and forwards every connection to `upstream`
    /// (`host:port`).
    ///
    /// # Panics
    /// When no port can be bound.
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|error| panic!("cannot bind a proxy port: {error}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|error| panic!("proxy address: {error}"));
        let cut = Arc::new(watch::channel(false).0);
        let accepting = tokio::spawn(accept_loop(listener, upstream.to_owned(), cut.clone()));
        Self {
            addr,
            upstream: upstream.to_owned(),
            cut,
            accepting,
        }
    }

    /// `127.0.0.1:port` of the proxy.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `host:port` it forwards to.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// Closes every connection and refuses new ones until [`TcpProxy::restore`].
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accepting.abort();
        // Ends the connection tasks too.
        self.cut.send_replace(true);
    }
}

async fn accept_loop(listener: TcpListener, upstream: String, cut: Arc<watch::Sender<bool>>) {
    while let Ok((client, _)) = listener.accept().await {
        if *cut.borrow() {
            drop(client);
            continue;
        }
        tokio::spawn(forward(client, upstream.clone(), cut.subscribe()));
    }
}

/// Copies bytes both ways until either side closes or the proxy is cut.
async fn forward(mut client: TcpStream, upstream: String, mut cut: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(&upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = cut.wait_for(|cut| *cut) => {}
    }
    // Dropping both streams closes them.
}
