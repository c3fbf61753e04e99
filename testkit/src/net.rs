//! Free loopback ports.

use std::net::{SocketAddr, TcpListener};

/// A loopback address with a port that was free a moment ago. Prefer binding
/// port 0 directly where the code under test allows it.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
}
