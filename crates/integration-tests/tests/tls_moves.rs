//! TLS connections survive a restart too: under our start_server a draining
//! `gracedown serve` hands each HTTP/1.1-over-TLS connection to the next
//! generation with its session (keys and sequence numbers), and the next
//! request is answered there on the same TCP connection and the same TLS
//! session: the client makes one handshake, ever.

use std::io::Write;

use rustls::HandshakeKind;

use crate::support::http::{Response, exchange, read_response_from};
use crate::support::starter::Impl;
use crate::support::tls::TlsServed;
use crate::support::{SteadyDescriptors, count, drain_line, drain_lines, rss_kib, wait_received};

const GET: &str = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";

fn generation(response: &Response) -> &str {
    response.header("x-gracedown-generation").unwrap_or("none")
}

fn handed_off(line: &str) -> u64 {
    count(line, "handed_off")
}

#[test]
fn one_tls_connection_is_answered_by_generations_1_2_and_3_with_one_handshake() {
    let setup = TlsServed::start(Impl::Ours, &[], &[], "gracedown=info");
    let mut tls = setup.connect();
    let local = tls.sock.local_addr().expect("local address");
    let first = exchange(&mut tls, GET).expect("generation 1's answer");
    assert_eq!(generation(&first), "1", "{first:?}");
    assert_eq!(tls.conn.handshake_kind(), Some(HandshakeKind::Full));
    for (nth, next) in [(1, "2"), (2, "3")] {
        setup.restart_to(nth + 1);
        let drained = drain_line(&setup.proc, nth as usize);
        assert_eq!(handed_off(&drained), 1, "{drained}");
        let answer = exchange(&mut tls, GET).expect("an answer on the same TLS session");
        assert_eq!(generation(&answer), next, "{answer:?}");
        assert_eq!(answer.header("connection"), None, "kept alive: {answer:?}");
    }
    // The same TCP connection and the same client session all along: rustls
    // would have failed on any second handshake.
    assert_eq!(tls.sock.local_addr().expect("local address"), local);
    assert_eq!(tls.conn.handshake_kind(), Some(HandshakeKind::Full));
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

#[test]
fn half_a_request_head_read_under_tls_travels_with_the_session() {
    let setup = TlsServed::start(Impl::Ours, &[], &[], "gracedown=debug");
    let mut tls = setup.connect();
    let first = exchange(&mut tls, GET).expect("generation 1's answer");
    assert_eq!(generation(&first), "1");
    // Half a head, in its own record: generation 1 opens it and holds the
    // plaintext when it drains.
    tls.write_all(b"GET /half HTTP/1.1\r\nHost: local")
        .expect("half a head");
    tls.flush().expect("flush");
    // Read by generation 1 (its socket's receive queue is empty); rustls
    // opens each record as it reads it.
    wait_received(setup.addr, tls.sock.local_addr().expect("local address"));
    setup.restart_to(2);
    let drained = drain_line(&setup.proc, 1);
    assert_eq!(handed_off(&drained), 1, "{drained}");
    tls.write_all(b"host\r\n\r\n")
        .expect("the rest of the head");
    tls.flush().expect("flush");
    let response = read_response_from(&mut tls).expect("the response");
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(generation(&response), "2", "{response:?}");
}

#[test]
fn a_key_update_after_the_move_ends_that_connection_and_no_other() {
    let setup = TlsServed::start(Impl::Ours, &[], &[], "gracedown=info");
    let mut tls = setup.connect();
    exchange(&mut tls, GET).expect("generation 1's answer");
    setup.restart_to(2);
    assert_eq!(handed_off(&drain_line(&setup.proc, 1)), 1);
    // New keys the moved session cannot derive: the connection ends.
    tls.conn.refresh_traffic_keys().expect("a key update");
    let after = exchange(&mut tls, GET);
    assert!(after.is_err(), "no answer after a KeyUpdate: {after:?}");
    // The server serves on.
    let (_, fresh) = setup.get();
    assert_eq!(generation(&fresh), "2", "{fresh:?}");
}

#[test]
fn under_perls_start_server_a_tls_connection_is_closed_by_the_drain_as_before() {
    let setup = TlsServed::start(Impl::Perl, &[], &[], "gracedown=info");
    let mut tls = setup.connect();
    exchange(&mut tls, GET).expect("generation 1's answer");
    // Generation 1 is gone once this returns: it closed the connection.
    setup.restart_to(2);
    let after = exchange(&mut tls, GET);
    assert!(after.is_err(), "the old generation closed it: {after:?}");
    let (_, fresh) = setup.get();
    assert_eq!(generation(&fresh), "2", "{fresh:?}");
}

#[test]
fn five_hundred_restarts_moving_a_tls_session_leak_no_descriptor_or_memory() {
    let setup = TlsServed::start(Impl::Ours, &[], &[], "gracedown=info");
    let mut tls = setup.connect();
    exchange(&mut tls, GET).expect("generation 1's answer");
    let superdaemon = setup.proc.pid();
    let mut descriptors = SteadyDescriptors::new(superdaemon);
    let mut rss_at_50 = 0;
    for generation_now in 2..=501u32 {
        setup.restart_to(generation_now);
        let response =
            exchange(&mut tls, GET).unwrap_or_else(|e| panic!("generation {generation_now}: {e}"));
        assert_eq!(
            generation(&response),
            generation_now.to_string(),
            "{response:?}"
        );
        descriptors.check(&setup.status, generation_now);
        if generation_now == 50 {
            rss_at_50 = rss_kib(superdaemon);
        }
    }
    // start_server held 450 sessions on their way since then: none stays.
    let grown = rss_kib(superdaemon).saturating_sub(rss_at_50);
    assert!(
        grown < 1024,
        "start_server grew by {grown} KiB over 450 restarts"
    );
    assert_eq!(
        tls.conn.handshake_kind(),
        Some(HandshakeKind::Full),
        "one handshake"
    );
    let drains = drain_lines(&setup.proc);
    assert!(drains.len() >= 499, "{} drains", drains.len());
    for line in &drains {
        assert_eq!(handed_off(line), 1, "{line}");
    }
}
