//! Connections that survive a restart (`docs/design/handoff.md`): under our
//! start_server a draining `gracedown serve` hands its plain HTTP/1.1
//! connections to the next generation, which answers the next request on
//! the same TCP connection; everywhere else (a plain stop, Perl's
//! start_server, a worker that declines) the connection closes as before.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::support::http::{Response, exchange, read_response_from};
use crate::support::starter::{Impl, Served};
use crate::support::{SteadyDescriptors, TEST_WAIT, count, drain_line, drain_lines, wait_received};

const GET: &str = "GET / HTTP/1.1\r\nHost: handoff\r\n\r\n";

fn start(which: Impl, worker_args: &[&str]) -> Served {
    Served::start(which, worker_args, "gracedown=info")
}

fn start_with(which: Impl, worker_args: &[&str], log: &str) -> Served {
    Served::start(which, worker_args, log)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(TEST_WAIT))
        .expect("read timeout");
    stream
}

fn generation(response: &Response) -> &str {
    response.header("x-gracedown-generation").unwrap_or("none")
}

#[test]
fn an_idle_connection_moves_to_the_next_generation_and_is_answered_there() {
    let setup = start(Impl::Ours, &[]);
    let mut client = connect(setup.addr);
    let local = client.local_addr().expect("local address");
    let first = exchange(&mut client, GET).expect("first response");
    assert_eq!(generation(&first), "1", "{first:?}");
    assert_eq!(first.header("connection"), None);

    setup.restart_to(2);
    let drained = drain_line(&setup.proc, 1);
    assert_eq!(count(&drained, "handed_off"), 1, "{drained}");
    assert_eq!(count(&drained, "forced"), 0, "{drained}");

    // The same socket, never closed: generation 2 answers on it.
    let second = exchange(&mut client, GET).expect("an answer on the same connection");
    assert_eq!(generation(&second), "2", "{second:?}");
    assert_eq!(client.local_addr().expect("local address"), local);
    // And again, to a third generation.
    setup.restart_to(3);
    let third = exchange(&mut client, GET).expect("an answer after the second restart");
    assert_eq!(generation(&third), "3", "{third:?}");
}

#[test]
fn a_dormant_connection_moves_to_the_next_generation_too() {
    // Dormant at once after each response: hyper has let go of it, and the
    // drain finds it waiting for its next byte with only its socket.
    let setup = start_with(Impl::Ours, &["--dormant-after=0s"], "gracedown=trace");
    let dormant = |l: &str| l.contains("http/1 connection dormant");
    let mut client = connect(setup.addr);
    for generation_now in 1..=3u32 {
        if generation_now > 1 {
            setup.restart_to(generation_now);
            let drained = drain_line(&setup.proc, generation_now as usize - 1);
            assert_eq!(count(&drained, "handed_off"), 1, "{drained}");
        }
        let response = exchange(&mut client, GET).expect("an answer on the same connection");
        assert_eq!(
            generation(&response),
            generation_now.to_string(),
            "{response:?}"
        );
        setup
            .proc
            .wait_for_count("the connection dormant", generation_now as usize, dormant);
    }
}

#[test]
fn half_a_request_head_travels_with_the_connection() {
    let setup = start_with(Impl::Ours, &[], "gracedown=debug");
    let mut client = connect(setup.addr);
    let first = exchange(&mut client, GET).expect("first response");
    assert_eq!(generation(&first), "1");
    // Generation 1 reads these bytes into its buffers (the kernel's receive
    // queue of its socket empties), then drains.
    let half = b"GET /half HTTP/1.1\r\nHost: handoff\r\n";
    client.write_all(half).expect("half a head");
    let server_side = (setup.addr, client.local_addr().expect("local address"));
    wait_received(server_side.0, server_side.1);
    setup.restart_to(2);
    let drained = drain_line(&setup.proc, 1);
    assert_eq!(count(&drained, "handed_off"), 1, "{drained}");
    client.write_all(b"\r\n").expect("the end of the head");
    let response = read_response_from(&mut client).expect("the response");
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(generation(&response), "2", "{response:?}");
    // The bytes came from generation 1's buffers, not the socket.
    let buffered = format!("buffered={}", half.len());
    setup
        .proc
        .wait_for_line("generation 2 took the buffered bytes", |l| {
            l.contains("connection handed over") && l.contains(&buffered)
        });
}

#[test]
fn a_response_in_flight_keeps_alive_and_the_connection_moves_after_it() {
    let setup = start(Impl::Ours, &[]);
    let mut client = connect(setup.addr);
    // Generation 1 answers after two seconds, long after it starts draining.
    client
        .write_all(b"GET /sleep?ms=2000 HTTP/1.1\r\nHost: handoff\r\n\r\n")
        .expect("a slow request");
    let server_side = (setup.addr, client.local_addr().expect("local address"));
    wait_received(server_side.0, server_side.1);
    setup.proc.signal(libc::SIGHUP);
    setup
        .proc
        .wait_for_line("generation 1 drains", |l| l.contains("draining"));
    // Answered while draining, and still kept alive: the connection moves.
    let response = read_response_from(&mut client).expect("the slow response");
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(generation(&response), "1", "{response:?}");
    assert_eq!(response.header("connection"), None, "{response:?}");
    setup.wait_alone(2);
    let drained = drain_line(&setup.proc, 1);
    assert_eq!(count(&drained, "handed_off"), 1, "{drained}");
    assert_eq!(count(&drained, "requests_after_signal"), 1, "{drained}");
    let next = exchange(&mut client, GET).expect("the next request, same connection");
    assert_eq!(generation(&next), "2", "{next:?}");
}

#[test]
fn a_plain_stop_closes_as_before() {
    let mut setup = start(Impl::Ours, &[]);
    let mut client = connect(setup.addr);
    let first = exchange(&mut client, GET).expect("first response");
    assert_eq!(generation(&first), "1");
    setup.proc.signal(libc::SIGTERM);
    // No newer generation: the idle connection closes after the idle bound.
    let mut buf = [0u8; 1];
    assert_eq!(client.read(&mut buf).expect("the close"), 0);
    let drained = drain_line(&setup.proc, 1);
    assert_eq!(count(&drained, "handed_off"), 0, "{drained}");
    assert_eq!(count(&drained, "drained"), 1, "{drained}");
    assert!(setup.proc.wait_exit().success());
}

#[test]
fn under_perls_start_server_connections_close_as_before() {
    let setup = start(Impl::Perl, &[]);
    let mut client = connect(setup.addr);
    let first = exchange(&mut client, GET).expect("first response");
    assert_eq!(generation(&first), "1");
    setup.proc.signal(libc::SIGHUP);
    let mut buf = [0u8; 1];
    assert_eq!(client.read(&mut buf).expect("the close"), 0);
    let drained = drain_line(&setup.proc, 1);
    assert_eq!(count(&drained, "handed_off"), 0, "{drained}");
    // A new connection reaches generation 2.
    setup.wait_alone(2);
    let mut again = connect(setup.addr);
    let second = exchange(&mut again, GET).expect("a new connection");
    assert_eq!(generation(&second), "2");
}

#[test]
fn a_next_generation_that_declines_handoffs_leaves_the_close_as_before() {
    let setup = start(Impl::Ours, &["--no-handoff"]);
    let mut client = connect(setup.addr);
    let first = exchange(&mut client, GET).expect("first response");
    assert_eq!(generation(&first), "1");
    setup.restart_to(2);
    let mut buf = [0u8; 1];
    assert_eq!(client.read(&mut buf).expect("the close"), 0);
    let drained = drain_line(&setup.proc, 1);
    assert_eq!(count(&drained, "handed_off"), 0, "{drained}");
}

#[test]
fn five_hundred_restarts_with_handoffs_leak_no_descriptor() {
    let setup = start(Impl::Ours, &[]);
    let mut client = connect(setup.addr);
    let first = exchange(&mut client, GET).expect("first response");
    assert_eq!(generation(&first), "1");
    let mut descriptors = SteadyDescriptors::new(setup.proc.pid());
    for generation_now in 2..=501u32 {
        setup.restart_to(generation_now);
        let response = exchange(&mut client, GET)
            .unwrap_or_else(|e| panic!("generation {generation_now}: {e}"));
        assert_eq!(
            generation(&response),
            generation_now.to_string(),
            "{response:?}"
        );
        descriptors.check(&setup.status, generation_now);
    }
    // Every drain handed the one connection on.
    let drains = drain_lines(&setup.proc);
    assert!(drains.len() >= 499, "{} drains", drains.len());
    for line in &drains {
        assert_eq!(count(line, "handed_off"), 1, "{line}");
    }
}

#[test]
fn hundreds_of_connections_move_together_in_batches() {
    // More than a batch (64) and more than the kernel queues per socket (10).
    let setup = start(Impl::Ours, &[]);
    let mut clients: Vec<TcpStream> = (0..300).map(|_| connect(setup.addr)).collect();
    for client in &mut clients {
        let response = exchange(client, GET).expect("a response");
        assert_eq!(generation(&response), "1");
    }
    setup.restart_to(2);
    let drained = drain_line(&setup.proc, 1);
    assert_eq!(count(&drained, "handed_off"), 300, "{drained}");
    for client in &mut clients {
        let response = exchange(client, GET).expect("an answer on the same connection");
        assert_eq!(generation(&response), "2", "{response:?}");
    }
}

/// Keeps a connection at a bound's edge while start_server restarts about
/// every 300 ms: `feed` runs before each restart (a trickled byte, or
/// nothing for a quiet connection). Returns how many restarts came before
/// the server closed the connection, which a bound that restarted with every
/// move would never do. Bounded: at most 40 restarts.
fn restarts_until_closed(setup: &Served, client: &mut TcpStream, feed: &[u8]) -> u32 {
    client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("read timeout");
    for generation in 2..42u32 {
        if !feed.is_empty() && client.write_all(feed).is_err() {
            return generation - 2;
        }
        let mut buf = [0u8; 256];
        match client.read(&mut buf) {
            Ok(0) => return generation - 2,
            Ok(n) => panic!("unexpected bytes: {:?}", String::from_utf8_lossy(&buf[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return generation - 2,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("read: {e}"),
        }
        setup.restart_to(generation);
    }
    panic!("the connection outlived 40 restarts: its bound restarted with every move");
}

#[test]
fn a_slow_head_keeps_its_header_bound_across_moves() {
    let setup = start(Impl::Ours, &["--header-read-timeout=2s"]);
    let mut client = connect(setup.addr);
    client
        .write_all(b"GET /slow HTTP/1.1\r\nHost: handoff\r\nX-Slow: ")
        .expect("half a head");
    let restarts = restarts_until_closed(&setup, &mut client, b"x");
    assert!(
        restarts >= 2,
        "it moved before its bound: {restarts} restarts"
    );
    let drained = drain_line(&setup.proc, 1);
    assert_eq!(count(&drained, "handed_off"), 1, "{drained}");
}

#[test]
fn a_quiet_connection_keeps_its_keep_alive_bound_across_moves() {
    let setup = start(Impl::Ours, &["--keepalive-timeout=2s"]);
    let mut client = connect(setup.addr);
    let first = exchange(&mut client, GET).expect("first response");
    assert_eq!(generation(&first), "1");
    let restarts = restarts_until_closed(&setup, &mut client, b"");
    assert!(
        restarts >= 2,
        "it moved before its bound: {restarts} restarts"
    );
    let drained = drain_line(&setup.proc, 1);
    assert_eq!(count(&drained, "handed_off"), 1, "{drained}");
}
