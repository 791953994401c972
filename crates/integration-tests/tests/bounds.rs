//! Every wait is bounded: a slow request head, a request body the
//! client never sends, a quiet keep-alive connection (HTTP/1 and HTTP/2), a
//! client that stops reading, a TLS handshake that never starts. Each test
//! sets the bound short and checks that the server, not the client, ends
//! the connection.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::h2raw;
use crate::support::http::exchange;
use crate::support::{TEST_WAIT, Worker, spawn_worker};

/// Reads until the server closes; returns what was read. Fails when the
/// connection is still open after `TEST_WAIT`.
fn read_until_closed(conn: &mut TcpStream) -> Vec<u8> {
    conn.set_read_timeout(Some(TEST_WAIT)).expect("timeout");
    let mut wire = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        match conn.read(&mut chunk) {
            Ok(0) => return wire,
            Ok(n) => wire.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return wire,
            Err(e) => panic!(
                "the server did not close the connection ({e}); read: {:?}",
                String::from_utf8_lossy(&wire[..wire.len().min(300)])
            ),
        }
    }
}

#[test]
fn a_request_head_is_bounded_in_total_not_per_byte() {
    let worker = spawn_worker(&["--header-read-timeout", "500ms"]);
    let mut conn = TcpStream::connect(worker.addr).expect("connect");
    let mut head = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 200));
    head.extend_from_slice(b"\r\n\r\n");
    // One byte every 50 ms: each byte is well inside any per-byte bound,
    // the whole head (11 s) far outside the total one.
    let mut writer = conn.try_clone().expect("clone");
    let trickle = std::thread::spawn(move || {
        for byte in head {
            if writer.write_all(&[byte]).is_err() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    });
    let answer = read_until_closed(&mut conn);
    assert!(
        answer.is_empty(),
        "no response to a head that never completed"
    );
    assert!(
        trickle.join().expect("trickle thread"),
        "the server closed before the slow head was complete"
    );
}

fn body_never_sent(request: &[u8]) {
    let worker = spawn_worker(&["--body-read-timeout", "300ms"]);
    let mut conn = TcpStream::connect(worker.addr).expect("connect");
    conn.write_all(request).expect("send");
    // The echo's response may have started; it must end with the connection.
    read_until_closed(&mut conn);
}

#[test]
fn a_content_length_body_that_never_comes_is_bounded() {
    body_never_sent(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n\r\n");
}

#[test]
fn an_unfinished_chunked_body_is_bounded() {
    body_never_sent(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    );
}

#[test]
fn expect_continue_without_a_body_is_bounded() {
    body_never_sent(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    );
}

#[test]
fn a_quiet_http1_keepalive_connection_is_closed_cleanly_at_its_bound() {
    let worker = spawn_worker(&["--keepalive-timeout", "300ms"]);
    let mut conn = TcpStream::connect(worker.addr).expect("connect");
    conn.set_read_timeout(Some(TEST_WAIT)).expect("timeout");
    let response = exchange(&mut conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").expect("response");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("connection"), None, "kept alive at first");
    assert!(read_until_closed(&mut conn).is_empty());
}

#[test]
fn a_quiet_http2_connection_gets_goaway_at_its_bound() {
    let worker = spawn_worker(&["--keepalive-timeout", "300ms"]);
    let tcp = TcpStream::connect(worker.addr).expect("connect");
    tcp.set_read_timeout(Some(TEST_WAIT)).expect("timeout");
    let mut h2 = h2raw::Conn::handshake(tcp);
    h2.get(1, "/");
    h2.next_where(|f| f.kind == h2raw::DATA && f.stream == 1 && f.flags & h2raw::END_STREAM != 0);
    let goaway = h2.next_where(|f| f.kind == h2raw::GOAWAY);
    assert_eq!(goaway.goaway().1, 0, "GOAWAY with NO_ERROR");
}

#[test]
fn a_client_that_stops_reading_is_cut_off_at_the_send_bound() {
    let worker = Worker::with_accept_log(&["--send-timeout", "300ms"]);
    let mut conn = worker.connect_accepted();
    let n: usize = 1 << 30;
    conn.write_all(format!("GET /bytes?n={n} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .expect("send");
    // Not reading: the socket buffers fill and the server's writes block.
    worker.proc.wait_for_line("send timeout", |l| {
        l.contains("closed by a bound") && l.contains("SendTimeout")
    });
    let wire = read_until_closed(&mut conn);
    assert!(wire.len() < n, "the response was cut short");
}

#[test]
fn a_tls_handshake_that_never_starts_is_bounded() {
    let worker = spawn_worker(&["--tls", "--handshake-timeout", "300ms"]);
    let mut conn = TcpStream::connect(worker.addr).expect("connect");
    assert!(read_until_closed(&mut conn).is_empty());
}
