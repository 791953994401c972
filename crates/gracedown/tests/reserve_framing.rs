//! A property of the HTTP/1 framing across the path that stops hyper at a
//! message boundary and serves what arrives next (the keep-alive bound, the
//! drain's idle bound): whatever requests a client pipelines, however the
//! bytes are split and paced, and however often that path runs, the server
//! answers the requests in order, each at most once, and nothing after a
//! request that demands a close or cannot be framed.

use std::convert::Infallible;
use std::future::IntoFuture;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::Bytes;
use gracedown::listener::{ListenAddr, Listener};
use gracedown::serve::{RequestBody, Server, Timeouts, service_fn};
use http_body_util::{BodyExt, Full};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// The size of a `Big` response: more than the socket buffers take.
const BIG: usize = 4 << 20;

/// One request of the pipelined sequence.
#[derive(Debug, Clone)]
enum Req {
    Get,
    /// A response large enough that the server's writes block while the
    /// client does not read (and hyper reads ahead meanwhile).
    Big,
    Post(Vec<u8>),
    Chunked(Vec<u8>),
    /// `Connection: close`: the last one served.
    Close,
    /// HTTP/1.0 without keep-alive: the last one served.
    Http10,
    /// `Content-Length` and `Transfer-Encoding`: served, then closed.
    ClTe,
    /// A bare LF line ending: refused with 400, then closed.
    BareLf,
    /// A signed `Content-Length`: refused with 400, then closed.
    SignedCl,
}

impl Req {
    fn bytes(&self, id: usize) -> Vec<u8> {
        let head =
            |extra: &str| format!("GET /{id} HTTP/1.1\r\nHost: x\r\nX-Id: {id}\r\n{extra}\r\n");
        match self {
            Self::Get => head("").into_bytes(),
            Self::Big => format!("GET /big/{id} HTTP/1.1\r\nHost: x\r\nX-Id: {id}\r\n\r\n").into_bytes(),
            Self::Close => head("Connection: close\r\n").into_bytes(),
            Self::Http10 => format!("GET /{id} HTTP/1.0\r\nX-Id: {id}\r\n\r\n").into_bytes(),
            Self::Post(body) => {
                let mut b = format!(
                    "POST /{id} HTTP/1.1\r\nHost: x\r\nX-Id: {id}\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                b.extend_from_slice(body);
                b
            }
            Self::Chunked(body) => {
                let mut b = format!(
                    "POST /{id} HTTP/1.1\r\nHost: x\r\nX-Id: {id}\r\nTransfer-Encoding: chunked\r\n\r\n"
                )
                .into_bytes();
                for chunk in body.chunks(7) {
                    b.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    b.extend_from_slice(chunk);
                    b.extend_from_slice(b"\r\n");
                }
                b.extend_from_slice(b"0\r\n\r\n");
                b
            }
            Self::ClTe => format!(
                "POST /{id} HTTP/1.1\r\nHost: x\r\nX-Id: {id}\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            )
            .into_bytes(),
            Self::BareLf => format!("GET /{id} HTTP/1.1\nHost: x\nX-Id: {id}\n\n").into_bytes(),
            Self::SignedCl => {
                format!("POST /{id} HTTP/1.1\r\nHost: x\r\nX-Id: {id}\r\nContent-Length: +2\r\n\r\nab")
                    .into_bytes()
            }
        }
    }

    /// The response it gets, if served: status and body.
    fn expected(&self, id: usize) -> (u16, Option<String>) {
        match self {
            Self::Get | Self::Close | Self::Http10 | Self::ClTe => {
                (200, Some(format!("id={id} len=0")))
            }
            Self::Post(body) | Self::Chunked(body) => {
                (200, Some(format!("id={id} len={}", body.len())))
            }
            Self::Big | Self::BareLf | Self::SignedCl => {
                (if matches!(self, Self::Big) { 200 } else { 400 }, None)
            }
        }
    }

    fn ends_the_connection(&self) -> bool {
        !matches!(
            self,
            Self::Get | Self::Big | Self::Post(_) | Self::Chunked(_)
        )
    }
}

fn request() -> impl Strategy<Value = Req> {
    let body = prop::collection::vec(any::<u8>(), 0..40);
    prop_oneof![
        6 => Just(Req::Get),
        2 => Just(Req::Big),
        3 => body.clone().prop_map(Req::Post),
        3 => body.prop_map(Req::Chunked),
        1 => Just(Req::Close),
        1 => Just(Req::Http10),
        1 => Just(Req::ClTe),
        1 => Just(Req::BareLf),
        1 => Just(Req::SignedCl),
    ]
}

/// Where the client splits its bytes: at a request boundary (where the
/// server may stop the connection and pick it up again), or anywhere.
#[derive(Debug, Clone, Copy)]
enum Cut {
    Boundary(usize),
    Anywhere(usize),
}

/// A pipelined sequence, the points where its bytes are split, and a pause
/// (in microseconds) before each piece.
fn exchange() -> impl Strategy<Value = (Vec<Req>, Vec<Cut>, Vec<u64>)> {
    let cut = prop_oneof![
        any::<usize>().prop_map(Cut::Boundary),
        any::<usize>().prop_map(Cut::Anywhere),
    ];
    (
        prop::collection::vec(request(), 1..8),
        prop::collection::vec(cut, 0..6),
        prop::collection::vec(0..3000u64, 7),
    )
}

/// The byte positions of `cuts` in the wire of `requests`, sorted, with both ends.
fn positions(requests: &[Req], cuts: &[Cut]) -> Vec<usize> {
    let mut boundaries = vec![0];
    for (id, req) in requests.iter().enumerate() {
        boundaries.push(boundaries[id] + req.bytes(id).len());
    }
    let len = boundaries[requests.len()];
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|cut| match *cut {
            Cut::Boundary(i) => boundaries[i % boundaries.len()],
            Cut::Anywhere(i) => i % (len + 1),
        })
        .collect();
    points.extend([0, len]);
    points.sort_unstable();
    points.dedup();
    points
}

/// Answers `id=N len=BODY_LENGTH`, or [`BIG`] bytes under `/big`.
async fn answer(
    req: http::Request<RequestBody>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    if req.uri().path().starts_with("/big") {
        return Ok(http::Response::new(Full::new(Bytes::from(vec![b'x'; BIG]))));
    }
    let id = req
        .headers()
        .get("x-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?")
        .to_owned();
    let len = match req.into_body().collect().await {
        Ok(body) => body.to_bytes().len().to_string(),
        Err(e) => format!("error: {e:?}"),
    };
    Ok(http::Response::new(Full::new(Bytes::from(format!(
        "id={id} len={len}"
    )))))
}

/// Starts a server (in its own runtime, for the whole test) whose service
/// answers `id=N len=BODY_LENGTH`.
fn server(keepalive: Duration) -> SocketAddr {
    let listener =
        Listener::bind(&ListenAddr::Tcp("127.0.0.1:0".parse().expect("addr"))).expect("bind");
    let addr = match listener.local_addr().expect("addr") {
        ListenAddr::Tcp(addr) => addr,
        ListenAddr::Unix(_) => unreachable!("a TCP listener"),
    };
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let service = service_fn(answer);
        let server = Server::new(vec![listener]).timeouts(Timeouts {
            keepalive,
            ..Timeouts::default()
        });
        // The test process ends the server.
        let _ = runtime.block_on(
            server
                .serve(service)
                .with_graceful_shutdown(std::future::pending())
                .into_future(),
        );
    });
    addr
}

/// Sends the pieces with their pauses, reads until the server closes, and
/// parses the responses.
fn run(addr: SocketAddr, requests: &[Req], cuts: &[Cut], pauses: &[u64]) -> Vec<(u16, String)> {
    let wire = wire_of(requests);
    let mut conn = TcpStream::connect(addr).expect("connect");
    conn.set_nodelay(true).expect("nodelay");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    for (piece, pause) in positions(requests, cuts)
        .windows(2)
        .zip(pauses.iter().cycle())
    {
        std::thread::sleep(Duration::from_micros(*pause));
        // The server may have closed (a bound, or a request that ends the
        // connection): what it answered until then is what counts.
        if conn.write_all(&wire[piece[0]..piece[1]]).is_err() {
            break;
        }
    }
    let mut received = Vec::new();
    let _ = conn.read_to_end(&mut received);
    parse_responses(&received)
}

fn parse_responses(mut wire: &[u8]) -> Vec<(u16, String)> {
    let mut responses = Vec::new();
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut response = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(head)) = response.parse(wire) else {
            assert!(
                wire.is_empty(),
                "trailing bytes that are no response: {:?}",
                String::from_utf8_lossy(wire)
            );
            return responses;
        };
        let length = response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
            .unwrap_or(0);
        let status = response.code.unwrap_or(0);
        let end = (head + length).min(wire.len());
        responses.push((
            status,
            String::from_utf8_lossy(&wire[head..end]).into_owned(),
        ));
        wire = &wire[end..];
    }
}

/// What a correct server answers: every request up to the first one that
/// ends the connection. With a pacing that lets the keep-alive bound stop
/// the connection, a prefix of it.
fn check(requests: &[Req], responses: &[(u16, String)], exact: bool) -> Result<(), TestCaseError> {
    let mut expected = Vec::new();
    for (id, req) in requests.iter().enumerate() {
        expected.push(req.expected(id));
        if req.ends_the_connection() {
            break;
        }
    }
    prop_assert!(
        responses.len() <= expected.len(),
        "more responses than requests served: {responses:?} for {requests:?}"
    );
    if exact {
        prop_assert_eq!(
            responses.len(),
            expected.len(),
            "{:?} for {:?}",
            responses,
            requests
        );
    }
    for ((status, body), (want_status, want_body)) in responses.iter().zip(&expected) {
        prop_assert_eq!(status, want_status, "{:?} for {:?}", responses, requests);
        if let Some(want) = want_body {
            prop_assert_eq!(body, want, "{:?} for {:?}", responses, requests);
        }
    }
    Ok(())
}

fn wire_of(requests: &[Req]) -> Vec<u8> {
    requests
        .iter()
        .enumerate()
        .flat_map(|(id, r)| r.bytes(id))
        .collect()
}

#[test]
fn pipelined_requests_are_answered_in_order_once_and_never_past_a_close() {
    let addr = server(Duration::from_secs(75));
    let mut runner = TestRunner::new(Config::with_cases(96));
    runner
        .run(&exchange(), |(mut requests, splits, pauses)| {
            if !requests.iter().any(Req::ends_the_connection) {
                requests.push(Req::Close);
            }
            let responses = run(addr, &requests, &splits, &pauses);
            check(&requests, &responses, true)
        })
        .expect("framing holds");
}

/// Runs `requests` against a server on this thread's runtime, blocking the
/// runtime between pieces (so the keep-alive bound passes while bytes wait in
/// the socket, and the server stops the connection at a boundary and serves
/// on, or at a partial head and closes).
fn run_stalling(requests: &[Req], cuts: &[Cut], pauses: &[u64]) -> Vec<(u16, String)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let wire = wire_of(requests);
    runtime.block_on(async {
        let listener =
            Listener::bind(&ListenAddr::Tcp("127.0.0.1:0".parse().expect("addr"))).expect("bind");
        let ListenAddr::Tcp(addr) = listener.local_addr().expect("addr") else {
            unreachable!("a TCP listener")
        };
        let service = service_fn(answer);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // The timer's resolution is a millisecond; the pauses reach past it.
        let server = Server::new(vec![listener]).timeouts(Timeouts {
            keepalive: Duration::from_millis(1),
            ..Timeouts::default()
        });
        let server = tokio::spawn(
            server
                .serve(service)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .into_future(),
        );
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        conn.set_nodelay(true).expect("nodelay");
        'send: for (piece, pause) in positions(requests, cuts)
            .windows(2)
            .zip(pauses.iter().cycle())
        {
            let mut bytes = &wire[piece[0]..piece[1]];
            while !bytes.is_empty() {
                match conn.try_write(bytes) {
                    Ok(n) => bytes = &bytes[n..],
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if conn.writable().await.is_err() {
                            break 'send;
                        }
                    }
                    Err(_) => break 'send,
                }
            }
            // The server cannot run while this thread sleeps.
            std::thread::sleep(Duration::from_micros(*pause));
            tokio::task::yield_now().await;
        }
        let mut received = Vec::new();
        use tokio::io::AsyncReadExt;
        let _ =
            tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut received)).await;
        drop(conn);
        let _ = stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
        parse_responses(&received)
    })
}

#[test]
fn stopping_at_boundaries_never_serves_a_request_out_of_frame() {
    let mut runner = TestRunner::new(Config::with_cases(128));
    runner
        .run(&exchange(), |(mut requests, splits, pauses)| {
            if !requests.iter().any(Req::ends_the_connection) {
                requests.push(Req::Close);
            }
            let responses = run_stalling(&requests, &splits, &pauses);
            check(&requests, &responses, false)
        })
        .expect("framing holds");
}
