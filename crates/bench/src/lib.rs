//! The engine of `gracedown bench`: a closed-model load generator that
//! accounts for every request and never re-sends one behind the user's back.
//!
//! Every logical request ends in exactly one [`Outcome`]: `ok` (a complete
//! response), `unprocessed` (an HTTP/2 stream the server proved it never
//! processed, by a GOAWAY whose last stream id is below it or by
//! `REFUSED_STREAM`; only these are re-sent, on a new connection), or one of
//! the errors `connect_failed`, `closed_before_response`, `truncated`,
//! `timeout`.
//!
//! This crate does not print: it returns a [`Tally`].
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use gracedown_bench::{Plan, Protocol};
//!
//! # async fn demo() {
//! let plan = Plan::new("127.0.0.1:8080".parse().unwrap(), Protocol::H2c)
//!     .connections(10)
//!     .duration(Duration::from_secs(5));
//! let tally = gracedown_bench::run(&plan).await;
//! assert_eq!(tally.errors(), 0);
//! # }
//! ```
#![warn(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

mod engine;
mod outcome;
mod plan;

pub use engine::run;
pub use outcome::{Outcome, Tally};
pub use plan::{Plan, Protocol};
