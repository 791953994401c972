//! HTTP/2 streams are answered on their connection's task when they can be
//! at once, and go on as tasks of their own when they wait: a waiting
//! stream holds up no other stream of its connection, a request body that
//! arrives later is read, a handler that panics after it waited costs its
//! own stream, a connection with many streams at once answers them all, and
//! a `CONNECT` stream answered after a wait carries the application's writes;
//! and `Tuning { http2_inline_streams: false, .. }` gives every stream its own task.

mod support;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use gracedown::serve::{RequestBody, Tuning, service_fn};
use h2::client::SendRequest;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use support::{WAIT, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// Chunks the server writes into a `CONNECT` tunnel, and their size.
const TUNNEL_CHUNKS: usize = 8;
const TUNNEL_CHUNK: usize = 4096;

/// `/wait` answers once the test releases it, `/wait-then-panic` panics
/// then, `POST /echo` answers with the request body, `CONNECT` (after the
/// gate too) opens a tunnel the server writes [`TUNNEL_CHUNKS`] chunks into,
/// anything else at once.
async fn handler(
    gate: Arc<Semaphore>,
    mut req: http::Request<RequestBody>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    if req.method() == http::Method::CONNECT {
        let permit = gate.acquire().await.expect("the gate stays open");
        permit.forget();
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let mut tunnel = TokioIo::new(upgraded);
            for _ in 0..TUNNEL_CHUNKS {
                if tunnel.write_all(&[b'x'; TUNNEL_CHUNK]).await.is_err() {
                    return;
                }
            }
            let _ = tunnel.flush().await;
            // Open until the client closes its side.
            let mut sink = [0u8; 64];
            while matches!(tunnel.read(&mut sink).await, Ok(n) if n > 0) {}
        });
        return Ok(http::Response::new(Full::new(Bytes::new())));
    }
    let body = match req.uri().path() {
        "/wait" | "/wait-then-panic" => {
            let permit = gate.acquire().await.expect("the gate stays open");
            permit.forget();
            assert_ne!(
                req.uri().path(),
                "/wait-then-panic",
                "a handler that panics after it waited (on purpose)"
            );
            Bytes::from_static(b"waited\n")
        }
        "/echo" => match req.into_body().collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) => Bytes::from(e.to_string()),
        },
        // Which task answered: the connection's, or one of the stream's own.
        "/task" => Bytes::from(format!("{:?}", tokio::task::try_id())),
        _ => Bytes::from_static(b"now\n"),
    };
    Ok(http::Response::new(Full::new(body)))
}

/// A server for [`handler`] (made by `configure`), and the gate its
/// waiting requests pass once the test adds permits.
fn serve(
    configure: impl FnOnce(gracedown::serve::Server) -> gracedown::serve::Server,
) -> (support::Running, Arc<Semaphore>) {
    let gate = Arc::new(Semaphore::new(0));
    let server = start(
        configure,
        service_fn({
            let gate = Arc::clone(&gate);
            move |req| handler(Arc::clone(&gate), req)
        }),
    );
    (server, gate)
}

async fn connect(addr: std::net::SocketAddr) -> (SendRequest<Bytes>, tokio::task::JoinHandle<()>) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (client, connection) = tokio::time::timeout(WAIT, h2::client::handshake(tcp))
        .await
        .expect("handshake in time")
        .expect("h2 handshake");
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    (client, driver)
}

fn request(method: &str, path: &str) -> http::Request<()> {
    http::Request::builder()
        .method(method)
        .uri(format!("http://x{path}"))
        .body(())
        .expect("request")
}

/// Sends a request without a body; the response's future and status come back.
async fn send(client: &mut SendRequest<Bytes>, path: &str) -> h2::client::ResponseFuture {
    let mut ready = client.clone().ready().await.expect("ready");
    let (response, _) = ready
        .send_request(request("GET", path), true)
        .expect("send");
    response
}

async fn body_of(response: h2::client::ResponseFuture) -> Result<String, h2::Error> {
    let response = tokio::time::timeout(WAIT, response)
        .await
        .expect("answer in time")?;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut text = Vec::new();
    while let Some(chunk) = tokio::time::timeout(WAIT, body.data())
        .await
        .expect("body in time")
    {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        text.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&text).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_waits_holds_up_no_other_stream_of_its_connection() {
    let (server, gate) = serve(|s| s);
    let (mut client, driver) = connect(server.addr).await;
    let waiting = send(&mut client, "/wait").await;
    for _ in 0..50 {
        let now = send(&mut client, "/").await;
        assert_eq!(body_of(now).await.expect("answered"), "now\n");
    }
    // Still waiting: released now, it is answered.
    gate.add_permits(1);
    assert_eq!(body_of(waiting).await.expect("answered"), "waited\n");

    drop(client);
    driver.abort();
    assert_eq!(server.report().await.forced_total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_that_comes_after_the_head_is_read() {
    let (server, _) = serve(|s| s);
    let (client, driver) = connect(server.addr).await;
    let mut ready = client.ready().await.expect("ready");
    let (response, mut body) = ready
        .send_request(request("POST", "/echo"), false)
        .expect("send");
    // The head alone first: the handler's first poll finds no body yet,
    // and the connection answers another stream meanwhile.
    let mut ready = ready.ready().await.expect("ready");
    let (ping, _) = ready.send_request(request("GET", "/"), true).expect("send");
    assert_eq!(body_of(ping).await.expect("answered"), "now\n");
    body.send_data(Bytes::from_static(b"first "), false)
        .expect("data");
    body.send_data(Bytes::from_static(b"second\n"), true)
        .expect("data");
    assert_eq!(body_of(response).await.expect("answered"), "first second\n");

    drop(ready);
    driver.abort();
    server.report().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_panics_after_it_waited_resets_its_stream_only() {
    let (server, gate) = serve(|s| s);
    let (mut client, driver) = connect(server.addr).await;
    let panicking = send(&mut client, "/wait-then-panic").await;
    let waiting = send(&mut client, "/wait").await;
    gate.add_permits(2);
    let panicked = tokio::time::timeout(WAIT, panicking)
        .await
        .expect("reset in time");
    assert!(
        panicked.is_err(),
        "the panicking stream is reset: {panicked:?}"
    );
    assert_eq!(body_of(waiting).await.expect("answered"), "waited\n");
    let again = send(&mut client, "/").await;
    assert_eq!(body_of(again).await.expect("answered"), "now\n");

    drop(client);
    driver.abort();
    assert_eq!(server.report().await.forced_total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_streams_at_once_on_one_connection_are_all_answered() {
    many_streams(|s| s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_task_per_stream_many_streams_at_once_are_all_answered_too() {
    many_streams(|s| {
        s.tuning(Tuning {
            http2_inline_streams: false,
            ..Tuning::default()
        })
    })
    .await;
}

/// 96 streams at once on one connection, every fourth one waiting until
/// the others are sent: all answered.
async fn many_streams(
    configure: impl FnOnce(gracedown::serve::Server) -> gracedown::serve::Server,
) {
    let (server, gate) = serve(configure);
    let (mut client, driver) = connect(server.addr).await;
    let mut responses = Vec::new();
    for i in 0..96 {
        let path = if i % 4 == 0 { "/wait" } else { "/" };
        responses.push((path, send(&mut client, path).await));
    }
    gate.add_permits(24);
    for (path, response) in responses {
        let expected = if path == "/wait" { "waited\n" } else { "now\n" };
        assert_eq!(body_of(response).await.expect("answered"), expected);
    }

    drop(client);
    driver.abort();
    assert_eq!(server.report().await.forced_total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_stream_answered_after_a_wait_carries_the_applications_writes() {
    let (server, gate) = serve(|s| s);
    let (client, driver) = connect(server.addr).await;
    let mut ready = client.ready().await.expect("ready");
    let connect = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri("x:443")
        .body(())
        .expect("request");
    let (response, _send) = ready.send_request(connect, false).expect("send");
    // Answered from the handler's own task (it waited), so the task that
    // carries the tunnel's writes is handed over from there.
    gate.add_permits(1);
    let response = tokio::time::timeout(WAIT, response)
        .await
        .expect("answer in time")
        .expect("answered");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut received = 0;
    while received < TUNNEL_CHUNKS * TUNNEL_CHUNK {
        let chunk = tokio::time::timeout(WAIT, body.data())
            .await
            .expect("the tunnel's bytes in time (not at the next PING)")
            .expect("the tunnel is open")
            .expect("data");
        let _ = body.flow_control().release_capacity(chunk.len());
        received += chunk.len();
    }
    assert_eq!(received, TUNNEL_CHUNKS * TUNNEL_CHUNK);

    drop((ready, _send, body));
    driver.abort();
    server.report().await;
}

/// The task that answers `/task` twice on one connection.
async fn answering_tasks(
    configure: impl FnOnce(gracedown::serve::Server) -> gracedown::serve::Server,
) -> (String, String) {
    let (server, _) = serve(configure);
    let (mut client, driver) = connect(server.addr).await;
    let first = body_of(send(&mut client, "/task").await)
        .await
        .expect("answered");
    let second = body_of(send(&mut client, "/task").await)
        .await
        .expect("answered");
    drop(client);
    driver.abort();
    server.report().await;
    (first, second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_answered_at_once_run_on_the_connections_task_unless_the_server_says_otherwise() {
    let (first, second) = answering_tasks(|s| s).await;
    assert!(first.starts_with("Some("), "{first}");
    assert_eq!(first, second, "both on the connection's task");
    let (first, second) = answering_tasks(|s| {
        s.tuning(Tuning {
            http2_inline_streams: false,
            ..Tuning::default()
        })
    })
    .await;
    assert!(first.starts_with("Some("), "{first}");
    assert_ne!(first, second, "a task of its own each");
}
