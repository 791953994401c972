//! `Tuning { http1_writev: false, .. }`: HTTP/1 responses written from one buffer
//! that head and body are copied into. The bytes a client receives are the
//! same as with vectored writes, for pipelined requests, small bodies and a
//! body of many chunks larger in all than hyper's write buffer, read by a
//! client with a small receive buffer (so the server's writes are partial).

mod support;

use std::convert::Infallible;

use bytes::Bytes;
use futures_util::stream::{self, Iter};
use gracedown::serve::{RequestBody, Tuning, service_fn};
use http::{Request, Response};
use http_body::Frame;
use http_body_util::{Either, Full, StreamBody};
use support::{WAIT, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

/// A short text, or a body of chunks (no length: chunked encoding).
type Answer =
    Either<Full<Bytes>, StreamBody<Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>>;

/// `/large`: 40 chunks of 64 KiB, each of one letter, the letters going
/// backwards through the alphabet from `n` (so a chunk out of place or cut
/// short shows); anything else: a short text.
async fn answer(req: Request<RequestBody>) -> Result<Response<Answer>, Infallible> {
    Ok(Response::new(match req.uri().path() {
        "/large" => {
            let chunks: Vec<_> = (0..40u8)
                .rev()
                .map(|left| Ok(Frame::data(Bytes::from(vec![b'a' + left % 26; 64 * 1024]))))
                .collect();
            Either::Right(StreamBody::new(stream::iter(chunks)))
        }
        path => Either::Left(Full::new(Bytes::from(format!("small {path}\n")))),
    }))
}

/// What a server with vectored writes on or off sends for three pipelined
/// requests, the connection closed by the last; the `date` lines taken out.
async fn received(writev: bool) -> Vec<u8> {
    let running = start(
        |server| {
            server.tuning(Tuning {
                http1_writev: writev,
                ..Tuning::default()
            })
        },
        service_fn(answer),
    );
    let socket = TcpSocket::new_v4().expect("socket");
    // Small, so that the server's socket fills and its writes come back short.
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut client = socket.connect(running.addr).await.expect("connect");
    client
        .write_all(
            b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /large HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await
        .expect("send");
    let mut bytes = Vec::new();
    tokio::time::timeout(WAIT, client.read_to_end(&mut bytes))
        .await
        .expect("the server closes after the third answer")
        .expect("read");
    drop(client);
    let report = running.report().await;
    assert_eq!(report.forced_total(), 0, "{report}");
    let mut kept = Vec::with_capacity(bytes.len());
    let mut rest = &bytes[..];
    while let Some(end) = rest.windows(2).position(|w| w == b"\r\n") {
        let line = &rest[..end + 2];
        if !line.to_ascii_lowercase().starts_with(b"date:") {
            kept.extend_from_slice(line);
        }
        rest = &rest[end + 2..];
    }
    kept.extend_from_slice(rest);
    kept
}

#[tokio::test]
async fn flattened_writes_send_what_vectored_writes_send() {
    let vectored = received(true).await;
    let flattened = received(false).await;
    // The three answers are there, in order, whole.
    let text = String::from_utf8_lossy(&vectored);
    let one = text.find("small /one\n").expect("the first answer");
    let large = text
        .find("transfer-encoding: chunked")
        .expect("the large answer");
    let two = text.find("small /two\n").expect("the third answer");
    assert!(one < large && large < two, "answers out of order");
    // The large body's chunks, in order: 40 chunks of one letter each, from
    // `n` (39 % 26 = 13) backwards.
    let letters: Vec<u8> = vectored
        .iter()
        .copied()
        .filter(u8::is_ascii_lowercase)
        .collect();
    let mut runs: Vec<(u8, usize)> = Vec::new();
    for letter in letters {
        match runs.last_mut() {
            Some((last, n)) if *last == letter => *n += 1,
            _ => runs.push((letter, 1)),
        }
    }
    let chunks: Vec<(u8, usize)> = (0..40)
        .rev()
        .map(|left| (b'a' + (left % 26) as u8, 64 * 1024))
        .collect();
    assert!(
        runs.windows(40).any(|w| w == chunks.as_slice()),
        "the large body's chunks are not 40 whole chunks in order"
    );
    assert_eq!(
        flattened.len(),
        vectored.len(),
        "flattened writes sent another number of bytes"
    );
    assert!(
        flattened == vectored,
        "flattened writes sent other bytes than vectored writes"
    );
}
