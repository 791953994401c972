//! What a request knows about the connection it came on.

use std::net::SocketAddr;

/// The addresses of the connection a request came on; in every request's
/// extensions.
///
/// # Examples
///
/// ```
/// use gracedown::serve::ConnectionInfo;
///
/// fn client(req: &http::Request<()>) -> String {
///     req.extensions()
///         .get::<ConnectionInfo>()
///         .and_then(ConnectionInfo::remote_addr)
///         .map_or_else(|| "unix".to_owned(), |addr| addr.to_string())
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionInfo {
    pub(crate) remote: Option<SocketAddr>,
    pub(crate) local: Option<SocketAddr>,
    pub(crate) tls: bool,
}

impl ConnectionInfo {
    /// The client's address; `None` on a unix socket.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote
    }

    /// The address the connection was accepted on; `None` on a unix socket.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local
    }

    /// Whether the connection is TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }
}
