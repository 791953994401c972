//! `crates/gracedown/examples/axum.rs`, as a user runs it: under
//! our start_server and under Perl's, a WebSocket echo works, `kill -HUP`
//! gives it close code 1001 and a clean end, a Server-Sent Events stream
//! ends cleanly, the next connection reaches the new generation, and a
//! WebSocket client that ignores the drain is cut at the deadline and
//! counted as upgraded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;

use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::support::http::get;
use crate::support::process::Proc;
use crate::support::starter::Impl;
use crate::support::{TEST_WAIT, example, field, free_port};

fn start(imp: Impl, port: u16, drain_secs: &str) -> Proc {
    let args = [
        format!("--port=127.0.0.1:{port}"),
        "--interval=1".to_owned(),
    ];
    let mut cmd: Command = imp.command(&args, &[example("axum").into()]);
    cmd.env("DRAIN_TIMEOUT_SECS", drain_secs);
    Proc::spawn(cmd)
}

fn ready_pid(proc: &Proc, generation: u32) -> String {
    let line = proc.wait_for_line(&format!("generation {generation} ready"), |l| {
        l.contains("worker ready") && l.contains(&format!("generation={generation}"))
    });
    field(&line, "pid").expect("pid")
}

type Ws = tungstenite::WebSocket<TcpStream>;

fn websocket(addr: SocketAddr) -> Ws {
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(TEST_WAIT)).expect("timeout");
    let (ws, response) =
        tungstenite::client(format!("ws://{addr}/ws"), tcp).expect("websocket handshake");
    assert_eq!(response.status(), 101);
    ws
}

fn echo_works(ws: &mut Ws) {
    ws.send(Message::text("ping")).expect("send");
    assert_eq!(ws.read().expect("echo"), Message::text("ping"));
}

/// An SSE stream: the socket, reading lines after the first tick.
fn events(addr: SocketAddr) -> BufReader<TcpStream> {
    let mut tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(TEST_WAIT)).expect("timeout");
    tcp.write_all(b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        .expect("send");
    let mut reader = BufReader::new(tcp);
    let mut line = String::new();
    while !line.starts_with("event: tick") {
        line.clear();
        assert!(
            reader.read_line(&mut line).expect("read") > 0,
            "stream ended early"
        );
    }
    reader
}

fn restart_is_seen_cleanly(imp: Impl) {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let proc = start(imp, port, "10");
    let old = ready_pid(&proc, 1);
    assert!(get(addr, "/").body.contains(&format!("pid {old}")));
    assert!(get(addr, "/peer").body.starts_with("you are 127.0.0.1:"));
    let ready = get(addr, "/readyz");
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
    let mut ws = websocket(addr);
    echo_works(&mut ws);
    let mut sse = events(addr);

    proc.signal(libc::SIGHUP);
    // The WebSocket is told why, with 1001, and then closed cleanly.
    let close = loop {
        match ws.read() {
            Ok(Message::Close(frame)) => break frame,
            Ok(_) => {}
            Err(e) => panic!("no close frame before the end: {e}"),
        }
    };
    let frame = close.expect("a close frame with a code");
    assert_eq!(frame.code, CloseCode::Away);
    // Reading on completes the close handshake; then the server closes the
    // connection cleanly (tungstenite reports the end as ConnectionClosed).
    loop {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("not a clean close: {e}"),
        }
    }
    // The event stream ends with `bye` and a proper end of the chunked body
    // (then the connection closes, or, under our start_server, moves on to
    // the next generation).
    let mut rest = String::new();
    while !rest.ends_with("0\r\n\r\n") {
        let mut line = String::new();
        let n = sse.read_line(&mut line).expect("the stream ends cleanly");
        assert!(n > 0, "the stream ended before its last chunk: {rest:?}");
        rest.push_str(&line);
    }
    assert!(rest.contains("event: bye"), "{rest}");
    assert!(
        rest.ends_with("0\r\n\r\n"),
        "a complete chunked body: {rest:?}"
    );

    // Closed on our side too, so that the old generation's drain ends.
    drop((ws, sse));
    let new = ready_pid(&proc, 2);
    assert_ne!(new, old);
    // The old generation's accept loops end before its drain does: from
    // then on only the new one accepts (until then a connection could still
    // reach the old one and be told at once that it is going away).
    proc.wait_for_line("the old generation drained", |l| {
        l.starts_with("drain complete")
    });
    assert!(get(addr, "/").body.contains(&format!("pid {new}")));
    let mut ws = websocket(addr);
    echo_works(&mut ws);
}

#[test]
fn the_axum_example_restarts_cleanly_under_our_start_server() {
    restart_is_seen_cleanly(Impl::Ours);
}

#[test]
fn the_axum_example_restarts_cleanly_under_perls_start_server() {
    restart_is_seen_cleanly(Impl::Perl);
}

#[test]
fn a_websocket_client_that_ignores_the_drain_is_cut_at_the_deadline_and_counted() {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let proc = start(Impl::Ours, port, "1");
    ready_pid(&proc, 1);
    let mut ws = websocket(addr);
    echo_works(&mut ws);
    // From here on the client reads nothing: the close handshake never completes.
    proc.signal(libc::SIGHUP);
    let done = proc.wait_for_line("the old worker's drain", |l| l.contains("drain complete"));
    assert_eq!(
        field(&done, "forced_upgraded").as_deref(),
        Some("1"),
        "{done}"
    );
    let mut rest = Vec::new();
    let _ = ws.get_mut().read_to_end(&mut rest);
}
