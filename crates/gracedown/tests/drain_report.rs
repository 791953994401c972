//! The drain, one connection state at a time, in-process: `Server::serve` on
//! an ephemeral port, a oneshot as the shutdown trigger, raw clients, and the
//! `DrainReport` the server returns. A deadline shorter than the
//! state's own bound makes the connection wait for it, so it is forced and
//! counted in that state.

mod support;

use std::convert::Infallible;
use std::future::IntoFuture;
use std::time::Duration;

use bytes::Bytes;
use gracedown::serve::{RequestBody, Timeouts, service_fn};
use gracedown::shutdown::{ConnState, Draining};
use http_body_util::Full;
use support::{WAIT, hello, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

type Response = http::Response<Full<Bytes>>;

/// Sends a request and reads until the end of the `hello` response.
async fn exchange(
    conn: &mut (impl AsyncReadExt + AsyncWriteExt + Unpin),
    request: &[u8],
) -> String {
    conn.write_all(request).await.expect("send");
    let mut wire = Vec::new();
    let mut chunk = [0u8; 1024];
    while !wire.ends_with(b"hello\n") {
        let n = tokio::time::timeout(WAIT, conn.read(&mut chunk))
            .await
            .expect("a response in time")
            .expect("read");
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&wire));
        wire.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&wire).into_owned()
}

/// A second connection that completes a request: the listener accepts in
/// order, so every connection opened before it has been accepted.
async fn accepted_before(addr: std::net::SocketAddr) -> TcpStream {
    let mut probe = TcpStream::connect(addr).await.expect("connect");
    exchange(&mut probe, GET).await;
    probe
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_a_request_is_counted_and_forced_at_the_deadline() {
    let short = Duration::from_millis(300);
    let server = start(
        |s| {
            s.drain_timeout(short).timeouts(Timeouts {
                drain_first_request: Duration::from_secs(30),
                drain_idle: Duration::from_millis(20),
                ..Timeouts::default()
            })
        },
        hello(),
    );
    let _silent = TcpStream::connect(server.addr).await.expect("connect");
    let _probe = accepted_before(server.addr).await;
    let report = server.report().await;
    assert_eq!(report.at_signal(ConnState::NoRequest), 1, "{report}");
    assert_eq!(report.at_signal(ConnState::Idle), 1, "{report}");
    assert_eq!(report.forced(ConnState::NoRequest), 1, "{report}");
    assert_eq!(report.forced_total(), 1, "{report}");
    assert_eq!(report.drained(), 1, "the idle probe drained: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keepalive_connection_is_counted_and_drains_at_its_bound() {
    let server = start(
        |s| {
            s.timeouts(Timeouts {
                drain_idle: Duration::from_millis(50),
                ..Timeouts::default()
            })
        },
        hello(),
    );
    let mut idle = TcpStream::connect(server.addr).await.expect("connect");
    exchange(&mut idle, GET).await;
    let report = server.report().await;
    assert_eq!(report.at_signal(ConnState::Idle), 1, "{report}");
    assert_eq!(
        (report.drained(), report.forced_total()),
        (1, 0),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_outliving_the_deadline_is_forced_as_idle() {
    let server = start(
        |s| {
            s.drain_timeout(Duration::from_millis(200))
                .timeouts(Timeouts {
                    drain_idle: Duration::from_secs(30),
                    ..Timeouts::default()
                })
        },
        hello(),
    );
    let mut idle = TcpStream::connect(server.addr).await.expect("connect");
    exchange(&mut idle, GET).await;
    let report = server.report().await;
    assert_eq!(report.forced(ConnState::Idle), 1, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_finishes_with_connection_close_and_is_counted() {
    let (started, mut started_rx) = mpsc::channel::<()>(1);
    let service = service_fn(move |_req: http::Request<RequestBody>| {
        let started = started.clone();
        async move {
            let _ = started.send(()).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(
                b"hello\n",
            ))))
        }
    });
    let mut server = start(|s| s, service);
    let mut conn = TcpStream::connect(server.addr).await.expect("connect");
    conn.write_all(GET).await.expect("send");
    tokio::time::timeout(WAIT, started_rx.recv())
        .await
        .expect("handler started");
    server.drain();
    let response = exchange(&mut conn, b"").await;
    assert!(
        response.to_ascii_lowercase().contains("connection: close"),
        "{response}"
    );
    let report = server.report().await;
    assert_eq!(report.at_signal(ConnState::InFlight), 1, "{report}");
    assert_eq!(report.requests_after_signal(), 1, "{report}");
    assert_eq!(
        (report.drained(), report.forced_total()),
        (1, 0),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_outliving_the_deadline_is_forced_as_in_flight() {
    let (started, mut started_rx) = mpsc::channel::<()>(1);
    let service = service_fn(move |_req: http::Request<RequestBody>| {
        let started = started.clone();
        async move {
            let _ = started.send(()).await;
            std::future::pending::<()>().await;
            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new())))
        }
    });
    let mut server = start(|s| s.drain_timeout(Duration::from_millis(200)), service);
    let mut conn = TcpStream::connect(server.addr).await.expect("connect");
    conn.write_all(GET).await.expect("send");
    tokio::time::timeout(WAIT, started_rx.recv())
        .await
        .expect("handler started");
    server.drain();
    let report = server.report().await;
    assert_eq!(report.forced(ConnState::InFlight), 1, "{report}");
}

#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_handshake_outliving_the_deadline_is_forced_as_handshake() {
    let (tls, connector) = support::tls_pair(&[b"http/1.1"]);
    let server = start(
        |s| {
            s.tls(tls)
                .drain_timeout(Duration::from_millis(300))
                .timeouts(Timeouts {
                    drain_idle: Duration::from_millis(20),
                    ..Timeouts::default()
                })
        },
        hello(),
    );
    // Connected, but never sends its ClientHello.
    let _handshaking = TcpStream::connect(server.addr).await.expect("connect");
    let tcp = TcpStream::connect(server.addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut probe = connector.connect(name, tcp).await.expect("handshake");
    exchange(&mut probe, GET).await;
    let report = server.report().await;
    assert_eq!(report.at_signal(ConnState::Handshake), 1, "{report}");
    assert_eq!(report.forced(ConnState::Handshake), 1, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_is_counted_and_forced_when_its_client_never_answers_goaway() {
    let server = start(|s| s.drain_timeout(Duration::from_millis(300)), hello());
    let mut h2 = TcpStream::connect(server.addr).await.expect("connect");
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .expect("preface");
    // The server's SETTINGS: it speaks HTTP/2 on this connection.
    let mut frame = [0u8; 9];
    tokio::time::timeout(WAIT, h2.read_exact(&mut frame))
        .await
        .expect("settings in time")
        .expect("settings");
    assert_eq!(frame[3], 0x4, "a SETTINGS frame");
    let report = server.report().await;
    assert_eq!(report.at_signal(ConnState::Http2), 1, "{report}");
    assert_eq!(report.forced(ConnState::Http2), 1, "{report}");
}

/// A handler that upgrades (`101`) and then holds the connection, echoing,
/// until the drain if `polite`, or for ever.
fn upgrader(
    polite: bool,
) -> impl tower::Service<
    http::Request<RequestBody>,
    Response = Response,
    Error = Infallible,
    Future: Send + 'static,
> + Clone
+ Send
+ 'static {
    service_fn(move |mut req: http::Request<RequestBody>| async move {
        let mut draining = req
            .extensions()
            .get::<Draining>()
            .cloned()
            .expect("Draining");
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let mut io = hyper_util::rt::TokioIo::new(upgraded);
            let mut buf = [0u8; 64];
            loop {
                tokio::select! {
                    read = io.read(&mut buf) => match read {
                        Ok(0) | Err(_) => return,
                        Ok(n) => { let _ = io.write_all(&buf[..n]).await; }
                    },
                    _ = draining.wait(), if polite => {
                        let _ = io.write_all(b"going away").await;
                        let _ = io.shutdown().await;
                        return;
                    }
                }
            }
        });
        let mut response = http::Response::new(Full::new(Bytes::new()));
        *response.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
        response
            .headers_mut()
            .insert("upgrade", http::HeaderValue::from_static("echo"));
        response
            .headers_mut()
            .insert("connection", http::HeaderValue::from_static("upgrade"));
        Ok::<_, Infallible>(response)
    })
}

const UPGRADE: &[u8] =
    b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n";

/// Upgrades `conn` and checks that the echo works.
async fn upgrade(conn: &mut TcpStream) {
    conn.write_all(UPGRADE).await.expect("send");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(WAIT, conn.read_exact(&mut byte))
            .await
            .expect("101 in time")
            .expect("read");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{:?}",
        String::from_utf8_lossy(&head)
    );
    conn.write_all(b"ping").await.expect("send");
    let mut echo = [0u8; 4];
    tokio::time::timeout(WAIT, conn.read_exact(&mut echo))
        .await
        .expect("echo in time")
        .expect("echo");
    assert_eq!(&echo, b"ping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_connection_sees_the_drain_and_closes_cleanly() {
    let server = start(|s| s, upgrader(true));
    let mut conn = TcpStream::connect(server.addr).await.expect("connect");
    upgrade(&mut conn).await;
    let report = server.report().await;
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, conn.read_to_end(&mut rest))
        .await
        .expect("EOF in time")
        .expect("a clean EOF");
    assert_eq!(rest, b"going away");
    assert_eq!(report.at_signal(ConnState::Upgraded), 1, "{report}");
    assert_eq!(
        (report.drained(), report.forced_total()),
        (1, 0),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_connection_that_ignores_the_drain_is_forced_as_upgraded() {
    let server = start(
        |s| s.drain_timeout(Duration::from_millis(300)),
        upgrader(false),
    );
    let mut conn = TcpStream::connect(server.addr).await.expect("connect");
    upgrade(&mut conn).await;
    let report = server.report().await;
    assert_eq!(report.forced(ConnState::Upgraded), 1, "{report}");
    // The application's socket was cut under it: the client sees the end.
    let mut rest = Vec::new();
    let end = tokio::time::timeout(WAIT, conn.read_to_end(&mut rest)).await;
    assert!(end.is_ok(), "the connection ends at the deadline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_blocking_std_listener_is_served() {
    let std = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = std.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = gracedown::serve::Server::new(vec![std.into()]);
    let task = tokio::spawn(
        server
            .serve(hello())
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .into_future(),
    );
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    assert!(exchange(&mut conn, GET).await.starts_with("HTTP/1.1 200"));
    drop(conn);
    let _ = stop.send(());
    let report = tokio::time::timeout(WAIT, task)
        .await
        .expect("drained")
        .expect("task")
        .expect("server");
    assert_eq!(report.forced_total(), 0, "{report}");
}
