//! HTTP/1.1: the request bytes are built once; each slot writes them and
//! reads one response at a time, classifying how it ends.

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::conn::{Io, connect};
use super::{Backoff, Pacer, Shared};
use crate::outcome::Outcome;
use crate::plan::Plan;
use crate::record::Recorder;

/// The request, byte for byte, as sent on every connection.
pub(crate) fn request_bytes(plan: &Plan) -> Bytes {
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\n",
        plan.method, plan.path, plan.authority
    );
    for (name, value) in &plan.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !plan.body.is_empty()
        || matches!(
            plan.method,
            http::Method::POST | http::Method::PUT | http::Method::PATCH
        )
    {
        head.push_str(&format!("Content-Length: {}\r\n", plan.body.len()));
    }
    if !plan.keepalive {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = BytesMut::from(head.as_bytes());
    bytes.extend_from_slice(&plan.body);
    bytes.freeze()
}

/// How an exchange failed.
enum Failure {
    /// Written (or writing), and the connection ended before any response byte.
    BeforeResponse,
    /// The response started, then the connection broke or lied.
    Truncated,
}

struct Response {
    status: u16,
    close: bool,
    /// Whether `x-gracedown-pid` differed from the last one seen on this slot.
    new_pid: bool,
}

pub(crate) async fn slot(
    shared: &Shared,
    tls: Option<&Arc<rustls::ClientConfig>>,
    deadline: Instant,
    recorder: &mut Recorder,
    pacer: &mut Pacer,
) {
    let plan = &shared.plan;
    let mut conn: Option<Io> = None;
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut backoff = Backoff::new();
    let mut last_pid = Vec::new();
    while let Some(started) = pacer.next(shared, deadline, recorder).await {
        // A client with a reader on its idle connections knows when the
        // server closed one: it does not send on it (that is no retry: the
        // request was never sent).
        if conn.as_ref().is_some_and(Io::closed_by_peer) {
            conn = None;
            recorder.disconnect();
        }
        let mut io = match conn.take() {
            Some(io) => io,
            None => match connect(plan, shared.connect_to, tls).await {
                Ok(io) => {
                    recorder.connect(io.tls_resumed());
                    backoff.reset();
                    buf.clear();
                    io
                }
                Err(()) => {
                    recorder.outcome(Outcome::ConnectFailed, started, None);
                    shared.ended(true);
                    backoff.wait().await;
                    continue;
                }
            },
        };
        let exchange = exchange(
            &mut io,
            &shared.request,
            &mut buf,
            &plan.method,
            &mut last_pid,
        );
        let (outcome, pid, keep) = match tokio::time::timeout(plan.timeout, exchange).await {
            Err(_) => (Outcome::Timeout, None, false),
            Ok(Err(Failure::BeforeResponse)) => (Outcome::ClosedBeforeResponse, None, false),
            Ok(Err(Failure::Truncated)) => (Outcome::Truncated, None, false),
            Ok(Ok(r)) => {
                // Only a pid different from the slot's last one is copied out.
                let pid = r
                    .new_pid
                    .then(|| String::from_utf8_lossy(&last_pid).into_owned());
                (Outcome::Ok(r.status), pid, !r.close && plan.keepalive)
            }
        };
        recorder.outcome(outcome, started, pid);
        shared.ended(!matches!(outcome, Outcome::Ok(_)));
        if keep {
            conn = Some(io);
        } else {
            recorder.disconnect();
        }
    }
}

async fn exchange(
    io: &mut Io,
    request: &[u8],
    buf: &mut BytesMut,
    method: &http::Method,
    last_pid: &mut Vec<u8>,
) -> Result<Response, Failure> {
    if io.write_all(request).await.is_err() {
        return Err(Failure::BeforeResponse);
    }
    // Head.
    let (status, close, new_pid, body) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Response::new(&mut headers);
        match parsed.parse(buf) {
            Ok(httparse::Status::Complete(len)) => {
                let status = parsed.code.unwrap_or(0);
                let mut close = parsed.version == Some(0);
                let mut length = None;
                let mut chunked = false;
                let mut new_pid = false;
                for h in parsed.headers.iter() {
                    let value = std::str::from_utf8(h.value).unwrap_or("").trim();
                    if h.name.eq_ignore_ascii_case("content-length") {
                        length = Some(value.parse::<usize>().map_err(|_| Failure::Truncated)?);
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        chunked = value.to_ascii_lowercase().contains("chunked");
                    } else if h.name.eq_ignore_ascii_case("connection") {
                        close = value.eq_ignore_ascii_case("close");
                    } else if h.name.eq_ignore_ascii_case("x-gracedown-pid")
                        && h.value != &last_pid[..]
                    {
                        last_pid.clear();
                        last_pid.extend_from_slice(h.value);
                        new_pid = true;
                    }
                }
                buf.advance(len);
                let no_body = method == http::Method::HEAD
                    || status == 204
                    || status == 304
                    || (100..200).contains(&status);
                let body = if no_body {
                    Body::Length(0)
                } else if chunked {
                    Body::Chunked
                } else if let Some(n) = length {
                    Body::Length(n)
                } else {
                    Body::UntilClose
                };
                break (status, close, new_pid, body);
            }
            Ok(httparse::Status::Partial) => {
                let started = !buf.is_empty();
                match io.read_buf(buf).await {
                    Ok(0) | Err(_) => {
                        return Err(if started {
                            Failure::Truncated
                        } else {
                            Failure::BeforeResponse
                        });
                    }
                    Ok(_) => {}
                }
            }
            Err(_) => return Err(Failure::Truncated),
        }
    };
    match body {
        Body::Length(n) => {
            while buf.len() < n {
                match io.read_buf(buf).await {
                    Ok(0) | Err(_) => return Err(Failure::Truncated),
                    Ok(_) => {}
                }
            }
            buf.advance(n);
        }
        Body::Chunked => read_chunked(io, buf).await?,
        Body::UntilClose => {
            loop {
                match io.read_buf(buf).await {
                    Ok(0) => break,
                    Ok(_) => buf.clear(),
                    Err(_) => return Err(Failure::Truncated),
                }
            }
            return Ok(Response {
                status,
                close: true,
                new_pid,
            });
        }
    }
    Ok(Response {
        status,
        close,
        new_pid,
    })
}

enum Body {
    Length(usize),
    Chunked,
    UntilClose,
}

async fn read_chunked(io: &mut Io, buf: &mut BytesMut) -> Result<(), Failure> {
    loop {
        let line_end = loop {
            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            fill(io, buf).await?;
        };
        let size_text = std::str::from_utf8(&buf[..line_end]).map_err(|_| Failure::Truncated)?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| Failure::Truncated)?;
        buf.advance(line_end + 2);
        if size == 0 {
            // Trailers, then the final CRLF.
            loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    let empty = i == 0;
                    buf.advance(i + 2);
                    if empty {
                        return Ok(());
                    }
                } else {
                    fill(io, buf).await?;
                }
            }
        }
        while buf.len() < size + 2 {
            fill(io, buf).await?;
        }
        buf.advance(size + 2);
    }
}

async fn fill(io: &mut Io, buf: &mut BytesMut) -> Result<(), Failure> {
    match io.read_buf(buf).await {
        Ok(0) | Err(_) => Err(Failure::Truncated),
        Ok(_) => Ok(()),
    }
}
