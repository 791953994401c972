//! What to run: target, protocol, concurrency, duration, bounds.

use std::net::SocketAddr;
use std::time::Duration;

/// The wire protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// HTTP/2 over plain TCP with prior knowledge.
    H2c,
}

/// A closed-model run: `connections` slots, each with one request
/// outstanding at a time, for `duration`.
#[derive(Debug, Clone)]
pub struct Plan {
    pub(crate) addr: SocketAddr,
    pub(crate) protocol: Protocol,
    pub(crate) path: String,
    pub(crate) connections: usize,
    pub(crate) duration: Duration,
    pub(crate) timeout: Duration,
}

impl Plan {
    /// `GET /` on `addr`, 10 connections, 10 s, 10 s per-request timeout.
    pub fn new(addr: SocketAddr, protocol: Protocol) -> Self {
        Self {
            addr,
            protocol,
            path: "/".to_owned(),
            connections: 10,
            duration: Duration::from_secs(10),
            timeout: Duration::from_secs(10),
        }
    }

    /// The request path (and query).
    pub fn path(mut self, path: &str) -> Self {
        self.path = path.to_owned();
        self
    }

    /// How many connections run at once (at least 1).
    pub fn connections(mut self, n: usize) -> Self {
        self.connections = n.max(1);
        self
    }

    /// How long new requests are started.
    pub fn duration(mut self, duration: Duration) -> Self {
        self.duration = duration;
        self
    }

    /// How long one request may take before it counts as a timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}
