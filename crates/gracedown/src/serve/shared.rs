//! What every connection task of a server shares: its TLS acceptor, its
//! link to the next generation, and its switches, set once when serving
//! starts.

use std::sync::Arc;

use super::link::Link;
use super::trim::Trim;
use crate::drain::ConnState;

/// What every connection task shares.
pub(crate) struct Shared {
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    /// The link to gracedown's start_server, when this worker hands
    /// connections off (see [`Server::handoff`](super::Server::handoff)).
    pub(crate) link: Option<Arc<Link>>,
    /// Hands freed memory back when connections go dormant.
    pub(crate) trim: Arc<Trim>,
    /// HTTP/2 streams are first polled on their connection's task (see
    /// [`Tuning::http2_inline_streams`](super::Tuning::http2_inline_streams)).
    pub(crate) inline_streams: bool,
    /// HTTP/1 responses may be written with vectored writes (hyper's choice),
    /// or are flattened (see [`Tuning::http1_writev`](super::Tuning::http1_writev)).
    pub(crate) writev: bool,
}

impl Shared {
    /// The state a new connection starts in: a TLS handshake, or waiting for
    /// its first request.
    pub(crate) fn initial_state(&self) -> ConnState {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            return ConnState::Handshake;
        }
        ConnState::NoRequest
    }
}
