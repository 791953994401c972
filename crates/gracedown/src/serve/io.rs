//! The connection's transport, and a second handle on the same socket (a
//! duplicated descriptor) through which the drain peeks for waiting request
//! bytes and closes with a linger, whoever owns the stream at that moment.
//!
//! hyper owns the stream itself, so reads and writes take tokio's fast path.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use rustix::net::{RecvFlags, Shutdown};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// An accepted TCP or unix stream.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    /// A second handle on this socket, for the drain.
    pub(crate) fn handle(&self) -> io::Result<SocketHandle> {
        let (fd, unix) = match self {
            Self::Tcp(s) => (s.as_fd(), false),
            Self::Unix(s) => (s.as_fd(), true),
        };
        let fd = rustix::io::fcntl_dupfd_cloexec(fd, 0)?;
        Ok(SocketHandle { fd, unix })
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Self::Tcp($s) => $e,
            Self::Unix($s) => $e,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

/// A duplicate descriptor of an accepted socket (close-on-exec). The socket
/// closes when both this and the [`Stream`] are dropped.
#[derive(Debug)]
pub(crate) struct SocketHandle {
    fd: OwnedFd,
    unix: bool,
}

impl SocketHandle {
    /// Whether request bytes are waiting in the kernel, without consuming them.
    pub(crate) fn has_pending_bytes(&self) -> bool {
        let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        matches!(
            rustix::net::recv(&self.fd, &mut probe[..], RecvFlags::PEEK | RecvFlags::DONTWAIT),
            Ok((_, n)) if n > 0
        )
    }

    /// Lingering close (RFC 9112 §9.6): send FIN, then read and discard what
    /// the client still sends until it closes too or `bound` passes, so that
    /// closing never turns unread bytes into an RST that destroys a response
    /// the client has not read yet. Call it once the [`Stream`] is dropped.
    pub(crate) async fn linger(self, bound: Duration) {
        match rustix::net::shutdown(&self.fd, Shutdown::Write) {
            Ok(()) | Err(rustix::io::Errno::NOTCONN) => {}
            Err(_) => return,
        }
        let drain = async {
            let mut sink = [0u8; 4096];
            let result = if self.unix {
                let std = std::os::unix::net::UnixStream::from(self.fd);
                let Ok(mut stream) = UnixStream::from_std(std) else {
                    return;
                };
                loop_until_eof(&mut stream, &mut sink).await
            } else {
                let std = std::net::TcpStream::from(self.fd);
                let Ok(mut stream) = TcpStream::from_std(std) else {
                    return;
                };
                loop_until_eof(&mut stream, &mut sink).await
            };
            let _ = result;
        };
        let _ = tokio::time::timeout(bound, drain).await;
    }
}

async fn loop_until_eof(stream: &mut (impl AsyncRead + Unpin), sink: &mut [u8]) -> io::Result<()> {
    while stream.read(sink).await? > 0 {}
    Ok(())
}

/// A stream with bytes already read from it put back in front.
#[derive(Debug)]
pub(crate) struct Prefixed<T> {
    prefix: Bytes,
    inner: T,
}

impl<T> Prefixed<T> {
    pub(crate) fn new(prefix: Bytes, inner: T) -> Self {
        Self { prefix, inner }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.has_remaining() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
