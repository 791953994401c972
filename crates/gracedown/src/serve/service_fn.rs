//! A service from a closure, so a worker needs no tower crate of its own.

use std::fmt;
use std::future::Future;
use std::task::{Context, Poll};

/// A tower service that calls `f` with each request (`tower::service_fn`,
/// without the dependency).
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use gracedown::serve::{RequestBody, service_fn};
/// use http_body_util::Full;
/// use hyper::body::Bytes;
///
/// let service = service_fn(|req: http::Request<RequestBody>| async move {
///     let text = format!("you asked for {}\n", req.uri().path());
///     Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(text))))
/// });
/// # let _ = service;
/// ```
pub fn service_fn<F>(f: F) -> ServiceFn<F> {
    ServiceFn { f }
}

/// The service [`service_fn`] returns.
#[derive(Clone, Copy)]
pub struct ServiceFn<F> {
    f: F,
}

impl<F> fmt::Debug for ServiceFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceFn").finish_non_exhaustive()
    }
}

impl<F, Req, Fut, R, E> tower_service::Service<Req> for ServiceFn<F>
where
    F: FnMut(Req) -> Fut,
    Fut: Future<Output = Result<R, E>>,
{
    type Response = R;
    type Error = E;
    type Future = Fut;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), E>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Fut {
        (self.f)(req)
    }
}
