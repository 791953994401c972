//! The states a connection moves through, and counts per state.

use std::fmt;

/// Where a connection is in its life, as the drain sees it: each state has its
/// own drain rule (see [`crate::serve::Server`]) and its own counters in the
/// [`crate::shutdown::DrainReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnState {
    /// In the TLS handshake.
    Handshake,
    /// Accepted, but no request has arrived yet.
    NoRequest,
    /// HTTP/1, between requests.
    Idle,
    /// HTTP/1, a request in flight.
    InFlight,
    /// HTTP/2.
    Http2,
    /// HTTP/1 upgraded (WebSocket, `CONNECT`): the bytes belong to the application.
    Upgraded,
}

impl ConnState {
    /// Every state, in the order reports list them.
    pub const ALL: [Self; 6] = [
        Self::Handshake,
        Self::NoRequest,
        Self::Idle,
        Self::InFlight,
        Self::Http2,
        Self::Upgraded,
    ];

    /// The state's name in logs and reports (`in_flight`, `http2`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Handshake => "handshake",
            Self::NoRequest => "no_request",
            Self::Idle => "idle",
            Self::InFlight => "in_flight",
            Self::Http2 => "http2",
            Self::Upgraded => "upgraded",
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn from_index(index: u8) -> Self {
        Self::ALL
            .get(usize::from(index))
            .copied()
            .unwrap_or(Self::NoRequest)
    }
}

impl fmt::Display for ConnState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A count per [`ConnState`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StateCounts([u64; ConnState::ALL.len()]);

impl StateCounts {
    pub(crate) fn add(&mut self, state: ConnState, n: u64) {
        self.0[state.index()] += n;
    }

    pub(crate) fn get(&self, state: ConnState) -> u64 {
        self.0[state.index()]
    }

    pub(crate) fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

/// `idle=3 in_flight=1`: the non-zero counts, for a log field.
impl fmt::Display for StateCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for state in ConnState::ALL {
            let n = self.get(state);
            if n > 0 {
                if !first {
                    f.write_str(" ")?;
                }
                write!(f, "{}={n}", state.name())?;
                first = false;
            }
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_round_trips_through_its_index() {
        for state in ConnState::ALL {
            assert_eq!(ConnState::from_index(state.index() as u8), state);
        }
    }

    #[test]
    fn counts_display_only_what_is_there() {
        let mut counts = StateCounts::default();
        assert_eq!(counts.to_string(), "none");
        counts.add(ConnState::Idle, 3);
        counts.add(ConnState::Upgraded, 1);
        assert_eq!(counts.to_string(), "idle=3 upgraded=1");
        assert_eq!(counts.total(), 4);
    }
}
