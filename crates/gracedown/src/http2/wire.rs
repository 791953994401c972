//! The bytes of an HTTP/2 connection that may move, between h2 and the
//! transport: followed by a [`Tracker`], and translated by a [`Resume`]
//! when the connection moved here.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::frames::HEADER_LEN;
use super::resume::Resume;
use super::state::State;
use super::tracker::Tracker;

/// Translated bytes for the client past which h2's writes wait.
const OUT_LIMIT: usize = 64 * 1024;

/// An HTTP/2 connection's bytes, followed (and translated, after a move).
#[derive(Debug)]
pub(crate) struct Wire {
    tracker: Tracker,
    resume: Option<Resume>,
    /// The client's bytes, filtered, that h2 has not read yet.
    ready: BytesMut,
    /// The client's bytes not filtered yet (from a frame header on).
    held: BytesMut,
    /// h2's bytes, translated, not yet written.
    out: BytesMut,
    /// h2's read, waiting for its own window to open.
    read_waiter: Option<Waker>,
}

impl Wire {
    /// A connection served from its first byte.
    pub(crate) fn new() -> Self {
        Self::with(Tracker::new(), None)
    }

    /// A connection that moved here in `state`, served by a fresh h2.
    pub(crate) fn resumed(state: &State) -> Self {
        Self::with(Tracker::resumed(state), Some(Resume::new(state)))
    }

    fn with(tracker: Tracker, resume: Option<Resume>) -> Self {
        Self {
            tracker,
            resume,
            ready: BytesMut::new(),
            held: BytesMut::new(),
            out: BytesMut::new(),
            read_waiter: None,
        }
    }

    /// Whether the connection is quiet enough to move (see [`Tracker::quiet`]),
    /// with nothing held or half-translated here.
    pub(crate) fn is_quiet(&self) -> bool {
        self.tracker.is_quiet()
            && self.ready.is_empty()
            && self.held.is_empty()
            && self.out.is_empty()
            && self.resume.as_ref().is_none_or(Resume::idle)
    }

    /// What moves with the connection, when it is quiet.
    pub(crate) fn state(&self) -> Option<State> {
        if self.is_quiet() {
            self.tracker.quiet()
        } else {
            None
        }
    }

    /// h2's read.
    pub(crate) fn poll_read<T: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        mut io: Pin<&mut T>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.resume.is_none() {
            let before = buf.filled().len();
            ready!(io.poll_read(cx, buf))?;
            self.tracker.inbound(&buf.filled()[before..]);
            return Poll::Ready(Ok(()));
        }
        loop {
            let Some(resume) = self.resume.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            let synthetic = resume.synthetic();
            if !synthetic.is_empty() {
                let n = synthetic.len().min(buf.remaining());
                buf.put_slice(&synthetic[..n]);
                synthetic.advance(n);
                return Poll::Ready(Ok(()));
            }
            if !self.ready.is_empty() {
                let n = self.ready.len().min(buf.remaining());
                buf.put_slice(&self.ready[..n]);
                self.ready.advance(n);
                return Poll::Ready(Ok(()));
            }
            if !self.held.is_empty() {
                if resume.waits(&self.held) {
                    self.read_waiter = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                // What is held first; more from the socket only for a
                // frame in part.
                let before = self.held.len();
                let mut piece = std::mem::take(&mut self.held);
                let filtered = resume.inbound(&mut piece);
                if let Some(from) = filtered.held_from {
                    self.held = piece.split_off(from);
                }
                piece.truncate(filtered.kept);
                self.ready = piece;
                if filtered.opened {
                    // h2's data that waited for the client's window goes
                    // on (written now if the socket takes it; h2's next
                    // flush writes the rest).
                    resume.unpark(&mut self.out);
                    if let Poll::Ready(Err(e)) =
                        write_out(&mut self.out, &mut self.tracker, io.as_mut(), cx)
                    {
                        return Poll::Ready(Err(e));
                    }
                }
                if !self.ready.is_empty() || self.held.len() < before {
                    continue;
                }
            }
            if self.held.is_empty() && buf.remaining() >= 2 * HEADER_LEN {
                // The common case: read in place.
                let start = buf.filled().len();
                ready!(io.as_mut().poll_read(cx, buf))?;
                if buf.filled().len() == start {
                    return Poll::Ready(Ok(()));
                }
                self.tracker.inbound(&buf.filled()[start..]);
                let filtered = resume.inbound(&mut buf.filled_mut()[start..]);
                if let Some(from) = filtered.held_from {
                    self.held = BytesMut::from(&buf.filled()[start + from..]);
                }
                buf.set_filled(start + filtered.kept);
                if filtered.opened {
                    // h2's data that waited for the client's window goes
                    // on (written now if the socket takes it; h2's next
                    // flush writes the rest).
                    resume.unpark(&mut self.out);
                    if let Poll::Ready(Err(e)) =
                        write_out(&mut self.out, &mut self.tracker, io.as_mut(), cx)
                    {
                        return Poll::Ready(Err(e));
                    }
                }
                if filtered.kept > 0 {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            // A frame in part, or a read too small to filter in place:
            // more into `held`.
            let start = self.held.len();
            self.held.resize(start + 4096, 0);
            let mut read = ReadBuf::new(&mut self.held[start..]);
            let result = io.as_mut().poll_read(cx, &mut read);
            let n = read.filled().len();
            self.held.truncate(start + n);
            ready!(result)?;
            if n == 0 {
                // The end: a frame in part is never finished.
                return Poll::Ready(Ok(()));
            }
            self.tracker.inbound(&self.held[start..]);
        }
    }

    /// h2's write, from several buffers.
    pub(crate) fn poll_write_vectored<T: AsyncWrite + Unpin>(
        &mut self,
        mut io: Pin<&mut T>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.resume.is_none() {
            let n = ready!(io.poll_write_vectored(cx, bufs))?;
            let mut left = n;
            for buf in bufs {
                let part = left.min(buf.len());
                self.tracker.outbound(&buf[..part]);
                left -= part;
            }
            return Poll::Ready(Ok(n));
        }
        if self.out.len() >= OUT_LIMIT {
            ready!(write_out(&mut self.out, &mut self.tracker, io.as_mut(), cx))?;
        }
        let mut opened = false;
        if let Some(resume) = self.resume.as_mut() {
            for buf in bufs {
                opened |= resume.outbound(buf, &mut self.out);
            }
        }
        if opened && let Some(read) = self.read_waiter.take() {
            read.wake();
        }
        // Written now if the socket takes it; h2 flushes what is left.
        if let Poll::Ready(Err(e)) = write_out(&mut self.out, &mut self.tracker, io, cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()))
    }

    /// h2's flush: what was translated goes first.
    pub(crate) fn poll_flush<T: AsyncWrite + Unpin>(
        &mut self,
        mut io: Pin<&mut T>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(resume) = self.resume.as_mut() {
            resume.credit(&mut self.out);
            ready!(write_out(&mut self.out, &mut self.tracker, io.as_mut(), cx))?;
        }
        io.poll_flush(cx)
    }
}

/// Writes the translated bytes, as the client gets them.
fn write_out<T: AsyncWrite + Unpin>(
    out: &mut BytesMut,
    tracker: &mut Tracker,
    mut io: Pin<&mut T>,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    while !out.is_empty() {
        let n = ready!(io.as_mut().poll_write(cx, out))?;
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        tracker.outbound(&out[..n]);
        out.advance(n);
    }
    Poll::Ready(Ok(()))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex, PoisonError};
    use std::time::Duration;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tokio::io::DuplexStream;

    use super::*;

    /// The server's end of the connection as hyper holds it, lent: the test
    /// takes it back once hyper is gone, as a draining worker does.
    #[derive(Clone)]
    struct Lent(Arc<Mutex<Option<(DuplexStream, Wire)>>>);

    impl Lent {
        fn with<R>(&self, f: impl FnOnce(&mut DuplexStream, &mut Wire) -> R) -> R {
            let mut guard = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            let (io, wire) = guard.as_mut().expect("lent");
            f(io, wire)
        }
    }

    impl AsyncRead for Lent {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            self.with(|io, wire| wire.poll_read(Pin::new(io), cx, buf))
        }
    }

    impl AsyncWrite for Lent {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.with(|io, wire| {
                wire.poll_write_vectored(Pin::new(io), cx, &[io::IoSlice::new(buf)])
            })
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.with(|io, wire| wire.poll_flush(Pin::new(io), cx))
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.with(|io, _| Pin::new(io).poll_shutdown(cx))
        }
    }

    /// Serves the lent connection with hyper as gracedown configures it for
    /// a connection that may move: every request's headers (and a few of
    /// its own, new each generation) come back, its body's length too,
    /// with `reply` bytes of body.
    fn serve(lent: &Lent, generation: usize) -> tokio::task::JoinHandle<()> {
        let service = hyper::service::service_fn(
            move |request: http::Request<hyper::body::Incoming>| async move {
                let (parts, body) = request.into_parts();
                let body = body.collect().await?.to_bytes();
                let reply: usize = parts
                    .headers
                    .get("reply")
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .unwrap_or(0);
                let mut response = http::Response::builder().header("received", body.len());
                for (name, value) in &parts.headers {
                    if name.as_str().starts_with("x-") {
                        response = response.header(name, value);
                    }
                }
                for i in 0..20 {
                    response = response.header(
                        format!("x-generation-{i}"),
                        format!("generation {generation} header {i} {}", "v".repeat(40)),
                    );
                }
                Ok::<_, hyper::Error>(
                    response
                        .body(Full::new(Bytes::from(vec![b'r'; reply])))
                        .expect("response"),
                )
            },
        );
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder.header_table_size(0);
        let conn = builder.serve_connection(TokioIo::new(lent.clone()), service);
        tokio::spawn(async move {
            let _ = conn.await;
        })
    }

    /// Waits (bounded) until the lent connection is quiet.
    async fn quiet(lent: &Lent) -> State {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Some(state) = lent.with(|_, wire| wire.state()) {
                    return state;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("the connection becomes quiet")
    }

    #[tokio::test]
    async fn one_connection_is_served_by_twenty_one_h2s_in_turn_with_no_goaway() {
        // A client with a large window (as browsers, curl and Go have), and
        // one with h2's default of 65,535, often below it when it moves.
        twenty_one_h2s(Some(1 << 20)).await;
        twenty_one_h2s(None).await;
    }

    async fn twenty_one_h2s(client_window: Option<u32>) {
        let (client_io, server_io) = tokio::io::duplex(1 << 16);
        let lent = Lent(Arc::new(Mutex::new(Some((server_io, Wire::new())))));
        let mut server = serve(&lent, 0);
        let mut builder = h2::client::Builder::new();
        if let Some(window) = client_window {
            builder.initial_connection_window_size(window);
        }
        let (mut client, connection) = builder
            .handshake::<_, Bytes>(client_io)
            .await
            .expect("handshake");
        let mut below_initial = 0;
        let connection = tokio::spawn(connection);
        for generation in 0..=20 {
            // Requests whose headers an encoder with a table would index,
            // bodies both ways larger than the initial windows.
            for round in 0..3 {
                let mut request =
                    http::Request::post("http://localhost/echo").header("reply", 100_000 + round);
                for i in 0..30 {
                    request = request.header(
                        format!("x-header-{i}"),
                        format!("value {i} {}", "h".repeat(50 + generation)),
                    );
                }
                let request = request.body(()).expect("request");
                let mut ready = client
                    .clone()
                    .ready()
                    .await
                    .expect("the connection takes a stream");
                let (response, mut body) = ready.send_request(request, false).expect("send");
                client = ready;
                body.reserve_capacity(80_000);
                body.send_data(Bytes::from(vec![b'q'; 80_000]), true)
                    .expect("the body");
                let response = tokio::time::timeout(Duration::from_secs(10), response)
                    .await
                    .expect("answered in time")
                    .expect("answered");
                let (parts, mut incoming) = response.into_parts();
                assert_eq!(parts.status, 200);
                assert_eq!(
                    parts.headers["received"], "80000",
                    "generation {generation}"
                );
                assert_eq!(
                    parts.headers["x-header-29"],
                    format!("value 29 {}", "h".repeat(50 + generation))
                );
                assert_eq!(
                    parts.headers["x-generation-19"],
                    format!("generation {generation} header 19 {}", "v".repeat(40))
                );
                let mut got = 0;
                while let Some(chunk) = incoming.data().await {
                    let chunk = chunk.expect("body");
                    got += chunk.len();
                    let _ = incoming.flow_control().release_capacity(chunk.len());
                }
                assert_eq!(got, 100_000 + round);
            }
            // The drain: hyper goes once the connection is quiet, and a fresh
            // one goes on from what moves.
            let state = quiet(&lent).await;
            if state.send_window < 65_535 {
                below_initial += 1;
            }
            server.abort();
            let _ = server.await;
            lent.with(|_, wire| *wire = Wire::resumed(&state));
            server = serve(&lent, generation + 1);
        }
        assert!(
            !connection.is_finished(),
            "the client's connection never ended"
        );
        server.abort();
        if client_window.is_none() {
            assert!(
                below_initial > 0,
                "the client's window was below h2's start at some move"
            );
        }
    }

    /// One request on `client`, answered with `reply` bytes, read (and its
    /// capacity given back) if `read`; else the body is kept unread, and its
    /// bytes hold the client's window while it lives.
    async fn request(
        client: &mut h2::client::SendRequest<Bytes>,
        reply: usize,
        read: bool,
    ) -> h2::RecvStream {
        let request = http::Request::get("http://localhost/")
            .header("reply", reply)
            .body(())
            .expect("request");
        let mut ready = client.clone().ready().await.expect("ready");
        let (response, _) = ready.send_request(request, true).expect("send");
        *client = ready;
        let response = tokio::time::timeout(Duration::from_secs(10), response)
            .await
            .expect("answered in time")
            .expect("answered");
        let mut body = response.into_body();
        if !read {
            return body;
        }
        let mut got = 0;
        while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), body.data())
            .await
            .expect("the body in time")
        {
            let chunk = chunk.expect("body");
            got += chunk.len();
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        assert_eq!(got, reply);
        body
    }

    #[tokio::test]
    async fn a_client_window_left_short_at_the_move_is_never_overrun() {
        let (client_io, server_io) = tokio::io::duplex(1 << 16);
        let lent = Lent(Arc::new(Mutex::new(Some((server_io, Wire::new())))));
        let server = serve(&lent, 0);
        let (mut client, connection) = h2::client::Builder::new()
            .handshake::<_, Bytes>(client_io)
            .await
            .expect("handshake");
        let connection = tokio::spawn(connection);
        // 30,000 bytes received and never read: the client lets the server
        // send 35,535 more, a fresh h2 believes 65,535.
        let unread = request(&mut client, 30_000, false).await;
        let state = quiet(&lent).await;
        assert_eq!(state.send_window, 35_535);
        server.abort();
        let _ = server.await;
        lent.with(|_, wire| *wire = Wire::resumed(&state));
        let server = serve(&lent, 1);
        // More than the client's window, less than h2's belief: the rest
        // waits until the client gives its window back.
        drop(request(&mut client, 60_000, true).await);
        drop(request(&mut client, 200_000, true).await);
        assert!(!connection.is_finished(), "no flow-control error");
        drop(unread);
        server.abort();
    }
}
