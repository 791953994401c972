//! The registry of a server's open connections (read when the drain starts
//! or its deadline passes, and when descriptors run out; never per request),
//! over the [`Core`] every connection reads.

use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use slab::Slab;

use super::bounds::Bounds;
use super::phase::Core;
use super::state::{ConnState, StateCounts};
use super::tracker::{ConnCtl, Snapshot};

/// The drain engine of one server: its [`Core`] (which it derefs to) and
/// the registry of its connections.
#[derive(Debug)]
pub(crate) struct Engine {
    core: Arc<Core>,
    conns: Mutex<Slab<Arc<ConnCtl>>>,
}

impl Deref for Engine {
    type Target = Core;

    fn deref(&self) -> &Core {
        &self.core
    }
}

impl Engine {
    pub(crate) fn new(timeouts: Bounds) -> Arc<Self> {
        Arc::new(Self {
            core: Arc::new(Core::new(timeouts)),
            conns: Mutex::new(Slab::new()),
        })
    }

    /// A drain that started without a generation to move to (a lame duck)
    /// found one: connections that can move do from now on.
    pub(crate) fn hand_off_from_now(&self) {
        self.core.begin_hand_off();
        self.poke_all();
    }

    /// Registers a new connection in `initial` state.
    pub(crate) fn register(self: &Arc<Self>, initial: ConnState) -> Registration {
        let mut conns = self.lock();
        let entry = conns.vacant_entry();
        let ctl = Arc::new(ConnCtl::new(Arc::clone(&self.core), entry.key(), initial));
        entry.insert(Arc::clone(&ctl));
        Registration {
            ctl,
            engine: Arc::clone(self),
        }
    }

    /// Open connections.
    pub(crate) fn open(&self) -> usize {
        self.lock().len()
    }

    /// Starts the drain; returns the connections per state at this moment.
    /// `hand_off`: a newer generation takes the connections that can move
    /// (they keep alive and move at their next message boundary, a request in
    /// flight answered first, a half-read head with them).
    pub(crate) fn start_drain(&self, deadline: Instant, hand_off: bool) -> StateCounts {
        self.core.begin_drain(deadline, hand_off);
        // Counted and woken in one pass under the registry's lock: a
        // connection woken first cannot end (a quick move, a close) and leave
        // the registry before it is counted.
        let mut counts = StateCounts::default();
        for (_, ctl) in self.lock().iter() {
            counts.add(ctl.state(), 1);
            ctl.poke();
        }
        counts
    }

    /// The deadline passed: every connection left closes now.
    pub(crate) fn force(&self) {
        self.core.begin_force();
        self.poke_all();
    }

    /// Wakes every connection's task to read the new phase. Connections
    /// do not watch the phase themselves: a watch would cost a shared lock
    /// on every poll of every connection. One registered after this read
    /// the phase after registering, so it sees the new one.
    fn poke_all(&self) {
        for (_, ctl) in self.lock().iter() {
            ctl.poke();
        }
    }

    #[cfg(test)]
    fn counts(&self) -> StateCounts {
        let mut counts = StateCounts::default();
        for (_, ctl) in self.lock().iter() {
            counts.add(ctl.state(), 1);
        }
        counts
    }

    /// Asks connections to close to make room: every HTTP/1 request head
    /// that has been arriving for longer than [`SLOW_HEAD`] (oldest first,
    /// at most [`SLOW_HEADS_AT_ONCE`]: no legitimate client trickles a head
    /// that long, and such heads hold places without being served; taken
    /// one at a time, a queue of them ahead of a waiting client would let
    /// it in only after each had had its second), or, when there is none,
    /// up to `max` of the longest-quiet ones (HTTP/1 between requests or
    /// before the first one, HTTP/2 with no stream open). Returns how many
    /// were asked.
    pub(crate) fn reclaim(&self, max: usize) -> usize {
        self.reclaim_at(max, self.now())
    }

    /// [`Engine::reclaim`] at engine time `now`.
    fn reclaim_at(&self, max: usize, now: u64) -> usize {
        let conns = self.lock();
        let mut candidates: Vec<(Reclaim, u64, &Arc<ConnCtl>)> = conns
            .iter()
            .filter_map(|(_, ctl)| {
                let s = ctl.snapshot();
                let (class, since) = reclaimable(&s, now)?;
                Some((class, since, ctl))
            })
            .collect();
        candidates.sort_unstable_by_key(|&(class, since, _)| (class, since));
        let slow = candidates
            .iter()
            .take_while(|(class, _, _)| *class == Reclaim::SlowHead)
            .count();
        candidates.truncate(match slow {
            0 => max,
            slow => slow.min(SLOW_HEADS_AT_ONCE),
        });
        for (_, _, ctl) in &candidates {
            ctl.mark_reclaim();
        }
        candidates.len()
    }

    fn lock(&self) -> MutexGuard<'_, Slab<Arc<ConnCtl>>> {
        // A panic while holding the lock leaves the slab consistent (every
        // operation on it is a single call), so a poisoned lock is still usable.
        self.conns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A request head that has been arriving this long (from its first byte,
/// complete or not), or a TLS handshake that has taken this long (from the
/// accept), is slow: a legitimate client sends a head in one write, or in
/// one flight of segments that a lost one delays by a retransmission
/// (Linux: 200 ms at least, plus the round trip), and a TLS 1.3 handshake
/// takes a round trip and a half. Slow heads are reclaimed first when room
/// is needed.
pub(crate) const SLOW_HEAD: Duration = Duration::from_secs(1);

/// The most slow heads [`Engine::reclaim`] takes at once.
pub(crate) const SLOW_HEADS_AT_ONCE: usize = 64;

/// Which connections [`Engine::reclaim`] takes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Reclaim {
    /// A request head arriving for longer than [`SLOW_HEAD`].
    SlowHead,
    /// Quiet between requests, before the first one, or with no stream open.
    Quiet,
}

/// Whether a connection may be reclaimed, in which class, and since when
/// (the older, the sooner).
fn reclaimable(s: &Snapshot, now: u64) -> Option<(Reclaim, u64)> {
    // A response still waiting for the socket is not quiet: closing it
    // would not free the descriptor sooner than the send bound.
    let untouchable = s.in_flight != 0 || s.write_blocked_since != 0 || s.upgrading || s.reclaim;
    if untouchable {
        return None;
    }
    let slow_after = u64::try_from(SLOW_HEAD.as_nanos()).unwrap_or(u64::MAX);
    match s.state {
        ConnState::Idle | ConnState::NoRequest if s.head_since != 0 => {
            (now.saturating_sub(s.head_since) >= slow_after)
                .then_some((Reclaim::SlowHead, s.head_since))
        }
        // A TLS handshake is a head too: one that drags on is as slow.
        ConnState::Handshake => (now.saturating_sub(s.idle_since) >= slow_after)
            .then_some((Reclaim::SlowHead, s.idle_since)),
        ConnState::Idle | ConnState::NoRequest | ConnState::Http2 => {
            Some((Reclaim::Quiet, s.idle_since))
        }
        _ => None,
    }
}

/// A connection's place in the registry; removes it when dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    pub(crate) ctl: Arc<ConnCtl>,
    engine: Arc<Engine>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.engine.lock().try_remove(self.ctl.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drain::phase::Phase;
    use crate::drain::tracker::Proto;

    #[test]
    fn a_stamp_is_never_ahead_of_now_and_lags_it_by_less_than_a_tick() {
        let engine = Engine::new(Bounds::DEFAULT);
        let mut last = 0;
        for _ in 0..1_000 {
            let stamp = engine.stamp();
            let now = engine.now();
            assert!(stamp <= now, "stamp {stamp} ahead of now {now}");
            // A tick is 1 to 10 ms; 50 ms leaves room for a descheduled thread.
            assert!(now - stamp < 50_000_000, "stamp {stamp} lags now {now}");
            assert!(stamp >= last, "stamps go forward: {last} then {stamp}");
            last = stamp;
        }
    }

    #[test]
    fn registry_counts_states_and_forgets_closed_connections() {
        let engine = Engine::new(Bounds::DEFAULT);
        let a = engine.register(ConnState::NoRequest);
        let b = engine.register(ConnState::Handshake);
        let guard = a.ctl.begin(Proto::Http1);
        assert_eq!(engine.open(), 2);
        let counts = engine.counts();
        assert_eq!(counts.get(ConnState::InFlight), 1);
        assert_eq!(counts.get(ConnState::Handshake), 1);
        drop(guard);
        assert_eq!(a.ctl.state(), ConnState::Idle);
        drop(b);
        assert_eq!(engine.open(), 1);
    }

    #[test]
    fn times_travel_between_engines_on_the_monotonic_clock_even_from_before_their_start() {
        let old = Engine::new(Bounds::DEFAULT);
        let quiet = old.now();
        let head = old.now();
        std::thread::sleep(Duration::from_millis(20));
        // A generation started after the connection went quiet.
        let new = Engine::new(Bounds::DEFAULT);
        let moved_quiet = new.monotonic_to_engine(old.engine_to_monotonic(quiet));
        let moved_head = new.monotonic_to_engine(old.engine_to_monotonic(head));
        let now = new.now();
        let age = |t: u64| Duration::from_nanos(now - t);
        assert!(
            age(moved_quiet) >= Duration::from_millis(20),
            "{:?}",
            age(moved_quiet)
        );
        assert!(age(moved_quiet) < Duration::from_secs(5));
        assert!(moved_head >= moved_quiet);
        // A time in the future (another clock's glitch) is now at the latest.
        assert!(new.monotonic_to_engine(u64::MAX) <= new.now());
    }

    #[test]
    fn reclaim_takes_slow_heads_first_oldest_first_then_the_longest_quiet() {
        const S: u64 = 1_000_000_000;
        let engine = Engine::new(Bounds::DEFAULT);
        let idle = engine.register(ConnState::Idle);
        idle.ctl.set_idle_since(S);
        let young_head = engine.register(ConnState::NoRequest);
        young_head.ctl.set_head_since(20 * S - S / 2);
        let slow = engine.register(ConnState::NoRequest);
        slow.ctl.set_head_since(19 * S);
        let slower = engine.register(ConnState::Idle);
        slower.ctl.set_head_since(17 * S);
        let now = 20 * S;
        assert_eq!(engine.reclaim_at(1, now), 2, "every slow head at once");
        assert!(slower.ctl.snapshot().reclaim && slow.ctl.snapshot().reclaim);
        assert!(
            !idle.ctl.snapshot().reclaim,
            "no quiet one while heads are slow"
        );
        assert_eq!(engine.reclaim_at(1, now), 1);
        assert!(idle.ctl.snapshot().reclaim, "then the quiet one");
        assert_eq!(
            engine.reclaim_at(8, now),
            0,
            "a head not slow yet is left alone"
        );
        assert!(!young_head.ctl.snapshot().reclaim);
        assert_eq!(engine.reclaim_at(8, now + S), 1, "until it is");
        assert!(young_head.ctl.snapshot().reclaim);
        // A TLS handshake that drags on is a slow head too.
        let handshake = engine.register(ConnState::Handshake);
        handshake.ctl.set_idle_since(now);
        assert_eq!(engine.reclaim_at(8, now + S / 2), 0);
        assert_eq!(engine.reclaim_at(8, now + S), 1);
        assert!(handshake.ctl.snapshot().reclaim);
    }

    #[test]
    fn reclaim_takes_at_most_a_batch_of_slow_heads_oldest_first() {
        const S: u64 = 1_000_000_000;
        let engine = Engine::new(Bounds::DEFAULT);
        let heads: Vec<_> = (0..SLOW_HEADS_AT_ONCE + 2)
            .map(|i| {
                let r = engine.register(ConnState::NoRequest);
                r.ctl.set_head_since(S + i as u64);
                r
            })
            .collect();
        assert_eq!(engine.reclaim_at(1, 10 * S), SLOW_HEADS_AT_ONCE);
        let taken: Vec<bool> = heads.iter().map(|r| r.ctl.snapshot().reclaim).collect();
        assert!(taken[..SLOW_HEADS_AT_ONCE].iter().all(|t| *t));
        assert!(
            !taken[SLOW_HEADS_AT_ONCE..].iter().any(|t| *t),
            "the youngest wait"
        );
    }

    #[test]
    fn reclaim_takes_the_longest_quiet_first_and_never_a_busy_one() {
        let engine = Engine::new(Bounds::DEFAULT);
        let old = engine.register(ConnState::Idle);
        let busy = engine.register(ConnState::NoRequest);
        let _guard = busy.ctl.begin(Proto::Http1);
        let young = engine.register(ConnState::Idle);
        old.ctl.set_idle_since(1);
        young.ctl.set_idle_since(2);
        assert_eq!(engine.reclaim(1), 1);
        assert!(old.ctl.snapshot().reclaim);
        assert!(!young.ctl.snapshot().reclaim);
        assert_eq!(engine.reclaim(8), 1, "only the young idle one is left");
        assert!(!busy.ctl.snapshot().reclaim);
    }

    #[test]
    fn reconnect_moments_spread_evenly_over_the_window_for_any_count() {
        let window = Duration::from_secs(1);
        let engine = Engine::new(Bounds {
            reconnect_window: window,
            ..Bounds::DEFAULT
        });
        for n in [3usize, 10, 100, 1000] {
            let mut paces: Vec<u64> = (0..n).map(|_| engine.next_pace()).collect();
            assert!(paces.iter().all(|p| *p >= 1 && *p < 1_000_000_000));
            paces.sort_unstable();
            // No gap is much wider than an even spread's (golden-ratio
            // sequences leave gaps of at most about 2.6 / n), nor at the ends.
            let widest = paces
                .windows(2)
                .map(|w| w[1] - w[0])
                .chain([paces[0], 1_000_000_000 - paces[n - 1]])
                .max()
                .unwrap_or(0);
            assert!(
                widest <= 3_000_000_000 / n as u64,
                "n={n}: widest gap {widest} ns"
            );
        }
        let unpaced = Engine::new(Bounds {
            reconnect_window: Duration::ZERO,
            ..Bounds::DEFAULT
        });
        assert_eq!(unpaced.next_pace(), 0);
    }

    #[test]
    fn drain_then_force_keeps_the_start_and_deadline() {
        let engine = Engine::new(Bounds::DEFAULT);
        let deadline = Instant::now() + Duration::from_secs(1);
        engine.start_drain(deadline, false);
        assert!(engine.is_draining());
        let since = engine.phase().drain_since();
        engine.force();
        assert!(matches!(engine.phase(), Phase::Forced { .. }));
        assert_eq!(engine.phase().drain_since(), since);
        assert_eq!(engine.phase().deadline(), Some(deadline));
    }
}
