//! The service wrapper every request goes through: it puts a [`Draining`]
//! handle in the request, tracks whether the connection is busy, and during a
//! drain marks HTTP/1 responses `Connection: close`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use http::header::{CONNECTION, HeaderValue};
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::Service;
use tokio::sync::watch;

use crate::shutdown::{ConnState, Draining};

/// Counters shared by the whole server, for the drain report.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) open: AtomicU64,
    /// Open connections per [`crate::shutdown::ConnState`].
    pub(crate) by_state: [AtomicU64; 5],
    pub(crate) drained: AtomicU64,
    pub(crate) forced: [AtomicU64; 5],
    pub(crate) requests_after_signal: AtomicU64,
}

/// Whether one connection is busy, and since when it is idle.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ActivityState {
    /// Requests started and not yet fully answered.
    pub(crate) in_flight: usize,
    /// Requests started on this connection.
    pub(crate) requests: u64,
    /// When the last request finished (or the connection was accepted).
    pub(crate) idle_since: Instant,
}

/// A connection's [`ActivityState`], observable by the drain, and its
/// [`ConnState`] for the drain report.
#[derive(Debug)]
pub(crate) struct Activity {
    watch: watch::Sender<ActivityState>,
    state: StateCell,
}

impl Activity {
    pub(crate) fn new(stats: Arc<Stats>, initial: ConnState) -> Arc<Self> {
        let now = ActivityState {
            in_flight: 0,
            requests: 0,
            idle_since: Instant::now(),
        };
        Arc::new(Self {
            watch: watch::Sender::new(now),
            state: StateCell::new(stats, initial),
        })
    }

    pub(crate) fn set_state(&self, state: ConnState) {
        self.state.set(state);
    }

    pub(crate) fn state(&self) -> ConnState {
        self.state.get()
    }

    pub(crate) fn now(&self) -> ActivityState {
        *self.watch.borrow()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<ActivityState> {
        self.watch.subscribe()
    }

    fn begin(self: &Arc<Self>, proto: Proto) -> ActivityGuard {
        self.watch.send_modify(|s| {
            s.requests += 1;
            s.in_flight += 1;
        });
        if proto == Proto::Http1 {
            self.state.set(ConnState::InFlight);
        }
        ActivityGuard(Arc::clone(self), proto)
    }
}

/// Marks a request finished when dropped (hyper drops the body once written).
#[derive(Debug)]
struct ActivityGuard(Arc<Activity>, Proto);

impl Drop for ActivityGuard {
    fn drop(&mut self) {
        let mut idle = false;
        self.0.watch.send_modify(|s| {
            s.in_flight -= 1;
            s.idle_since = Instant::now();
            idle = s.in_flight == 0;
        });
        if idle && self.1 == Proto::Http1 {
            self.0.state.set(ConnState::Idle);
        }
    }
}

/// Per-connection state, readable by the deadline to classify a forced
/// close; it also keeps the server-wide per-state gauges current.
#[derive(Debug)]
struct StateCell {
    state: AtomicU8,
    stats: Arc<Stats>,
}

impl StateCell {
    fn new(stats: Arc<Stats>, initial: ConnState) -> Self {
        stats.by_state[initial as usize].fetch_add(1, Ordering::AcqRel);
        Self {
            state: AtomicU8::new(initial as u8),
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

/// The bounds every served service meets: an alias, implemented for all such services.
pub(crate) trait HttpService<B>:
    Service<
        Request<Incoming>,
        Response = Response<B>,
        Error: Into<BoxError>,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S, B> HttpService<B> for S where
    S: Service<
            Request<Incoming>,
            Response = Response<B>,
            Error: Into<BoxError>,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// The bounds every response body meets: an alias, implemented for all such bodies.
pub(crate) trait ResponseBody:
    Body<Data: Send, Error: Into<BoxError>> + Send + Unpin + 'static
{
}

impl<B> ResponseBody for B where B: Body<Data: Send, Error: Into<BoxError>> + Send + Unpin + 'static {}

/// Which HTTP version the connection speaks (only HTTP/1 gets `Connection: close`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proto {
    Http1,
    Http2,
}

#[derive(Debug, Clone)]
pub(crate) struct DrainAware<S> {
    pub(crate) inner: Arc<S>,
    pub(crate) drain: watch::Receiver<Option<Instant>>,
    pub(crate) activity: Arc<Activity>,
    pub(crate) stats: Arc<Stats>,
    pub(crate) proto: Proto,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, B> Service<Request<Incoming>> for DrainAware<S>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        tracing::debug!(method = %req.method(), path = req.uri().path(), "request started");
        let guard = self.activity.begin(self.proto);
        req.extensions_mut()
            .insert(Draining::new(self.drain.clone()));
        let future = self.inner.call(req);
        let drain = self.drain.clone();
        let stats = Arc::clone(&self.stats);
        let proto = self.proto;
        Box::pin(async move {
            let mut response = future.await?;
            if drain.borrow().is_some() {
                stats.requests_after_signal.fetch_add(1, Ordering::Relaxed);
                if proto == Proto::Http1 {
                    response
                        .headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                }
            }
            Ok(response.map(|body| TrackedBody {
                body,
                _guard: guard,
            }))
        })
    }
}

/// A response body that keeps its connection marked busy until it is dropped.
#[derive(Debug)]
pub(crate) struct TrackedBody<B> {
    body: B,
    _guard: ActivityGuard,
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
