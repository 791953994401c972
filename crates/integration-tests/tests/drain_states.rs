//! The drain, one connection state at a time, with raw clients that see the
//! wire: what each connection gets after SIGTERM, and how it is closed.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use crate::support::h2raw::{self, StreamResult};
use crate::support::http::{exchange, read_response_from};
use crate::support::{TempDir, Worker, field};

const GET: &str = "GET / HTTP/1.1\r\nHost: test\r\n\r\n";

/// Reads until the peer's FIN; an RST (ECONNRESET) or a timeout fails the test.
fn assert_clean_eof(stream: &mut impl Read) {
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "unexpected bytes before EOF: {rest:?}"),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {
            panic!("connection reset instead of a clean close")
        }
        Err(e) => panic!("no clean EOF: {e}"),
    }
}

fn assert_drained_cleanly(worker: &mut Worker) -> String {
    let done = worker.drain_complete();
    assert_eq!(field(&done, "forced").as_deref(), Some("0"), "{done}");
    let status = worker.proc.wait_exit();
    assert!(
        status.success(),
        "exit {status}\n{}",
        worker.proc.describe()
    );
    done
}

#[test]
fn idle_keepalive_gets_connection_close_on_its_next_request_then_a_clean_eof() {
    let mut worker = Worker::with_accept_log(&[]);
    let mut conn = worker.connect_accepted();
    let first = exchange(&mut conn, GET).expect("first response");
    assert_eq!(
        first.header("connection"),
        None,
        "keep-alive before the drain"
    );
    let draining = worker.start_drain();
    assert_eq!(field(&draining, "idle").as_deref(), Some("1"), "{draining}");
    // The connection was not closed at the signal: the next request is served.
    let second = exchange(&mut conn, GET).expect("the request after the signal is answered");
    assert_eq!(second.status, 200);
    assert_eq!(second.header("connection"), Some("close"));
    assert_clean_eof(&mut conn);
    let done = assert_drained_cleanly(&mut worker);
    assert_eq!(
        field(&done, "requests_after_signal").as_deref(),
        Some("1"),
        "{done}"
    );
}

#[test]
fn health_endpoint_turns_503_while_draining() {
    let mut worker = Worker::with_accept_log(&[]);
    let mut conn = worker.connect_accepted();
    let before = exchange(&mut conn, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").expect("health");
    assert_eq!((before.status, before.body.as_str()), (200, "ok\n"));
    worker.start_drain();
    let during = exchange(&mut conn, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("health while draining");
    assert_eq!((during.status, during.body.as_str()), (503, "draining\n"));
    assert_clean_eof(&mut conn);
    assert_drained_cleanly(&mut worker);
}

#[test]
fn accepted_but_silent_connection_gets_its_first_request_served() {
    let mut worker = Worker::with_accept_log(&[]);
    let mut conn = worker.connect_accepted();
    let draining = worker.start_drain();
    assert_eq!(
        field(&draining, "no_request").as_deref(),
        Some("1"),
        "{draining}"
    );
    let response = exchange(&mut conn, GET).expect("first request after the signal is served");
    assert_eq!(
        (response.status, response.header("connection")),
        (200, Some("close"))
    );
    assert_clean_eof(&mut conn);
    assert_drained_cleanly(&mut worker);
}

#[test]
fn silent_connection_is_closed_cleanly_at_the_first_request_bound() {
    let mut worker = Worker::with_accept_log(&["--first-request-timeout", "200ms"]);
    let mut conn = worker.connect_accepted();
    worker.start_drain();
    assert_clean_eof(&mut conn);
    assert_drained_cleanly(&mut worker);
}

#[test]
fn idle_keepalive_that_never_sends_again_is_closed_cleanly_at_the_idle_bound() {
    let mut worker = Worker::with_accept_log(&["--idle-timeout", "200ms"]);
    let mut conn = worker.connect_accepted();
    exchange(&mut conn, GET).expect("first response");
    worker.start_drain();
    assert_clean_eof(&mut conn);
    assert_drained_cleanly(&mut worker);
}

#[test]
fn request_in_flight_completes_with_connection_close() {
    let mut worker = Worker::with_accept_log(&[]);
    let mut conn = worker.connect_accepted();
    conn.write_all(b"GET /sleep?ms=500 HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("send");
    worker.proc.wait_for_line("request started", |l| {
        l.contains("request started") && l.contains("/sleep")
    });
    let draining = worker.start_drain();
    assert_eq!(
        field(&draining, "in_flight").as_deref(),
        Some("1"),
        "{draining}"
    );
    let response = read_response_from(&mut conn).expect("in-flight response");
    assert_eq!(
        (response.status, response.header("connection")),
        (200, Some("close"))
    );
    assert_clean_eof(&mut conn);
    let done = assert_drained_cleanly(&mut worker);
    assert_eq!(
        field(&done, "requests_after_signal").as_deref(),
        Some("1"),
        "{done}"
    );
    assert!(
        TcpStream::connect(worker.addr).is_err(),
        "a worker started by hand closes its listener when it drains"
    );
}

#[test]
fn request_outliving_the_deadline_is_force_closed_and_counted() {
    let mut worker = Worker::with_accept_log(&["--drain-timeout", "300ms"]);
    let mut conn = worker.connect_accepted();
    conn.write_all(b"GET /sleep?ms=30000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("send");
    worker.proc.wait_for_line("request started", |l| {
        l.contains("request started") && l.contains("/sleep")
    });
    let draining = worker.start_drain();
    assert_eq!(
        field(&draining, "in_flight").as_deref(),
        Some("1"),
        "{draining}"
    );
    let done = worker.drain_complete();
    assert_eq!(field(&done, "forced").as_deref(), Some("1"), "{done}");
    assert_eq!(
        field(&done, "forced_states").as_deref(),
        Some("in_flight=1"),
        "{done}"
    );
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest);
    assert!(rest.is_empty(), "no response for a force-closed request");
    assert!(worker.proc.wait_exit().success());
}

#[test]
fn streaming_response_sees_the_draining_signal_and_ends_early() {
    let mut worker = Worker::with_accept_log(&[]);
    let mut conn = worker.connect_accepted();
    conn.write_all(b"GET /stream?chunks=500&interval_ms=20 HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("send");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("chunk 0 ") {
        let n = conn.read(&mut buf).expect("read first chunk");
        assert!(n > 0, "EOF before the first chunk");
        seen.extend_from_slice(&buf[..n]);
    }
    worker.start_drain();
    while !seen.ends_with(b"0\r\n\r\n") {
        let n = conn.read(&mut buf).expect("read the rest of the stream");
        assert!(n > 0, "EOF before the end of the chunked body");
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(
        text.contains("draining\n"),
        "the stream saw the drain: {text}"
    );
    assert!(
        !text.contains("chunk 499 "),
        "the stream ended early: {text}"
    );
    assert_drained_cleanly(&mut worker);
}

#[test]
fn tls_handshake_in_progress_at_the_signal_completes_and_is_served() {
    let dir = TempDir::new("tls-drain");
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).expect("write cert");
    std::fs::write(&key, certified.key_pair.serialize_pem()).expect("write key");
    let (cert_arg, key_arg) = (cert.display().to_string(), key.display().to_string());
    let mut worker = Worker::with_accept_log(&["--cert", &cert_arg, "--key", &key_arg]);
    let tcp = worker.connect_accepted();
    let draining = worker.start_drain();
    assert_eq!(
        field(&draining, "handshake").as_deref(),
        Some("1"),
        "{draining}"
    );

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(certified.cert.der().clone())
        .expect("trust the test cert");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = "localhost".try_into().expect("server name");
    let client = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    let mut tls = rustls::StreamOwned::new(client, tcp);
    let response = exchange(&mut tls, GET).expect("served after the handshake");
    assert_eq!(
        (response.status, response.header("connection")),
        (200, Some("close"))
    );
    // The server ends TLS with close_notify, which rustls reports as a clean EOF.
    assert_clean_eof(&mut tls);
    assert_drained_cleanly(&mut worker);
}

#[test]
fn http2_gets_two_goaways_and_serves_streams_up_to_the_last_id() {
    let mut worker = Worker::with_accept_log(&[]);
    let tcp: TcpStream = worker.connect_accepted();
    let mut h2 = h2raw::Conn::handshake(tcp);
    let mut results = [StreamResult::default(), StreamResult::default()];
    h2.get(1, "/sleep?ms=300");
    worker.start_drain();

    // Phase one: GOAWAY(2^31-1, NO_ERROR) and a PING we do not answer yet.
    let first = h2.next_where(|f| f.kind == h2raw::GOAWAY);
    assert_eq!(
        first.goaway(),
        (0x7fff_ffff, 0),
        "first GOAWAY: max id, NO_ERROR"
    );
    let ping = h2.next_where(|f| f.kind == h2raw::PING && f.flags & h2raw::ACK == 0);
    // A stream opened between the two GOAWAYs must still be served.
    h2.get(3, "/");
    h2.send(h2raw::PING, h2raw::ACK, 0, &ping.payload);

    let mut second = None;
    while let Some(frame) = h2.next() {
        match frame.kind {
            h2raw::GOAWAY => second = Some(frame.goaway()),
            _ if frame.stream == 1 => results[0].apply(&frame),
            _ if frame.stream == 3 => results[1].apply(&frame),
            _ => {}
        }
        if second.is_some() && results.iter().all(|r| r.ended) {
            break;
        }
    }
    let (last_id, code) = second.expect("a second GOAWAY");
    assert_eq!(code, 0, "NO_ERROR");
    assert!(
        last_id >= 3,
        "stream 3 is at or below the last stream id {last_id}"
    );
    let pid = worker.proc.pid();
    for (id, result) in [(1, &results[0]), (3, &results[1])] {
        assert!(
            result.status_200 && result.ended && result.reset.is_none(),
            "stream {id}: {result:?}"
        );
        assert_eq!(
            String::from_utf8_lossy(&result.body),
            format!("from pid {pid}.\n"),
            "stream {id}"
        );
    }
    assert_drained_cleanly(&mut worker);
}

#[test]
fn http2_connections_are_told_to_go_away_across_the_reconnect_window_not_at_once() {
    let worker = Worker::with_accept_log(&["--reconnect-window", "2s"]);
    let conns: Vec<h2raw::Conn> = (0..16)
        .map(|_| h2raw::Conn::handshake(worker.connect_accepted()))
        .collect();
    let signal = std::time::Instant::now();
    worker.start_drain();
    let readers: Vec<_> = conns
        .into_iter()
        .map(|mut conn| {
            std::thread::spawn(move || {
                conn.next_where(|f| f.kind == h2raw::GOAWAY);
                signal.elapsed()
            })
        })
        .collect();
    let mut times: Vec<Duration> = readers
        .into_iter()
        .map(|r| r.join().expect("reader"))
        .collect();
    times.sort();
    // Each connection has its own moment in the 2 s window: the first ones
    // go at once, the last ones most of the window later.
    let spread = times[times.len() - 1] - times[0];
    assert!(
        spread >= Duration::from_millis(1200),
        "GOAWAYs spread over {spread:?}: {times:?}"
    );
    let line = worker.drain_complete();
    assert_eq!(field(&line, "forced").as_deref(), Some("0"), "{line}");
}
