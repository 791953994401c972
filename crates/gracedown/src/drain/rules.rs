//! The drain rules, as pure functions: given a connection's [`Snapshot`], the
//! server's [`Phase`] and the time, what its task should do next. Every bound
//! a connection can hit (a slow head, a quiet keep-alive connection, a client
//! that stops reading, the drain's own bounds) is decided here, so the rules
//! are tested without sockets.
//!
//! Times are engine time (nanoseconds, see `Engine::now`).

use std::time::Duration;

use super::bounds::Bounds;
use super::phase::Phase;
use super::tracker::Snapshot;

/// The shortest horizon dormancy brings (a `dormant_after` of zero would
/// otherwise wake a busy connection's task in a loop).
const DORMANT_HORIZON_MIN: Duration = Duration::from_millis(10);

/// Why a connection is being ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// Quiet between requests for the keep-alive bound.
    KeepAlive,
    /// HTTP/1, quiet between requests for the dormancy bound: hyper lets go
    /// of the connection, which waits for its next byte with no buffers.
    Dormant,
    /// A request head (or the first one) took too long.
    HeaderTimeout,
    /// The client stopped reading a response.
    SendTimeout,
    /// Draining: quiet between requests for the drain's idle bound.
    DrainIdle,
    /// Draining: no request within the drain's first-request bound.
    DrainFirstRequest,
    /// Draining: the connection's moment in the drain came (an HTTP/2
    /// connection is told to go away then; an HTTP/1 one that moves gets
    /// [`Verdict::Move`], one that cannot closes by the drain's bounds).
    Drain,
    /// Descriptors ran out and this connection was quiet the longest.
    Reclaim,
    /// Detached, hyper did not stop within the linger bound.
    Stalled,
    /// GOAWAY was sent and the client did not finish in time.
    GoAwayAck,
    /// The drain deadline passed.
    Deadline,
}

/// What a connection's task does next: the one decision a connection's task
/// obeys without deciding again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Serve on: nothing before this engine time (`None`: until something
    /// wakes the task).
    Wait(Option<u64>),
    /// HTTP/1: stop at the next message boundary (reads see end-of-file),
    /// then close, or go dormant for [`Reason::Dormant`].
    Detach(Reason),
    /// HTTP/1: stop at the next message boundary (a head half read moves
    /// with it), then hand the connection to the newer generation.
    Move,
    /// Close now.
    Close(Reason),
}

/// What an HTTP/2 connection's task does next. HTTP/2 has no boundary to
/// stop at between requests and does not move: it is told to go away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Http2Verdict {
    /// Serve on: nothing before this engine time.
    Wait(Option<u64>),
    /// Move to the newer generation at the first quiet moment (no stream
    /// open); look again at this engine time, when it gives up and goes away.
    Move(Option<u64>),
    /// Graceful GOAWAY.
    GoAway(Reason),
    /// Close now.
    Close(Reason),
}

/// How long a draining HTTP/2 connection that can move waits for a quiet
/// moment (no stream open) past its paced moment before it is told to go
/// away like one that cannot move (a client that always keeps a stream open).
pub(crate) const HTTP2_QUIET_WAIT: Duration = Duration::from_secs(1);

/// How long a reclaimed HTTP/2 connection gets to send its GOAWAY.
const RECLAIM_GOAWAY_GRACE: Duration = Duration::from_millis(100);

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Collects the earliest future bound; a bound already reached wins at once.
///
/// A connection's task is not woken by what happens inside it (a request
/// ending, head bytes arriving, a write blocking): that would cost a wake-up
/// per request. Instead every wait ends by a horizon no longer than the
/// shortest bound that such an event starts, so that bound is computed in
/// time and then waited for exactly.
struct Earliest {
    now: u64,
    at: u64,
}

impl Earliest {
    fn new(now: u64, horizon: Duration) -> Self {
        Self {
            now,
            at: now.saturating_add(ns(horizon)),
        }
    }

    /// `true` when `at` has been reached.
    fn reached(&mut self, at: u64) -> bool {
        if self.now >= at {
            return true;
        }
        self.at = self.at.min(at);
        false
    }

    fn wait(self) -> Verdict {
        Verdict::Wait(Some(self.at))
    }

    fn wait_http2(self) -> Http2Verdict {
        Http2Verdict::Wait(Some(self.at))
    }

    fn move_http2(self) -> Http2Verdict {
        Http2Verdict::Move(Some(self.at))
    }
}

/// The rule for an HTTP/1 connection. `moves`: it can move and a newer
/// generation takes connections (`ConnCtl::moves`), so its drain is a
/// [`Verdict::Move`], not a close; `detached`: when the connection
/// was detached, if it was (then only the deadline, the send bound and the
/// linger bound apply while hyper stops). A dormant connection (see
/// [`Reason::Dormant`]) gets the same rules but the dormancy bound; its task
/// is woken by the next byte, so it needs no horizon.
pub(crate) fn http1(
    now: u64,
    phase: Phase,
    s: &Snapshot,
    t: &Bounds,
    moves: bool,
    detached: Option<u64>,
) -> Verdict {
    if matches!(phase, Phase::Forced { .. }) {
        return Verdict::Close(Reason::Deadline);
    }
    // A paced connection's drain starts at its own moment.
    let drain = phase.drain_since().map(|d| d.saturating_add(s.pace));
    // While hyper serves, a request may end at any moment without waking
    // the task, which must then look again within the dormancy bound.
    // Draining, or detached, a connection ends soon: it does not go dormant.
    let dormancy = !s.dormant && drain.is_none() && detached.is_none();
    let horizon = match (dormancy, detached) {
        (true, _) => t.horizon().min(t.dormant_after.max(DORMANT_HORIZON_MIN)),
        // A request served after the detach ends without waking the task,
        // which must then apply the linger bound in time.
        (false, Some(_)) => t.horizon().min(t.linger),
        (false, None) => t.horizon(),
    };
    let mut next = Earliest::new(now, horizon);
    if s.write_blocked_since != 0 && next.reached(s.write_blocked_since.saturating_add(ns(t.send)))
    {
        return Verdict::Close(Reason::SendTimeout);
    }
    if let Some(at) = detached {
        // Requests hyper had read ahead (pipelined behind the boundary the
        // detach was chosen at) are served first, bounded like any request;
        // a response waiting for the socket has the send bound. Once
        // nothing is in flight hyper stops at once: the linger bound, from
        // the detach or the last request's end, catches one that does not.
        if s.in_flight > 0 || s.upgrading {
            return next.wait();
        }
        let since = at.max(s.idle_since);
        if s.write_blocked_since == 0 && next.reached(since.saturating_add(ns(t.linger))) {
            return Verdict::Close(Reason::Stalled);
        }
        return next.wait();
    }
    // Draining with a newer generation to move to: detached at once, even
    // with a request in flight. hyper then reads nothing past the boundary
    // after the requests it holds (see `serve::io::ConnIo`), so whatever
    // the client pipelined behind them stays in the socket for the next
    // generation, however long the pipeline. An upgrade takes the
    // connection out of the detach.
    if moves && drain.is_some() && !s.upgrading && !s.reclaim {
        return Verdict::Move;
    }
    // An upgrade is being handed over, or a request is being served.
    if s.upgrading || s.in_flight > 0 {
        return next.wait();
    }
    if s.reclaim {
        // A slow head is cut at once: there is nothing to answer, and a
        // client that trickles would keep a lingering close open too.
        return match s.head_since {
            0 => Verdict::Detach(Reason::Reclaim),
            _ => Verdict::Close(Reason::Reclaim),
        };
    }
    if s.head_since != 0 {
        if moves && drain.is_some() {
            // Half a head: it moves with the connection.
            return Verdict::Move;
        }
        let mut at = s.head_since.saturating_add(ns(t.header));
        if let Some(d) = drain {
            at = at.min(d.saturating_add(ns(t.first_request_draining)));
        }
        return if next.reached(at) {
            Verdict::Detach(Reason::HeaderTimeout)
        } else {
            next.wait()
        };
    }
    let first = s.requests == 0;
    let (at, reason) = match drain {
        None if first => (
            s.idle_since.saturating_add(ns(t.header)),
            Reason::HeaderTimeout,
        ),
        None => (
            s.idle_since.saturating_add(ns(t.keepalive)),
            Reason::KeepAlive,
        ),
        Some(_) if moves => return Verdict::Move,
        Some(d) if first => (
            s.idle_since
                .max(d)
                .saturating_add(ns(t.first_request_draining)),
            Reason::DrainFirstRequest,
        ),
        Some(d) => (
            s.idle_since.max(d).saturating_add(ns(t.idle_draining)),
            Reason::DrainIdle,
        ),
    };
    if next.reached(at) {
        return Verdict::Detach(reason);
    }
    if dormancy && !first && next.reached(s.idle_since.saturating_add(ns(t.dormant_after))) {
        return Verdict::Detach(Reason::Dormant);
    }
    next.wait()
}

/// The rule for an HTTP/2 connection; `goaway_at`: when its GOAWAY was sent.
pub(crate) fn http2(
    now: u64,
    phase: Phase,
    s: &Snapshot,
    t: &Bounds,
    goaway_at: Option<u64>,
    moves: bool,
) -> Http2Verdict {
    if matches!(phase, Phase::Forced { .. }) {
        return Http2Verdict::Close(Reason::Deadline);
    }
    let mut next = Earliest::new(now, t.horizon());
    if s.write_blocked_since != 0 && next.reached(s.write_blocked_since.saturating_add(ns(t.send)))
    {
        return Http2Verdict::Close(Reason::SendTimeout);
    }
    if let Some(sent) = goaway_at {
        // hyper closes by itself once the PING is acknowledged and the
        // streams are done; this bounds a client that never acknowledges.
        // A reclaimed connection only gets the time to send the GOAWAY: its
        // descriptor is wanted now.
        let bound = if s.reclaim {
            RECLAIM_GOAWAY_GRACE
        } else {
            t.goaway_ack
        };
        let at = sent.max(s.idle_since).saturating_add(ns(bound));
        if s.in_flight == 0 && next.reached(at) {
            return Http2Verdict::Close(Reason::GoAwayAck);
        }
        return next.wait_http2();
    }
    if s.reclaim {
        return Http2Verdict::GoAway(Reason::Reclaim);
    }
    // Draining with a newer generation to move to: it moves at its first
    // quiet moment, or goes away if none comes in time.
    if moves
        && let Some(since) = phase.drain_since()
        && !next.reached(
            since
                .saturating_add(s.pace)
                .saturating_add(ns(HTTP2_QUIET_WAIT)),
        )
    {
        return next.move_http2();
    }
    if let Some(since) = phase.drain_since()
        && next.reached(since.saturating_add(s.pace))
    {
        return Http2Verdict::GoAway(Reason::Drain);
    }
    if s.in_flight > 0 {
        return next.wait_http2();
    }
    let (bound, reason) = if s.requests == 0 {
        (t.header, Reason::HeaderTimeout)
    } else {
        (t.keepalive, Reason::KeepAlive)
    };
    if next.reached(s.idle_since.saturating_add(ns(bound))) {
        Http2Verdict::GoAway(reason)
    } else {
        next.wait_http2()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::drain::state::ConnState;

    #[test]
    fn what_the_deadline_forces_closes_within_the_promised_time() {
        // A forced close that was lingering finishes its linger, one that
        // starts lingering at the force has a whole one: two, and a second
        // for the tasks to run.
        let linger = Bounds::default().linger;
        assert!(linger * 2 + Duration::from_secs(1) <= crate::shutdown::FORCED_CLOSE);
    }

    const S: u64 = 1_000_000_000;

    fn quiet(idle_since: u64, requests: u64) -> Snapshot {
        Snapshot {
            state: ConnState::Idle,
            in_flight: 0,
            requests,
            idle_since,
            head_since: 0,
            write_blocked_since: 0,
            upgrading: false,
            reclaim: false,
            dormant: false,
            pace: 0,
        }
    }

    fn draining(since: u64) -> Phase {
        Phase::Draining {
            since,
            deadline: Instant::now(),
        }
    }

    fn forced() -> Phase {
        Phase::Forced {
            since: 1,
            deadline: Instant::now(),
        }
    }

    const T: Bounds = Bounds::DEFAULT;

    #[test]
    fn idle_keepalive_closes_at_its_bound_and_not_before() {
        let mut s = quiet(10 * S, 3);
        s.dormant = true;
        // The first wait ends at the horizon (the shortest bound that an
        // event inside the connection can start), then the bound is waited for.
        assert_eq!(
            http1(10 * S, Phase::Serving, &s, &T, false, None),
            Verdict::Wait(Some(70 * S))
        );
        assert_eq!(
            http1(70 * S, Phase::Serving, &s, &T, false, None),
            Verdict::Wait(Some(85 * S))
        );
        assert_eq!(
            http1(85 * S, Phase::Serving, &s, &T, false, None),
            Verdict::Detach(Reason::KeepAlive)
        );
    }

    #[test]
    fn a_quiet_connection_goes_dormant_once_then_keeps_its_keepalive_bound() {
        let mut s = quiet(10 * S, 3);
        // A request's end does not wake the task: it looks again within the
        // dormancy bound, and at the bound the connection goes dormant.
        assert_eq!(
            http1(10 * S, Phase::Serving, &s, &T, false, None),
            Verdict::Wait(Some(11 * S))
        );
        assert_eq!(
            http1(11 * S, Phase::Serving, &s, &T, false, None),
            Verdict::Detach(Reason::Dormant)
        );
        s.dormant = true;
        assert_eq!(
            http1(11 * S, Phase::Serving, &s, &T, false, None),
            Verdict::Wait(Some(71 * S)),
            "dormant: no dormancy horizon (the next byte wakes the task)"
        );
        assert_eq!(
            http1(85 * S, Phase::Serving, &s, &T, false, None),
            Verdict::Detach(Reason::KeepAlive)
        );
        // Draining with a newer generation: a dormant connection moves.
        assert_eq!(
            http1(90 * S, draining(89 * S), &s, &T, true, None),
            Verdict::Move
        );
    }

    #[test]
    fn dormancy_never_cuts_a_request_or_a_head_and_never_spins() {
        let t = Bounds {
            dormant_after: Duration::ZERO,
            ..T
        };
        let mut busy = quiet(10 * S, 3);
        busy.in_flight = 1;
        assert_eq!(
            http1(10 * S, Phase::Serving, &busy, &t, false, None),
            Verdict::Wait(Some(10 * S + ns(DORMANT_HORIZON_MIN))),
            "a zero bound still waits the minimum horizon while a request runs"
        );
        let mut head = quiet(10 * S, 3);
        head.head_since = 11 * S;
        assert_eq!(
            http1(12 * S, Phase::Serving, &head, &t, false, None),
            Verdict::Wait(Some(12 * S + ns(DORMANT_HORIZON_MIN)))
        );
        let mut fresh = quiet(10 * S, 0);
        fresh.dormant = true;
        assert_eq!(
            http1(12 * S, Phase::Serving, &fresh, &t, false, None),
            Verdict::Wait(Some(70 * S)),
            "waiting for its first byte, a connection has no hyper yet: its byte wakes the task"
        );
        fresh.dormant = false;
        assert_eq!(
            http1(12 * S, Phase::Serving, &fresh, &t, false, None),
            Verdict::Wait(Some(12 * S + ns(DORMANT_HORIZON_MIN))),
            "hyper waits for the first request: it could end any time"
        );
        assert_eq!(
            http1(10 * S, Phase::Serving, &quiet(10 * S, 1), &t, false, None),
            Verdict::Detach(Reason::Dormant)
        );
    }

    #[test]
    fn a_new_connection_gets_the_header_bound_for_its_first_request() {
        let s = quiet(0, 0);
        assert_eq!(
            http1(60 * S, Phase::Serving, &s, &T, false, None),
            Verdict::Detach(Reason::HeaderTimeout)
        );
    }

    #[test]
    fn a_slow_head_is_bounded_in_total_however_it_trickles() {
        let mut s = quiet(0, 1);
        s.head_since = 5 * S;
        assert_eq!(
            http1(64 * S, Phase::Serving, &s, &T, false, None),
            Verdict::Wait(Some(65 * S))
        );
        assert_eq!(
            http1(65 * S, Phase::Serving, &s, &T, false, None),
            Verdict::Detach(Reason::HeaderTimeout)
        );
    }

    #[test]
    fn the_drain_bounds_a_slowloris_head_by_the_first_request_bound() {
        let mut s = quiet(0, 0);
        s.head_since = 5 * S;
        assert_eq!(
            http1(12 * S, draining(10 * S), &s, &T, false, None),
            Verdict::Wait(Some(15 * S))
        );
        assert_eq!(
            http1(15 * S, draining(10 * S), &s, &T, false, None),
            Verdict::Detach(Reason::HeaderTimeout)
        );
    }

    #[test]
    fn draining_keeps_an_idle_connection_for_the_idle_bound_after_the_signal() {
        let s = quiet(2 * S, 4);
        assert_eq!(
            http1(10 * S, draining(10 * S), &s, &T, false, None),
            Verdict::Wait(Some(11 * S))
        );
        assert_eq!(
            http1(11 * S, draining(10 * S), &s, &T, false, None),
            Verdict::Detach(Reason::DrainIdle)
        );
        let silent = quiet(2 * S, 0);
        assert_eq!(
            http1(15 * S, draining(10 * S), &silent, &T, false, None),
            Verdict::Detach(Reason::DrainFirstRequest)
        );
    }

    #[test]
    fn a_paced_connection_meets_the_drain_at_its_own_moment() {
        let mut h2 = quiet(0, 3);
        h2.pace = 700_000_000;
        assert_eq!(
            http2(10 * S, draining(10 * S), &h2, &T, None, false),
            Http2Verdict::Wait(Some(10 * S + 700_000_000)),
            "GOAWAY waits for its moment"
        );
        assert_eq!(
            http2(10 * S + 700_000_000, draining(10 * S), &h2, &T, None, false),
            Http2Verdict::GoAway(Reason::Drain)
        );
        let mut h1 = quiet(2 * S, 4);
        h1.pace = 500_000_000;
        assert_eq!(
            http1(10 * S, draining(10 * S), &h1, &T, false, None),
            Verdict::Wait(Some(11 * S + 500_000_000)),
            "the idle bound counts from its moment"
        );
    }

    #[test]
    fn with_a_newer_generation_an_idle_connection_moves_at_once() {
        let s = quiet(2 * S, 4);
        assert_eq!(
            http1(10 * S, draining(10 * S), &s, &T, true, None),
            Verdict::Move
        );
        let fresh = quiet(2 * S, 0);
        assert_eq!(
            http1(10 * S, draining(10 * S), &fresh, &T, true, None),
            Verdict::Move,
            "one that has sent nothing yet too"
        );
    }

    #[test]
    fn with_a_newer_generation_half_a_head_moves_at_once_but_only_while_draining() {
        let mut s = quiet(2 * S, 4);
        s.head_since = 9 * S;
        assert_eq!(
            http1(10 * S, draining(10 * S), &s, &T, true, None),
            Verdict::Move
        );
        assert_eq!(
            http1(10 * S, Phase::Serving, &s, &T, true, None),
            Verdict::Wait(Some(11 * S)),
            "not before the drain (looked at again within the dormancy bound)"
        );
    }

    #[test]
    fn a_request_in_flight_is_never_cut_except_by_the_deadline_or_a_stalled_write() {
        let mut s = quiet(0, 1);
        s.in_flight = 1;
        assert_eq!(
            http1(1000 * S, draining(1), &s, &T, false, None),
            Verdict::Wait(Some(1060 * S))
        );
        // With a generation to move to, it is detached at once: hyper reads
        // nothing past the request's end, and the request is served on.
        assert_eq!(
            http1(1000 * S, draining(1), &s, &T, true, None),
            Verdict::Move
        );
        assert_eq!(
            http1(1000 * S, draining(1), &s, &T, true, Some(1000 * S)),
            Verdict::Wait(Some(1002 * S))
        );
        assert_eq!(
            http1(1000 * S, forced(), &s, &T, true, None),
            Verdict::Close(Reason::Deadline)
        );
        s.write_blocked_since = 10 * S;
        assert_eq!(
            http1(20 * S, Phase::Serving, &s, &T, false, None),
            Verdict::Wait(Some(21 * S)),
            "the request may end any time: its task looks within the dormancy bound"
        );
        assert_eq!(
            http1(69 * S + S / 2, Phase::Serving, &s, &T, false, None),
            Verdict::Wait(Some(70 * S))
        );
        assert_eq!(
            http1(70 * S, Phase::Serving, &s, &T, false, None),
            Verdict::Close(Reason::SendTimeout)
        );
    }

    #[test]
    fn a_detached_connection_that_does_not_stop_is_closed_at_the_linger_bound() {
        let s = quiet(0, 1);
        assert_eq!(
            http1(10 * S, Phase::Serving, &s, &T, false, Some(10 * S)),
            Verdict::Wait(Some(12 * S))
        );
        assert_eq!(
            http1(12 * S, Phase::Serving, &s, &T, false, Some(10 * S)),
            Verdict::Close(Reason::Stalled)
        );
    }

    #[test]
    fn requests_pipelined_behind_a_detach_are_served_and_the_linger_bound_follows_the_last() {
        // hyper took up a request it had read ahead: served, bounded like
        // any request (the task looks again within the linger bound).
        let mut s = quiet(0, 1);
        s.in_flight = 1;
        assert_eq!(
            http1(15 * S, draining(10 * S), &s, &T, true, Some(10 * S)),
            Verdict::Wait(Some(17 * S))
        );
        // It ended at 16 s: the linger bound counts from there.
        s.in_flight = 0;
        s.requests = 2;
        s.idle_since = 16 * S;
        assert_eq!(
            http1(17 * S, draining(10 * S), &s, &T, true, Some(10 * S)),
            Verdict::Wait(Some(18 * S))
        );
        assert_eq!(
            http1(18 * S, draining(10 * S), &s, &T, true, Some(10 * S)),
            Verdict::Close(Reason::Stalled)
        );
        // A blocked write gets the send bound instead.
        s.write_blocked_since = 17 * S;
        assert_eq!(
            http1(18 * S, draining(10 * S), &s, &T, true, Some(10 * S)),
            Verdict::Wait(Some(20 * S))
        );
    }

    #[test]
    fn an_upgrade_in_progress_is_left_alone() {
        let mut s = quiet(0, 1);
        s.upgrading = true;
        assert_eq!(
            http1(100 * S, draining(1), &s, &T, true, None),
            Verdict::Wait(Some(160 * S))
        );
    }

    #[test]
    fn an_http2_connection_that_can_move_waits_for_a_quiet_moment_then_goes_away() {
        let mut h2 = quiet(0, 3);
        h2.state = ConnState::Http2;
        h2.pace = 200_000_000;
        h2.in_flight = 2;
        let give_up = 10 * S + 200_000_000 + 1_000_000_000;
        assert_eq!(
            http2(10 * S, draining(10 * S), &h2, &T, None, true),
            Http2Verdict::Move(Some(give_up)),
            "moves at once if quiet, streams open or not"
        );
        assert_eq!(
            http2(give_up, draining(10 * S), &h2, &T, None, true),
            Http2Verdict::GoAway(Reason::Drain),
            "never quiet in time: told to go away"
        );
        assert_eq!(
            http2(10 * S, Phase::Serving, &h2, &T, None, true),
            Http2Verdict::Wait(Some(70 * S)),
            "nothing to move before the drain"
        );
        h2.reclaim = true;
        assert_eq!(
            http2(10 * S, draining(10 * S), &h2, &T, None, true),
            Http2Verdict::GoAway(Reason::Reclaim),
            "a reclaimed connection's descriptor is wanted here"
        );
    }

    #[test]
    fn reclaim_detaches_a_quiet_http1_and_goes_away_on_http2() {
        let mut s = quiet(0, 1);
        s.reclaim = true;
        assert_eq!(
            http1(S, Phase::Serving, &s, &T, false, None),
            Verdict::Detach(Reason::Reclaim)
        );
        s.state = ConnState::Http2;
        assert_eq!(
            http2(S, Phase::Serving, &s, &T, None, false),
            Http2Verdict::GoAway(Reason::Reclaim)
        );
    }

    #[test]
    fn a_reclaimed_slow_head_is_closed_at_once() {
        let mut s = quiet(0, 0);
        s.state = ConnState::NoRequest;
        s.head_since = S;
        s.reclaim = true;
        assert_eq!(
            http1(3 * S, Phase::Serving, &s, &T, false, None),
            Verdict::Close(Reason::Reclaim)
        );
    }

    #[test]
    fn idle_http2_goes_away_at_the_keepalive_bound() {
        let mut s = quiet(0, 2);
        s.state = ConnState::Http2;
        assert_eq!(
            http2(S, Phase::Serving, &s, &T, None, false),
            Http2Verdict::Wait(Some(61 * S))
        );
        assert_eq!(
            http2(75 * S, Phase::Serving, &s, &T, None, false),
            Http2Verdict::GoAway(Reason::KeepAlive)
        );
        s.in_flight = 1;
        assert_eq!(
            http2(100 * S, Phase::Serving, &s, &T, None, false),
            Http2Verdict::Wait(Some(160 * S))
        );
    }

    #[test]
    fn http2_goes_away_when_the_drain_starts_and_closes_if_the_ack_never_comes() {
        let mut s = quiet(0, 2);
        s.state = ConnState::Http2;
        assert_eq!(
            http2(S, draining(S), &s, &T, None, false),
            Http2Verdict::GoAway(Reason::Drain)
        );
        assert_eq!(
            http2(2 * S, draining(S), &s, &T, Some(S), false),
            Http2Verdict::Wait(Some(6 * S))
        );
        assert_eq!(
            http2(6 * S, draining(S), &s, &T, Some(S), false),
            Http2Verdict::Close(Reason::GoAwayAck)
        );
        s.in_flight = 1;
        assert_eq!(
            http2(60 * S, draining(S), &s, &T, Some(S), false),
            Http2Verdict::Wait(Some(120 * S))
        );
    }
}
