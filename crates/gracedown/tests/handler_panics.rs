//! A handler that panics costs its own request only: over HTTP/2 the other
//! streams of the connection are answered and the connection stays usable;
//! over HTTP/1 the server goes on serving new connections.

mod support;

use std::convert::Infallible;

use bytes::Bytes;
use gracedown::serve::{RequestBody, service_fn};
use http_body_util::Full;
use support::{WAIT, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn panics_on_request(
    req: http::Request<RequestBody>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    assert_ne!(
        req.uri().path(),
        "/panic",
        "a handler that panics (on purpose)"
    );
    Ok(http::Response::new(Full::new(Bytes::from_static(b"ok\n"))))
}

fn get(path: &str) -> http::Request<()> {
    http::Request::get(format!("http://x{path}"))
        .body(())
        .expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_handler_that_panics_resets_its_stream_only() {
    let server = start(|s| s, service_fn(panics_on_request));
    let tcp = TcpStream::connect(server.addr).await.expect("connect");
    let (client, connection) = tokio::time::timeout(WAIT, h2::client::handshake(tcp))
        .await
        .expect("handshake in time")
        .expect("h2 handshake");
    let driver = tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready");
    let (panicking, _) = client.send_request(get("/panic"), true).expect("send");
    let mut client = client.ready().await.expect("ready");
    let (fine, _) = client.send_request(get("/"), true).expect("send");

    let fine = tokio::time::timeout(WAIT, fine)
        .await
        .expect("answer in time")
        .expect("the other stream is answered");
    assert_eq!(fine.status(), 200);
    let panicked = tokio::time::timeout(WAIT, panicking)
        .await
        .expect("reset in time");
    assert!(
        panicked.is_err(),
        "the panicking stream is reset: {panicked:?}"
    );

    // The connection lives on.
    let mut client = client
        .ready()
        .await
        .expect("the connection is still usable");
    let (again, _) = client.send_request(get("/"), true).expect("send");
    let again = tokio::time::timeout(WAIT, again)
        .await
        .expect("answer in time")
        .expect("answered on the same connection");
    assert_eq!(again.status(), 200);

    drop(client);
    driver.abort();
    assert_eq!(server.report().await.forced_total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_handler_that_panics_ends_its_connection_and_the_server_serves_on() {
    let server = start(|s| s, service_fn(panics_on_request));
    let mut conn = TcpStream::connect(server.addr).await.expect("connect");
    conn.write_all(b"GET /panic HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("send");
    let mut wire = Vec::new();
    let _ = tokio::time::timeout(WAIT, conn.read_to_end(&mut wire))
        .await
        .expect("the connection ends in time");
    assert!(
        !wire.starts_with(b"HTTP/1.1 200"),
        "no answer for the panicking request: {}",
        String::from_utf8_lossy(&wire)
    );

    let mut conn = TcpStream::connect(server.addr)
        .await
        .expect("connect again");
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("send");
    let mut wire = String::new();
    tokio::time::timeout(WAIT, conn.read_to_string(&mut wire))
        .await
        .expect("answer in time")
        .expect("read");
    assert!(wire.starts_with("HTTP/1.1 200"), "{wire}");
    server.report().await;
}
