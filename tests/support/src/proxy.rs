//! A TCP proxy on loopback between clients and one server, which a test switches between three
//! modes to take the server away from those clients without stopping it (the shared servers
//! serve every other test running at the same time).
//!
//! | mode | open connections | new connections | what a client sees |
//! |---|---|---|---|
//! | [`TcpProxy::pass`] (the start) | forwarded both ways | forwarded | the server |
//! | [`TcpProxy::cut`] | closed | closed at once | a stopped server: errors, fast |
//! | [`TcpProxy::black_hole`] | kept open, nothing forwarded | accepted, nothing forwarded | a silent partition: only its own timeouts tell |
//!
//! # Notable behaviors
//! - Bytes read before a black hole are held, not dropped, and delivered once the proxy passes
//!   again (as TCP would retransmit them); a connection accepted during a black hole reaches the
//!   server only then. A cut drops whatever was held.
//! - The listening port stays the proxy's in every mode, so nobody else can take it meanwhile.
//! - The proxy runs on the runtime of the test that started it. Dropping it closes every
//!   connection.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with the traffic; see the [module documentation](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Pass,
    Cut,
    BlackHole,
}

/// See the [module documentation](self).
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    upstream: String,
    /// Every connection task watches it.
    mode: Arc<watch::Sender<Mode>>,
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
        let mode = Arc::new(watch::channel(Mode::Pass).0);
        let accepting = tokio::spawn(accept_loop(listener, upstream.to_owned(), mode.clone()));
        Self {
            addr,
            upstream: upstream.to_owned(),
            mode,
            accepting,
        }
    }

    /// `127.0.0.1:port` of the proxy: what clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `host:port` it forwards to.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// Forwards again: held bytes and held connections go through, new connections are
    /// forwarded (connections closed by a cut stay closed).
    pub fn pass(&self) {
        self.mode.send_replace(Mode::Pass);
    }

    /// Closes every connection and closes new ones at once, until [`TcpProxy::pass`].
    pub fn cut(&self) {
        self.mode.send_replace(Mode::Cut);
    }

    /// Forwards nothing, in either direction, on any connection, old or new, and closes none,
    /// until [`TcpProxy::pass`] or [`TcpProxy::cut`].
    pub fn black_hole(&self) {
        self.mode.send_replace(Mode::BlackHole);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accepting.abort();
        // Ends the connection tasks too.
        self.mode.send_replace(Mode::Cut);
    }
}

async fn accept_loop(listener: TcpListener, upstream: String, mode: Arc<watch::Sender<Mode>>) {
    while let Ok((client, _)) = listener.accept().await {
        if *mode.borrow() == Mode::Cut {
            drop(client);
            continue;
        }
        tokio::spawn(forward(client, upstream.clone(), mode.subscribe()));
    }
}

/// Waits while the proxy is a black hole; `true` when it passes, `false` when it is cut (or
/// gone).
async fn passes(mode: &mut watch::Receiver<Mode>) -> bool {
    mode.wait_for(|mode| *mode != Mode::BlackHole)
        .await
        .map(|mode| *mode == Mode::Pass)
        .unwrap_or(false)
}

/// Waits until the proxy is cut (or gone).
async fn cut(mode: &mut watch::Receiver<Mode>) {
    let _ = mode.wait_for(|mode| *mode == Mode::Cut).await;
}

/// One client connection: connects to the server once the proxy passes, then copies bytes both
/// ways until both sides have closed or the proxy is cut. Dropping the streams closes them.
async fn forward(client: TcpStream, upstream: String, mut mode: watch::Receiver<Mode>) {
    if !passes(&mut mode).await {
        return;
    }
    let server = tokio::select! {
        connected = TcpStream::connect(&upstream) => match connected {
            Ok(server) => server,
            Err(_) => return,
        },
        () = cut(&mut mode) => return,
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(
        pump(client_read, server_write, mode.clone()),
        pump(server_read, client_write, mode),
    );
}

/// Copies one direction: reads only while the proxy passes, holds what it read through a black
/// hole, and passes the end of the stream on (so half-closed connections work as without the
/// proxy). Returns at the end of the stream, on an error, or when the proxy is cut.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut mode: watch::Receiver<Mode>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if !passes(&mut mode).await {
            return;
        }
        let read = tokio::select! {
            read = from.read(&mut buf) => read,
            // A new mode: look again before reading (reads are cancel-safe).
            changed = mode.changed() => match changed {
                Ok(()) => continue,
                Err(_) => return,
            },
        };
        let n = match read {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        if !passes(&mut mode).await {
            return;
        }
        tokio::select! {
            written = to.write_all(&buf[..n]) => if written.is_err() { return },
            () = cut(&mut mode) => return,
        }
    }
}
