//! How a request ends, and the counts of a run.
//!
//! [`Class`] is the one list of outcome classes: the tally, the timeline, the
//! text and JSON reports, the CSV and the experiment's table all iterate
//! [`Class::ALL`], so a new class is one change here that the compiler
//! carries everywhere.

use std::collections::{BTreeMap, BTreeSet};
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

impl Outcome {
    /// The outcome's class.
    pub fn class(self) -> Class {
        match self {
            Self::Ok(_) => Class::Ok,
            Self::Unprocessed => Class::Unprocessed,
            Self::ConnectFailed => Class::ConnectFailed,
            Self::ClosedBeforeResponse => Class::ClosedBeforeResponse,
            Self::Truncated => Class::Truncated,
            Self::Timeout => Class::Timeout,
        }
    }
}

/// A class of outcome: what the reports count and name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Class {
    /// A complete response (any status).
    Ok,
    /// Proven unprocessed and re-sent: not an error.
    Unprocessed,
    /// Could not connect.
    ConnectFailed,
    /// Written, then closed before any response byte.
    ClosedBeforeResponse,
    /// The response started, then broke.
    Truncated,
    /// No complete response in time.
    Timeout,
}

impl Class {
    /// Every class, in report order.
    pub const ALL: [Self; 6] = [
        Self::Ok,
        Self::Unprocessed,
        Self::ConnectFailed,
        Self::ClosedBeforeResponse,
        Self::Truncated,
        Self::Timeout,
    ];

    /// The name in reports (`closed_before_response`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Unprocessed => "unprocessed",
            Self::ConnectFailed => "connect_failed",
            Self::ClosedBeforeResponse => "closed_before_response",
            Self::Truncated => "truncated",
            Self::Timeout => "timeout",
        }
    }

    /// A short column heading (`closed`).
    pub fn short(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Unprocessed => "unproc",
            Self::ConnectFailed => "connect",
            Self::ClosedBeforeResponse => "closed",
            Self::Truncated => "trunc",
            Self::Timeout => "timeout",
        }
    }

    /// Whether a client sees it as a failed request.
    pub fn is_error(self) -> bool {
        !matches!(self, Self::Ok | Self::Unprocessed)
    }

    const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A count per [`Class`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts([u64; Class::ALL.len()]);

impl Counts {
    /// The count of `class`.
    pub fn get(&self, class: Class) -> u64 {
        self.0[class.index()]
    }

    /// Adds `n` to `class`.
    pub fn add(&mut self, class: Class, n: u64) {
        self.0[class.index()] += n;
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Self) {
        for class in Class::ALL {
            self.add(class, other.get(class));
        }
    }

    /// The classes and their counts, in report order.
    pub fn iter(&self) -> impl Iterator<Item = (Class, u64)> + '_ {
        Class::ALL.into_iter().map(|c| (c, self.get(c)))
    }

    /// Failed requests: the sum of the error classes.
    pub fn errors(&self) -> u64 {
        self.iter()
            .filter(|(c, _)| c.is_error())
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests that ended for good: complete responses and errors
    /// (re-sent ones end again later).
    pub fn requests(&self) -> u64 {
        self.get(Class::Ok) + self.errors()
    }
}

/// `{"ok": N, "unprocessed": N, ...}`, in [`Class::ALL`] order.
impl serde::Serialize for Counts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(Class::ALL.len()))?;
        for (class, n) in self.iter() {
            map.serialize_entry(class.name(), &n)?;
        }
        map.end()
    }
}

/// The counts of a run, per outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Counts per class.
    pub counts: Counts,
    /// Complete responses, per status.
    pub ok: BTreeMap<u16, u64>,
    /// Connections opened.
    pub connects: u64,
    /// GOAWAY frames received.
    pub goaways: u64,
    /// TLS handshakes that were full ones.
    pub tls_full: u64,
    /// TLS handshakes that resumed a session (a ticket).
    pub tls_resumed: u64,
    /// Distinct values of the `x-gracedown-pid` response header.
    pub pids: BTreeSet<String>,
}

impl Tally {
    /// Counts one outcome.
    pub fn record(&mut self, outcome: Outcome) {
        self.counts.add(outcome.class(), 1);
        if let Outcome::Ok(status) = outcome {
            *self.ok.entry(status).or_default() += 1;
        }
    }

    /// Complete responses of any status.
    pub fn responses(&self) -> u64 {
        self.counts.get(Class::Ok)
    }

    /// Complete responses whose status is not 2xx.
    pub fn non_2xx(&self) -> u64 {
        self.ok
            .iter()
            .filter(|(s, _)| !(200..300).contains(*s))
            .map(|(_, n)| n)
            .sum()
    }

    /// Complete responses with one of `statuses` (e.g. a proxy's 502 and 504).
    pub fn with_status(&self, statuses: &[u16]) -> u64 {
        statuses.iter().filter_map(|s| self.ok.get(s)).sum()
    }

    /// Requests that failed in a way the client saw.
    pub fn errors(&self) -> u64 {
        self.counts.errors()
    }

    /// Adds another tally into this one.
    pub fn merge(&mut self, other: &Self) {
        self.counts.merge(&other.counts);
        for (status, n) in &other.ok {
            *self.ok.entry(*status).or_default() += n;
        }
        self.connects += other.connects;
        self.goaways += other.goaways;
        self.tls_full += other.tls_full;
        self.tls_resumed += other.tls_resumed;
        self.pids.extend(other.pids.iter().cloned());
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (class, n) in self.counts.iter() {
            write!(f, "{class}={n} ")?;
        }
        write!(
            f,
            "non_2xx={} connects={} goaways={} pids={}",
            self.non_2xx(),
            self.connects,
            self.goaways,
            self.pids.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_lands_in_its_class_and_only_errors_count_as_errors() {
        let mut tally = Tally::default();
        for outcome in [
            Outcome::Ok(200),
            Outcome::Ok(502),
            Outcome::Unprocessed,
            Outcome::ConnectFailed,
            Outcome::ClosedBeforeResponse,
            Outcome::Truncated,
            Outcome::Timeout,
        ] {
            tally.record(outcome);
        }
        assert_eq!(tally.responses(), 2);
        assert_eq!(tally.errors(), 4);
        assert_eq!(tally.counts.requests(), 6);
        assert_eq!(tally.with_status(&[502, 504]), 1);
        let json = serde_json::to_string(&tally.counts).expect("json");
        assert_eq!(
            json,
            r#"{"ok":2,"unprocessed":1,"connect_failed":1,"closed_before_response":1,"truncated":1,"timeout":1}"#
        );
    }
}
