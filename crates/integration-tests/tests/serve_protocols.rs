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
