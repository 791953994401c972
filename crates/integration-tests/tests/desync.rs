//! HTTP/1 request smuggling and desync: each request that demands
//! a close, or that a proxy in front could frame differently, gets exactly
//! one response, then the connection closes; what was pipelined after it is
//! never served.
//!
//! The Go 1.19 net/http worker (`peers/go-worker`) is the reference; where it
//! is laxer, the comment says so and gracedown follows the RFC instead.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;

use crate::support::{TEST_WAIT, Worker, spawn_worker};

/// What a pipelined request the server must not serve looks like.
const NEXT: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

/// Sends `bytes` at once and reads until the server closes: the status of
/// every response, in order. A connection that stays open fails the test.
fn statuses_until_close(worker: &Worker, bytes: &[u8]) -> Vec<u16> {
    let mut conn = TcpStream::connect(worker.addr).expect("connect");
    conn.set_read_timeout(Some(TEST_WAIT)).expect("timeout");
    conn.write_all(bytes).expect("send");
    let mut wire = Vec::new();
    match conn.read_to_end(&mut wire) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!(
            "the connection did not close ({e}); read so far: {:?}",
            String::from_utf8_lossy(&wire)
        ),
    }
    status_lines(&wire)
}

/// The status codes of the response heads in `wire` (a status line starts
/// the stream or follows the end of a line).
fn status_lines(wire: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(wire);
    text.match_indices("HTTP/1.")
        .filter(|(i, _)| *i == 0 || text[..*i].ends_with('\n'))
        .filter_map(|(i, _)| text.get(i + 9..i + 12)?.parse().ok())
        .collect()
}

fn once(case: &[u8], expect: u16) {
    let worker = spawn_worker(&[]);
    let mut bytes = case.to_vec();
    bytes.extend_from_slice(NEXT);
    let statuses = statuses_until_close(&worker, &bytes);
    assert_eq!(
        statuses,
        [expect],
        "exactly one response, then a close, for {:?}",
        String::from_utf8_lossy(case)
    );
}

#[test]
fn signed_content_length_is_refused_once_and_its_body_is_never_parsed_as_a_request() {
    // Go: one 400, close.
    once(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello",
        400,
    );
}

#[test]
fn a_request_pipelined_after_connection_close_is_not_served() {
    // RFC 9112 §9.6. Go: one 200, close.
    once(
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        200,
    );
}

#[test]
fn a_request_pipelined_after_http_1_0_is_not_served() {
    // HTTP/1.0 without keep-alive closes (RFC 9112 §9.3). Go: one 200, close.
    once(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n", 200);
}

#[test]
fn content_length_with_transfer_encoding_is_answered_once_then_closed() {
    // RFC 9112 §6.1: "MUST close the connection after responding". Go 1.19
    // answers both requests and keeps the connection open.
    once(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        200,
    );
}

#[test]
fn a_parse_error_is_answered_once() {
    // Go: one 400, close.
    once(b"GARBAGE\r\n\r\n", 400);
}

#[test]
fn conflicting_content_lengths_are_refused_once() {
    // RFC 9112 §6.3. Go: one 400, close.
    once(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        400,
    );
}

#[test]
fn obsolete_line_folding_is_refused_once() {
    // RFC 9112 §5.2 lets a server reject obs-fold. Go 1.19 unfolds it and
    // serves the pipelined request too.
    once(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400);
}

#[test]
fn a_bare_lf_line_ending_is_refused_once() {
    // A proxy that ends lines only at CRLF sees another header set than we
    // would. Go 1.19 accepts bare LF and serves the pipelined request too.
    once(b"GET / HTTP/1.1\nHost: x\n\n", 400);
}

#[test]
fn a_header_hidden_behind_a_bare_lf_is_refused_once() {
    // `X-A: a<LF>Transfer-Encoding: chunked` is one header to a strict proxy
    // and two to a lax server: the classic bare-LF smuggling shape.
    once(
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\nTransfer-Encoding: chunked\r\n\r\n",
        400,
    );
}

#[test]
fn a_nul_byte_in_a_header_is_refused_once() {
    // Go: one 400, close.
    once(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400);
}

#[test]
fn a_malformed_chunk_ends_the_connection_without_a_second_response_inside_the_first() {
    // The echo's 200 has started when the bad chunk size arrives: the
    // response breaks off and the connection closes; no 400 is written into
    // the chunked body. Go: the same. (A bad chunk that comes with its head
    // is refused with 400 instead: see below.)
    let worker = spawn_worker(&[]);
    let mut conn = TcpStream::connect(worker.addr).expect("connect");
    conn.set_read_timeout(Some(TEST_WAIT)).expect("timeout");
    conn.write_all(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    )
    .expect("send");
    let mut wire = Vec::new();
    while !String::from_utf8_lossy(&wire).contains("hello") {
        let mut buf = [0u8; 1024];
        let n = conn.read(&mut buf).expect("the echo starts");
        assert_ne!(n, 0, "closed before the echo started");
        wire.extend_from_slice(&buf[..n]);
    }
    let mut rest = b"ZZ\r\n".to_vec();
    rest.extend_from_slice(NEXT);
    conn.write_all(&rest).expect("send the bad chunk");
    match conn.read_to_end(&mut wire) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the connection did not close: {e}"),
    }
    assert_eq!(status_lines(&wire), [200]);
}

#[test]
fn pipelined_keep_alive_requests_are_all_served_in_order() {
    // The control: when nothing demands a close, pipelining works.
    let worker = spawn_worker(&[]);
    let mut bytes = Vec::new();
    for _ in 0..3 {
        bytes.extend_from_slice(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    }
    bytes.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(statuses_until_close(&worker, &bytes), [200, 200, 200, 200]);
}

#[test]
fn an_http_1_1_request_without_host_is_refused_once_and_closed() {
    // RFC 9112 §3.2: a server MUST answer 400. Go: 400, close.
    once(b"GET / HTTP/1.1\r\n\r\n", 400);
    // HTTP/1.0 has no Host requirement: served (and closed, as 1.0 is).
    once(b"GET / HTTP/1.0\r\n\r\n", 200);
}

#[test]
fn two_host_headers_or_a_malformed_one_are_refused_once_and_closed() {
    // Two hosts: proxies in front may route by one and cache by the other.
    once(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
    once(b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", 400);
    once(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400);
    once(b"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", 400);
    // An empty Host is valid (a target without an authority); and an
    // absolute-form target with a Host of its own is served.
    once(
        b"GET / HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n",
        200,
    );
    once(
        b"GET http://a/ HTTP/1.1\r\nHost: [::1]:8080\r\nConnection: close\r\n\r\n",
        200,
    );
}

#[test]
fn a_bad_chunk_size_that_comes_with_its_head_is_answered_400_not_a_bare_close() {
    // nginx: 400. The bytes arrive with the head, so the server knows
    // before the handler starts; what is pipelined after is never served.
    once(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        400,
    );
}

#[test]
fn a_trailer_section_past_the_bounds_that_comes_with_its_head_is_answered_400() {
    // 20,000 trailer fields (hyper takes 100, and 16 KiB in all): refused
    // before the handler, instead of a 200 cut short when hyper fails the body.
    let mut case =
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"
            .to_vec();
    for i in 0..20_000 {
        case.extend_from_slice(format!("X-T{i}: v\r\n").as_bytes());
    }
    case.extend_from_slice(b"\r\n");
    once(&case, 400);
}
