//! Zero-downtime restarts for HTTP servers.
//!
//! `gracedown` is what a worker process links to be restarted without a client
//! ever seeing an error:
//!
//! - [`listener`] picks up the listening sockets a superdaemon passed
//!   (Server::Starter's `SERVER_STARTER_PORT`, systemd's `LISTEN_FDS`), or
//!   binds a fallback address when started by hand;
//! - [`serve`] serves any hyper service on them over HTTP/1.1, h2c and TLS
//!   (ALPN `h2` / `http/1.1`);
//! - [`shutdown`] drains on `SIGTERM` within a deadline: stop accepting,
//!   finish every request, close keep-alive connections without racing the
//!   client, two-phase GOAWAY for HTTP/2, lingering close.
//!
//! It does not supervise processes: that is `start_server`'s job (or Perl's
//! Server::Starter, or systemd).
//!
//! ```text
//!   start_server ── owns the sockets, SIGHUP → new generation, SIGTERM → old
//!        │  fds 3.. + SERVER_STARTER_PORT=127.0.0.1:8080=3
//!        ▼
//!   worker: Listeners::from_env() → Server::serve_until_signal(service) → DrainReport
//! ```
//!
//! # Example
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
//!     // Take the inherited sockets first, before opening anything else.
//!     let listeners = Listeners::from_env()?.take_all_or_bind(&["127.0.0.1:8080".parse()?])?;
//!     let service = service_fn(|_req: http::Request<RequestBody>| async {
//!         Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from("hello\n"))))
//!     });
//!     let report = Server::new(listeners).serve_until_signal(service).await?;
//!     eprintln!("drained: {report}");
//!     Ok(())
//! }
//! ```
//!
//! # Features
//!
//! - `tls` (default): TLS through rustls with the `ring` provider.
//!
//! # Stability
//!
//! Pre-1.0: the API may change between minor versions.
#![warn(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

mod drain;
mod error;
pub mod listener;
pub mod notify;
pub mod protocol;
pub mod serve;
pub mod shutdown;
#[cfg(feature = "tls")]
pub mod tls;

pub use error::Error;
