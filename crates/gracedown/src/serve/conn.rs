//! One connection, from accept to close: TLS handshake, protocol choice,
//! serving, and the per-state drain rules of `docs/design/shutdown.md`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::{debug, trace};

use super::io::{Prefixed, SocketHandle, Stream};
use super::server::{Shared, Timeouts};
use super::service::{Activity, DrainAware, HttpService, Proto, ResponseBody};
use crate::shutdown::ConnState;

/// The HTTP/2 connection preface (RFC 9113 §3.4) that marks h2c with prior knowledge.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves one accepted stream until it closes, or until the deadline forces it.
pub(crate) async fn serve<S, B>(
    stream: Stream,
    service: S,
    shared: Arc<Shared>,
    activity: Arc<Activity>,
) where
    S: HttpService<B>,
    B: ResponseBody,
{
    let handle = match stream.handle() {
        Ok(handle) => handle,
        Err(e) => return debug!(error = %e, "cannot duplicate the connection's descriptor"),
    };
    let state = Arc::clone(&activity);
    let mut force = shared.force.clone();
    let conn = Conn {
        handle,
        shared: &shared,
        activity,
    };
    tokio::select! {
        () = conn.run(stream, service) => {
            if shared.drain.borrow().is_some() {
                shared.stats.drained.fetch_add(1, Ordering::Relaxed);
            }
        }
        // The state is read when the deadline fires, before `select!` drops
        // the connection (which would end its request and mark it idle).
        class = async { let _ = force.wait_for(|forced| *forced).await; state.state() } => {
            debug!(state = ?class, "connection force-closed at the drain deadline");
            shared.stats.forced[class as usize].fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct Conn<'a> {
    handle: SocketHandle,
    shared: &'a Shared,
    activity: Arc<Activity>,
}

impl Conn<'_> {
    async fn run<S, B>(self, mut stream: Stream, service: S)
    where
        S: HttpService<B>,
        B: ResponseBody,
    {
        let timeouts = self.shared.timeouts;
        #[cfg(feature = "tls")]
        if let Some(acceptor) = &self.shared.tls {
            let handshake = tokio::time::timeout(timeouts.handshake, acceptor.accept(stream));
            let mut tls = match handshake.await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return debug!(error = %e, "tls handshake failed"),
                Err(_) => return debug!("tls handshake timed out"),
            };
            self.activity.set_state(ConnState::NoRequest);
            // ALPN decides; no sniffing after TLS.
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let Some(first) = self.first_bytes(&mut tls, 1).await else {
                drop(tls);
                return self.handle.linger(timeouts.linger).await;
            };
            let io = Prefixed::new(first.freeze(), tls);
            return if h2 {
                self.http2(io, service).await
            } else {
                self.http1(io, service).await
            };
        }
        let Some(prefix) = self.first_bytes(&mut stream, H2_PREFACE.len()).await else {
            drop(stream);
            return self.handle.linger(timeouts.linger).await;
        };
        let h2 = prefix.as_ref() == H2_PREFACE;
        let io = Prefixed::new(prefix.freeze(), stream);
        if h2 {
            self.http2(io, service).await
        } else {
            self.http1(io, service).await
        }
    }

    /// Reads the connection's first bytes: up to `want` of them, stopping as
    /// soon as they cannot be the h2 preface. `None` when the client closes
    /// or sends nothing within the bound (30 s, or the drain's first-request
    /// bound once draining).
    async fn first_bytes(
        &self,
        io: &mut (impl AsyncRead + Unpin),
        want: usize,
    ) -> Option<BytesMut> {
        let mut buf = BytesMut::with_capacity(want);
        let mut drain = self.shared.drain.clone();
        let timeouts = self.shared.timeouts;
        let silent_bound = async {
            tokio::select! {
                () = tokio::time::sleep(timeouts.first_request) => {}
                () = async {
                    if drain.wait_for(Option::is_some).await.is_ok() {
                        tokio::time::sleep(timeouts.first_request_draining).await;
                    } else {
                        std::future::pending::<()>().await;
                    }
                } => {}
            }
        };
        let read = async {
            while buf.len() < want && H2_PREFACE.starts_with(&buf) {
                let mut chunk = [0u8; 24];
                let n = (want - buf.len()).min(chunk.len());
                match io.read(&mut chunk[..n]).await {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            true
        };
        let complete = tokio::select! {
            complete = read => complete,
            () = silent_bound => {
                trace!("connection sent no request within the bound");
                false
            }
        };
        complete.then_some(buf)
    }

    fn service<S>(&self, inner: Arc<S>, proto: Proto) -> DrainAware<S> {
        DrainAware {
            inner,
            drain: self.shared.drain.clone(),
            activity: Arc::clone(&self.activity),
            stats: Arc::clone(&self.shared.stats),
            proto,
        }
    }

    /// Resolves when the drain has started and this HTTP/1 connection has had
    /// no request in flight for the idle bound (counted from the later of the
    /// drain's start and the end of its last request). Keeps the state cell
    /// current meanwhile, for the deadline's classification.
    async fn idle_past_bound(&self) {
        let mut drain = self.shared.drain.clone();
        if drain.wait_for(Option::is_some).await.is_err() {
            return std::future::pending().await;
        }
        let since = Instant::now();
        // Subscribed only now: before the drain, requests wake nobody.
        let mut activity = self.activity.subscribe();
        let timeouts = self.shared.timeouts;
        loop {
            let now = *activity.borrow_and_update();
            if now.in_flight > 0 {
                if activity.changed().await.is_err() {
                    return std::future::pending().await;
                }
                continue;
            }
            let bound = if now.requests == 0 {
                timeouts.first_request_draining
            } else {
                timeouts.idle
            };
            let at = now.idle_since.max(since) + bound;
            tokio::select! {
                () = tokio::time::sleep_until(at.into()) => return,
                _ = activity.changed() => {}
            }
        }
    }

    async fn http1<I, S, B>(self, io: I, service: S)
    where
        I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
        S: HttpService<B>,
        B: ResponseBody,
    {
        let timeouts = self.shared.timeouts;
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(timeouts.first_request);
        let mut conn = builder.serve_connection(
            TokioIo::new(io),
            self.service(Arc::new(service), Proto::Http1),
        );
        let mut closing = false;
        let ended = loop {
            let idle = async {
                if closing {
                    return std::future::pending().await;
                }
                self.idle_past_bound().await;
            };
            tokio::select! {
                result = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => break result,
                () = idle => {
                    // Idle past the bound while draining: hyper closes an idle
                    // connection at once and hands back whatever it had read,
                    // which is checked below for a request that raced us.
                    closing = true;
                    std::pin::Pin::new(&mut conn).graceful_shutdown();
                }
            }
        };
        if let Err(e) = ended {
            debug!(error = %e, "http/1 connection ended with an error");
        }
        let parts = conn.into_parts();
        let mut io = parts.io.into_inner();
        if !parts.read_buf.is_empty() || self.handle.has_pending_bytes() {
            // A request arrived just as we closed: serve it, then close.
            trace!("serving a request that raced the idle close");
            let io = Prefixed::new(parts.read_buf, io);
            let mut last = hyper::server::conn::http1::Builder::new();
            last.keep_alive(false)
                .timer(TokioTimer::new())
                .header_read_timeout(timeouts.first_request_draining);
            let service = self.service(parts.service.inner, Proto::Http1);
            let conn = last.serve_connection(TokioIo::new(io), service);
            if let Ok(parts) = conn.without_shutdown().await {
                let mut io = parts.io.into_inner();
                // TLS close_notify and FIN; the stream is dropped right after.
                let _ = tokio::time::timeout(timeouts.linger, io.shutdown()).await;
            }
        } else {
            let _ = tokio::time::timeout(timeouts.linger, io.shutdown()).await;
            drop(io);
        }
        self.handle.linger(timeouts.linger).await;
    }

    async fn http2<I, S, B>(self, io: I, service: S)
    where
        I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
        S: HttpService<B>,
        B: ResponseBody,
    {
        self.activity.set_state(ConnState::Http2);
        let timeouts = self.shared.timeouts;
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder.timer(TokioTimer::new());
        let conn = builder.serve_connection(
            TokioIo::new(io),
            self.service(Arc::new(service), Proto::Http2),
        );
        // Boxed so it can be dropped (closing our end of the stream) before the linger.
        let mut conn = Box::pin(conn);
        let mut drain = self.shared.drain.clone();
        let result = tokio::select! {
            result = conn.as_mut() => Some(result),
            _ = drain.wait_for(Option::is_some) => None,
        };
        let result = match result {
            Some(result) => result,
            None => {
                // Two-phase GOAWAY: hyper sends GOAWAY(2^31-1) + PING, then the
                // real last stream id once the PING is acknowledged.
                conn.as_mut().graceful_shutdown();
                loop {
                    tokio::select! {
                        result = conn.as_mut() => break result,
                        () = tokio::time::sleep(timeouts.goaway_ack) => {
                            if self.activity.now().in_flight == 0 {
                                debug!("http/2 peer did not acknowledge GOAWAY in time; closing");
                                break Ok(());
                            }
                        }
                    }
                }
            }
        };
        if let Err(e) = result {
            debug!(error = %e, "http/2 connection ended with an error");
        }
        drop(conn);
        self.handle.linger(timeouts.linger).await;
    }
}

/// Bounds used by [`serve`]; see [`super::Server`] for the defaults.
impl Timeouts {
    pub(crate) const fn defaults() -> Self {
        Self {
            handshake: Duration::from_secs(10),
            first_request: Duration::from_secs(30),
            first_request_draining: Duration::from_secs(5),
            idle: Duration::from_secs(1),
            goaway_ack: Duration::from_secs(5),
            linger: Duration::from_secs(2),
        }
    }
}
