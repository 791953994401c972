//! The HTTP/1 framing tracker against hyper itself (a differential
//! oracle): wherever the tracker says a connection's bytes end between
//! messages, hyper, given exactly those bytes and then the end, must have
//! parsed that many requests whole, or have refused the bytes (it closes the
//! connection then). Input: a count of cuts (first byte), that many
//! two-byte offsets, then the client's bytes, fed to the tracker in the
//! pieces the cuts make, as reads feed it.

#![no_main]

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The client's bytes, then the end; what hyper writes is kept.
struct Replay {
    bytes: Vec<u8>,
    at: usize,
    written: Rc<RefCell<Vec<u8>>>,
}

impl AsyncRead for Replay {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = (self.bytes.len() - self.at).min(buf.remaining());
        let at = self.at;
        buf.put_slice(&self.bytes[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Replay {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.written.borrow_mut().extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// What hyper made of the bytes: how it ended, the requests it parsed
/// whole (bodies read to their end), and whether the last one closes the
/// connection (hyper then stops reading).
struct Parsed {
    result: Result<(), hyper::Error>,
    requests: u64,
    last_closes: bool,
    /// A body hyper could not read to its end, and why.
    body_error: Option<hyper::Error>,
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
}

/// Whether hyper's last response says it closes the connection after it
/// (`Connection: close`, which hyper adds when it will not keep the
/// connection alive, or an HTTP/1.0 response without `keep-alive`): then it
/// reads no further request. Every response here has a `Content-Length`.
fn last_response_closes(written: &[u8]) -> bool {
    let mut rest = written;
    let mut closes = false;
    while let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&rest[..end]).to_ascii_lowercase();
        let mut length = 0;
        let mut connection = String::new();
        for line in head.split("\r\n").skip(1) {
            if let Some((name, value)) = line.split_once(':') {
                match name.trim() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "connection" => connection = value.trim().to_owned(),
                    _ => {}
                }
            }
        }
        closes = connection.contains("close")
            || (head.starts_with("http/1.0") && !connection.contains("keep-alive"));
        rest = &rest[(end + 4 + length).min(rest.len())..];
    }
    closes
}

/// hyper's HTTP/1 server, as gracedown configures it, over `bytes`.
fn hyper_parse(bytes: &[u8]) -> Parsed {
    let seen = Rc::new(RefCell::new((0u64, None)));
    let counter = Rc::clone(&seen);
    let service = service_fn(move |request: Request<Incoming>| {
        let counter = Rc::clone(&counter);
        async move {
            let connect = request.method() == http::Method::CONNECT;
            if let Err(e) = request.into_body().collect().await {
                counter.borrow_mut().1 = Some(e);
                return Err(io::Error::other("the body was not read whole"));
            }
            counter.borrow_mut().0 += 1;
            // Never a 2xx to CONNECT nor a 101: no upgrade takes the bytes.
            let status = if connect { 405 } else { 200 };
            Ok::<_, io::Error>(
                Response::builder()
                    .status(status)
                    .body(Full::new(Bytes::from_static(b"ok")))
                    .expect("a response"),
            )
        }
    });
    let written = Rc::new(RefCell::new(Vec::new()));
    let io = TokioIo::new(Replay {
        bytes: bytes.to_vec(),
        at: 0,
        written: Rc::clone(&written),
    });
    let result = RUNTIME.with(|rt| {
        rt.block_on(async {
            let mut builder = hyper::server::conn::http1::Builder::new();
            // As gracedown's, but for the end of the bytes: hyper answers
            // what it has read before it (gracedown's reads never end a
            // connection under hyper between requests it holds).
            builder
                .keep_alive(true)
                .header_read_timeout(None)
                .half_close(true);
            builder.serve_connection(io, service).await
        })
    });
    let (requests, body_error) = seen.take();
    let last_closes = last_response_closes(&written.borrow());
    Parsed {
        result,
        requests,
        last_closes,
        body_error,
    }
}

/// hyper met the end of the bytes inside a message.
fn cut_short(e: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if cause
            .downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::UnexpectedEof)
        {
            return true;
        }
        source = cause.source();
    }
    e.is_incomplete_message()
}

fuzz_target!(|data: &[u8]| {
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    let count = usize::from(count % 16);
    if rest.len() < count * 2 {
        return;
    }
    let (cuts, bytes) = rest.split_at(count * 2);
    let cuts: Vec<usize> = cuts
        .chunks_exact(2)
        .map(|c| usize::from(u16::from_be_bytes([c[0], c[1]])))
        .collect();
    for (at, requests) in gracedown::fuzzing::framing_boundaries(bytes, &cuts) {
        let parsed = hyper_parse(&bytes[..at]);
        let refused = |e: &hyper::Error| e.is_parse() || e.is_parse_too_large();
        if let Some(e) = &parsed.body_error {
            // A body hyper refused (its chunk framing, its trailers): the
            // connection closes. One it found cut short is a disagreement.
            assert!(
                !cut_short(e),
                "the tracker says {requests} requests end at {at}; hyper's body {}: {e:?} ({:?})",
                parsed.requests + 1,
                String::from_utf8_lossy(&bytes[..at])
            );
            continue;
        }
        match &parsed.result {
            // hyper refused the bytes: it answers with an error and closes.
            Err(e) if refused(e) => continue,
            Err(e) => panic!(
                "the tracker says {requests} requests end at {at}; hyper: {e} after {} ({:?})",
                parsed.requests,
                String::from_utf8_lossy(&bytes[..at])
            ),
            Ok(()) => {}
        }
        // hyper stops early only after a request that closes the connection.
        let agrees =
            parsed.requests == requests || (parsed.requests < requests && parsed.last_closes);
        assert!(
            agrees,
            "the tracker says {requests} requests end at {at}; hyper parsed {} ({:?})",
            parsed.requests,
            String::from_utf8_lossy(&bytes[..at])
        );
    }
});
