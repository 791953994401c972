//! How a request ends, and the counts of a run.

use std::collections::BTreeMap;
use std::fmt;

/// The one final outcome of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// A complete response with this status.
    Ok(u16),
    /// Proven unprocessed by the server (HTTP/2 stream above GOAWAY's last
    /// stream id, or `REFUSED_STREAM`); re-sent on a new connection.
    Unprocessed,
    /// The connection could not be made, so the request was never written.
    ConnectFailed,
    /// The request was written, and the connection or stream ended before
    /// any response byte.
    ClosedBeforeResponse,
    /// The response started, then broke.
    Truncated,
    /// No complete response within the timeout.
    Timeout,
}

/// The counts of a run, per outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Complete responses, per status.
    pub ok: BTreeMap<u16, u64>,
    /// See [`Outcome::Unprocessed`].
    pub unprocessed: u64,
    /// See [`Outcome::ConnectFailed`].
    pub connect_failed: u64,
    /// See [`Outcome::ClosedBeforeResponse`].
    pub closed_before_response: u64,
    /// See [`Outcome::Truncated`].
    pub truncated: u64,
    /// See [`Outcome::Timeout`].
    pub timeout: u64,
    /// Connections opened.
    pub connects: u64,
    /// GOAWAY frames received.
    pub goaways: u64,
    /// Distinct values of the `x-gracedown-pid` response header.
    pub pids: std::collections::BTreeSet<String>,
}

impl Tally {
    /// Counts one outcome.
    pub fn record(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Ok(status) => *self.ok.entry(status).or_default() += 1,
            Outcome::Unprocessed => self.unprocessed += 1,
            Outcome::ConnectFailed => self.connect_failed += 1,
            Outcome::ClosedBeforeResponse => self.closed_before_response += 1,
            Outcome::Truncated => self.truncated += 1,
            Outcome::Timeout => self.timeout += 1,
        }
    }

    /// Complete responses of any status.
    pub fn responses(&self) -> u64 {
        self.ok.values().sum()
    }

    /// Complete responses whose status is not 2xx.
    pub fn non_2xx(&self) -> u64 {
        self.ok
            .iter()
            .filter(|(s, _)| !(200..300).contains(*s))
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests that failed in a way the client saw.
    pub fn errors(&self) -> u64 {
        self.connect_failed + self.closed_before_response + self.truncated + self.timeout
    }

    /// Adds another tally into this one.
    pub fn merge(&mut self, other: &Self) {
        for (status, n) in &other.ok {
            *self.ok.entry(*status).or_default() += n;
        }
        self.unprocessed += other.unprocessed;
        self.connect_failed += other.connect_failed;
        self.closed_before_response += other.closed_before_response;
        self.truncated += other.truncated;
        self.timeout += other.timeout;
        self.connects += other.connects;
        self.goaways += other.goaways;
        self.pids.extend(other.pids.iter().cloned());
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ok={} non_2xx={} unprocessed={} connect_failed={} closed_before_response={} truncated={} timeout={} connects={} goaways={} pids={}",
            self.responses(),
            self.non_2xx(),
            self.unprocessed,
            self.connect_failed,
            self.closed_before_response,
            self.truncated,
            self.timeout,
            self.connects,
            self.goaways,
            self.pids.len()
        )
    }
}
