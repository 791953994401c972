//! Zero-downtime restarts for HTTP servers.
//!
//! `gracedown` is what a worker process links to be restarted without a client
//! ever seeing an error:
//!
//! - [`listener`] picks up the listening sockets a superdaemon passed
//!   (Server::Starter's `SERVER_STARTER_PORT`, systemd's `LISTEN_FDS`), or
//!   binds a fallback address when started by hand;
//! - [`serve`] serves any tower service (an axum `Router`, a
//!   `tower::ServiceBuilder` stack, [`serve::service_fn`]) on them over
//!   HTTP/1.1 with upgrades (WebSocket), h2c and TLS (ALPN `h2` / `http/1.1`),
//!   with every wait bounded;
//! - [`shutdown`] drains on `SIGTERM` within a deadline: stop accepting,
//!   finish every request, close keep-alive connections without racing the
//!   client, two-phase GOAWAY for HTTP/2, tell upgraded connections, linger
//!   on close; then a [`shutdown::DrainReport`] counts every connection by state;
//! - under gracedown's own `start_server`, plain HTTP/1.1 connections are not
//!   closed but handed to the next generation on the same TCP connection, TLS
//!   sessions resume there (shared ticket keys, [`tls::TicketKeys`]), and TLS
//!   and HTTP/2 connections reconnect paced over a window
//!   ([`serve::Timeouts::reconnect_window`]).
//!
//! It does not supervise processes: that is `start_server`'s job (or Perl's
//! Server::Starter, or systemd).
//!
//! ```text
//!   start_server ── owns the sockets, SIGHUP → new generation, SIGTERM → old
//!        │  fds 3.. + SERVER_STARTER_PORT=127.0.0.1:8080=3
//!        ▼
//!   worker: Listeners::from_env() → Server::serve(app).await → DrainReport
//! ```
//!
//! # Example: an axum worker
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use gracedown::{listener::Listeners, serve::Server};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // The sockets start_server or systemd passed, or 127.0.0.1:8080 by hand.
//!     let listeners = Listeners::from_env()?.take_all_or_bind(&["127.0.0.1:8080".parse()?])?;
//!     let app = Router::new().route("/", get(|| async { "hello\n" }));
//!     let report = Server::new(listeners).serve(app).await?;
//!     eprintln!("drained: {report}");
//!     Ok(())
//! }
//! ```
//!
//! Handlers see [`shutdown::Draining`] in their request's extensions (a
//! WebSocket says goodbye with close code 1001, a stream ends), and
//! [`serve::ConnectionInfo`] with the client's address; axum's
//! `ConnectInfo<SocketAddr>` works when [`serve::Server::serve`] is given
//! `router.into_make_service_with_connect_info::<SocketAddr>()`.
//! `examples/axum.rs` has state, a WebSocket echo, Server-Sent Events and
//! `ConnectInfo`; `examples/hello.rs` is a worker with no framework.
//!
//! # Example: no framework
//!
//! ```no_run
//! use std::convert::Infallible;
//! use gracedown::listener::Listeners;
//! use gracedown::serve::{RequestBody, Server, service_fn};
//! use http_body_util::Full;
//! use hyper::body::Bytes;
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let listeners = Listeners::from_env()?.take_all_or_bind(&["127.0.0.1:8080".parse()?])?;
//!     let service = service_fn(|_req: http::Request<RequestBody>| async {
//!         Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from("hello\n"))))
//!     });
//!     let report = Server::new(listeners).serve(service).await?;
//!     eprintln!("drained: {report}");
//!     Ok(())
//! }
//! ```
//!
//! # Features
//!
//! - `tls` (default): TLS through rustls with the `ring` provider, from PEM
//!   files or your own `rustls::ServerConfig`.
//! - `self-signed`: `tls::TlsConfig::self_signed`, a certificate made at
//!   start (rcgen), for demos and tests.
//!
//! # Stability
//!
//! Pre-1.0: the API may change between minor versions.
#![warn(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

mod drain;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod http2;
pub mod serve;
pub mod shutdown;
#[cfg(feature = "tls")]
pub mod tls;

pub use error::Error;
/// Listening sockets: inherited (Server::Starter, systemd) or bound
/// (re-exported from `gracedown-sockets`).
pub use gracedown_sockets::listener;
/// Readiness and watchdog notification (re-exported from `gracedown-sockets`).
pub use gracedown_sockets::notify;
/// The socket-passing environment (re-exported from `gracedown-sockets`).
pub use gracedown_sockets::protocol;
