//! One connection's tracker: its [`ConnState`], whether a request is in
//! flight and since when it is quiet, and the flags through which the drain
//! steers it. Shared by the connection's task, its service adapter and its
//! transport; every field is an atomic (the task's waker, rarely written, is
//! under a lock) on the connection's own allocation, so serving a request
//! touches nothing other connections touch.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Wake, Waker};

use super::phase::Core;
use super::state::ConnState;

/// How the transport under hyper behaves (see `serve::io::ConnIo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum IoMode {
    /// Reads and writes pass through.
    Normal = 0,
    /// Reads see end-of-file without consuming a byte, and shutdown does not
    /// touch the socket: hyper stops at the next message boundary and hands
    /// the socket back intact.
    Detach = 1,
    /// Every read and write fails: the connection is being force-closed.
    Abort = 2,
    /// As [`IoMode::Detach`], but only at a message boundary: a read that
    /// finds a request head started (pipelined, or split across reads)
    /// returns to [`IoMode::Normal`] and reads on. For going dormant, which
    /// must never cut a request.
    DetachAtBoundary = 3,
    /// As [`IoMode::Detach`], for a connection that moves to the next
    /// generation: a request head half read parks hyper (see
    /// [`ConnCtl::park`]), and the head's bytes move with the connection.
    Move = 4,
}

/// Why a request is refused before the service sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Refusal {
    /// Its head ends a line with a bare LF (RFC 9112 §2.2): a proxy in front
    /// may have framed it differently.
    BareLf = 0,
    /// The connection's message boundaries could not be followed up to it.
    Unframed = 1,
}

/// Which HTTP version a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proto {
    Http1,
    Http2,
}

const UPGRADING: u8 = 1;
const RECLAIM: u8 = 1 << 1;
const PARKED: u8 = 1 << 2;
const DORMANT: u8 = 1 << 3;
const MOVABLE: u8 = 1 << 4;
const QUIET_HTTP2: u8 = 1 << 5;

/// The tracker of one connection; see the module docs.
#[derive(Debug)]
pub(crate) struct ConnCtl {
    pub(crate) engine: Arc<Core>,
    /// The key in the engine's registry.
    pub(crate) key: usize,
    state: AtomicU8,
    in_flight: AtomicU32,
    requests: AtomicU64,
    /// When the last request finished, or the connection was accepted.
    idle_since: AtomicU64,
    /// When the first bytes of a request head arrived, while none is in flight (0: none).
    head_since: AtomicU64,
    /// When a write last found the socket full and has not completed since (0: none).
    write_blocked_since: AtomicU64,
    io: AtomicU8,
    flags: AtomicU8,
    /// See [`Snapshot::pace`].
    pace: AtomicU64,
    /// The first request (1-based) to refuse (0: none), and why.
    refuse_from: AtomicU64,
    refusal: AtomicU8,
    /// The connection's task, woken by [`ConnCtl::poke`]. A wake leaves it
    /// in place (unlike an `AtomicWaker`'s, which takes it), so the task
    /// registers once, not on every poll (see [`ConnCtl::register_task`]).
    task: Mutex<Option<Waker>>,
    poked: AtomicBool,
}

/// What the rules read of a connection at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) state: ConnState,
    pub(crate) in_flight: u32,
    pub(crate) requests: u64,
    pub(crate) idle_since: u64,
    pub(crate) head_since: u64,
    pub(crate) write_blocked_since: u64,
    pub(crate) upgrading: bool,
    pub(crate) reclaim: bool,
    /// No hyper connection serves it: it waits for its first byte (or the
    /// TLS handshake), or went dormant between HTTP/1 requests.
    pub(crate) dormant: bool,
    /// How long after the drain's start this connection is told to
    /// reconnect (paced reconnection; 0 for connections that move or close).
    pub(crate) pace: u64,
}

impl Wake for ConnCtl {
    fn wake(self: Arc<Self>) {
        self.poke();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.poke();
    }
}

impl ConnCtl {
    pub(crate) fn new(engine: Arc<Core>, key: usize, initial: ConnState) -> Self {
        let now = engine.now();
        Self {
            engine,
            key,
            state: AtomicU8::new(initial as u8),
            in_flight: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            idle_since: AtomicU64::new(now),
            head_since: AtomicU64::new(0),
            write_blocked_since: AtomicU64::new(0),
            io: AtomicU8::new(IoMode::Normal as u8),
            // Nothing of hyper's until its first byte.
            flags: AtomicU8::new(DORMANT),
            pace: AtomicU64::new(0),
            refuse_from: AtomicU64::new(0),
            refusal: AtomicU8::new(0),
            task: Mutex::new(None),
            poked: AtomicBool::new(false),
        }
    }

    /// Wakes the connection's task to read its verdict again: the drain
    /// started or reached its deadline, a request ended during a drain, or
    /// the engine wants the connection reclaimed. A poke with no task
    /// waiting is kept for the next wait.
    pub(crate) fn poke(&self) {
        self.poked.store(true, Ordering::Release);
        self.wake_task();
    }

    fn wake_task(&self) {
        if let Some(task) = self.task().as_ref() {
            task.wake_by_ref();
        }
    }

    fn task(&self) -> MutexGuard<'_, Option<Waker>> {
        // A waker that panicked in a wake left nothing half-written.
        self.task.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A waker that pokes the connection: for a wait (a timer) whose end
    /// the connection's task learns of as of a poke.
    pub(crate) fn poker(self: &Arc<Self>) -> Waker {
        Waker::from(Arc::clone(self))
    }

    /// The two halves of [`ConnCtl::poke`], the second returned, for a test
    /// of a task that polls between them.
    #[cfg(test)]
    pub(crate) fn poke_in_halves(&self) -> impl FnOnce() + '_ {
        self.poked.store(true, Ordering::Release);
        move || self.wake_task()
    }

    /// Makes `waker` the one a poke wakes: the connection's task calls it
    /// before it reads [`ConnCtl::take_poke`], whenever its waker is not the
    /// one it registered last. It is the only task that registers, so the
    /// one it registered last is the one in place.
    ///
    /// No poke is lost: a poke marks before it wakes, and the task registers
    /// before it reads the mark. Either the task's read sees the mark, or
    /// the poke's wake (under the lock, after the mark) finds the waker the
    /// task registered before it read.
    ///
    /// Never with a [`ConnCtl::poker`]: its wake pokes, which would take
    /// this lock again from inside a wake made under it.
    pub(crate) fn register_task(&self, waker: &Waker) {
        *self.task() = Some(waker.clone());
    }

    /// Forgets the connection's task (it has ended): what holds the tracker
    /// after it (a handler's [`super::Draining`]) holds no waker of it.
    pub(crate) fn forget_task(&self) {
        self.task().take();
    }

    /// Whether the connection was poked since the last time this said so.
    pub(crate) fn take_poke(&self) -> bool {
        self.poked.load(Ordering::Acquire) && self.poked.swap(false, Ordering::AcqRel)
    }

    pub(crate) fn state(&self) -> ConnState {
        ConnState::from_index(self.state.load(Ordering::Acquire))
    }

    pub(crate) fn set_state(&self, state: ConnState) {
        self.state.store(state as u8, Ordering::Release);
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        let flags = self.flags.load(Ordering::Acquire);
        Snapshot {
            state: self.state(),
            in_flight: self.in_flight.load(Ordering::Acquire),
            requests: self.requests.load(Ordering::Acquire),
            idle_since: self.idle_since.load(Ordering::Acquire),
            head_since: self.head_since.load(Ordering::Acquire),
            write_blocked_since: self.write_blocked_since.load(Ordering::Acquire),
            upgrading: flags & UPGRADING != 0,
            reclaim: flags & RECLAIM != 0,
            dormant: flags & DORMANT != 0,
            pace: self.pace.load(Ordering::Relaxed),
        }
    }

    /// This connection cannot move to the next generation (TLS, HTTP/2):
    /// when the drain starts it is told to reconnect at its own moment
    /// within the reconnect window, not together with every other one.
    pub(crate) fn pace_reconnect(&self) {
        self.pace.store(self.engine.next_pace(), Ordering::Relaxed);
    }

    /// Whether an HTTP/1 response made now tells the client to close
    /// (`Connection: close`): the drain has reached the connection and it
    /// does not move (one that moves keeps alive: the next generation answers
    /// what the client sends next).
    pub(crate) fn closes_after_response(&self) -> bool {
        self.drain_reached() && !self.moves()
    }

    /// Whether the drain has reached this connection (its paced moment).
    pub(crate) fn drain_reached(&self) -> bool {
        if !self.engine.is_draining() {
            return false;
        }
        let pace = self.pace.load(Ordering::Relaxed);
        pace == 0
            || self
                .engine
                .phase()
                .drain_since()
                .is_some_and(|since| self.engine.now() >= since.saturating_add(pace))
    }

    /// A request starts (its head was parsed).
    pub(crate) fn begin(self: &Arc<Self>, proto: Proto) -> RequestGuard {
        self.requests.fetch_add(1, Ordering::AcqRel);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(0, Ordering::Release);
        if proto == Proto::Http1 {
            self.set_state(ConnState::InFlight);
        }
        RequestGuard {
            ctl: Arc::clone(self),
            proto,
        }
    }

    /// Requests started and not yet fully answered.
    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Requests started on this connection.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Acquire)
    }

    /// A request head starts arriving now (picked up again at a boundary).
    pub(crate) fn head_starts_now(&self) {
        self.head_since
            .store(self.engine.stamp(), Ordering::Release);
    }

    /// A connection handed over between requests: an older generation
    /// served it, so its next request is not its first (the keep-alive
    /// bound applies, not the first request's, and it is not fresh when it
    /// moves on). Counted as one request started.
    pub(crate) fn served_before(&self) {
        let _ = self
            .requests
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire);
    }

    /// A connection handed over by an older generation continues its
    /// bounds: quiet since `quiet_since`, its head arriving since
    /// `head_since` (engine times; 0: no head has started).
    pub(crate) fn continue_bounds(&self, quiet_since: u64, head_since: u64) {
        self.idle_since.store(quiet_since, Ordering::Release);
        self.head_since.store(head_since, Ordering::Release);
    }

    /// Bytes of a request head arrived while no request is in flight.
    pub(crate) fn head_bytes_arrived(&self) {
        if self.head_since.load(Ordering::Relaxed) == 0 {
            self.head_since
                .store(self.engine.stamp(), Ordering::Release);
        }
    }

    /// A write found the socket full (`true`) or went through (`false`).
    pub(crate) fn write_blocked(&self, blocked: bool) {
        let since = self.write_blocked_since.load(Ordering::Relaxed);
        if blocked && since == 0 {
            self.write_blocked_since
                .store(self.engine.now(), Ordering::Release);
        } else if !blocked && since != 0 {
            self.write_blocked_since.store(0, Ordering::Release);
        }
    }

    pub(crate) fn io_mode(&self) -> IoMode {
        match self.io.load(Ordering::Acquire) {
            0 => IoMode::Normal,
            1 => IoMode::Detach,
            3 => IoMode::DetachAtBoundary,
            4 => IoMode::Move,
            _ => IoMode::Abort,
        }
    }

    pub(crate) fn set_io_mode(&self, mode: IoMode) {
        self.io.store(mode as u8, Ordering::Release);
    }

    /// The response about to be sent switches protocols (101, or a 2xx to `CONNECT`).
    /// The application takes the connection (an upgrade): it can no longer move.
    pub(crate) fn mark_upgrading(&self) {
        self.flags.fetch_or(UPGRADING, Ordering::AcqRel);
        self.flags.fetch_and(!MOVABLE, Ordering::AcqRel);
    }

    pub(crate) fn is_upgrading(&self) -> bool {
        self.flags.load(Ordering::Acquire) & UPGRADING != 0
    }

    /// Asks the connection to close at its next boundary (descriptor pressure).
    pub(crate) fn mark_reclaim(&self) {
        self.flags.fetch_or(RECLAIM, Ordering::AcqRel);
        self.poke();
    }

    /// hyper waits for the rest of a request head with everything written:
    /// the connection can move, those bytes with it (see `serve::io::ConnIo`).
    pub(crate) fn park(&self) {
        self.flags.fetch_or(PARKED, Ordering::AcqRel);
        self.poke();
    }

    /// Whether the connection could be handed to a newer generation: the
    /// handoff channel at hand (and carrying TLS sessions or HTTP/2 state
    /// if the connection has them), never refused by a newer generation; an
    /// upgrade clears it. Whether it does move is the rules' verdict.
    pub(crate) fn set_movable(&self, movable: bool) {
        if movable {
            self.flags.fetch_or(MOVABLE, Ordering::AcqRel);
        } else {
            self.flags.fetch_and(!MOVABLE, Ordering::AcqRel);
        }
    }

    /// The connection can move, and a newer generation takes connections:
    /// what the rules read as "this connection moves rather than closes".
    pub(crate) fn moves(&self) -> bool {
        self.flags.load(Ordering::Acquire) & MOVABLE != 0 && self.engine.handing_off()
    }

    /// An HTTP/2 connection that may move is quiet (or no longer is): see
    /// `http2::Tracker::quiet`. Set by its transport as frames go by.
    pub(crate) fn set_http2_quiet(&self, quiet: bool) {
        let flags = self.flags.load(Ordering::Relaxed);
        if (flags & QUIET_HTTP2 != 0) != quiet {
            if quiet {
                self.flags.fetch_or(QUIET_HTTP2, Ordering::AcqRel);
            } else {
                self.flags.fetch_and(!QUIET_HTTP2, Ordering::AcqRel);
            }
        }
    }

    /// Whether an HTTP/2 connection is quiet enough to move now.
    pub(crate) fn is_http2_quiet(&self) -> bool {
        self.flags.load(Ordering::Acquire) & QUIET_HTTP2 != 0
    }

    pub(crate) fn is_parked(&self) -> bool {
        self.flags.load(Ordering::Acquire) & PARKED != 0
    }

    /// A parked connection that could not move is served here again.
    pub(crate) fn unpark(&self) {
        self.flags.fetch_and(!PARKED, Ordering::AcqRel);
    }

    /// The connection lets go of hyper until its next byte (`true`), or
    /// hyper serves it (`false`).
    pub(crate) fn set_dormant(&self, dormant: bool) {
        if dormant {
            self.flags.fetch_or(DORMANT, Ordering::AcqRel);
        } else {
            self.flags.fetch_and(!DORMANT, Ordering::AcqRel);
        }
    }

    /// Request number `from` (1-based) and every later one on this
    /// connection are refused with 400 and a close.
    pub(crate) fn refuse_from(&self, from: u64, why: Refusal) {
        let current = self.refuse_from.load(Ordering::Acquire);
        if current == 0 || from < current {
            self.refusal.store(why as u8, Ordering::Release);
            self.refuse_from.store(from, Ordering::Release);
        }
    }

    /// Why the next request to start must be refused, if it must.
    pub(crate) fn refusal_for_next(&self) -> Option<Refusal> {
        let from = self.refuse_from.load(Ordering::Acquire);
        if from == 0 || self.requests() + 1 < from {
            return None;
        }
        Some(match self.refusal.load(Ordering::Acquire) {
            0 => Refusal::BareLf,
            _ => Refusal::Unframed,
        })
    }

    #[cfg(test)]
    pub(crate) fn set_head_since(&self, time: u64) {
        self.head_since.store(time, Ordering::Release);
    }

    #[cfg(test)]
    pub(crate) fn set_idle_since(&self, time: u64) {
        self.idle_since.store(time, Ordering::Release);
    }
}

/// Marks a request finished when dropped (hyper drops the response body once
/// it is written, or the request when it is abandoned).
#[derive(Debug)]
pub(crate) struct RequestGuard {
    ctl: Arc<ConnCtl>,
    proto: Proto,
}

impl RequestGuard {
    /// The connection the request is on.
    pub(crate) fn ctl(&self) -> &Arc<ConnCtl> {
        &self.ctl
    }

    /// The protocol the request came by.
    pub(crate) fn proto(&self) -> Proto {
        self.proto
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let ctl = &self.ctl;
        if ctl.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            ctl.idle_since.store(ctl.engine.stamp(), Ordering::Release);
            if self.proto == Proto::Http1 && !ctl.is_upgrading() {
                ctl.set_state(ConnState::Idle);
            }
            // Only a drain waits for a connection to go quiet.
            if ctl.engine.is_draining() {
                ctl.poke();
            }
        }
    }
}
