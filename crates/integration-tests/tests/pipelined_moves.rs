//! Requests a client pipelines are never lost when its connection moves to
//! the next generation. A draining worker that detaches a connection between
//! two pipelined requests still holds the ones hyper read ahead, and the
//! socket holds the rest: the first are answered there with keep-alive, the
//! connection then moves at the boundary after them, and the next
//! generation answers the rest, every one once and in order.
//!
//! The drain starts while a pipelined `GET /stream` is in flight (the demo
//! worker ends that stream when it drains), so the detach comes right after
//! it. The client sends what follows in two writes: the first before the
//! restart (the old generation reads it while the stream is in flight), the
//! second once the drain has started, so the detach meets the pipeline cut
//! at a point each case chooses: between two requests, inside a request
//! line, a head, a `Content-Length` body, a chunk size, chunk data, a
//! trailer.

use std::io::{Read, Write};
use std::net::TcpStream;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::support::field;
use crate::support::starter::{Impl, Served};

/// Our start_server with `gracedown serve` workers, and the generation that
/// serves now.
struct Setup {
    served: Served,
    generation: u32,
}

impl Setup {
    fn start() -> Self {
        Self {
            served: Served::start(Impl::Ours, &[], "gracedown=info"),
            generation: 1,
        }
    }

    /// Restarts, and waits until the new generation is ready (the old one
    /// is told to drain then).
    fn restart(&mut self) {
        self.generation += 1;
        self.served.proc.signal(libc::SIGHUP);
        self.served.wait_ready(self.generation);
    }
}

/// One pipelined request and what its response must carry.
#[derive(Debug, Clone)]
enum Req {
    /// `GET /`.
    Get,
    /// `POST /echo` with a `Content-Length` body of this many bytes.
    Post(usize),
    /// `POST /echo`, chunked, in chunks of at most this many bytes.
    Chunked(usize, usize),
}

impl Req {
    /// The request's bytes and the body its response must have (`None`:
    /// any, it is a `GET`); `id` makes every body unique.
    fn wire(&self, id: usize) -> (Vec<u8>, Option<Vec<u8>>) {
        let body = |len: usize| -> Vec<u8> {
            let tag = format!("<{id}>");
            tag.bytes().cycle().take(len.max(tag.len())).collect()
        };
        match *self {
            Self::Get => (
                format!("GET /?id={id} HTTP/1.1\r\nHost: pipelined\r\n\r\n").into_bytes(),
                None,
            ),
            Self::Post(len) => {
                let body = body(len);
                let mut wire = format!(
                    "POST /echo?id={id} HTTP/1.1\r\nHost: pipelined\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                wire.extend_from_slice(&body);
                (wire, Some(body))
            }
            Self::Chunked(len, chunk) => {
                let body = body(len);
                let mut wire = format!(
                    "POST /echo?id={id} HTTP/1.1\r\nHost: pipelined\r\nTransfer-Encoding: chunked\r\n\r\n"
                )
                .into_bytes();
                for piece in body.chunks(chunk.max(1)) {
                    wire.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                    wire.extend_from_slice(piece);
                    wire.extend_from_slice(b"\r\n");
                }
                wire.extend_from_slice(format!("0\r\nX-Trailer: {id}\r\n\r\n").as_bytes());
                (wire, Some(body))
            }
        }
    }
}

/// A response read off a pipelined connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.split("\r\n").skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Reads responses one after another from a connection, keeping what was
/// read past each one for the next.
struct Reader<'a> {
    stream: &'a mut TcpStream,
    buf: Vec<u8>,
}

impl Reader<'_> {
    fn fill(&mut self, what: &str) {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => panic!("the connection closed before {what}"),
            Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("reading {what}: {e}"),
        }
    }

    /// The next `\r\n`-terminated line.
    fn line(&mut self, what: &str) -> String {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return line;
            }
            self.fill(what);
        }
    }

    fn take(&mut self, n: usize, what: &str) -> Vec<u8> {
        while self.buf.len() < n {
            self.fill(what);
        }
        self.buf.drain(..n).collect()
    }

    fn response(&mut self, what: &str) -> Answer {
        let mut head = String::new();
        loop {
            let line = self.line(what);
            if line.is_empty() {
                break;
            }
            head.push_str(&line);
            head.push_str("\r\n");
        }
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {what}: {head:?}"));
        let mut answer = Answer {
            status,
            head,
            body: Vec::new(),
        };
        if let Some(len) = answer.header("content-length") {
            let len = len.parse().expect("content-length");
            answer.body = self.take(len, what);
        } else if answer
            .header("transfer-encoding")
            .is_some_and(|v| v.contains("chunked"))
        {
            loop {
                let size = self.line(what);
                let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
                    .unwrap_or_else(|_| panic!("bad chunk size {size:?} in {what}"));
                if size == 0 {
                    while !self.line(what).is_empty() {}
                    break;
                }
                let data = self.take(size, what);
                answer.body.extend_from_slice(&data);
                assert_eq!(self.take(2, what), b"\r\n", "chunk end in {what}");
            }
        }
        answer
    }
}

/// A body large enough that [`FILL`] of them fill hyper's read buffer
/// (417,792 bytes at most): hyper reads ahead while the stream is in flight.
const FILL_BODY: usize = 16_000;
const FILL: usize = 25;

/// Sends `GET /stream` (in flight until the drain starts) and the first
/// `cut` bytes of `followers` pipelined behind it in one write; restarts
/// while the stream is in flight; sends the rest once the drain has ended
/// the stream; then checks that every follower is answered once, in order,
/// on the same connection, and that the connection is still served after
/// them. Returns the generations that answered the followers.
fn pipeline_across_a_restart(setup: &mut Setup, followers: &[Req], cut: usize) -> Vec<String> {
    let mut client = setup.served.connect();
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    for (id, req) in followers.iter().enumerate() {
        let (bytes, body) = req.wire(id);
        wire.extend_from_slice(&bytes);
        expected.push(body);
    }
    let (before, after) = wire.split_at(cut.min(wire.len()));
    let mut first =
        b"GET /stream?chunks=50000&interval_ms=20 HTTP/1.1\r\nHost: pipelined\r\n\r\n".to_vec();
    first.extend_from_slice(before);
    client
        .write_all(&first)
        .expect("send the pipeline's first part");
    let mut reader = Reader {
        stream: &mut client,
        buf: Vec::new(),
    };
    // The stream's head and first chunk: it is in flight.
    let stream_head = reader.line("the stream's status line");
    assert!(stream_head.contains(" 200 "), "{stream_head}");
    let old = setup.generation;
    setup.restart();
    // Generation `old` drained: it ended the stream with a `draining` line.
    while !reader.line("the rest of the stream").is_empty() {}
    let mut stream_body = Vec::new();
    loop {
        let size = reader.line("a stream chunk size");
        let size = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if size == 0 {
            assert_eq!(reader.line("the stream's end"), "");
            break;
        }
        stream_body.extend(reader.take(size, "a stream chunk"));
        reader.take(2, "a stream chunk's end");
    }
    assert!(
        String::from_utf8_lossy(&stream_body).contains("draining"),
        "the stream ended because generation {old} drained"
    );
    reader
        .stream
        .write_all(after)
        .expect("send the pipeline's rest");
    let mut generations = Vec::new();
    for (id, body) in expected.iter().enumerate() {
        let what = format!("the response to follower {id} of {followers:?} cut at {cut}");
        let answer = reader.response(&what);
        assert_eq!(answer.status, 200, "{what}: {answer:?}");
        assert_eq!(answer.header("connection"), None, "{what}: {answer:?}");
        if let Some(body) = body {
            assert_eq!(
                String::from_utf8_lossy(&answer.body),
                String::from_utf8_lossy(body),
                "{what}: its own body, in order"
            );
        }
        generations.push(
            answer
                .header("x-gracedown-generation")
                .unwrap_or("none")
                .to_owned(),
        );
    }
    assert!(
        reader.buf.is_empty(),
        "nothing but the responses: {:?}",
        reader.buf
    );
    setup.served.wait_alone(setup.generation);
    // The connection is still open, now served by the new generation.
    client
        .write_all(b"GET /?after HTTP/1.1\r\nHost: pipelined\r\n\r\n")
        .expect("send after the pipeline");
    let after = Reader {
        stream: &mut client,
        buf: Vec::new(),
    }
    .response("the response after the pipeline");
    assert_eq!(
        after.header("x-gracedown-generation"),
        Some(setup.generation.to_string().as_str()),
        "{after:?}"
    );
    generations
}

/// `FILL` large requests, then `tail`.
fn filled(tail: &[Req]) -> Vec<Req> {
    let mut followers = vec![Req::Post(FILL_BODY); FILL];
    followers.extend_from_slice(tail);
    followers
}

/// Where each follower starts, where its head ends, and where it ends, in
/// the pipeline's bytes.
fn layout(followers: &[Req]) -> Vec<(usize, usize, usize)> {
    let mut at = 0;
    followers
        .iter()
        .enumerate()
        .map(|(id, req)| {
            let (wire, _) = req.wire(id);
            let head = wire
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("a head")
                + 4;
            let spans = (at, at + head, at + wire.len());
            at += wire.len();
            spans
        })
        .collect()
}

#[test]
fn requests_pipelined_behind_a_move_are_answered_once_in_order_wherever_the_detach_cuts_them() {
    let mut setup = Setup::start();
    let followers = [Req::Get, Req::Post(300), Req::Chunked(200, 64), Req::Get];
    // Every kind of place a pipeline can be cut at: a boundary, inside a
    // request line, a field, just before a head's end, at a body's start,
    // inside a body, its last byte; for the chunked request also inside a
    // chunk size, chunk data and the trailer.
    let mut cuts = Vec::new();
    for (start, head, end) in layout(&followers) {
        cuts.extend([
            start,
            start + 3,
            start + 20,
            head - 1,
            head,
            (head + end) / 2,
            end - 1,
        ]);
    }
    let (_, head, end) = layout(&followers)[2];
    let (wire, _) = followers[2].wire(2);
    let chunked = &wire[head - layout(&followers)[2].0..];
    let size_line = chunked
        .windows(2)
        .position(|w| w == b"\r\n")
        .expect("a chunk size");
    cuts.extend([head + 1, head + size_line + 10, end - 8]);
    // A cut at the end leaves nothing for the second write.
    let len = layout(&followers).last().map_or(0, |&(_, _, end)| end);
    cuts.retain(|&cut| cut < len);
    cuts.sort_unstable();
    cuts.dedup();
    for &cut in &cuts {
        let generations = pipeline_across_a_restart(&mut setup, &followers, cut);
        let new = setup.generation.to_string();
        assert_eq!(
            generations.last(),
            Some(&new),
            "cut at {cut}: the request after the cut is answered by the generation the connection moved to"
        );
    }
    // Each restart's drain handed the connection on.
    let drains = setup.served.drains();
    assert_eq!(drains.len(), cuts.len(), "{drains:?}");
    for line in &drains {
        assert_eq!(field(line, "handed_off").as_deref(), Some("1"), "{line}");
    }
}

#[test]
fn random_pipelines_across_restarts_are_answered_once_in_order_by_some_generation() {
    let setup = std::cell::RefCell::new(Setup::start());
    let req = prop_oneof![
        Just(Req::Get),
        (0usize..6000).prop_map(Req::Post),
        (1usize..6000, 1usize..2000).prop_map(|(len, chunk)| Req::Chunked(len, chunk)),
    ];
    let case = (
        any::<bool>(),
        prop::collection::vec(req, 1..24),
        any::<prop::sample::Index>(),
    );
    let mut runner = TestRunner::new(Config {
        cases: 16,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&case, |(fill, tail, cut)| {
            // A fill is read ahead while the stream is in flight.
            let followers = if fill { filled(&tail) } else { tail };
            let len = layout(&followers).last().map_or(0, |&(_, _, end)| end);
            let cut = cut.index(len + 1);
            pipeline_across_a_restart(&mut setup.borrow_mut(), &followers, cut);
            Ok(())
        })
        .expect("every pipelined request answered once, in order");
}
