//! Lame duck (`Server::shutdown_delay`), in-process: during the delay the
//! server accepts and answers new connections while it tells every client
//! to go (HTTP/1.1 `Connection: close`, HTTP/2 GOAWAY) and `Readiness`
//! answers 503; a connection accepted in the delay is answered even when
//! its request comes after the delay ended; then the server stops accepting.

mod support;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use gracedown::serve::{RequestBody, Timeouts, service_fn};
use gracedown::shutdown::Readiness;
use http_body_util::Full;
use support::{WAIT, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `/readyz` is [`Readiness`]; anything else `hello`.
fn service() -> impl tower::Service<
    http::Request<RequestBody>,
    Response = http::Response<Full<Bytes>>,
    Error = Infallible,
    Future: Send + 'static,
> + Clone
+ Send
+ 'static {
    service_fn(|req: http::Request<RequestBody>| async move {
        let response = if req.uri().path() == "/readyz" {
            Readiness::answer(req.extensions()).map(|body| Full::new(Bytes::from(body)))
        } else {
            http::Response::new(Full::new(Bytes::from_static(b"hello\n")))
        };
        Ok::<_, Infallible>(response)
    })
}

/// Sends `GET path` and reads the whole response (the server closes or
/// sends it with a length).
async fn get(conn: &mut TcpStream, path: &str) -> String {
    conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .expect("send");
    let mut wire = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let text = String::from_utf8_lossy(&wire).into_owned();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length = text[..head_end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .and_then(|n| n.trim().parse::<usize>().ok());
            if length.is_some_and(|n| wire.len() >= head_end + 4 + n) {
                return text;
            }
        }
        let n = tokio::time::timeout(WAIT, conn.read(&mut chunk))
            .await
            .expect("a response in time")
            .expect("read");
        assert!(n > 0, "closed before a whole response: {text:?}");
        wire.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_the_delay_clients_are_served_and_told_to_go_and_readiness_fails() {
    // Long enough for the steps below on a busy machine: the server stays a
    // lame duck throughout (a refused connect would fail the test).
    let delay = Duration::from_secs(5);
    let mut server = start(
        |s| {
            s.shutdown_delay(delay).timeouts(Timeouts {
                reconnect_window: Duration::from_millis(100),
                ..Timeouts::default()
            })
        },
        service(),
    );
    let addr = server.addr;
    let mut before = TcpStream::connect(addr).await.expect("connect");
    let answer = get(&mut before, "/readyz").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        !answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );

    // An HTTP/2 connection, served before the signal.
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (h2, connection) = tokio::time::timeout(WAIT, h2::client::handshake(tcp))
        .await
        .expect("handshake in time")
        .expect("h2 handshake");
    let h2_closed = tokio::spawn(connection);
    let request = http::Request::get("http://x/").body(()).expect("request");
    let (response, _) = h2
        .clone()
        .ready()
        .await
        .expect("ready")
        .send_request(request, true)
        .expect("send");
    assert_eq!(response.await.expect("h2 response").status(), 200);

    server.drain();
    // HTTP/2 gets its GOAWAY (paced within the reconnect window) and the
    // idle connection ends cleanly, while the delay goes on.
    let ended = tokio::time::timeout(WAIT, h2_closed)
        .await
        .expect("the HTTP/2 connection ends after its GOAWAY")
        .expect("driver task");
    assert!(ended.is_ok(), "a clean GOAWAY, not an error: {ended:?}");

    // New connections are accepted and answered, told to close, and see
    // that the server is going away.
    let mut during = TcpStream::connect(addr)
        .await
        .expect("accepting during the delay");
    let ready = get(&mut during, "/readyz").await;
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
    assert!(
        ready.to_ascii_lowercase().contains("connection: close"),
        "{ready}"
    );
    assert!(ready.ends_with("draining\n"), "{ready}");
    // A keep-alive connection from before the signal: answered, then told to close.
    let again = get(&mut before, "/").await;
    assert!(again.starts_with("HTTP/1.1 200"), "{again}");
    assert!(
        again.to_ascii_lowercase().contains("connection: close"),
        "{again}"
    );

    let report = server.report().await;
    assert_eq!(report.forced_total(), 0, "{report}");
    assert!(report.requests_after_signal() >= 2, "{report}");
    assert!(
        report.stop_accepting() >= delay,
        "accepting stopped after the delay: {report}"
    );
    // Then nothing listens.
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_accepted_in_the_delay_is_answered_when_its_request_comes_after_it() {
    let mut server = start(
        |s| {
            // Long enough for two connects and a round trip on a busy machine.
            s.shutdown_delay(Duration::from_secs(2)).timeouts(Timeouts {
                drain_first_request: Duration::from_secs(10),
                ..Timeouts::default()
            })
        },
        service(),
    );
    let addr = server.addr;
    server.drain();
    // Accepted during the delay: it answers (a probe request on a second
    // connection, accepted after it, proves the first was accepted).
    let mut late = TcpStream::connect(addr)
        .await
        .expect("accepting during the delay");
    let mut probe = TcpStream::connect(addr)
        .await
        .expect("accepting during the delay");
    let answer = get(&mut probe, "/").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The delay ends: new connections are refused (bounded wait).
    let deadline = tokio::time::Instant::now() + WAIT;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the delay never ended"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The request the client had not sent yet is answered all the same.
    let answer = get(&mut late, "/").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    drop((late, probe));
    let report = server.report().await;
    assert_eq!(report.forced_total(), 0, "{report}");
}
