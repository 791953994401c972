//! Dormant HTTP/1 connections: a keep-alive connection quiet
//! between requests lets go of hyper and its buffers, and is served by a
//! fresh hyper connection at its next byte, on the same TCP connection, with
//! every bound and drain rule as before.
//!
//! The server runs in the test's single-threaded runtime, so a
//! thread-local tracing subscriber sees its events: the tests wait for the
//! "dormant" event before going on, so each step surely crosses dormancy.

mod support;

use gracedown::serve::{Timeouts, Tuning};

use std::time::Duration;

use gracedown::shutdown::ConnState;
use support::{WAIT, hello, start};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing::span;

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
const DORMANT: &str = "http/1 connection dormant";
const WOKEN: &str = "dormant http/1 connection woken by a request";

/// Forwards the message of every event on this thread.
struct Events(mpsc::UnboundedSender<String>);

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for Events {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }
    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut message = Message(String::new());
        event.record(&mut message);
        let _ = self.0.send(message.0);
    }
    fn enter(&self, _: &span::Id) {}
    fn exit(&self, _: &span::Id) {}
}

/// The events of this thread (the test's runtime), from now on.
fn events() -> (
    tracing::subscriber::DefaultGuard,
    mpsc::UnboundedReceiver<String>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    (tracing::subscriber::set_default(Events(tx)), rx)
}

/// Waits (bounded) for an event whose message starts with `what`.
async fn seen(events: &mut mpsc::UnboundedReceiver<String>, what: &str) {
    let found = tokio::time::timeout(WAIT, async {
        while let Some(message) = events.recv().await {
            if message.starts_with(what) {
                return;
            }
        }
        panic!("the server's events ended before {what:?}");
    })
    .await;
    assert!(found.is_ok(), "no {what:?} event within {WAIT:?}");
}

/// Sends `request` and reads until `n` `hello` responses arrived.
async fn exchange(
    conn: &mut (impl AsyncRead + AsyncWrite + Unpin),
    request: &[u8],
    n: usize,
) -> String {
    conn.write_all(request).await.expect("send");
    let mut wire = Vec::new();
    let mut chunk = [0u8; 1024];
    while String::from_utf8_lossy(&wire).matches("hello\n").count() < n {
        let read = tokio::time::timeout(WAIT, conn.read(&mut chunk))
            .await
            .expect("a response in time")
            .expect("read");
        assert!(
            read > 0,
            "closed early: {:?}",
            String::from_utf8_lossy(&wire)
        );
        wire.extend_from_slice(&chunk[..read]);
    }
    String::from_utf8_lossy(&wire).into_owned()
}

/// A connection that made one request and then went dormant.
async fn dormant_connection(
    addr: std::net::SocketAddr,
    events: &mut mpsc::UnboundedReceiver<String>,
) -> TcpStream {
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    exchange(&mut conn, GET, 1).await;
    seen(events, DORMANT).await;
    conn
}

/// Reads until the server closes; `Err` if it does not within the bound.
async fn closed_by_server(conn: &mut TcpStream) -> Result<(), tokio::time::error::Elapsed> {
    let mut chunk = [0u8; 256];
    tokio::time::timeout(WAIT, async {
        while conn.read(&mut chunk).await.is_ok_and(|n| n > 0) {}
    })
    .await
}

#[tokio::test]
async fn a_dormant_connection_serves_its_next_requests_on_the_same_connection() {
    let (_guard, mut events) = events();
    let server = start(
        |s| {
            s.tuning(Tuning {
                dormant_after: Duration::ZERO,
                ..Tuning::default()
            })
        },
        hello(),
    );
    let mut conn = TcpStream::connect(server.addr).await.expect("connect");
    for round in 0..3 {
        let response = exchange(&mut conn, GET, 1).await;
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "round {round}: {response}"
        );
        seen(&mut events, DORMANT).await;
    }
    // Pipelined: both requests wake it, both are answered, in order.
    let both = exchange(&mut conn, &[GET, GET].concat(), 2).await;
    assert_eq!(both.matches("HTTP/1.1 200").count(), 2, "{both}");
    seen(&mut events, DORMANT).await;
    // A head split around the wake-up: its first bytes wake the connection,
    // the rest finds hyper serving it again.
    conn.write_all(b"GET / HTTP/1.1\r\n").await.expect("send");
    seen(&mut events, WOKEN).await;
    let split = exchange(&mut conn, b"Host: x\r\n\r\n", 1).await;
    assert!(split.starts_with("HTTP/1.1 200"), "{split}");
    let report = server.report().await;
    assert_eq!(report.at_signal(ConnState::Idle), 1, "{report}");
    assert_eq!(report.forced_total(), 0, "{report}");
}

#[tokio::test]
async fn a_dormant_connection_keeps_its_keepalive_bound() {
    let (_guard, mut events) = events();
    let server = start(
        |s| {
            s.tuning(Tuning {
                dormant_after: Duration::ZERO,
                ..Tuning::default()
            })
            .timeouts(Timeouts {
                keepalive: Duration::from_millis(200),
                ..Timeouts::default()
            })
        },
        hello(),
    );
    let mut conn = dormant_connection(server.addr, &mut events).await;
    closed_by_server(&mut conn)
        .await
        .expect("the keep-alive bound closes a dormant connection");
    drop(conn);
    let report = server.report().await;
    assert_eq!(report.forced_total(), 0, "{report}");
}

#[tokio::test]
async fn a_dormant_connection_drains_like_an_idle_one() {
    let (_guard, mut events) = events();
    let server = start(
        |s| {
            s.tuning(Tuning {
                dormant_after: Duration::ZERO,
                ..Tuning::default()
            })
            .timeouts(Timeouts {
                drain_idle: Duration::from_millis(50),
                ..Timeouts::default()
            })
        },
        hello(),
    );
    let mut conn = dormant_connection(server.addr, &mut events).await;
    let report = server.report().await;
    assert_eq!(report.at_signal(ConnState::Idle), 1, "{report}");
    assert_eq!(
        (report.drained(), report.forced_total()),
        (1, 0),
        "{report}"
    );
    closed_by_server(&mut conn)
        .await
        .expect("closed by the drain");
}

#[tokio::test]
async fn a_request_to_a_dormant_connection_during_the_drain_is_answered_with_close() {
    let (_guard, mut events) = events();
    let mut server = start(
        |s| {
            s.tuning(Tuning {
                dormant_after: Duration::ZERO,
                ..Tuning::default()
            })
            .timeouts(Timeouts {
                drain_idle: Duration::from_secs(30),
                ..Timeouts::default()
            })
        },
        hello(),
    );
    let mut conn = dormant_connection(server.addr, &mut events).await;
    server.drain();
    seen(&mut events, "draining").await;
    let response = exchange(&mut conn, GET, 1).await;
    assert!(
        response.to_ascii_lowercase().contains("connection: close"),
        "{response}"
    );
    closed_by_server(&mut conn)
        .await
        .expect("closed after the response");
    let report = server.report().await;
    assert_eq!(report.requests_after_signal(), 1, "{report}");
    assert_eq!(
        (report.drained(), report.forced_total()),
        (1, 0),
        "{report}"
    );
}

#[tokio::test]
async fn a_dormant_connection_outliving_the_deadline_is_forced_as_idle() {
    let (_guard, mut events) = events();
    let server = start(
        |s| {
            s.tuning(Tuning {
                dormant_after: Duration::ZERO,
                ..Tuning::default()
            })
            .drain_timeout(Duration::from_millis(200))
            .timeouts(Timeouts {
                drain_idle: Duration::from_secs(30),
                ..Timeouts::default()
            })
        },
        hello(),
    );
    let _conn = dormant_connection(server.addr, &mut events).await;
    let report = server.report().await;
    assert_eq!(report.forced(ConnState::Idle), 1, "{report}");
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn a_tls_connection_goes_dormant_and_serves_on() {
    let (_guard, mut events) = events();
    let (tls, connector) = support::tls_pair(&[b"http/1.1"]);
    let server = start(
        |s| {
            s.tls(tls).tuning(Tuning {
                dormant_after: Duration::ZERO,
                ..Tuning::default()
            })
        },
        hello(),
    );
    let tcp = TcpStream::connect(server.addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut conn = connector.connect(name, tcp).await.expect("handshake");
    for round in 0..3 {
        let response = exchange(&mut conn, GET, 1).await;
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "round {round}: {response}"
        );
        seen(&mut events, DORMANT).await;
    }
    let report = server.report().await;
    assert_eq!(report.forced_total(), 0, "{report}");
}

#[tokio::test]
async fn without_dormancy_the_connection_never_goes_dormant() {
    // The control for the tests above: with the bound far away, the
    // "dormant" event never comes, so waiting for it proves something.
    let (_guard, mut events) = events();
    let server = start(
        |s| {
            s.tuning(Tuning {
                dormant_after: Duration::from_secs(3600),
                ..Tuning::default()
            })
        },
        hello(),
    );
    let mut conn = TcpStream::connect(server.addr).await.expect("connect");
    for _ in 0..3 {
        exchange(&mut conn, GET, 1).await;
    }
    let report = server.report().await;
    assert_eq!(report.drained(), 1, "{report}");
    while let Ok(message) = events.try_recv() {
        assert!(!message.starts_with(DORMANT), "{message}");
    }
}
