//! What a drain did, for the caller of `Server::serve` and the log.

use std::fmt;
use std::time::Duration;

use super::state::{ConnState, StateCounts};

/// What a graceful shutdown did.
///
/// # Examples
///
/// ```
/// use gracedown::shutdown::{ConnState, DrainReport};
///
/// fn summary(report: &DrainReport) -> String {
///     format!(
///         "{} connections at the signal, {} forced ({} idle)",
///         report.connections_at_signal(),
///         report.forced_total(),
///         report.forced(ConnState::Idle),
///     )
/// }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainReport {
    pub(crate) at_signal: StateCounts,
    pub(crate) drained: u64,
    pub(crate) handed_off: u64,
    pub(crate) forced: StateCounts,
    pub(crate) requests_after_signal: u64,
    pub(crate) stop_accepting: Duration,
    pub(crate) drain: Duration,
    pub(crate) elapsed: Duration,
}

impl DrainReport {
    /// Connections open when the drain started.
    pub fn connections_at_signal(&self) -> u64 {
        self.at_signal.total()
    }

    /// Connections that were in `state` when the drain started.
    pub fn at_signal(&self, state: ConnState) -> u64 {
        self.at_signal.get(state)
    }

    /// Connections that closed cleanly during the drain.
    pub fn drained(&self) -> u64 {
        self.drained
    }

    /// Connections passed to the next generation instead of being closed.
    pub fn handed_off(&self) -> u64 {
        self.handed_off
    }

    /// Connections force-closed at the deadline in `state`.
    pub fn forced(&self, state: ConnState) -> u64 {
        self.forced.get(state)
    }

    /// Every connection force-closed at the deadline.
    pub fn forced_total(&self) -> u64 {
        self.forced.total()
    }

    /// Requests answered after the drain started.
    pub fn requests_after_signal(&self) -> u64 {
        self.requests_after_signal
    }

    /// From the signal until every listener was closed.
    pub fn stop_accepting(&self) -> Duration {
        self.stop_accepting
    }

    /// From the signal until every connection closed by itself, or until the deadline.
    pub fn drain(&self) -> Duration {
        self.drain
    }

    /// From the signal until the last connection closed, forced ones included.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }
}

impl fmt::Display for DrainReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connections_at_signal={} drained={} handed_off={} forced={} requests_after_signal={} stop_accepting_ms={} drain_ms={} elapsed_ms={}",
            self.connections_at_signal(),
            self.drained,
            self.handed_off,
            self.forced_total(),
            self.requests_after_signal,
            self.stop_accepting.as_millis(),
            self.drain.as_millis(),
            self.elapsed.as_millis(),
        )?;
        for state in ConnState::ALL {
            let n = self.forced(state);
            if n > 0 {
                write!(f, " forced_{}={n}", state.name())?;
            }
        }
        Ok(())
    }
}
