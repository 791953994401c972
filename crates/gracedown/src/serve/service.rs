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
use http::header::{CONNECTION, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tower_service::Service;

use super::body::RequestBody;
use super::info::ConnectionInfo;
use crate::drain::{ConnCtl, ConnState, Draining, Proto, Refusal, RequestGuard};

/// The error type every service error is boxed into.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The bounds a served service meets: a tower service on
/// [`RequestBody`] requests (an axum `Router`, a `tower::ServiceBuilder`
/// stack, `tower::service_fn`), cloned once per connection.
pub(crate) trait HttpService<B>:
    Service<
        Request<RequestBody>,
        Response = Response<B>,
        Error: Into<BoxError>,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S, B> HttpService<B> for S where
    S: Service<
            Request<RequestBody>,
            Response = Response<B>,
            Error: Into<BoxError>,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// The bounds a response body meets (axum's `Body`, `http_body_util`'s
/// `Full` and `BoxBody`, ...).
pub(crate) trait ResponseBody:
    Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static
{
}

impl<B> ResponseBody for B where B: Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static {}

/// The bounds of a service factory called once per connection with the
/// client's address (axum's `into_make_service_with_connect_info::<SocketAddr>()`).
pub(crate) trait MakeService<S>:
    Service<SocketAddr, Response = S, Error: Into<BoxError>, Future: Send + 'static>
    + Clone
    + Send
    + 'static
{
}

impl<M, S> MakeService<S> for M where
    M: Service<SocketAddr, Response = S, Error: Into<BoxError>, Future: Send + 'static>
        + Clone
        + Send
        + 'static
{
}

/// A service factory that hands out clones of one service.
#[derive(Debug, Clone)]
pub(crate) struct Shared<S>(pub(crate) S);

impl<S: Clone> Service<SocketAddr> for Shared<S> {
    type Response = S;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<S, std::convert::Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: SocketAddr) -> Self::Future {
        std::future::ready(Ok(self.0.clone()))
    }
}

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
    /// Whether a draining HTTP/1 connection keeps alive (to be handed over,
    /// when the drain hands connections over) instead of answering
    /// `Connection: close`.
    pub(crate) keep_alive_in_drain: bool,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Adapter<S>
where
    S: Service<Request<RequestBody>, Response = Response<B>> + HttpService<B>,
    B: ResponseBody,
{
    type Response = Response<Tracked<B>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let refusal = match self.proto {
            Proto::Http1 => self.ctl.refusal_for_next(),
            Proto::Http2 => None,
        };
        // Counted like any request, so the connection is busy until the
        // refusal is written.
        let guard = self.ctl.begin(self.proto);
        if let Some(refusal) = refusal {
            tracing::debug!(?refusal, "request refused before the service");
            let text = match refusal {
                Refusal::BareLf => "bad request: a line of the request head ends in a bare LF\n",
                Refusal::Unframed => {
                    "bad request: the framing of an earlier message on this connection was not followed\n"
                }
            };
            return Box::pin(std::future::ready(Ok(refuse(
                StatusCode::BAD_REQUEST,
                text,
                guard,
            ))));
        }
        tracing::debug!(method = %req.method(), path = req.uri().path(), "request started");
        let connect = req.method() == Method::CONNECT;
        let (mut parts, body) = req.into_parts();
        parts
            .extensions
            .insert(Draining::new(Arc::clone(&self.ctl)));
        parts.extensions.insert(self.info);
        let req = Request::from_parts(parts, RequestBody::new(body, self.body_timeout));
        let mut service = self.inner.clone();
        let ctl = Arc::clone(&self.ctl);
        let (proto, keep_alive_in_drain) = (self.proto, self.keep_alive_in_drain);
        Box::pin(async move {
            std::future::poll_fn(|cx| service.poll_ready(cx))
                .await
                .map_err(Into::into)?;
            let mut response = service.call(req).await.map_err(Into::into)?;
            let status = response.status();
            let upgrade = proto == Proto::Http1
                && (status == StatusCode::SWITCHING_PROTOCOLS || (connect && status.is_success()));
            if upgrade {
                ctl.mark_upgrading();
                ctl.set_state(ConnState::Upgraded);
            }
            if ctl.engine.is_draining() {
                ctl.engine.count_request_after_signal();
                let moving = keep_alive_in_drain && ctl.engine.handing_off();
                if proto == Proto::Http1 && !upgrade && !moving && ctl.drain_reached() {
                    response
                        .headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                }
            }
            Ok(response.map(|body| Tracked::User {
                body,
                _guard: guard,
            }))
        })
    }
}

/// A response the server writes itself, closing the connection after it.
fn refuse<B>(status: StatusCode, text: &'static str, guard: RequestGuard) -> Response<Tracked<B>> {
    let mut response = Response::new(Tracked::Refused {
        text: Some(Bytes::from_static(text.as_bytes())),
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
        Refused { text: Option<Bytes>, _guard: RequestGuard },
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
            TrackedProj::Refused { text, .. } => {
                Poll::Ready(text.take().map(|t| Ok(Frame::data(t))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::User { body, .. } => body.is_end_stream(),
            Self::Refused { text, .. } => text.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::User { body, .. } => body.size_hint(),
            Self::Refused { text, .. } => {
                SizeHint::with_exact(text.as_ref().map_or(0, |t| t.len() as u64))
            }
        }
    }
}
