//! The demo worker's HTTP service: the Rust counterpart of the original Go
//! example's handler, plus endpoints that exercise the drain.
//!
//! - `GET /` (and any other path): `from pid N.`
//! - `GET /sleep?ms=N`: the same, after N milliseconds (a slow request).
//! - `GET /stream?chunks=N&interval_ms=M`: N chunks, one every M ms; when the
//!   server starts draining, the stream ends early with a `draining` line.
//! - `POST /echo`: the request body, streamed back.
//! - `GET /bytes?n=N`: N bytes (`x`), in 64 KiB chunks, up to 1 GiB.
//! - `GET /healthz`: `ok` (200), or `draining` (503) once the worker drains, so
//!   a load balancer stops routing to it before its connections close.
//! - `GET /readyz`: `ready` (200), or `draining` (503) from the stop signal on,
//!   through the whole shutdown delay (gracedown's [`Readiness`]): the
//!   readiness probe of an orchestrator or a load balancer.
//! - `GET /livez`: `ok` (200) whenever it is asked, draining or not: the
//!   liveness probe (after the shutdown delay the listener is closed and a
//!   probe's connection is refused, so the probe must tolerate the drain).
//!
//! Every response carries `x-gracedown-pid` and `x-gracedown-generation`.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use gracedown::serve::RequestBody;
use gracedown::shutdown::{Draining, Readiness};
use http::header::{CONTENT_TYPE, HeaderName};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Body, Frame, SizeHint};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Longest `/sleep` or `/stream` the worker accepts: ten minutes.
const MAX_WAIT_MS: u64 = 600_000;

/// Identity stamped on every response, built once per process: the bytes
/// are static, so a response copies and counts nothing to carry them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Identity {
    pid: u32,
    /// `from pid N.\n`
    hello: &'static str,
    pid_header: &'static str,
    generation_header: Option<&'static str>,
}

impl Identity {
    /// This process's identity (leaked once: it lives as long as the worker).
    pub(crate) fn new(pid: u32, generation: Option<u64>) -> Self {
        Self {
            pid,
            hello: String::leak(format!("from pid {pid}.\n")),
            pid_header: String::leak(pid.to_string()),
            generation_header: generation.map(|g| &*String::leak(g.to_string())),
        }
    }
}

/// Answers one request: at once for every endpoint but `/sleep`, whose
/// wait is boxed so that the common answer's future stays the size of a
/// response (an `async fn` would size every request's future for the
/// timer and keep the request twice: 952 bytes, moved on every call).
pub(crate) fn handle(identity: Identity, req: Request<RequestBody>) -> Answer {
    if req.uri().path() == "/sleep" {
        return Answer::Later(Box::pin(async move {
            let mut response = sleep(identity, &req)
                .await
                .unwrap_or_else(|message| text(StatusCode::BAD_REQUEST, Bytes::from(message)));
            stamp(identity, &mut response);
            Ok(response)
        }));
    }
    let response = match (req.method(), req.uri().path()) {
        (&Method::POST, "/echo") => Ok(Response::new(ResponseBody::Echo(req.into_body()))),
        (_, "/healthz") => Ok(health(&req)),
        (_, "/readyz") => Ok(Readiness::answer(req.extensions())
            .map(|body| ResponseBody::Full(Full::new(Bytes::from(body))))),
        (_, "/livez") => Ok(text(StatusCode::OK, Bytes::from_static(b"ok\n"))),
        (_, "/stream") => stream(identity, &req),
        (_, "/bytes") => bytes(&req),
        _ => Ok(text(
            StatusCode::OK,
            Bytes::from_static(identity.hello.as_bytes()),
        )),
    };
    let mut response =
        response.unwrap_or_else(|message| text(StatusCode::BAD_REQUEST, Bytes::from(message)));
    // Stamped where it lies: a response is moved as few times as it can be.
    stamp(identity, &mut response);
    Answer::Now(std::future::ready(Ok(response)))
}

// The identity headers' names, parsed at compile time (a `&str` name is
// parsed, copied and freed on every insert).
const PID: HeaderName = HeaderName::from_static("x-gracedown-pid");
const GENERATION: HeaderName = HeaderName::from_static("x-gracedown-generation");

/// Adds the identity headers.
fn stamp(identity: Identity, response: &mut Response<ResponseBody>) {
    let headers = response.headers_mut();
    headers.insert(PID, HeaderValue::from_static(identity.pid_header));
    if let Some(generation) = identity.generation_header {
        headers.insert(GENERATION, HeaderValue::from_static(generation));
    }
}

/// The future of one request's answer (see [`handle`]).
pub(crate) enum Answer {
    /// Answered already.
    Now(std::future::Ready<Result<Response<ResponseBody>, Infallible>>),
    /// `/sleep`: answered after its wait.
    Later(Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, Infallible>> + Send>>),
}

impl Future for Answer {
    type Output = Result<Response<ResponseBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Both variants are Unpin.
        match self.get_mut() {
            Self::Now(answer) => Pin::new(answer).poll(cx),
            Self::Later(future) => future.as_mut().poll(cx),
        }
    }
}

/// The response body of every endpoint: one enum rather than a boxed body,
/// so the common answer allocates nothing.
pub(crate) enum ResponseBody {
    /// A body known in full.
    Full(Full<Bytes>),
    /// `/echo`: the request body, streamed back.
    Echo(RequestBody),
    /// `/stream`.
    Chunks(Chunks),
    /// `/bytes`.
    Repeat(Repeat),
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // Every variant is Unpin.
        match self.get_mut() {
            Self::Full(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(|never| match never {}))),
            Self::Echo(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(BoxError::from))),
            Self::Chunks(body) => Pin::new(body).poll_frame(cx),
            Self::Repeat(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(body) => body.is_end_stream(),
            Self::Echo(body) => body.is_end_stream(),
            Self::Chunks(body) => body.sent >= body.total,
            Self::Repeat(body) => body.left == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(body) => body.size_hint(),
            Self::Echo(body) => body.size_hint(),
            Self::Chunks(_) => SizeHint::default(),
            Self::Repeat(body) => SizeHint::with_exact(body.left),
        }
    }
}

fn health(req: &Request<RequestBody>) -> Response<ResponseBody> {
    let draining = req
        .extensions()
        .get::<Draining>()
        .is_some_and(Draining::is_draining);
    if draining {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            Bytes::from_static(b"draining\n"),
        )
    } else {
        text(StatusCode::OK, Bytes::from_static(b"ok\n"))
    }
}

async fn sleep(
    identity: Identity,
    req: &Request<RequestBody>,
) -> Result<Response<ResponseBody>, String> {
    let ms = query_number(req, "ms")?.unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(text(
        StatusCode::OK,
        Bytes::from_static(identity.hello.as_bytes()),
    ))
}

fn stream(
    identity: Identity,
    req: &Request<RequestBody>,
) -> Result<Response<ResponseBody>, String> {
    let chunks = query_number(req, "chunks")?.unwrap_or(10);
    let interval = Duration::from_millis(query_number(req, "interval_ms")?.unwrap_or(100));
    let body = Chunks {
        pid: identity.pid,
        sent: 0,
        total: chunks,
        interval,
        timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
        draining: req.extensions().get::<Draining>().cloned(),
    };
    Ok(Response::new(ResponseBody::Chunks(body)))
}

/// Largest `/bytes` the worker sends: 1 GiB.
const MAX_BYTES: u64 = 1 << 30;

fn bytes(req: &Request<RequestBody>) -> Result<Response<ResponseBody>, String> {
    let n = query_number_up_to(req, "n", MAX_BYTES)?.unwrap_or(0);
    let body = Repeat { left: n };
    let mut response = Response::new(ResponseBody::Repeat(body));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(response)
}

/// The `/bytes` body: `left` more bytes of `x`.
pub(crate) struct Repeat {
    left: u64,
}

impl Body for Repeat {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        const CHUNK: &[u8] = &[b'x'; 64 * 1024];
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(CHUNK.len() as u64);
        self.left -= n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
            &CHUNK[..n as usize],
        )))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

fn text(status: StatusCode, body: Bytes) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::Full(Full::new(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

/// Reads `?name=N`; `Ok(None)` when absent, `Err` with a message when not a number in range.
fn query_number(req: &Request<RequestBody>, name: &str) -> Result<Option<u64>, String> {
    query_number_up_to(req, name, MAX_WAIT_MS)
}

fn query_number_up_to(
    req: &Request<RequestBody>,
    name: &str,
    max: u64,
) -> Result<Option<u64>, String> {
    let query = req.uri().query().unwrap_or("");
    let Some(value) = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find_map(|(key, value)| (key == name).then_some(value))
    else {
        return Ok(None);
    };
    match value.parse::<u64>() {
        Ok(n) if n <= max => Ok(Some(n)),
        _ => Err(format!(
            "bad query parameter `{name}`: `{value}` is not a number from 0 to {max}\n"
        )),
    }
}

/// The `/stream` body: one line per tick; ends early once the server drains.
pub(crate) struct Chunks {
    pid: u32,
    sent: u64,
    total: u64,
    interval: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    draining: Option<Draining>,
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.sent >= self.total {
            return Poll::Ready(None);
        }
        if self.sent > 0 && self.draining.as_ref().is_some_and(Draining::is_draining) {
            self.sent = self.total;
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"draining\n")))));
        }
        if self.timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let next = tokio::time::Instant::now() + self.interval;
        self.timer.as_mut().reset(next);
        let line = format!("chunk {} from pid {}.\n", self.sent, self.pid);
        self.sent += 1;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(line)))))
    }
}
