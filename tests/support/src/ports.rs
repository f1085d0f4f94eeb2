//! Free loopback ports.

/// A port of 127.0.0.1 nothing listens on right now (bound, then released): for a server a test
/// starts, or as an address where nothing answers. Another process may take it before it is
/// used; a caller that starts a server on it retries with a new port when it cannot bind.
///
/// # Panics
/// When no port can be bound at all.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|error| panic!("cannot bind an ephemeral port on 127.0.0.1: {error}"))
}
