//! The bounds a connection is held to in each state, one value per server.

use std::time::Duration;

/// The bounds of each connection state; the defaults follow nginx's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// A TLS handshake (nginx `ssl_handshake_timeout`: 60 s; ours is tighter).
    pub(crate) handshake: Duration,
    /// A request head, in total from its first byte; also how long a new
    /// connection may take to start its first request (`client_header_timeout`).
    pub(crate) header: Duration,
    /// Between two reads of a request body while the handler waits (`client_body_timeout`).
    pub(crate) body: Duration,
    /// A write waiting for the client to read (`send_timeout`).
    pub(crate) send: Duration,
    /// A quiet connection between requests, HTTP/1 and HTTP/2 (`keepalive_timeout`).
    pub(crate) keepalive: Duration,
    /// Once draining: how long a connection may take to start its first request.
    pub(crate) first_request_draining: Duration,
    /// Once draining: how long an HTTP/1 connection is kept between requests.
    pub(crate) idle_draining: Duration,
    /// After GOAWAY: how long to wait for the client's PING acknowledgement.
    pub(crate) goaway_ack: Duration,
    /// A lingering close: how long to wait for the client's FIN.
    pub(crate) linger: Duration,
    /// Once draining: the window over which TLS and HTTP/2 connections are
    /// told to reconnect, each at its own moment.
    pub(crate) reconnect_window: Duration,
    /// HTTP/1, quiet between requests this long: the connection goes
    /// dormant (hyper and its buffers are dropped until the next byte).
    pub(crate) dormant_after: Duration,
}

impl Bounds {
    pub(crate) const DEFAULT: Self = Self {
        handshake: Duration::from_secs(10),
        header: Duration::from_secs(60),
        body: Duration::from_secs(60),
        send: Duration::from_secs(60),
        keepalive: Duration::from_secs(75),
        first_request_draining: Duration::from_secs(5),
        idle_draining: Duration::from_secs(1),
        goaway_ack: Duration::from_secs(5),
        linger: Duration::from_secs(2),
        reconnect_window: Duration::from_secs(1),
        dormant_after: Duration::from_secs(1),
    };

    /// The longest a connection's task waits without reading its verdict
    /// again: the shortest bound an event inside the connection can start
    /// (see [`Earliest`]).
    pub(super) fn horizon(&self) -> Duration {
        self.header.min(self.keepalive).min(self.send)
    }
}

impl Default for Bounds {
    fn default() -> Self {
        Self::DEFAULT
    }
}
