//! `gracedown bench`: a closed-model load generator that
//! accounts for every request and never re-sends one behind the user's back.
//!
//! Every logical request ends in exactly one [`Outcome`]: `ok` (a complete
//! response), `unprocessed` (an HTTP/2 stream the server proved it never
//! processed, by a GOAWAY whose last stream id is below it or by
//! `REFUSED_STREAM`; only these are re-sent, on a new connection), or one of
//! the errors `connect_failed`, `closed_before_response`, `truncated`,
//! `timeout`.
//!
//! The client side ([`run`], one task per connection slot) returns
//! [`Samples`]; [`report`] renders them. This crate does not print.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use gracedown_bench::{Plan, Progress, Protocol};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let plan = Plan::new("127.0.0.1:8080".parse()?, Protocol::H2c)
//!     .connections(10)
//!     .duration(Duration::from_secs(5));
//! let samples = gracedown_bench::run(&plan, Arc::new(Progress::default())).await?;
//! assert_eq!(samples.tally.errors(), 0);
//! # Ok(()) }
//! ```
#![warn(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

mod client;
mod error;
pub mod experiment;
pub mod external;
mod outcome;
mod plan;
pub mod plot;
mod record;
pub mod relay;
pub mod report;

pub use client::{Progress, run};
pub use error::BenchError;
pub use outcome::{Class, Counts, Outcome, Tally};
pub use plan::{Load, Markers, Plan, PlanError, Protocol};
pub use record::{Bucket, Dips, Samples};
