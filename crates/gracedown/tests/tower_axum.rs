//! axum and tower are first-class: an axum `Router` and a boxed
//! tower service are served as they are, axum's `ConnectInfo<SocketAddr>`
//! works when the server is given axum's make-service, every request carries the
//! connection's addresses, and a WebSocket over TLS (ALPN http/1.1) is
//! served and drained like a plain one.

mod support;

use std::convert::Infallible;
use std::future::IntoFuture;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, Extension};
use axum::routing::get;
use bytes::Bytes;
use gracedown::serve::{ConnectionInfo, RequestBody, Server};
use http_body_util::Full;
use support::{WAIT, listener, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::util::BoxCloneService;

/// `GET path` on a new connection; the body.
async fn get_body(addr: SocketAddr, path: &str) -> String {
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    conn.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("send");
    let mut wire = String::new();
    tokio::time::timeout(WAIT, conn.read_to_string(&mut wire))
        .await
        .expect("response in time")
        .expect("read");
    assert!(wire.starts_with("HTTP/1.1 200"), "{wire}");
    wire.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_axum_router_is_served_as_it_is() {
    let router = Router::new().route(
        "/",
        get(|Extension(info): Extension<ConnectionInfo>| async move {
            format!(
                "hello {}",
                info.remote_addr()
                    .map(|a| a.ip().to_string())
                    .unwrap_or_default()
            )
        }),
    );
    let server = start(|s| s, router);
    assert_eq!(get_body(server.addr, "/").await, "hello 127.0.0.1");
    assert_eq!(server.report().await.forced_total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_boxed_tower_service_is_served_as_it_is() {
    // Send but not Sync: the server asks for no more than Clone + Send.
    let service: BoxCloneService<
        http::Request<RequestBody>,
        http::Response<Full<Bytes>>,
        Infallible,
    > = BoxCloneService::new(gracedown::serve::service_fn(
        |req: http::Request<RequestBody>| async move {
            let local = req
                .extensions()
                .get::<ConnectionInfo>()
                .and_then(ConnectionInfo::local_addr);
            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(format!(
                "{local:?}"
            )))))
        },
    ));
    let server = start(|s| s, service);
    let addr = server.addr;
    assert_eq!(get_body(addr, "/").await, format!("{:?}", Some(addr)));
    server.report().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axums_connect_info_works_through_a_service_made_per_connection() {
    let router = Router::new().route(
        "/peer",
        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
    );
    let (listener, addr) = listener();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let make = router.into_make_service_with_connect_info::<SocketAddr>();
    let task = tokio::spawn(
        Server::new(vec![listener])
            .serve(make)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .into_future(),
    );
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    let me = conn.local_addr().expect("local addr");
    conn.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("send");
    let mut wire = String::new();
    tokio::time::timeout(WAIT, conn.read_to_string(&mut wire))
        .await
        .expect("in time")
        .expect("read");
    assert!(wire.ends_with(&me.to_string()), "{wire}");
    let _ = stop.send(());
    tokio::time::timeout(WAIT, task)
        .await
        .expect("drained")
        .expect("task")
        .expect("server");
}

/// A WebSocket over TLS, drained like a plain one.
#[cfg(feature = "tls")]
mod over_tls {
    use axum::Router;
    use axum::extract::Extension;
    use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
    use axum::routing::get;
    use futures_util::{SinkExt, StreamExt};
    use gracedown::serve::ConnectionInfo;
    use gracedown::shutdown::{ConnState, Draining};
    use tokio::net::TcpStream;

    use super::support::{self, WAIT, start};

    async fn echo_until_drained(mut socket: WebSocket, mut draining: Draining) {
        loop {
            tokio::select! {
                message = socket.recv() => match message {
                    Some(Ok(Message::Text(text))) => { let _ = socket.send(Message::Text(text)).await; }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                    Some(Ok(_)) => {}
                },
                _ = draining.wait() => {
                    let bye = CloseFrame { code: close_code::AWAY, reason: "bye".into() };
                    let _ = socket.send(Message::Close(Some(bye))).await;
                    while let Some(Ok(message)) = socket.recv().await {
                        if matches!(message, Message::Close(_)) {
                            break;
                        }
                    }
                    return;
                }
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_websocket_over_tls_is_served_and_told_to_go_away_on_drain() {
        let (tls, connector) = support::tls_pair(&[b"http/1.1"]);
        let router = Router::new().route(
            "/ws",
            get(
                |upgrade: WebSocketUpgrade,
                 Extension(draining): Extension<Draining>,
                 Extension(info): Extension<ConnectionInfo>| async move {
                    assert!(info.is_tls());
                    upgrade.on_upgrade(move |socket| echo_until_drained(socket, draining))
                },
            ),
        );
        let mut server = start(|s| s.tls(tls), router);
        let tcp = TcpStream::connect(server.addr).await.expect("connect");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let stream = connector.connect(name, tcp).await.expect("tls");
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        let (mut ws, response) = tokio_tungstenite::client_async("wss://localhost/ws", stream)
            .await
            .expect("websocket handshake");
        assert_eq!(response.status(), 101);
        ws.send(tokio_tungstenite::tungstenite::Message::text("ping"))
            .await
            .expect("send");
        let echo = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("in time")
            .expect("a message");
        assert_eq!(
            echo.expect("echo"),
            tokio_tungstenite::tungstenite::Message::text("ping")
        );

        server.drain();
        let close = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("in time")
            .expect("a message");
        let tokio_tungstenite::tungstenite::Message::Close(Some(frame)) = close.expect("close")
        else {
            panic!("a close frame");
        };
        assert_eq!(u16::from(frame.code), 1001);
        // tungstenite answers the close; the stream then ends cleanly.
        while let Some(next) = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("in time")
        {
            assert!(next.is_ok(), "a clean end: {next:?}");
        }
        let report = server.report().await;
        assert_eq!(report.at_signal(ConnState::Upgraded), 1, "{report}");
        assert_eq!(
            (report.drained(), report.forced_total()),
            (1, 0),
            "{report}"
        );
    }
}
