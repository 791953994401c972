//! The service adapter every request goes through: it turns the user's tower
//! service into hyper's, records the request's life in the connection's
//! tracker, puts [`Draining`] and [`ConnectionInfo`] in the request, bounds
//! the body's reads, refuses request heads that can desynchronise a proxy,
//! and during a drain marks HTTP/1 responses `Connection: close`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE, HOST, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tower_service::Service;

use super::app::{BoxError, HttpService, MakeService, ResponseBody};
use super::body::RequestBody;
use super::info::ConnectionInfo;
use crate::drain::{ConnCtl, ConnState, Draining, Proto, Refusal, RequestGuard};

/// Makes the service of one connection; the address is the unspecified
/// `0.0.0.0:0` on a unix socket.
pub(crate) async fn make<M, S>(mut make: M, peer: Option<SocketAddr>) -> Result<S, BoxError>
where
    M: MakeService<S>,
{
    std::future::poll_fn(|cx| make.poll_ready(cx))
        .await
        .map_err(Into::into)?;
    let peer = peer.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    make.call(peer).await.map_err(Into::into)
}

/// The per-connection adapter hyper calls.
#[derive(Debug)]
pub(crate) struct Adapter<S> {
    pub(crate) inner: S,
    pub(crate) ctl: Arc<ConnCtl>,
    pub(crate) info: ConnectionInfo,
    pub(crate) proto: Proto,
    pub(crate) body_timeout: Duration,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Adapter<S>
where
    S: Service<Request<RequestBody>, Response = Response<B>> + HttpService<B>,
    B: ResponseBody,
{
    type Response = Response<Tracked<B>>;
    type Error = BoxError;
    type Future = Respond<S, B>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let refusal = match self.proto {
            Proto::Http1 => self
                .ctl
                .refusal_for_next()
                .map(|refusal| match refusal {
                    Refusal::BareLf => {
                        "bad request: a line of the request head ends in a bare LF\n"
                    }
                    Refusal::Unframed => {
                        "bad request: the framing of this message or an earlier one on this connection was not followed\n"
                    }
                })
                .or_else(|| bad_host(&req)),
            Proto::Http2 => None,
        };
        // Counted like any request, so the connection is busy until the
        // refusal is written.
        let guard = self.ctl.begin(self.proto);
        if let Some(text) = refusal {
            tracing::debug!(
                reason = text.trim_end(),
                "request refused before the service"
            );
            return Respond::done(Ok(refuse(StatusCode::BAD_REQUEST, text, guard)));
        }
        tracing::debug!(method = %req.method(), path = req.uri().path(), "request started");
        let connect = req.method() == Method::CONNECT;
        let (mut parts, body) = req.into_parts();
        parts
            .extensions
            .insert(Draining::new(Arc::clone(&self.ctl)));
        parts.extensions.insert(self.info);
        let req = Request::from_parts(parts, RequestBody::new(body, self.body_timeout));
        let after = After { guard, connect };
        let mut service = self.inner.clone();
        // HTTP/1: run the service as far as it goes now, so that a handler
        // that answers at once has dropped its request before hyper reads
        // on: the request's head shares hyper's read buffer, and a buffer
        // still shared when hyper reads again is reallocated, once per
        // request. What is not done here is polled again by hyper, with its
        // own waker, before anything waits on it: the no-op waker is never
        // the one that must be woken. Not HTTP/2: there `call` runs inside
        // hyper's poll of the connection, and a handler run here would take
        // every other stream of the connection down with it if it panicked.
        // The stream's future is polled right after `call`, on the
        // connection's task too, but in a poll of its own that catches a
        // panic (`streams.rs`).
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let ready = match self.proto {
            Proto::Http1 => service.poll_ready(&mut cx),
            // Called when the stream's future is first polled (above).
            Proto::Http2 => Poll::Pending,
        };
        match ready {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Respond::done(Err(e.into())),
            Poll::Pending => {
                return Respond {
                    stage: Stage::Ready {
                        service,
                        req: Some(req),
                    },
                    after: Some(after),
                };
            }
        }
        let mut future = Box::pin(service.call(req));
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(response)) => Respond::done(Ok(after.respond(response))),
            Poll::Ready(Err(e)) => Respond::done(Err(e.into())),
            Poll::Pending => Respond {
                stage: Stage::Calling(future),
                after: Some(after),
            },
        }
    }
}

/// What is done with a response once the service has made it (the guard
/// knows the connection and its protocol).
#[derive(Debug)]
pub(crate) struct After {
    guard: RequestGuard,
    connect: bool,
}

impl After {
    fn respond<B>(self, mut response: Response<B>) -> Response<Tracked<B>> {
        let (ctl, proto) = (self.guard.ctl(), self.guard.proto());
        let status = response.status();
        let upgrade = proto == Proto::Http1
            && (status == StatusCode::SWITCHING_PROTOCOLS || (self.connect && status.is_success()));
        if upgrade {
            ctl.mark_upgrading();
            ctl.set_state(ConnState::Upgraded);
        }
        if ctl.engine.is_draining() {
            ctl.engine.count_request_after_signal();
            if proto == Proto::Http1 && !upgrade && ctl.closes_after_response() {
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
        }
        let guard = self.guard;
        response.map(|body| Tracked::User {
            body,
            _guard: guard,
        })
    }
}

/// The future of one request: the service made ready, called, and its
/// response marked for the drain (by `after`, taken when it is).
pub(crate) struct Respond<S, B>
where
    S: Service<Request<RequestBody>, Response = Response<B>>,
{
    stage: Stage<S, B>,
    after: Option<After>,
}

enum Stage<S, B>
where
    S: Service<Request<RequestBody>, Response = Response<B>>,
{
    /// Waiting for the service to be ready.
    Ready {
        service: S,
        req: Option<Request<RequestBody>>,
    },
    /// The service's future runs (boxed: it may be polled before hyper has
    /// pinned this future, in `call`).
    Calling(Pin<Box<S::Future>>),
    /// Answered (taken once).
    Done(Option<Result<Response<Tracked<B>>, BoxError>>),
}

// Never pinned structurally: the service is only borrowed, and its future is
// boxed.
impl<S, B> Unpin for Respond<S, B> where S: Service<Request<RequestBody>, Response = Response<B>> {}

impl<S, B> Respond<S, B>
where
    S: Service<Request<RequestBody>, Response = Response<B>>,
{
    fn done(output: Result<Response<Tracked<B>>, BoxError>) -> Self {
        Self {
            stage: Stage::Done(Some(output)),
            after: None,
        }
    }
}

impl<S, B> std::fmt::Debug for Respond<S, B>
where
    S: Service<Request<RequestBody>, Response = Response<B>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stage = match self.stage {
            Stage::Ready { .. } => "ready",
            Stage::Calling(_) => "calling",
            Stage::Done(_) => "done",
        };
        f.debug_tuple("Respond").field(&stage).finish()
    }
}

impl<S, B> Future for Respond<S, B>
where
    S: Service<Request<RequestBody>, Response = Response<B>, Error: Into<BoxError>>,
{
    type Output = Result<Response<Tracked<B>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            match &mut this.stage {
                Stage::Ready { service, req } => {
                    if let Err(e) = std::task::ready!(service.poll_ready(cx)) {
                        return Poll::Ready(Err(e.into()));
                    }
                    let Some(req) = req.take() else {
                        return Poll::Ready(
                            Err("request future polled after it was called".into()),
                        );
                    };
                    let future = Box::pin(service.call(req));
                    this.stage = Stage::Calling(future);
                }
                Stage::Calling(future) => {
                    let response =
                        std::task::ready!(future.as_mut().poll(cx)).map_err(Into::into)?;
                    let Some(after) = this.after.take() else {
                        return Poll::Ready(Err("request future polled after it was done".into()));
                    };
                    return Poll::Ready(Ok(after.respond(response)));
                }
                Stage::Done(response) => {
                    return Poll::Ready(
                        response.take().unwrap_or_else(|| {
                            Err("request future polled after it was done".into())
                        }),
                    );
                }
            }
        }
    }
}

/// Why an HTTP/1 request's `Host` makes it one to refuse with 400, if it
/// does (RFC 9112 §3.2): an HTTP/1.1 request without one, any request with
/// more than one (two hosts are a routing and cache-poisoning vector behind
/// proxies that pick different ones), or one that is no `host[:port]`. An
/// empty `Host` is valid (a target without an authority); in an
/// absolute-form request the target's authority wins, but the field must
/// still be well-formed.
fn bad_host(req: &Request<Incoming>) -> Option<&'static str> {
    let mut hosts = req.headers().get_all(HOST).iter();
    let Some(host) = hosts.next() else {
        return (req.version() == Version::HTTP_11)
            .then_some("bad request: an HTTP/1.1 request needs a Host header\n");
    };
    if hosts.next().is_some() {
        return Some("bad request: more than one Host header\n");
    }
    let host = host.as_bytes();
    let valid = host.is_empty()
        || (!host.contains(&b'@')
            && http::uri::Authority::try_from(host).is_ok_and(|a| !a.host().is_empty()));
    (!valid).then_some("bad request: the Host header is not a host[:port]\n")
}

/// A response the server writes itself, closing the connection after it.
fn refuse<B>(status: StatusCode, text: &'static str, guard: RequestGuard) -> Response<Tracked<B>> {
    let mut response = Response::new(Tracked::Refused {
        text: Full::new(Bytes::from_static(text.as_bytes())),
        _guard: guard,
    });
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

pin_project_lite::pin_project! {
    /// A response body: the service's, which keeps its request counted in
    /// flight until it is dropped, or one the server refused with.
    #[project = TrackedProj]
    #[derive(Debug)]
    pub(crate) enum Tracked<B> {
        User { #[pin] body: B, _guard: RequestGuard },
        Refused { #[pin] text: Full<Bytes>, _guard: RequestGuard },
    }
}

impl<B> Body for Tracked<B>
where
    B: Body<Data = Bytes, Error: Into<BoxError>>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            TrackedProj::User { body, .. } => body
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(Into::into))),
            TrackedProj::Refused { text, .. } => text
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(|never| match never {}))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::User { body, .. } => body.is_end_stream(),
            Self::Refused { text, .. } => text.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::User { body, .. } => body.size_hint(),
            Self::Refused { text, .. } => text.size_hint(),
        }
    }
}
