//! `Server::http1_writev(false)`: HTTP/1 responses written from one buffer
//! that head and body are copied into. The bytes a client receives are the
//! same as with vectored writes, for small bodies, bodies of many chunks
//! larger than hyper's write buffer, and pipelined requests whose answers
//! leave together.

mod support;

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use gracedown::serve::{RequestBody, service_fn};
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use support::{WAIT, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A body of `left` chunks, the i-th of which is `size` bytes of one letter
/// (so a chunk out of place shows).
struct Chunks {
    left: usize,
    size: usize,
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        self.left -= 1;
        let letter = b'a' + (self.left % 26) as u8;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![letter; self.size])))))
    }
}

enum Answer {
    Small(http_body_util::Full<Bytes>),
    Large(Chunks),
}

impl Body for Answer {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Self::Small(body) => Pin::new(body).poll_frame(cx),
            Self::Large(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Small(body) => body.is_end_stream(),
            Self::Large(body) => body.left == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Small(body) => body.size_hint(),
            Self::Large(_) => SizeHint::default(),
        }
    }
}

/// `/large`: 40 chunks of 64 KiB, unframed by length (chunked encoding);
/// anything else: a short text.
async fn answer(req: Request<RequestBody>) -> Result<Response<Answer>, Infallible> {
    Ok(match req.uri().path() {
        "/large" => Response::new(Answer::Large(Chunks {
            left: 40,
            size: 64 * 1024,
        })),
        path => Response::new(Answer::Small(http_body_util::Full::new(Bytes::from(
            format!("small {path}\n"),
        )))),
    })
}

/// What a server with vectored writes on or off sends for three pipelined
/// requests, the connection closed by the last; the `date` lines taken out.
async fn received(writev: bool) -> Vec<u8> {
    let running = start(|server| server.http1_writev(writev), service_fn(answer));
    let mut client = TcpStream::connect(running.addr).await.expect("connect");
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
    running.report().await;
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
    assert!(
        vectored.len() > 40 * 64 * 1024,
        "the large body is short: {} bytes in all",
        vectored.len()
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
