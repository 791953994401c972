//! A request that races the close of a quiet keep-alive connection is still
//! served: the connection stops at a message boundary, and what is waiting
//! in the socket then starts a new request on the same connection (and
//! this path serves only after a boundary the server chose, never after an
//! error or a close the protocol demanded).
//!
//! The race is made deterministic on a single-threaded runtime: the client
//! puts its next request in the socket and then blocks the runtime thread
//! past the bound, so that when the server's task runs again the bound has
//! passed and the request is waiting, both at once.

use std::convert::Infallible;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use gracedown::listener::{ListenAddr, Listener};
use gracedown::serve::{RequestBody, Server, Timeouts, service_fn};
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(10);

fn bind() -> (Listener, SocketAddr) {
    let listener =
        Listener::bind(&ListenAddr::Tcp("127.0.0.1:0".parse().expect("addr"))).expect("bind");
    let ListenAddr::Tcp(addr) = listener.local_addr().expect("addr") else {
        unreachable!("a TCP listener")
    };
    (listener, addr)
}

async fn read_response(conn: &mut TcpStream) -> String {
    let mut wire = Vec::new();
    let mut chunk = [0u8; 1024];
    while !wire.ends_with(b"done\n") {
        let n = tokio::time::timeout(WAIT, conn.read(&mut chunk))
            .await
            .expect("a response in time")
            .expect("read");
        assert!(
            n > 0,
            "the connection closed before the response: {:?}",
            String::from_utf8_lossy(&wire)
        );
        wire.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&wire).into_owned()
}

/// Serves request 1, lets `bound` pass with request 2 waiting in the socket,
/// and returns response 2; with `drain`, the drain starts after response 1.
fn race(configure: impl FnOnce(Server) -> Server, bound: Duration, drain: bool) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (listener, addr) = bind();
    runtime.block_on(async move {
        let service = service_fn(|req: http::Request<RequestBody>| async move {
            let text = format!("{} done\n", req.uri().path());
            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(text))))
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let mut stop = Some(stop);
        let server = configure(Server::new(vec![listener]));
        let server = tokio::spawn(
            server
                .serve(service)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .into_future(),
        );
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        conn.write_all(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("send");
        assert!(read_response(&mut conn).await.contains("/first done"));
        if drain {
            stop.take().map(|s| s.send(()));
            // Let the server see the signal and start its idle bound.
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        conn.try_write(b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("send");
        // Block the runtime's only thread: the server cannot read the request
        // before the bound has passed.
        std::thread::sleep(bound * 3);
        let second = read_response(&mut conn).await;
        stop.take().map(|s| s.send(()));
        let _ = tokio::time::timeout(WAIT, server).await;
        second
    })
}

#[test]
fn a_request_racing_the_keepalive_close_is_served_and_the_connection_lives_on() {
    let bound = Duration::from_millis(20);
    let second = race(
        |s| {
            s.timeouts(Timeouts {
                keepalive: bound,
                ..Timeouts::default()
            })
        },
        bound,
        false,
    );
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    assert!(second.contains("/second done"), "{second}");
    assert!(
        !second.to_ascii_lowercase().contains("connection: close"),
        "{second}"
    );
}

#[test]
fn a_request_racing_the_drains_idle_close_is_served_with_connection_close() {
    let bound = Duration::from_millis(20);
    let second = race(
        |s| {
            s.timeouts(Timeouts {
                drain_idle: bound,
                ..Timeouts::default()
            })
        },
        bound,
        true,
    );
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    assert!(second.contains("/second done"), "{second}");
    assert!(
        second.to_ascii_lowercase().contains("connection: close"),
        "{second}"
    );
}
