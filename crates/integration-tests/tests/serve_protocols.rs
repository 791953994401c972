//! `gracedown serve` on its own: HTTP/1.1 and h2c on one plain port, h2 and
//! HTTP/1.1 over TLS chosen by ALPN, the test endpoints, and SIGTERM.

use std::io::Write;
use std::process::Command;

use crate::support::http::{get, h2c_get, read_response_from};
use crate::support::process::run;
use crate::support::{TEST_WAIT, spawn_worker, tool};

#[test]
fn serves_http1_and_h2c_on_one_plain_port() {
    let worker = spawn_worker(&[]);
    let pid = worker.proc.pid();
    let h1 = get(worker.addr, "/");
    assert_eq!(
        (h1.status, h1.body.as_str()),
        (200, format!("from pid {pid}.\n").as_str())
    );
    assert_eq!(h1.header("x-gracedown-pid"), Some(pid.to_string().as_str()));
    let h2 = h2c_get(worker.addr, "/");
    assert_eq!((h2.status, h2.body), (200, format!("from pid {pid}.\n")));
}

#[test]
fn http1_flatten_serves_small_and_large_bodies_alike() {
    let worker = spawn_worker(&["--http1-flatten"]);
    let pid = worker.proc.pid();
    let mut conn = std::net::TcpStream::connect(worker.addr).expect("connect");
    conn.set_read_timeout(Some(TEST_WAIT)).expect("timeout");
    // A large body (beyond hyper's write buffer) between two small ones, on
    // one connection (pipelined, in the library's own test).
    let mut ask = |path: &str| {
        write!(conn, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").expect("send");
        read_response_from(&mut conn).expect("response")
    };
    assert_eq!(ask("/").body, format!("from pid {pid}.\n"));
    let large = ask("/bytes?n=1000000");
    assert_eq!(large.status, 200);
    assert_eq!(large.body.len(), 1_000_000);
    assert!(
        large.body.bytes().all(|b| b == b'x'),
        "the large body is not all `x`"
    );
    assert_eq!(ask("/healthz").status, 200);
}

#[test]
fn tls_chooses_h2_or_http1_by_alpn() {
    let worker = spawn_worker(&["--tls"]);
    let curl = tool("curl", "curl");
    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let mut cmd = Command::new(&curl);
        cmd.args(["-sk", "--max-time", "10", flag, "-w", " %{http_version}"])
            .arg(format!("https://{}/", worker.addr));
        let out = run(cmd);
        assert!(out.status.success(), "curl {flag}: {out:?}");
        let pid = worker.proc.pid();
        assert_eq!(
            out.stdout,
            format!("from pid {pid}.\n {version}"),
            "curl {flag}"
        );
    }
}

#[test]
fn test_endpoints_sleep_stream_echo_and_reject_bad_queries() {
    let worker = spawn_worker(&[]);
    let pid = worker.proc.pid();
    assert_eq!(
        get(worker.addr, "/sleep?ms=20").body,
        format!("from pid {pid}.\n")
    );
    let stream = get(worker.addr, "/stream?chunks=3&interval_ms=5");
    assert_eq!(stream.header("transfer-encoding"), Some("chunked"));
    assert_eq!(
        stream.body,
        format!("chunk 0 from pid {pid}.\nchunk 1 from pid {pid}.\nchunk 2 from pid {pid}.\n")
    );
    let mut conn = std::net::TcpStream::connect(worker.addr).expect("connect");
    conn.set_read_timeout(Some(TEST_WAIT)).expect("timeout");
    conn.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world")
        .expect("send");
    let echo = read_response_from(&mut conn).expect("echo response");
    assert_eq!((echo.status, echo.body.as_str()), (200, "hello world"));
    let bad = get(worker.addr, "/sleep?ms=soon");
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.body,
        "bad query parameter `ms`: `soon` is not a number from 0 to 600000\n"
    );
}

/// The server's end of `client`'s connection in `/proc/net/tcp`: its timer
/// (`tr`: 2 is the keep-alive timer) and that timer's ticks left.
fn server_timer(server: std::net::SocketAddr, client: &std::net::TcpStream) -> (u8, u64) {
    let client_port = client.local_addr().expect("client address").port();
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let port = |addr: &str| {
        addr.rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    table
        .lines()
        .skip(1)
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let mine =
                port(fields.get(1)?)? == server.port() && port(fields.get(2)?)? == client_port;
            let (kind, when) = fields.get(5)?.split_once(':')?;
            mine.then(|| {
                (
                    u8::from_str_radix(kind, 16).ok(),
                    u64::from_str_radix(when, 16).ok(),
                )
            })
        })
        .and_then(|(kind, when)| Some((kind?, when?)))
        .unwrap_or_else(|| panic!("no server socket for client port {client_port}:\n{table}"))
}

/// [`server_timer`] once the server's segments are acknowledged (until then
/// its retransmission timer, 1, runs), or after [`TEST_WAIT`].
fn settled_timer(server: std::net::SocketAddr, client: &std::net::TcpStream) -> (u8, u64) {
    let since = std::time::Instant::now();
    loop {
        let timer = server_timer(server, client);
        if timer.0 != 1 || since.elapsed() > TEST_WAIT {
            return timer;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
fn http2_connections_are_probed_by_tcp_keepalive_and_http1_ones_are_not() {
    let worker = spawn_worker(&[]);
    // Handshaken: the server serves HTTP/2 on it (its SETTINGS came).
    let h2 = crate::support::h2raw::Conn::handshake(
        std::net::TcpStream::connect(worker.addr).expect("connect"),
    );
    let mut h1 = std::net::TcpStream::connect(worker.addr).expect("connect");
    h1.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let response = read_response_from(&mut h1).expect("a response");
    assert_eq!(response.status, 200);
    let ticks_per_second = 100; // USER_HZ on Linux
    let (kind, when) = settled_timer(worker.addr, &h2.stream);
    assert_eq!(
        kind, 2,
        "the keep-alive timer runs on the HTTP/2 connection"
    );
    assert!(
        (20 * ticks_per_second..=30 * ticks_per_second).contains(&when),
        "the first probe is due in about 30 s, not {when} ticks"
    );
    assert_eq!(
        settled_timer(worker.addr, &h1),
        (0, 0),
        "a quiet HTTP/1 connection has no timer"
    );
}
