//! The bytes under hyper: an accepted socket ([`Stream`]), optionally under
//! TLS, with bytes already read put back in front ([`Transport`]); and the
//! [`ConnIo`] hyper reads and writes through, which the drain steers (see
//! [`IoMode`]) and which hands the transport back when hyper lets go of it.
//!
//! One descriptor per connection: the drain never duplicates a socket. It gets
//! the transport back from hyper instead (at a message boundary, after an
//! upgrade ends, or when hyper closes), and closes it itself with a linger.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::oneshot;

use super::framing::{Finding, Framing};
use crate::drain::{ConnCtl, IoMode};

/// An accepted TCP or unix stream.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Self::Tcp($s) => $e,
            Self::Unix($s) => $e,
        }
    };
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Self::Tcp(s) => s.as_fd(),
            Self::Unix(s) => s.as_fd(),
        }
    }
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

#[cfg(feature = "tls")]
pub(crate) type TlsStream = tokio_rustls::server::TlsStream<Stream>;

/// A connection's byte stream: plain or TLS, with bytes already read from it
/// (the h2c preface sniff, a racing request) served first.
#[derive(Debug)]
pub(crate) struct Transport {
    prefix: Bytes,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Plain(Stream),
    #[cfg(feature = "tls")]
    Tls(Box<TlsStream>),
}

/// What [`Transport::read_now`] found.
#[derive(Debug)]
pub(crate) enum ReadNow {
    /// Bytes that were waiting (put back in front of the transport).
    Data,
    /// Nothing is waiting.
    Nothing,
    /// The client closed, or the connection failed.
    Closed,
}

impl Transport {
    pub(crate) fn plain(stream: Stream, prefix: Bytes) -> Self {
        Self {
            prefix,
            kind: Kind::Plain(stream),
        }
    }

    #[cfg(feature = "tls")]
    pub(crate) fn tls(stream: TlsStream) -> Self {
        Self {
            prefix: Bytes::new(),
            kind: Kind::Tls(Box::new(stream)),
        }
    }

    /// Reads what is waiting, without waiting: in the kernel, or decrypted
    /// inside TLS. What was read is put back in front.
    pub(crate) fn read_now(&mut self) -> ReadNow {
        if !self.prefix.is_empty() {
            return ReadNow::Data;
        }
        let mut buf = BytesMut::zeroed(4096);
        let mut read = ReadBuf::new(&mut buf);
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(&mut *self).poll_read(&mut cx, &mut read) {
            Poll::Pending => ReadNow::Nothing,
            Poll::Ready(Err(_)) => ReadNow::Closed,
            Poll::Ready(Ok(())) => {
                let n = read.filled().len();
                if n == 0 {
                    return ReadNow::Closed;
                }
                buf.truncate(n);
                self.prefix = buf.freeze();
                ReadNow::Data
            }
        }
    }

    /// Lingering close (RFC 9112 §9.6): TLS `close_notify` and FIN, then read
    /// and discard what the client still sends until it closes too or
    /// `bound` passes, so that closing never turns unread bytes into an RST
    /// that destroys a response the client has not read yet.
    pub(crate) async fn close(mut self, bound: Duration) {
        let _ = tokio::time::timeout(bound, self.shutdown()).await;
        let drain = async {
            let mut sink = [0u8; 2048];
            while let Ok(n) = self.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(bound, drain).await;
    }
}

macro_rules! transport {
    ($self:ident, $s:ident => $e:expr) => {
        match &mut $self.get_mut().kind {
            Kind::Plain($s) => $e,
            #[cfg(feature = "tls")]
            Kind::Tls($s) => $e,
        }
    };
}

impl AsyncRead for Transport {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        transport!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        transport!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        transport!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.kind {
            Kind::Plain(s) => s.is_write_vectored(),
            #[cfg(feature = "tls")]
            Kind::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        transport!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        transport!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

/// Shuts a socket down in both directions while its [`Transport`] is lent
/// out (to an upgraded connection's handler), so that the handler's next
/// read or write fails and it lets go.
///
/// The caller must hold the receiving end of the [`ConnIo`] that owns the
/// transport: the transport, and so the descriptor, is then alive (inside
/// the `ConnIo`, or in the channel on its way back).
pub(crate) fn force_shutdown(fd: RawFd) {
    #[allow(unsafe_code)]
    // SAFETY: per this function's contract the descriptor is owned by a live
    // `Transport` that cannot be dropped while the caller holds the receiver
    // it would be sent to; `shutdown` does not close it.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let _ = rustix::net::shutdown(fd, rustix::net::Shutdown::Both);
}

/// What hyper reads and writes through: the [`Transport`], steered by the
/// connection's [`IoMode`]. Dropping it sends the transport back to the
/// connection's task.
#[derive(Debug)]
pub(crate) struct ConnIo {
    inner: Option<Transport>,
    back: Option<oneshot::Sender<Transport>>,
    ctl: Arc<ConnCtl>,
    /// `Some` for HTTP/1: request heads are watched for bare LFs.
    framing: Option<Framing>,
}

impl ConnIo {
    /// `transport` under hyper; it comes back on the returned receiver.
    pub(crate) fn new(
        transport: Transport,
        ctl: Arc<ConnCtl>,
        http1: bool,
    ) -> (Self, oneshot::Receiver<Transport>) {
        let (back, rx) = oneshot::channel();
        let io = Self {
            inner: Some(transport),
            back: Some(back),
            // Picked up at a boundary: the next head is the next request.
            framing: http1.then(|| Framing::after(ctl.requests())),
            ctl,
        };
        (io, rx)
    }

    fn inner(&mut self) -> io::Result<Pin<&mut Transport>> {
        match self.inner.as_mut() {
            Some(inner) => Ok(Pin::new(inner)),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

fn aborted() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "closed by the drain")
}

impl AsyncRead for ConnIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.ctl.io_mode() {
            IoMode::Normal => {}
            // A response still waiting for the socket is finished first; the
            // write side wakes hyper, which then reads here again.
            IoMode::Detach if this.ctl.is_write_blocked() => return Poll::Pending,
            IoMode::Detach => return Poll::Ready(Ok(())),
            IoMode::Abort => return Poll::Ready(Err(aborted())),
        }
        let before = buf.filled().len();
        let result = this.inner()?.poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(framing)) = (&result, this.framing.as_mut()) {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                if this.ctl.in_flight() == 0 {
                    this.ctl.head_bytes_arrived();
                }
                if this.ctl.is_upgrading() {
                    // The bytes are the application's now.
                    framing.lose();
                } else if let Finding::BareLf(request) = framing.feed(new) {
                    this.ctl.mark_bare_lf(request);
                }
            }
        }
        result
    }
}

impl ConnIo {
    fn track<T>(&mut self, result: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        self.ctl.write_blocked(result.is_pending());
        result
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.ctl.io_mode() == IoMode::Abort {
            return Poll::Ready(Err(aborted()));
        }
        let result = this.inner()?.poll_write(cx, buf);
        this.track(result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.ctl.io_mode() == IoMode::Abort {
            return Poll::Ready(Err(aborted()));
        }
        let result = this.inner()?.poll_write_vectored(cx, bufs);
        this.track(result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner
            .as_ref()
            .is_some_and(Transport::is_write_vectored)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.ctl.io_mode() == IoMode::Abort {
            return Poll::Ready(Err(aborted()));
        }
        let result = this.inner()?.poll_flush(cx);
        this.track(result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.ctl.io_mode() {
            // The connection's task closes the socket itself (or passes it on).
            IoMode::Detach | IoMode::Abort => Poll::Ready(Ok(())),
            IoMode::Normal => this.inner()?.poll_shutdown(cx),
        }
    }
}

impl Drop for ConnIo {
    fn drop(&mut self) {
        if let (Some(inner), Some(back)) = (self.inner.take(), self.back.take()) {
            // If the task is gone, the transport is dropped here (closed).
            let _ = back.send(inner);
        }
    }
}
