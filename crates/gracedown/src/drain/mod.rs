//! The drain engine: the states a connection moves through ([`ConnState`]),
//! each connection's tracker and the transitions it records, the rules that
//! decide what a connection does at each bound, the server-wide registry and
//! counters, and the [`DrainReport`] they add up to.
//!
//! `serve` drives connections; everything it knows about draining comes from
//! here. Adding a state is a change to [`ConnState`] that the compiler follows
//! into the rules, the counters and the report.

mod bounds;
mod draining;
mod engine;
mod phase;
mod report;
mod rules;
mod state;
mod tracker;

pub use draining::Draining;
pub use report::DrainReport;
pub use state::ConnState;

pub(crate) use bounds::Bounds;
pub(crate) use engine::{Engine, Registration};
pub(crate) use phase::Phase;
pub(crate) use rules::{Http2Verdict, Reason, Verdict, http1, http2};
pub(crate) use state::StateCounts;
pub(crate) use tracker::{ConnCtl, IoMode, Proto, Refusal, RequestGuard};
