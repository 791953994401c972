//! Opening a connection: TCP, then TLS when the protocol asks.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

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
    /// Whether an idle HTTP/1 connection was closed by the server: it has an
    /// end of stream, a reset, or bytes (a TLS `close_notify`, a 408) waiting.
    pub(crate) fn closed_by_peer(&self) -> bool {
        let tcp = match self {
            Self::Tcp(s) => s,
            Self::Tls(s) => s.get_ref().0,
        };
        let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        !matches!(
            socket2::SockRef::from(tcp).peek(&mut probe),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        )
    }

    /// For TLS, whether the handshake resumed a session (`Some(true)`) or
    /// was a full one.
    pub(crate) fn tls_resumed(&self) -> Option<bool> {
        match self {
            Self::Tcp(_) => None,
            Self::Tls(s) => {
                Some(s.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed))
            }
        }
    }

    /// Whether ALPN chose `h2`.
    pub(crate) fn is_h2(&self) -> bool {
        matches!(self, Self::Tls(s) if s.get_ref().1.alpn_protocol() == Some(b"h2"))
    }
}

/// Connects to `addr` (the target, or the relay in front of it) within the
/// plan's timeout; `Err` means the request was never written.
pub(crate) async fn connect(
    plan: &Plan,
    addr: std::net::SocketAddr,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<Io, ()> {
    let tcp = tokio::time::timeout(plan.timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| ())?
        .map_err(|_| ())?;
    let _ = tcp.set_nodelay(true);
    if let Some(rtt) = plan.rtt {
        // Through the relay, connecting takes a round trip (SYN, SYN-ACK); a
        // target that refuses shows as a reset within it.
        let settle = rtt + Duration::from_millis(5);
        if let Ok(Ok(())) = tokio::time::timeout(settle, tcp.readable()).await {
            let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
            match socket2::SockRef::from(&tcp).peek(&mut probe) {
                // Bytes before the request are the target's business.
                Ok(n) if n > 0 => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // An end of stream or a reset: the target refused.
                _ => return Err(()),
            }
        }
    }
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
