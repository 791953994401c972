//! What [`Server::serve`](super::Server::serve) takes, named once: the
//! bounds of a served service, of its response body and of a service
//! factory, and [`IntoApp`], which lets one entry point take either a
//! service or a factory. Every trait here is implemented for every type that
//! meets its bounds; nobody implements them by hand.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Body;
use tower_service::Service;

use super::body::RequestBody;

/// The error type a service's or a body's error converts into.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A service gracedown can serve: a tower service on [`RequestBody`]
/// requests (an axum `Router`, a `tower::ServiceBuilder` stack,
/// [`service_fn`](super::service_fn)), cloned for every connection, whose
/// responses have a [`ResponseBody`] `B`.
pub trait HttpService<B>:
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

/// A response body gracedown can send (axum's `Body`, `http_body_util`'s
/// `Full` and `BoxBody`, `String`, ...).
pub trait ResponseBody: Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static {}

impl<B> ResponseBody for B where B: Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static {}

/// A service factory called once per connection with the client's address
/// (`0.0.0.0:0` on a unix socket), making that connection's
/// [`HttpService`] `S`: axum's `into_make_service_with_connect_info::<SocketAddr>()`,
/// which is how its `ConnectInfo<SocketAddr>` extractor works.
pub trait MakeService<S>:
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

/// What [`Server::serve`](super::Server::serve) takes: an [`HttpService`]
/// (served as it is, a clone per connection) or a [`MakeService`] (called per
/// connection). `Kind` tells the two apart ([`AsService`] or
/// [`AsMakeService`]); the compiler infers it.
pub trait IntoApp<Kind> {
    /// The factory the server calls per connection.
    type Make: MakeService<Self::Service>;
    /// The service each connection is served by.
    type Service: HttpService<Self::Body>;
    /// Its responses' body.
    type Body: ResponseBody;

    /// The factory.
    fn into_make(self) -> Self::Make;
}

/// [`IntoApp`]'s kind for a service served as it is.
#[derive(Debug)]
pub enum AsService {}

/// [`IntoApp`]'s kind for a service factory.
#[derive(Debug)]
pub enum AsMakeService {}

impl<S, B> IntoApp<AsService> for S
where
    S: HttpService<B> + Service<Request<RequestBody>, Response = Response<B>>,
    B: ResponseBody,
{
    type Make = SharedService<S>;
    type Service = S;
    type Body = B;

    fn into_make(self) -> SharedService<S> {
        SharedService(self)
    }
}

impl<M, S, B> IntoApp<AsMakeService> for M
where
    M: MakeService<S> + Service<SocketAddr, Response = S>,
    S: HttpService<B> + Service<Request<RequestBody>, Response = Response<B>>,
    B: ResponseBody,
{
    type Make = M;
    type Service = S;
    type Body = B;

    fn into_make(self) -> M {
        self
    }
}

/// The [`MakeService`] of a service served as it is: every connection gets
/// a clone.
#[derive(Debug, Clone)]
pub struct SharedService<S>(S);

impl<S: Clone> Service<SocketAddr> for SharedService<S> {
    type Response = S;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<S, std::convert::Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: SocketAddr) -> Self::Future {
        std::future::ready(Ok(self.0.clone()))
    }
}
