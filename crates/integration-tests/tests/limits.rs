//! Descriptor economy and caps: a worker that runs out of descriptors, or
//! reaches `--max-connections`, closes request heads that have trickled in
//! for over a second, then its longest-idle connections, to serve a new
//! client, and says so once, not every 100 ms.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;

use crate::support::http::{exchange, get};
use crate::support::process::Proc;
use crate::support::{TEST_WAIT, Worker, gracedown, ready_addr};

/// The h2c preface and an empty SETTINGS frame: an HTTP/2 client that then
/// goes quiet.
const H2C_HELLO: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

#[test]
fn out_of_descriptors_the_worker_reclaims_idle_http2_connections_and_serves_a_new_client() {
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "ulimit -n 256 && exec \"$0\" serve --listen 127.0.0.1:0",
    ])
    .arg(gracedown())
    .env_remove("SERVER_STARTER_PORT")
    .env_remove("LISTEN_FDS")
    .env_remove("NOTIFY_SOCKET")
    .env("RUST_LOG", "gracedown=info,gracedown_cli=info");
    let worker = Proc::spawn(cmd);
    let ready = worker.wait_for_line("worker ready", |l| l.contains("worker ready"));
    let addr = ready_addr(&ready).expect("address");
    // More idle HTTP/2 connections than the worker has descriptors.
    let idle: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut conn = TcpStream::connect(addr).expect("connect");
            conn.write_all(H2C_HELLO).expect("h2c preface");
            conn
        })
        .collect();
    worker.wait_for_line("out of descriptors", |l| l.contains("out of descriptors"));
    let response = get(addr, "/");
    assert_eq!(response.status, 200, "a new client is served");
    let warnings = worker
        .output()
        .iter()
        .filter(|l| l.contains("out of descriptors"))
        .count();
    assert_eq!(
        warnings,
        1,
        "one warning per episode\n{}",
        worker.describe()
    );
    drop(idle);
}

#[test]
fn at_the_connection_limit_a_waiting_client_makes_the_longest_idle_connection_close() {
    let worker = Worker::with_accept_log(&["--max-connections", "2"]);
    let request = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut oldest = worker.connect_accepted();
    exchange(&mut oldest, request).expect("first response");
    let mut younger = worker.connect_accepted();
    exchange(&mut younger, request).expect("second response");
    // A third client waits in the accept queue until a slot frees up.
    let response = get(worker.addr, "/");
    assert_eq!(response.status, 200, "the waiting client is served");
    oldest.set_read_timeout(Some(TEST_WAIT)).expect("timeout");
    let mut rest = Vec::new();
    oldest
        .read_to_end(&mut rest)
        .expect("the longest-idle connection is closed cleanly");
    assert!(rest.is_empty());
    // The younger one is still served.
    let again = exchange(&mut younger, request).expect("the younger connection lives on");
    assert_eq!(again.status, 200);
}

/// A connection the worker has accepted and read half a request head from.
fn slow_head(worker: &Worker) -> TcpStream {
    let mut conn = worker.connect_accepted();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .expect("half a head");
    conn.set_read_timeout(Some(TEST_WAIT)).expect("timeout");
    conn
}

/// Trickles a header byte on each connection every 250 ms for 1.5 s, as a
/// slowloris does: longer than any client takes to send a head.
fn trickle(conns: &mut [TcpStream]) {
    for _ in 0..6 {
        std::thread::sleep(std::time::Duration::from_millis(250));
        for conn in conns.iter_mut() {
            conn.write_all(b"x").expect("a trickled byte");
        }
    }
}

/// Reads until the server ends the connection: a close with nothing sent.
fn closed_unanswered(mut conn: TcpStream) {
    let mut rest = Vec::new();
    match conn.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest)),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}

#[test]
fn a_cap_full_of_slow_heads_lets_a_new_client_in_and_the_slow_heads_go() {
    // The header bound is far longer than the test waits: only the
    // slow-head reclaim can let the client in.
    let worker =
        Worker::with_accept_log(&["--max-connections", "2", "--header-read-timeout", "300s"]);
    let mut heads = [slow_head(&worker), slow_head(&worker)];
    // Both trickled for longer than any client sends a head, before the
    // new client comes: both are slow when it waits, and both go.
    trickle(&mut heads);
    let response = get(worker.addr, "/");
    assert_eq!(response.status, 200, "the waiting client is served");
    let [oldest, younger] = heads;
    closed_unanswered(oldest);
    closed_unanswered(younger);
}

#[test]
fn at_the_cap_a_slow_head_goes_before_an_idle_keep_alive_connection() {
    let worker =
        Worker::with_accept_log(&["--max-connections", "2", "--header-read-timeout", "300s"]);
    let request = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    // The idle one is older than the slow head.
    let mut idle = worker.connect_accepted();
    exchange(&mut idle, request).expect("first response");
    let mut slow = [slow_head(&worker)];
    // Until it has trickled for a second the slow head is not yet the one to go.
    trickle(&mut slow);
    let [slow] = slow;
    let response = get(worker.addr, "/");
    assert_eq!(response.status, 200, "the waiting client is served");
    closed_unanswered(slow);
    let again = exchange(&mut idle, request).expect("the idle connection lives on");
    assert_eq!(again.status, 200);
}

#[test]
fn at_the_cap_a_tls_handshake_that_drags_on_goes_too() {
    let worker = Worker::with_accept_log(&[
        "--tls",
        "--max-connections",
        "1",
        "--handshake-timeout",
        "300s",
    ]);
    // Connected, and never says hello.
    let stuck = worker.connect_accepted();
    let waiting = TcpStream::connect(worker.addr).expect("connect");
    let me = waiting.local_addr().expect("local addr");
    worker
        .proc
        .wait_for_line("the waiting client is accepted", |l| {
            l.contains("connection accepted") && l.contains(&format!("peer={me}"))
        });
    closed_unanswered(stuck);
}

fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the worker's descriptors")
        .count()
}

#[test]
fn each_connection_costs_one_descriptor() {
    let worker = Worker::with_accept_log(&[]);
    let mut first = worker.connect_accepted();
    exchange(&mut first, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").expect("response");
    let before = open_descriptors(worker.proc.pid());
    let mut conns = Vec::new();
    for _ in 0..50 {
        let mut conn = worker.connect_accepted();
        exchange(&mut conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").expect("response");
        conns.push(conn);
    }
    assert_eq!(open_descriptors(worker.proc.pid()), before + 50);
}

#[test]
fn the_worker_under_test_runs_the_shipped_allocator() {
    // Memory per idle connection depends on the allocator (jemalloc, whose
    // background threads purge freed pages): the tests' copy of the binary
    // must run the one users get.
    let worker = crate::support::spawn_worker(&[]);
    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", worker.proc.pid()))
        .expect("the worker's threads")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect();
    assert!(
        threads.iter().any(|name| name == "jemalloc_bg_thd"),
        "no jemalloc background thread among {threads:?}"
    );
}
