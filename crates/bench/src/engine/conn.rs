//! Opening a connection: TCP, then TLS when the protocol asks.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::plan::Plan;

/// A connected stream.
#[derive(Debug)]
pub(crate) enum Io {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Io {
    /// Whether ALPN chose `h2`.
    pub(crate) fn is_h2(&self) -> bool {
        matches!(self, Self::Tls(s) if s.get_ref().1.alpn_protocol() == Some(b"h2"))
    }
}

/// Connects within the plan's timeout; `Err` means the request was never written.
pub(crate) async fn connect(
    plan: &Plan,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<Io, ()> {
    let tcp = tokio::time::timeout(plan.timeout, TcpStream::connect(plan.addr))
        .await
        .map_err(|_| ())?
        .map_err(|_| ())?;
    let _ = tcp.set_nodelay(true);
    let Some(config) = tls else {
        return Ok(Io::Tcp(tcp));
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
    let handshake = connector.connect(super::tls::server_name(plan), tcp);
    let stream = tokio::time::timeout(plan.timeout, handshake)
        .await
        .map_err(|_| ())?
        .map_err(|_| ())?;
    Ok(Io::Tls(Box::new(stream)))
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Io::Tcp($s) => $e,
            Io::Tls($s) => $e,
        }
    };
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}
