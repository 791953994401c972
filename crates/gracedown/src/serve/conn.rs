//! One connection, from accept to close: TLS handshake, protocol choice,
//! serving, and the per-state drain rules of `docs/design/shutdown.md`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::{debug, trace};

use super::io::{Prefixed, SharedStream};
use super::server::{Shared, Timeouts};
use super::service::{Activity, DrainAware, Proto, Stats};
use crate::shutdown::ConnState;

/// The HTTP/2 connection preface (RFC 9113 §3.4) that marks h2c with prior knowledge.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Per-connection state, readable by the deadline to classify a forced
/// close; it also keeps the server-wide per-state gauges current.
#[derive(Debug)]
struct StateCell {
    state: AtomicU8,
    stats: Arc<Stats>,
}

impl StateCell {
    fn new(stats: Arc<Stats>) -> Self {
        stats.by_state[ConnState::NoRequest as usize].fetch_add(1, Ordering::AcqRel);
        Self {
            state: AtomicU8::new(ConnState::NoRequest as u8),
            stats,
        }
    }

    fn set(&self, state: ConnState) {
        let old = self.state.swap(state as u8, Ordering::AcqRel);
        if old != state as u8 {
            self.stats.by_state[usize::from(old)].fetch_sub(1, Ordering::AcqRel);
            self.stats.by_state[state as usize].fetch_add(1, Ordering::AcqRel);
        }
    }

    fn get(&self) -> ConnState {
        ConnState::ALL[usize::from(self.state.load(Ordering::Acquire))]
    }
}

impl Drop for StateCell {
    fn drop(&mut self) {
        let state = usize::from(self.state.load(Ordering::Acquire));
        self.stats.by_state[state].fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves one accepted stream until it closes, or until the deadline forces it.
pub(crate) async fn serve<S, B>(stream: SharedStream, service: S, shared: Arc<Shared>)
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let state = StateCell::new(Arc::clone(&shared.stats));
    let activity = Activity::new();
    let mut force = shared.force.clone();
    let conn = Conn {
        stream: stream.clone(),
        shared: &shared,
        state: &state,
        activity,
    };
    tokio::select! {
        () = conn.run(service) => {
            if shared.drain.borrow().is_some() {
                shared.stats.drained.fetch_add(1, Ordering::Relaxed);
            }
        }
        _ = force.wait_for(|forced| *forced) => {
            let class = state.get();
            debug!(state = ?class, "connection force-closed at the drain deadline");
            shared.stats.forced[class as usize].fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct Conn<'a> {
    stream: SharedStream,
    shared: &'a Shared,
    state: &'a StateCell,
    activity: Arc<Activity>,
}

impl Conn<'_> {
    async fn run<S, B>(self, service: S)
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let timeouts = self.shared.timeouts;
        #[cfg(feature = "tls")]
        if let Some(acceptor) = &self.shared.tls {
            self.state.set(ConnState::Handshake);
            let handshake =
                tokio::time::timeout(timeouts.handshake, acceptor.accept(self.stream.clone()));
            let tls = match handshake.await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return debug!(error = %e, "tls handshake failed"),
                Err(_) => return debug!("tls handshake timed out"),
            };
            self.state.set(ConnState::NoRequest);
            // ALPN decides; no sniffing after TLS.
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            return if h2 {
                self.http2(tls, service).await
            } else {
                self.http1(tls, service).await
            };
        }
        let Some(prefix) = self.sniff().await else {
            return self.stream.linger(timeouts.linger).await;
        };
        let h2 = prefix.as_ref() == H2_PREFACE;
        let io = Prefixed::new(prefix.freeze(), self.stream.clone());
        if h2 {
            self.http2(io, service).await
        } else {
            self.http1(io, service).await
        }
    }

    /// Reads until the bytes either are the h2 preface or cannot be. `None`
    /// when the client closes or stays silent past the bound.
    async fn sniff(&self) -> Option<BytesMut> {
        let mut buf = BytesMut::with_capacity(H2_PREFACE.len());
        let mut drain = self.shared.drain.clone();
        let accepted = Instant::now();
        let timeouts = self.shared.timeouts;
        let silent_bound = async {
            tokio::select! {
                () = tokio::time::sleep(timeouts.first_request) => {}
                () = async {
                    let _ = drain.wait_for(Option::is_some).await;
                    let since = Instant::now().saturating_duration_since(accepted);
                    tokio::time::sleep(timeouts.first_request_draining.saturating_sub(since)).await;
                } => {}
            }
        };
        let read = async {
            let mut stream = self.stream.clone();
            while buf.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&buf) {
                let mut chunk = [0u8; 24];
                let want = H2_PREFACE.len() - buf.len();
                match stream.read(&mut chunk[..want]).await {
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
        let mut activity = self.activity.subscribe();
        let timeouts = self.shared.timeouts;
        let mut draining_since = None;
        loop {
            let now = *activity.borrow_and_update();
            self.state.set(match now {
                s if s.in_flight > 0 => ConnState::InFlight,
                s if s.requests == 0 => ConnState::NoRequest,
                _ => ConnState::Idle,
            });
            let Some(since) = draining_since else {
                tokio::select! {
                    started = async { drain.wait_for(Option::is_some).await.is_ok() } => {
                        if !started {
                            return std::future::pending().await;
                        }
                        draining_since = Some(Instant::now());
                    }
                    _ = activity.changed() => {}
                }
                continue;
            };
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
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
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
        if !parts.read_buf.is_empty() || self.stream.has_pending_bytes() {
            // A request arrived just as we closed: serve it, then close.
            trace!("serving a request that raced the idle close");
            let io = Prefixed::new(parts.read_buf, io);
            let mut last = hyper::server::conn::http1::Builder::new();
            last.keep_alive(false)
                .timer(TokioTimer::new())
                .header_read_timeout(timeouts.first_request_draining);
            let conn = last.serve_connection(
                TokioIo::new(io),
                self.service(parts.service.inner, Proto::Http1),
            );
            if let Ok(parts) = conn.without_shutdown().await {
                let mut io = parts.io.into_inner();
                let _ = tokio::time::timeout(timeouts.linger, io.shutdown()).await;
            }
        } else {
            let _ = tokio::time::timeout(timeouts.linger, io.shutdown()).await;
        }
        self.stream.linger(timeouts.linger).await;
    }

    async fn http2<I, S, B>(self, io: I, service: S)
    where
        I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        self.state.set(ConnState::Http2);
        let timeouts = self.shared.timeouts;
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder.timer(TokioTimer::new());
        let conn = builder.serve_connection(
            TokioIo::new(io),
            self.service(Arc::new(service), Proto::Http2),
        );
        let mut conn = std::pin::pin!(conn);
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
        self.stream.linger(timeouts.linger).await;
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
