//! The server-wide half of the drain that every connection reads: where
//! the server is ([`Phase`]), engine time, the bounds, and the counters of
//! the report. It knows no connection, so a connection's tracker can hold it
//! without a cycle; the registry of connections is `engine`'s.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gracedown_sockets::clock::{Clock, now_ns};
use tokio::sync::watch;

use super::bounds::Bounds;
use super::report::DrainReport;
use super::state::{ConnState, StateCounts};

/// Where the server is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Serving,
    /// Draining since `since` (engine time), force at `deadline`.
    Draining {
        since: u64,
        deadline: Instant,
    },
    /// The deadline passed: close everything left.
    Forced {
        since: u64,
        deadline: Instant,
    },
}

impl Phase {
    pub(crate) fn drain_since(self) -> Option<u64> {
        match self {
            Self::Serving => None,
            Self::Draining { since, .. } | Self::Forced { since, .. } => Some(since),
        }
    }

    pub(crate) fn deadline(self) -> Option<Instant> {
        match self {
            Self::Serving => None,
            Self::Draining { deadline, .. } | Self::Forced { deadline, .. } => Some(deadline),
        }
    }
}

/// How far before its own start engine time reaches: a connection handed
/// over by an older generation keeps the times its bounds run from (it went
/// quiet, its head started), however long before this generation started.
/// A day: longer than any bound a server sets.
const BEFORE_EPOCH: u64 = 86_400 * 1_000_000_000;

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The server-wide state every connection reads: the clock, the phase, the
/// bounds and the report's counters. It knows no connection: the registry
/// is the engine's.
#[derive(Debug)]
pub(crate) struct Core {
    timeouts: Bounds,
    epoch: Instant,
    /// `epoch` on the system's monotonic clock, in nanoseconds (for [`Core::stamp`]).
    epoch_ns: u64,
    phase: watch::Sender<Phase>,
    /// The accept loops run while this is `true`: past the drain's start
    /// when a lame-duck delay keeps them going.
    accepting: watch::Sender<bool>,
    draining: AtomicBool,
    /// Draining, a newer generation takes this one's plain HTTP/1.1
    /// connections (through `serve::link`).
    handing_off: AtomicBool,
    drained: AtomicU64,
    handed_off: AtomicU64,
    requests_after_signal: AtomicU64,
    /// Connections given a reconnect moment so far.
    paced: AtomicU64,
    forced: [AtomicU64; ConnState::ALL.len()],
}

impl Core {
    pub(crate) fn new(timeouts: Bounds) -> Self {
        Self {
            timeouts,
            epoch: Instant::now(),
            // `Instant::now` above has read this clock (it panics when it cannot).
            epoch_ns: now_ns(Clock::Monotonic).unwrap_or(0),
            phase: watch::Sender::new(Phase::Serving),
            accepting: watch::Sender::new(true),
            draining: AtomicBool::new(false),
            handing_off: AtomicBool::new(false),
            drained: AtomicU64::new(0),
            handed_off: AtomicU64::new(0),
            requests_after_signal: AtomicU64::new(0),
            paced: AtomicU64::new(0),
            forced: Default::default(),
        }
    }

    /// The bounds every connection of this server meets.
    pub(crate) fn timeouts(&self) -> &Bounds {
        &self.timeouts
    }

    /// Engine time: nanoseconds since [`BEFORE_EPOCH`] before the engine was
    /// made, never 0 (a time before the engine, such as when a connection
    /// handed over by an older generation went quiet, is one too).
    pub(crate) fn now(&self) -> u64 {
        self.at(Instant::now())
    }

    /// Engine time for the stamps a request leaves (its end, the next
    /// head's first bytes): the system's coarse clock, which costs a read of
    /// memory where [`Core::now`] reads the time stamp counter. It lags
    /// `now` by less than a clock tick (1 to 10 ms), so a bound measured from
    /// a stamp ends up to a tick early and never late; the rules read `now`.
    /// Where the kernel has no coarse clock, it is `now`.
    pub(crate) fn stamp(&self) -> u64 {
        match now_ns(Clock::MonotonicCoarse) {
            Some(ns) => self.monotonic_to_unclamped(ns),
            None => self.now(),
        }
    }

    pub(crate) fn at(&self, instant: Instant) -> u64 {
        let time = match instant.checked_duration_since(self.epoch) {
            Some(after) => BEFORE_EPOCH.saturating_add(nanos(after)),
            None => BEFORE_EPOCH.saturating_sub(nanos(self.epoch.duration_since(instant))),
        };
        time.max(1)
    }

    pub(crate) fn instant(&self, time: u64) -> Instant {
        match time.checked_sub(BEFORE_EPOCH) {
            Some(after) => self.epoch + Duration::from_nanos(after),
            None => self
                .epoch
                .checked_sub(Duration::from_nanos(BEFORE_EPOCH - time))
                .unwrap_or(self.epoch),
        }
    }

    /// Engine time `time` on the system's monotonic clock (`CLOCK_MONOTONIC`
    /// nanoseconds, the same in every process of the machine): how a time
    /// travels to another generation.
    pub(crate) fn engine_to_monotonic(&self, time: u64) -> u64 {
        match time.checked_sub(BEFORE_EPOCH) {
            Some(after) => self.epoch_ns.saturating_add(after),
            None => self.epoch_ns.saturating_sub(BEFORE_EPOCH - time),
        }
    }

    /// A time on the system's monotonic clock (see [`Core::engine_to_monotonic`])
    /// as engine time, never later than now.
    pub(crate) fn monotonic_to_engine(&self, ns: u64) -> u64 {
        self.monotonic_to_unclamped(ns).min(self.now())
    }

    fn monotonic_to_unclamped(&self, ns: u64) -> u64 {
        let time = match ns.checked_sub(self.epoch_ns) {
            Some(after) => BEFORE_EPOCH.saturating_add(after),
            None => BEFORE_EPOCH.saturating_sub(self.epoch_ns - ns),
        };
        time.max(1)
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub(crate) fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }

    /// Whether the accept loops run (see [`Core::stop_accepting`]).
    pub(crate) fn subscribe_accepting(&self) -> watch::Receiver<bool> {
        self.accepting.subscribe()
    }

    /// The accept loops end: the kernel's queue belongs to the next
    /// generation (or to the balancer's other instances) from now on.
    pub(crate) fn stop_accepting(&self) {
        self.accepting.send_replace(false);
    }

    /// The next connection's reconnect moment, as an offset from the drain's
    /// start within the reconnect window: a golden-ratio sequence, so that any
    /// number of connections, and any subset of them, spreads evenly.
    pub(crate) fn next_pace(&self) -> u64 {
        let window = self.timeouts.reconnect_window.as_nanos() as f64;
        if window == 0.0 {
            return 0;
        }
        let k = self.paced.fetch_add(1, Ordering::Relaxed);
        let fraction = (k as f64 * 0.618_033_988_749_894_9).fract();
        // At least 1 ns: 0 means "not paced".
        ((fraction * window) as u64).max(1)
    }

    /// Whether plain HTTP/1.1 connections are handed on rather than closed.
    pub(crate) fn handing_off(&self) -> bool {
        self.handing_off.load(Ordering::Acquire)
    }

    pub(crate) fn count_forced(&self, state: ConnState) {
        self.forced[state.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_handed_off(&self) {
        self.handed_off.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_drained(&self) {
        self.drained.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_request_after_signal(&self) {
        self.requests_after_signal.fetch_add(1, Ordering::Relaxed);
    }

    /// The report of a drain that started at `signal` with `at_signal` open connections.
    pub(crate) fn report(
        &self,
        at_signal: StateCounts,
        signal: Instant,
        stop_accepting: Duration,
        drain: Duration,
    ) -> DrainReport {
        let mut forced = StateCounts::default();
        for state in ConnState::ALL {
            forced.add(state, self.forced[state.index()].load(Ordering::Acquire));
        }
        DrainReport {
            at_signal,
            drained: self.drained.load(Ordering::Acquire),
            handed_off: self.handed_off.load(Ordering::Acquire),
            forced,
            requests_after_signal: self.requests_after_signal.load(Ordering::Acquire),
            stop_accepting,
            drain,
            elapsed: signal.elapsed(),
        }
    }

    /// The drain starts (the engine then wakes every connection).
    pub(super) fn begin_drain(&self, deadline: Instant, hand_off: bool) {
        let since = self.now();
        self.handing_off.store(hand_off, Ordering::Release);
        // Set before the phase, so that a request ending from now on wakes its task.
        self.draining.store(true, Ordering::Release);
        self.phase.send_replace(Phase::Draining { since, deadline });
    }

    /// The deadline passed.
    pub(super) fn begin_force(&self) {
        self.phase.send_modify(|phase| {
            if let Phase::Draining { since, deadline } = *phase {
                *phase = Phase::Forced { since, deadline };
            }
        });
    }

    /// Plain HTTP/1.1 connections move from now on.
    pub(super) fn begin_hand_off(&self) {
        self.handing_off.store(true, Ordering::Release);
    }
}
