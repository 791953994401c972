//! The request body handlers read: hyper's, with a bound on how long the
//! client may leave a read waiting (nginx's `client_body_timeout`).

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};

/// The body of every request a [`super::Server`] passes to its service:
/// hyper's [`Incoming`], with a bound on the time between two reads.
///
/// A handler that waits for body bytes the client does not send gets
/// [`BodyError::TimedOut`] once the bound passes (60 s by default,
/// [`super::Timeouts::request_body_read`]), instead of waiting for ever; the
/// connection is then closed after the response. The bound runs only while
/// the handler waits, so a handler that reads slowly is never cut off.
///
/// It implements [`Body`] with `Bytes` frames, so axum, tower-http and
/// `http_body_util` take it like any other body.
///
/// # Examples
///
/// ```
/// use gracedown::serve::RequestBody;
/// use http_body_util::BodyExt;
///
/// async fn echo_len(req: http::Request<RequestBody>) -> Result<usize, gracedown::serve::BodyError> {
///     Ok(req.into_body().collect().await?.to_bytes().len())
/// }
/// ```
pub struct RequestBody {
    inner: Incoming,
    bound: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether the timer runs (the last poll found nothing to read).
    armed: bool,
}

impl RequestBody {
    pub(crate) fn new(inner: Incoming, bound: Duration) -> Self {
        Self {
            inner,
            bound,
            timer: None,
            armed: false,
        }
    }

    /// hyper's body, without the read bound.
    pub fn into_inner(self) -> Incoming {
        self.inner
    }
}

impl fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBody")
            .field("inner", &self.inner)
            .field("bound", &self.bound)
            .finish_non_exhaustive()
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.armed = false;
                Poll::Ready(frame.map(|f| f.map_err(BodyError::Read)))
            }
            Poll::Pending => {
                let at = Instant::now() + this.bound;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                if !this.armed {
                    timer.as_mut().reset(at);
                    this.armed = true;
                }
                ready!(timer.as_mut().poll(cx));
                Poll::Ready(Some(Err(BodyError::TimedOut(this.bound))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The connection failed or the client sent a malformed body.
    #[error("reading the request body failed")]
    Read(#[source] hyper::Error),
    /// The client sent nothing for this long while the handler waited.
    #[error("the client sent no request body bytes for {0:?}")]
    TimedOut(Duration),
}

impl BodyError {
    /// Whether the client was too slow (answer 408 Request Timeout).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::TimedOut(_))
    }
}
