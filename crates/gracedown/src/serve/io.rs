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

use gracedown_sockets::handoff::MovingTls;

use super::framing::{Finding, Framing, HeadCopy};
use crate::drain::{ConnCtl, IoMode, Refusal};
use crate::http2::Wire;
#[cfg(feature = "tls")]
use crate::tls::session::{ContinuedTls, Records, SessionState, TakeOut, take_out};

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

impl Stream {
    /// A connection handed over by another process: TCP or unix, non-blocking,
    /// registered with the runtime; with its peer and local addresses (TCP).
    pub(crate) fn adopt(
        socket: std::os::fd::OwnedFd,
    ) -> io::Result<(
        Self,
        Option<std::net::SocketAddr>,
        Option<std::net::SocketAddr>,
    )> {
        let domain = rustix::net::sockopt::socket_domain(&socket)?;
        if domain == rustix::net::AddressFamily::UNIX {
            let stream = std::os::unix::net::UnixStream::from(socket);
            stream.set_nonblocking(true)?;
            return Ok((Self::Unix(UnixStream::from_std(stream)?), None, None));
        }
        if domain != rustix::net::AddressFamily::INET && domain != rustix::net::AddressFamily::INET6
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a TCP or unix stream socket",
            ));
        }
        let stream = std::net::TcpStream::from(socket);
        stream.set_nonblocking(true)?;
        let stream = TcpStream::from_std(stream)?;
        let (peer, local) = (stream.peer_addr().ok(), stream.local_addr().ok());
        Ok((Self::Tcp(stream), peer, local))
    }
}

impl Stream {
    /// Ready when the socket is readable (or closed, or failed).
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Self::Tcp(s) => s.poll_read_ready(cx),
            Self::Unix(s) => s.poll_read_ready(cx),
        }
    }
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

/// A TLS connection in rustls's hands, over a transport that notes where
/// records end (so that its session can move).
#[cfg(feature = "tls")]
pub(crate) type TlsStream = tokio_rustls::server::TlsStream<Records<Stream>>;

/// A TLS session continued from an older generation.
#[cfg(feature = "tls")]
pub(crate) type MovedTls = ContinuedTls<Stream>;

/// What travels when a connection moves: its socket, the bytes already read
/// (plaintext, under TLS), and its TLS session if it has one.
pub(crate) type Parts = (std::os::fd::OwnedFd, Bytes, Option<MovingTls>);

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
    #[cfg(feature = "tls")]
    Moved(Box<MovedTls>),
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

    /// A TLS session continued here, with `prefix` (plaintext) in front.
    #[cfg(feature = "tls")]
    pub(crate) fn moved(session: MovedTls, prefix: Bytes) -> Self {
        Self {
            prefix,
            kind: Kind::Moved(Box::new(session)),
        }
    }

    /// What travels when the connection moves ([`Parts`]): its socket, out
    /// of the runtime, the bytes already read, and its TLS session, taken
    /// out of rustls (or of a session that moved here). `Err` with the
    /// transport when it cannot move now (a TLS record read in part, records
    /// still to send); `Err(None)` when the runtime would not let go of the
    /// socket or rustls of the session (it is closed then).
    pub(crate) fn into_moving(self) -> Result<Parts, Option<Self>> {
        let prefix = self.prefix;
        match self.kind {
            Kind::Plain(stream) => Ok((into_fd(stream).ok_or(None)?, prefix, None)),
            #[cfg(feature = "tls")]
            Kind::Tls(tls) => match take_out(tls) {
                TakeOut::Taken { io, state, plain } => {
                    with_session(io, &state, joined(prefix, plain), Bytes::new())
                }
                TakeOut::NotQuiet(tls) => Err(Some(Self {
                    prefix,
                    kind: Kind::Tls(tls),
                })),
                TakeOut::Failed(e) => {
                    tracing::debug!(error = %e, "a TLS session could not be taken out of rustls; closed");
                    Err(None)
                }
            },
            #[cfg(feature = "tls")]
            Kind::Moved(session) => match session.into_parts() {
                Ok((io, state, plain, sealed)) => {
                    with_session(io, &state, joined(prefix, plain), sealed)
                }
                Err(session) => Err(Some(Self {
                    prefix,
                    kind: Kind::Moved(session),
                })),
            },
        }
    }

    /// A plain connection's stream and the bytes already read from it;
    /// `Err` with the transport under TLS.
    pub(crate) fn into_stream(self) -> Result<(Stream, Bytes), Self> {
        match self.kind {
            Kind::Plain(stream) => Ok((stream, self.prefix)),
            #[cfg(feature = "tls")]
            kind @ (Kind::Tls(_) | Kind::Moved(_)) => Err(Self {
                prefix: self.prefix,
                kind,
            }),
        }
    }

    /// Ready when the socket under the transport is readable. Under TLS
    /// that may be a record with no request bytes: [`Transport::read_now`]
    /// tells.
    pub(crate) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &self.kind {
            Kind::Plain(s) => s.poll_read_ready(cx),
            #[cfg(feature = "tls")]
            Kind::Tls(s) => s.get_ref().0.get_ref().poll_read_ready(cx),
            #[cfg(feature = "tls")]
            Kind::Moved(s) => s.get_ref().poll_read_ready(cx),
        }
    }

    /// Whether bytes already read are waiting in front of the socket.
    pub(crate) fn has_prefix(&self) -> bool {
        !self.prefix.is_empty()
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
            // On the heap: a connection's task holds this future's room all
            // its life (as part of its own), and closing is rare.
            let mut sink = vec![0u8; 2048];
            while let Ok(n) = self.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(bound, drain).await;
    }
}

impl AsFd for Transport {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.kind {
            Kind::Plain(s) => s.as_fd(),
            #[cfg(feature = "tls")]
            Kind::Tls(s) => s.get_ref().0.get_ref().as_fd(),
            #[cfg(feature = "tls")]
            Kind::Moved(s) => s.get_ref().as_fd(),
        }
    }
}

macro_rules! transport {
    ($self:ident, $s:ident => $e:expr) => {
        match &mut $self.get_mut().kind {
            Kind::Plain($s) => $e,
            #[cfg(feature = "tls")]
            Kind::Tls($s) => $e,
            #[cfg(feature = "tls")]
            Kind::Moved($s) => $e,
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
            #[cfg(feature = "tls")]
            Kind::Moved(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        transport!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        transport!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

/// A stream's socket, out of the runtime; `None` when the runtime would not
/// let go of it.
fn into_fd(stream: Stream) -> Option<std::os::fd::OwnedFd> {
    match stream {
        Stream::Tcp(tcp) => tcp.into_std().ok().map(Into::into),
        Stream::Unix(unix) => unix.into_std().ok().map(Into::into),
    }
}

/// What travels for a connection under TLS: its socket, its plaintext
/// `prefix`, its session and the records received and not opened.
#[cfg(feature = "tls")]
fn with_session(
    io: Stream,
    state: &SessionState,
    prefix: Bytes,
    sealed: Bytes,
) -> Result<Parts, Option<Transport>> {
    let tls = MovingTls {
        session: state.encode(),
        sealed,
    };
    Ok((into_fd(io).ok_or(None)?, prefix, Some(tls)))
}

/// `front`, then `back`.
#[cfg(feature = "tls")]
fn joined(front: Bytes, back: Bytes) -> Bytes {
    match (front.is_empty(), back.is_empty()) {
        (_, true) => front,
        (true, false) => back,
        (false, false) => Bytes::from([&front[..], &back[..]].concat()),
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

/// The transport, back from hyper, and whether it stopped at a boundary.
#[derive(Debug)]
pub(crate) struct Returned {
    pub(crate) transport: Transport,
    /// hyper was told end-of-file by a detach and had, at that point, every
    /// byte the client sent parsed into requests: nothing of the client's is
    /// lost, and the next byte in the socket starts a request.
    pub(crate) at_boundary: bool,
    /// hyper was parked waiting for the rest of a request head, with every
    /// response written and nothing else unparsed: these are the head's
    /// bytes it held, and the socket holds the rest.
    pub(crate) head: Option<Bytes>,
    /// An HTTP/2 connection's frames, as followed (see [`ConnIo::follow_http2`]).
    pub(crate) http2: Option<Box<Wire>>,
}

impl Returned {
    /// The transport with the bytes hyper held (a parked head) back in front.
    pub(crate) fn into_transport(self) -> Transport {
        let mut transport = self.transport;
        if let Some(head) = self.head.filter(|h| !h.is_empty()) {
            let mut prefix = BytesMut::from(head);
            prefix.extend_from_slice(&transport.prefix);
            transport.prefix = prefix.freeze();
        }
        transport
    }
}

/// What hyper reads and writes through: the [`Transport`], steered by the
/// connection's [`IoMode`]. Dropping it sends the transport back to the
/// connection's task.
#[derive(Debug)]
pub(crate) struct ConnIo {
    inner: Option<Transport>,
    back: Option<oneshot::Sender<Returned>>,
    ctl: Arc<ConnCtl>,
    /// `Some` for HTTP/1: message boundaries are followed (bare LFs refused).
    framing: Option<Framing>,
    /// A detach's end-of-file was delivered while at a boundary.
    detached_at_boundary: bool,
    /// Everything hyper wrote has been flushed (hyper is not mid-response).
    flushed: bool,
    /// hyper's read, held back by a detach until its writes are flushed.
    held_read: Option<Waker>,
    /// For a connection that may move to another process: the bytes of a
    /// request head not yet complete.
    head: Option<HeadCopy>,
    /// A detach found hyper waiting for the rest of a head (see [`Returned::head`]).
    parked: bool,
    /// An HTTP/2 connection that may move: its frames are followed (and
    /// translated, if it moved here), and the connection's quiet moments
    /// told to its tracker.
    http2: Option<Box<Wire>>,
}

impl ConnIo {
    /// `transport` under hyper; it comes back on the returned receiver.
    /// `movable`: an HTTP/1 connection that may move to another process,
    /// even in the middle of a request head (the bytes of at most `movable`
    /// bytes long heads are kept for that).
    pub(crate) fn new(
        transport: Transport,
        ctl: Arc<ConnCtl>,
        http1: bool,
        movable: Option<usize>,
    ) -> (Self, oneshot::Receiver<Returned>) {
        let (back, rx) = oneshot::channel();
        let io = Self {
            inner: Some(transport),
            back: Some(back),
            // Picked up at a boundary: the next head is the next request.
            framing: http1.then(|| Framing::after(ctl.requests())),
            ctl,
            detached_at_boundary: false,
            flushed: true,
            held_read: None,
            head: movable.filter(|_| http1).map(HeadCopy::new),
            parked: false,
            http2: None,
        };
        (io, rx)
    }

    /// HTTP/2 bytes go through `wire` (an HTTP/2 connection that may move,
    /// or that moved here).
    pub(crate) fn follow_http2(&mut self, wire: Wire) {
        self.http2 = Some(Box::new(wire));
    }

    /// hyper's read of an HTTP/2 connection through its [`Wire`].
    fn read_http2(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Option<Poll<io::Result<()>>> {
        let wire = self.http2.as_deref_mut()?;
        if self.ctl.io_mode() == IoMode::Abort {
            return Some(Poll::Ready(Err(aborted())));
        }
        let Some(inner) = self.inner.as_mut() else {
            return Some(Poll::Ready(Err(io::ErrorKind::NotConnected.into())));
        };
        let result = wire.poll_read(Pin::new(inner), cx, buf);
        self.ctl.set_http2_quiet(wire.is_quiet());
        Some(result)
    }

    /// hyper's write of an HTTP/2 connection through its [`Wire`].
    fn write_http2(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Option<Poll<io::Result<usize>>> {
        let wire = self.http2.as_deref_mut()?;
        if self.ctl.io_mode() == IoMode::Abort {
            return Some(Poll::Ready(Err(aborted())));
        }
        let Some(inner) = self.inner.as_mut() else {
            return Some(Poll::Ready(Err(io::ErrorKind::NotConnected.into())));
        };
        let result = wire.poll_write_vectored(Pin::new(inner), cx, bufs);
        self.ctl.set_http2_quiet(wire.is_quiet());
        Some(self.wrote(result))
    }

    /// hyper's flush of an HTTP/2 connection through its [`Wire`].
    fn flush_http2(&mut self, cx: &mut Context<'_>) -> Option<Poll<io::Result<()>>> {
        let wire = self.http2.as_deref_mut()?;
        if self.ctl.io_mode() == IoMode::Abort {
            return Some(Poll::Ready(Err(aborted())));
        }
        let Some(inner) = self.inner.as_mut() else {
            return Some(Poll::Ready(Err(io::ErrorKind::NotConnected.into())));
        };
        let result = wire.poll_flush(Pin::new(inner), cx);
        self.ctl.set_http2_quiet(wire.is_quiet());
        Some(self.flushed(result))
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
        if let Some(result) = this.read_http2(cx, buf) {
            return result;
        }
        let requests = this.ctl.requests();
        let head_pending = this
            .framing
            .as_ref()
            .is_some_and(|f| f.head_pending(requests));
        let mut limit = None;
        // Read only where a detach needs it, not on every read.
        let body_left = || this.framing.as_ref().and_then(Framing::body_left);
        match this.ctl.io_mode() {
            // The bytes are the application's (an upgrade), whatever the
            // drain chose before the switch.
            IoMode::Detach | IoMode::Move | IoMode::DetachAtBoundary if this.ctl.is_upgrading() => {
            }
            IoMode::Normal => {
                if head_pending {
                    // The next head started in bytes read with the previous
                    // request (whose start cleared the stamp): hyper reads
                    // for the rest of it now, so it is bounded from now on
                    // and the connection is not quiet.
                    this.ctl.head_bytes_arrived();
                }
            }
            // Bytes already read (a request that raced a close) go to hyper first.
            IoMode::Detach | IoMode::Move
                if this.inner.as_ref().is_some_and(Transport::has_prefix) => {}
            // A request in flight (or one hyper took up after the detach,
            // pipelined behind the boundary it was chosen at) still has
            // body bytes to come: they are read, never past its end, and
            // the detach ends at the boundary after them (what follows
            // stays in the socket, for the generation the connection moves
            // to).
            IoMode::Detach | IoMode::Move if body_left().is_some() => {
                limit = body_left().map(|left| usize::try_from(left).unwrap_or(usize::MAX));
            }
            // hyper is mid-response (its reads also watch for the client's
            // end while it writes): the end-of-file waits until the response
            // is flushed, and the flush wakes this read again.
            IoMode::Detach | IoMode::Move | IoMode::DetachAtBoundary
                if !this.flushed || this.ctl.in_flight() > 0 =>
            {
                this.held_read = Some(cx.waker().clone());
                return Poll::Pending;
            }
            IoMode::DetachAtBoundary => {
                let at_boundary = !head_pending
                    && !this.inner.as_ref().is_some_and(Transport::has_prefix)
                    && this
                        .framing
                        .as_ref()
                        .is_some_and(|f| f.at_boundary(requests));
                if at_boundary {
                    this.detached_at_boundary = true;
                    return Poll::Ready(Ok(()));
                }
                // A request has started: no detach; hyper reads on.
                this.ctl.set_io_mode(IoMode::Normal);
                if head_pending {
                    this.ctl.head_bytes_arrived();
                }
            }
            mode @ (IoMode::Detach | IoMode::Move) => {
                let half_head = this.head.is_some()
                    && this
                        .framing
                        .as_ref()
                        .is_some_and(|f| f.one_head_pending(requests));
                if half_head && mode == IoMode::Move {
                    // hyper waits for the rest of a head, all written: it
                    // waits here until the connection's task drops it and
                    // moves the connection, the head's bytes in front.
                    if !this.parked {
                        this.parked = true;
                        this.ctl.park();
                    }
                    return Poll::Pending;
                }
                this.detached_at_boundary = this.ctl.in_flight() == 0
                    && this
                        .framing
                        .as_ref()
                        .is_some_and(|f| f.at_boundary(requests));

                return Poll::Ready(Ok(()));
            }
            IoMode::Abort => return Poll::Ready(Err(aborted())),
        }
        let before = buf.filled().len();
        let result = match limit {
            None => this.inner()?.poll_read(cx, buf),
            Some(limit) => read_at_most(this.inner()?, cx, buf, limit),
        };
        if let (Poll::Ready(Ok(())), Some(framing)) = (&result, this.framing.as_mut()) {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                if this.ctl.is_upgrading() {
                    // The bytes are the application's now.
                    framing.upgraded();
                } else {
                    match framing.feed(new) {
                        Finding::Nothing => {}
                        Finding::BareLf(request) => this.ctl.refuse_from(request, Refusal::BareLf),
                        Finding::Lost(request) => this.ctl.refuse_from(request, Refusal::Unframed),
                    }
                    if let Some(head) = this.head.as_mut() {
                        head.follow(framing, new);
                    }
                    if framing.head_pending(this.ctl.requests()) {
                        this.ctl.head_bytes_arrived();
                    }
                }
                if this.ctl.in_flight() == 0 {
                    this.ctl.head_bytes_arrived();
                }
            }
        }
        result
    }
}

/// Reads at most `limit` bytes into `buf` (a detached connection's read
/// that must not pass the end of a request body). Rare: out of the hot
/// read path, with its own small buffer.
#[cold]
#[inline(never)]
fn read_at_most(
    inner: Pin<&mut Transport>,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
    limit: usize,
) -> Poll<io::Result<()>> {
    if buf.remaining() == 0 {
        return inner.poll_read(cx, buf);
    }
    let mut part = [0u8; 8 * 1024];
    let max = limit.min(buf.remaining()).min(part.len());
    let mut part = ReadBuf::new(&mut part[..max]);
    let result = inner.poll_read(cx, &mut part);
    buf.put_slice(part.filled());
    result
}

impl ConnIo {
    /// Records how a write went: blocked, or through (then not flushed yet).
    fn wrote(&mut self, result: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        self.ctl.write_blocked(result.is_pending());
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.flushed = false;
        }
        result
    }

    /// Records how a flush went; a flushed connection releases a held read.
    fn flushed(&mut self, result: Poll<io::Result<()>>) -> Poll<io::Result<()>> {
        self.ctl.write_blocked(result.is_pending());
        if let Poll::Ready(Ok(())) = result {
            self.flushed = true;
            // Only a read that can go on now: hyper flushes on every pass of
            // its loop, and waking a read still held for a request in
            // flight would poll the connection in a loop until it ends. The
            // request's end pokes the connection's task in a drain, and
            // hyper flushes what it writes after it.
            if self.ctl.in_flight() == 0
                && let Some(read) = self.held_read.take()
            {
                read.wake();
            }
        }
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
        if let Some(result) = this.write_http2(cx, &[io::IoSlice::new(buf)]) {
            return result;
        }
        if this.ctl.io_mode() == IoMode::Abort {
            return Poll::Ready(Err(aborted()));
        }
        let result = this.inner()?.poll_write(cx, buf);
        this.wrote(result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(result) = this.write_http2(cx, bufs) {
            return result;
        }
        if this.ctl.io_mode() == IoMode::Abort {
            return Poll::Ready(Err(aborted()));
        }
        let result = this.inner()?.poll_write_vectored(cx, bufs);
        this.wrote(result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner
            .as_ref()
            .is_some_and(Transport::is_write_vectored)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(result) = this.flush_http2(cx) {
            return result;
        }
        if this.ctl.io_mode() == IoMode::Abort {
            return Poll::Ready(Err(aborted()));
        }
        let result = this.inner()?.poll_flush(cx);
        this.flushed(result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.ctl.io_mode() {
            // The connection's task closes the socket itself (or passes it on).
            IoMode::Detach | IoMode::Move | IoMode::DetachAtBoundary if this.ctl.is_upgrading() => {
                this.inner()?.poll_shutdown(cx)
            }
            IoMode::Detach | IoMode::Move | IoMode::DetachAtBoundary | IoMode::Abort => {
                Poll::Ready(Ok(()))
            }
            IoMode::Normal => this.inner()?.poll_shutdown(cx),
        }
    }
}

impl Drop for ConnIo {
    fn drop(&mut self) {
        if let (Some(transport), Some(back)) = (self.inner.take(), self.back.take()) {
            // If the task is gone, the transport is dropped here (closed).
            let head = match (self.parked, self.head.as_mut()) {
                (true, Some(head)) => head.take(),
                _ => None,
            };
            let _ = back.send(Returned {
                transport,
                at_boundary: self.detached_at_boundary,
                head,
                http2: self.http2.take(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drain::{Bounds, ConnState, Engine, Proto};

    const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    /// A connection's `ConnIo` as hyper holds it, over one end of a socket
    /// pair; the other end is the client.
    fn conn_io() -> (
        ConnIo,
        oneshot::Receiver<Returned>,
        Arc<ConnCtl>,
        UnixStream,
    ) {
        let engine = Engine::new(Bounds::DEFAULT);
        let ctl = Arc::clone(&engine.register(ConnState::NoRequest).ctl);
        let (server, client) = UnixStream::pair().expect("socket pair");
        let transport = Transport::plain(Stream::Unix(server), Bytes::new());
        let (io, back) = ConnIo::new(transport, Arc::clone(&ctl), true, None);
        (io, back, ctl, client)
    }

    /// Reads until a read completes (bounded), yielding to the runtime between tries.
    async fn read_ready(io: &mut ConnIo) -> io::Result<usize> {
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                if let Some(read) = read_once(io) {
                    return read;
                }
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("a read completes in time")
    }

    /// One read as hyper makes it: `None` while it would wait.
    fn read_once(io: &mut ConnIo) -> Option<io::Result<usize>> {
        let mut buf = [0u8; 256];
        let mut read = ReadBuf::new(&mut buf);
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(io).poll_read(&mut cx, &mut read) {
            Poll::Pending => None,
            Poll::Ready(result) => Some(result.map(|()| read.filled().len())),
        }
    }

    #[tokio::test]
    async fn going_dormant_never_cuts_a_head_that_came_with_the_previous_request() {
        let (mut io, _back, ctl, mut client) = conn_io();
        // Request 1 and the start of request 2's head in one segment.
        let mut wire = REQUEST.to_vec();
        wire.extend_from_slice(b"GET / HTTP/1.1\r\n");
        client.write_all(&wire).await.expect("send");
        let read = read_ready(&mut io).await.expect("read");
        assert_eq!(read, wire.len());
        // hyper dispatches request 1 (which clears the head stamp) and answers it.
        drop(ctl.begin(Proto::Http1));
        assert_eq!(ctl.snapshot().head_since, 0);
        // The rules choose dormancy; hyper then reads for the rest of request 2's head.
        ctl.set_io_mode(IoMode::DetachAtBoundary);
        assert!(
            read_once(&mut io).is_none(),
            "hyper waits for the rest of the head: no end-of-file"
        );
        assert_eq!(ctl.io_mode(), IoMode::Normal, "the detach is given up");
        assert_ne!(
            ctl.snapshot().head_since,
            0,
            "the head is bounded from now on"
        );
        client.write_all(b"Host: x\r\n\r\n").await.expect("send");
        let rest = read_ready(&mut io).await.expect("read");
        assert_eq!(rest, 11, "the rest of request 2");
    }

    #[tokio::test]
    async fn a_detached_connection_reads_the_rest_of_a_body_and_not_one_byte_past_it() {
        let (mut io, back, ctl, mut client) = conn_io();
        let head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234";
        client.write_all(head).await.expect("send");
        assert_eq!(read_ready(&mut io).await.expect("read"), head.len());
        // hyper dispatches the request; the drain detaches the connection
        // to move it; the rest of the body arrives with the next request.
        let guard = ctl.begin(Proto::Http1);
        ctl.set_io_mode(IoMode::Move);
        client
            .write_all(b"56789GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("send");
        assert_eq!(
            read_ready(&mut io).await.expect("read"),
            5,
            "the body's rest, not the next request"
        );
        assert!(
            read_once(&mut io).is_none(),
            "at the boundary with the request in flight: held"
        );
        drop(guard);
        let eof = read_ready(&mut io).await.expect("read");
        assert_eq!(eof, 0, "then an end-of-file");
        drop(io);
        let mut returned = back.await.expect("the transport comes back");
        assert!(returned.at_boundary);
        let mut next = [0u8; 64];
        let n = returned.transport.read(&mut next).await.expect("read");
        assert_eq!(&next[..n], b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n");
    }

    #[tokio::test]
    async fn a_read_held_for_a_request_in_flight_is_woken_once_it_can_go_on_not_at_every_flush() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        struct Count(AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let (mut io, _back, ctl, mut client) = conn_io();
        client.write_all(REQUEST).await.expect("send");
        assert_eq!(read_ready(&mut io).await.expect("read"), REQUEST.len());
        let guard = ctl.begin(Proto::Http1);
        ctl.set_io_mode(IoMode::Detach);
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        let mut buf = [0u8; 64];
        let mut read = ReadBuf::new(&mut buf);
        assert!(Pin::new(&mut io).poll_read(&mut cx, &mut read).is_pending());
        // hyper flushes on every pass of its loop while the handler works.
        for _ in 0..10 {
            assert!(Pin::new(&mut io).poll_flush(&mut cx).is_ready());
        }
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            0,
            "no wake-up while in flight"
        );
        drop(guard);
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_ready());
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "woken once it can go on");
        let mut read = ReadBuf::new(&mut buf);
        assert!(matches!(
            Pin::new(&mut io).poll_read(&mut cx, &mut read),
            Poll::Ready(Ok(()))
        ));
        assert!(read.filled().is_empty(), "the end-of-file at the boundary");
    }

    #[tokio::test]
    async fn going_dormant_at_a_boundary_is_an_end_of_file_and_hands_the_socket_back() {
        let (mut io, back, ctl, mut client) = conn_io();
        client.write_all(REQUEST).await.expect("send");
        let read = read_ready(&mut io).await.expect("read");
        assert_eq!(read, REQUEST.len());
        drop(ctl.begin(Proto::Http1));
        ctl.set_io_mode(IoMode::DetachAtBoundary);
        let eof = read_once(&mut io)
            .expect("an end-of-file at once")
            .expect("read");
        assert_eq!(eof, 0);
        drop(io);
        let returned = back.await.expect("the transport comes back");
        assert!(
            returned.at_boundary,
            "every byte the client sent was parsed"
        );
    }
}
