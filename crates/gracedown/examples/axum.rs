//! An axum application restarted without a client noticing: shared state, a
//! WebSocket echo that says goodbye (close code 1001, "going away") when the
//! worker drains, Server-Sent Events that end cleanly on drain, and a route
//! that answers the client's address (axum's `ConnectInfo`).
//!
//! It takes its socket from start_server (`SERVER_STARTER_PORT`) or systemd
//! (`LISTEN_FDS`), or binds 127.0.0.1:8080 when started by hand.
//!
//! Run with:
//!   cargo run -p gracedown --example axum
//!   start_server --port=127.0.0.1:8080 -- target/debug/examples/axum     # then kill -HUP start_server
//!
//! `DRAIN_TIMEOUT_SECS` (default 30) bounds the drain; `curl localhost:8080/`,
//! `curl -N localhost:8080/events`, and any WebSocket client on `/ws` try it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use axum::response::sse::{Event, Sse};
use axum::routing::get;
use axum::{Extension, Router};
use futures_util::Stream;
use gracedown::listener::Listeners;
use gracedown::serve::Server;
use gracedown::shutdown::{Draining, Readiness, Signals};

/// What every handler shares.
#[derive(Clone)]
struct App {
    pid: u32,
    generation: Option<u64>,
    hits: Arc<AtomicU64>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Take the inherited sockets before anything else opens a descriptor.
    let mut inherited = Listeners::from_env()?;
    let generation = inherited.generation();
    let listeners = inherited.take_all_or_bind(&["127.0.0.1:8080".parse()?])?;
    let drain_timeout = std::env::var("DRAIN_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .unwrap_or(Duration::from_secs(30));
    let app = App {
        pid: std::process::id(),
        generation,
        hits: Arc::default(),
    };
    let router = Router::new()
        .route("/", get(hello))
        .route("/peer", get(peer))
        .route("/events", get(events))
        .route("/ws", get(websocket))
        // 503 from the stop signal on: for a load balancer's or Kubernetes' probe.
        .route_service("/readyz", Readiness)
        .with_state(app);
    let server = Server::new(listeners).drain_timeout(drain_timeout);
    // Handlers first: a stop signal after "ready" drains instead of killing.
    let signals = Signals::install()?;
    say(&format!(
        "worker ready pid={} generation={}",
        std::process::id(),
        generation.map_or_else(|| "none".to_owned(), |g| g.to_string())
    ));
    // Made per connection, so that `ConnectInfo<SocketAddr>` works.
    let make = router.into_make_service_with_connect_info::<SocketAddr>();
    let report = server.serve(make).with_signals(signals).await?;
    say(&format!("drain complete {report}"));
    Ok(())
}

/// One line on stderr in one write: start_server and the other generations
/// write to the same stderr, and `eprintln!` writes a line in pieces.
fn say(line: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
}

async fn hello(State(app): State<App>) -> String {
    let n = app.hits.fetch_add(1, Ordering::Relaxed) + 1;
    format!(
        "hello from pid {} (generation {:?}), request {n}\n",
        app.pid, app.generation
    )
}

async fn peer(ConnectInfo(addr): ConnectInfo<SocketAddr>) -> String {
    format!("you are {addr}\n")
}

/// A tick a second until the worker drains, then a `bye` event and the end
/// of the stream: the client sees a clean end, not a broken connection.
async fn events(
    Extension(draining): Extension<Draining>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let ticks = futures_util::stream::unfold((0u64, Some(draining)), |(n, draining)| async move {
        let mut draining = draining?;
        let tick = tokio::time::sleep(if n == 0 {
            Duration::ZERO
        } else {
            Duration::from_secs(1)
        });
        tokio::select! {
            () = tick => Some((Ok(Event::default().event("tick").data(n.to_string())), (n + 1, Some(draining)))),
            _ = draining.wait() => Some((Ok(Event::default().event("bye").data("draining")), (n, None))),
        }
    });
    Sse::new(ticks)
}

async fn websocket(
    upgrade: WebSocketUpgrade,
    Extension(draining): Extension<Draining>,
) -> Response {
    upgrade.on_upgrade(move |socket| echo(socket, draining))
}

/// Echoes messages until the client closes, or until the worker drains: then
/// a close frame with code 1001 ("going away"), and the client's close reply
/// is awaited (the drain deadline bounds a client that never sends it).
async fn echo(mut socket: WebSocket, mut draining: Draining) {
    loop {
        tokio::select! {
            message = socket.recv() => match message {
                Some(Ok(Message::Text(text))) => {
                    if socket.send(Message::Text(text)).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Binary(bytes))) => {
                    if socket.send(Message::Binary(bytes)).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            _ = draining.wait() => {
                let bye = CloseFrame {
                    code: close_code::AWAY,
                    reason: "server restarting".into(),
                };
                if socket.send(Message::Close(Some(bye))).await.is_err() {
                    return;
                }
                // The close handshake: wait for the client's reply.
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
