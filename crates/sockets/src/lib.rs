//! The socket-passing half of gracedown, with no HTTP in it: what a
//! superdaemon (`start_server`) and its workers share.
//!
//! - [`protocol`]: Server::Starter's `SERVER_STARTER_PORT` and systemd's
//!   `LISTEN_FDS`, parsed and formatted;
//! - [`listener`]: inherited listening sockets, validated and taken once, or
//!   fallback binds;
//! - [`notify`]: `sd_notify(3)` readiness and watchdog datagrams;
//! - [`clock`]: the monotonic clocks, read so that valgrind can run the
//!   processes;
//! - [`handoff`]: passing accepted connections from a draining generation to
//!   the next through the superdaemon (`SCM_RIGHTS`).
//!
//! The `gracedown` crate re-exports these; `start_server` links only this.
#![warn(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

pub mod clock;
mod error;
pub mod handoff;
pub mod listener;
pub mod notify;
pub mod protocol;

pub use error::Error;
