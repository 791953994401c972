//! The server's options beyond the essentials: every bound a connection is
//! held to ([`Timeouts`]), named by when it applies, and the switches that
//! trade one cost for another without changing what is served ([`Tuning`]).

use std::time::Duration;

use crate::drain::Bounds;

/// Every bound a connection is held to, in one value
/// ([`Server::timeouts`](super::Server::timeouts)). The defaults follow
/// nginx's. Each is at least a millisecond.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use gracedown::serve::Timeouts;
///
/// let timeouts = Timeouts {
///     keepalive: Duration::from_secs(30),
///     drain_idle: Duration::from_millis(500),
///     ..Timeouts::default()
/// };
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Always: how long a TLS handshake may take (default 10 s).
    pub handshake: Duration,
    /// Always: how long a request head may take, in total from its first
    /// byte, and a new connection to start its first request (default 60 s,
    /// nginx's `client_header_timeout`). The connection is closed without a
    /// response.
    pub request_head: Duration,
    /// Always: how long a handler waiting for request body bytes waits
    /// between two reads (default 60 s, nginx's `client_body_timeout`); see
    /// [`RequestBody`](super::RequestBody).
    pub request_body_read: Duration,
    /// Always: how long a response may wait for a client that does not read
    /// it (default 60 s, nginx's `send_timeout`); then the connection closes.
    pub response_send: Duration,
    /// Always: how long a connection may stay quiet between requests before
    /// it is closed: HTTP/1 at a message boundary, HTTP/2 with GOAWAY
    /// (default 75 s, nginx's `keepalive_timeout`).
    pub keepalive: Duration,
    /// While draining: how long an idle HTTP/1 keep-alive connection is
    /// kept, waiting for the client's next request (default 1 s).
    pub drain_idle: Duration,
    /// While draining: how long a connection that has sent no complete
    /// request head may take to send one (default 5 s).
    pub drain_first_request: Duration,
    /// While draining: the window over which connections that cannot move
    /// to the next generation (TLS, HTTP/2) are told to reconnect, each at
    /// its own moment (HTTP/2 GOAWAY, HTTP/1 over TLS `Connection: close` on
    /// its next response), so that the next generation is not hit by every
    /// reconnect at once (default 1 s; zero: all at the signal). At most
    /// half the drain deadline.
    pub reconnect_window: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        let b = Bounds::DEFAULT;
        Self {
            handshake: b.handshake,
            request_head: b.header,
            request_body_read: b.body,
            response_send: b.send,
            keepalive: b.keepalive,
            drain_idle: b.idle_draining,
            drain_first_request: b.first_request_draining,
            reconnect_window: b.reconnect_window,
        }
    }
}

/// Switches that trade one cost for another, without changing what a
/// client receives ([`Server::tuning`](super::Server::tuning)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// How long an HTTP/1 connection stays quiet between requests before it
    /// goes dormant, keeping only its socket: hyper's state and buffers
    /// (about 16 KiB) are freed until its next byte (see [Dormant
    /// connections](super::Server#dormant-connections); default 1 s, zero:
    /// as soon as its task sees it quiet).
    pub dormant_after: Duration,
    /// Whether an HTTP/2 stream is first polled on its connection's task
    /// (default `true`; see [HTTP/2 streams](super::Server#http2-streams)).
    /// `false` gives every stream a task of its own from the start, as
    /// hyper's `TokioExecutor` does: for handlers that compute for long
    /// without waiting and whose clients multiplex many requests on one
    /// connection, which then run in parallel, at the cost of a task, a
    /// scheduling and a write per request.
    pub http2_inline_streams: bool,
    /// Whether HTTP/1 responses may leave in vectored writes, head and body
    /// chunks each from where they lie (default `true`: hyper's choice).
    /// `false` copies head and body into one buffer and writes that (hyper's
    /// `writev(false)`): for small responses (an API's JSON, a redirect)
    /// about 450 fewer instructions of some 10,000 a request on this
    /// project's benchmark machine; for large bodies the copy costs more
    /// than it saves (a 1 MiB body took about 17 % more CPU per byte), and
    /// the buffer keeps the size a large response gave it (up to about half
    /// a MiB, where hyper's buffers are usually 16 KiB) until the connection
    /// goes dormant or closes. The bytes sent are the same either way.
    pub http1_writev: bool,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            dormant_after: Bounds::DEFAULT.dormant_after,
            http2_inline_streams: true,
            http1_writev: true,
        }
    }
}

/// At least a millisecond: a zero bound would make every connection's task
/// spin.
fn at_least(bound: Duration) -> Duration {
    bound.max(Duration::from_millis(1))
}

impl Bounds {
    /// The drain's bounds from the public options.
    pub(crate) fn from_options(timeouts: &Timeouts, tuning: &Tuning) -> Self {
        Self {
            handshake: at_least(timeouts.handshake),
            header: at_least(timeouts.request_head),
            body: at_least(timeouts.request_body_read),
            send: at_least(timeouts.response_send),
            keepalive: at_least(timeouts.keepalive),
            first_request_draining: at_least(timeouts.drain_first_request),
            idle_draining: at_least(timeouts.drain_idle),
            reconnect_window: timeouts.reconnect_window,
            dormant_after: tuning.dormant_after,
            ..Self::DEFAULT
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_drains_and_a_zero_bound_becomes_a_millisecond() {
        let defaults = Bounds::from_options(&Timeouts::default(), &Tuning::default());
        assert_eq!(defaults, Bounds::DEFAULT);
        let zero = Timeouts {
            keepalive: Duration::ZERO,
            reconnect_window: Duration::ZERO,
            ..Timeouts::default()
        };
        let bounds = Bounds::from_options(&zero, &Tuning::default());
        assert_eq!(bounds.keepalive, Duration::from_millis(1));
        assert_eq!(
            bounds.reconnect_window,
            Duration::ZERO,
            "zero: all at the signal"
        );
    }
}
