//! One connection, from accept to close: TLS handshake, protocol choice
//! (ALPN, or the h2c preface), serving HTTP/1.1 (with upgrades) or HTTP/2,
//! and acting on the drain rules' verdicts until it ends.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncReadExt;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tokio::time::Sleep;
use tracing::{debug, trace};

use gracedown_sockets::handoff::{Clocks, MAX_PREFIX};

use super::app::{HttpService, MakeService, ResponseBody};
use super::info::ConnectionInfo;
use super::io::{ConnIo, ReadNow, Returned, Stream, Transport, force_shutdown};
use super::link::{HandoffOutcome, Link};
use super::service::{Adapter, make};
use super::shared::Shared;
use super::streams::{Inline, Streams};
use crate::drain::{
    ConnCtl, ConnState, IoMode, Phase, Proto, Reason, Registration, Verdict, http1, http2,
};

/// HTTP/2 over TCP: the kernel probes a connection after this long without a
/// segment from the client, then every [`PROBE_EVERY`], and gives up when
/// the probes have gone unanswered for [`unacknowledged_for`] (a peer that
/// vanished is noticed in about a minute, even with a stream open and
/// nothing to send).
const PROBE_AFTER: std::time::Duration = std::time::Duration::from_secs(30);
const PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
/// The kernel's count of unanswered probes (the user timeout set with them
/// decides when it gives up; this keeps a bound if that option is refused).
const PROBES: u32 = 2;
/// How long sent bytes may go unacknowledged (or the client's window stay
/// shut) before the kernel gives up on a connection: the send bound, and at
/// least as long as the probes take.
fn unacknowledged_for(send: std::time::Duration) -> std::time::Duration {
    send.max(PROBE_AFTER + PROBE_EVERY * PROBES)
}

/// The HTTP/2 connection preface (RFC 9113 §3.4) that marks h2c with prior knowledge.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How a connection ended, for the drain report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Closed by the protocol, the client, or a bound.
    Closed,
    /// Force-closed at the drain deadline in this state.
    Forced(ConnState),
    /// Handed over to a newer generation, still open.
    HandedOff,
}

/// Where a connection's task goes after a stage.
enum Step {
    /// The connection ended.
    End(Ending),
    /// HTTP/1 from here on, the task's own stage: its first request (after
    /// the h2c check, the TLS handshake or a handover), or the next one of a
    /// dormant connection. Not nested in the stage that found it, so that
    /// hyper is polled through as few futures as possible.
    Http1(Transport),
    /// HTTP/1 let go of hyper at a boundary, quiet, nothing waiting in the
    /// socket: the connection waits for its next byte without hyper.
    Dormant(Transport),
}

/// How a dormant connection's wait ended.
enum Woken {
    /// Bytes of a request arrived: they wait in front of the transport.
    Request,
    /// The client closed the connection.
    Closed,
    /// A rule ended it (a bound, the drain, the deadline).
    Rule(Reason),
}

impl From<Ending> for Step {
    fn from(ending: Ending) -> Self {
        Self::End(ending)
    }
}

/// An accepted (or handed-over) connection, and what its task keeps until
/// it ends. Boxed: the connection's task keeps only a pointer to it until its
/// first stage has taken it apart.
pub(crate) struct Accepted<M> {
    pub(crate) stream: Stream,
    /// A connection an older generation handed over: the bytes it had read
    /// from it already (served first), and whether it had sent no request
    /// yet (then it may still turn out to be h2c).
    pub(crate) handed: Option<(Bytes, bool)>,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) local: Option<SocketAddr>,
    pub(crate) make_service: M,
    pub(crate) shared: Arc<Shared>,
    pub(crate) registration: Registration,
    /// A place under [`crate::serve::Server::max_connections`].
    pub(crate) permit: Option<OwnedSemaphorePermit>,
    /// The drain waits until every connection's task dropped its copy.
    pub(crate) alive: mpsc::Sender<()>,
}

/// Serves one accepted stream until it closes, or until the deadline forces it.
pub(crate) async fn serve<M, S, B>(accepted: Box<Accepted<M>>)
where
    M: MakeService<S>,
    S: HttpService<B>,
    B: ResponseBody,
{
    // The first stage is boxed, and dropped when it ends: the task itself
    // holds only what a dormant connection needs, all its life.
    let Some((mut conn, service, mut step)) = Box::pin(start(accepted)).await else {
        return;
    };
    let ending = loop {
        step = match step {
            Step::End(ending) => break ending,
            // Keep-alive as for any idle connection: in a drain the service
            // adapter answers `Connection: close`, or keeps a connection
            // that can move to the next generation alive until it moves.
            Step::Http1(transport) => Box::pin(conn.http1(transport, service.clone())).await,
            Step::Dormant(mut transport) => match conn.dormant(&mut transport).await {
                Woken::Request => Step::Http1(transport),
                Woken::Closed => break Ending::Closed,
                Woken::Rule(reason) => Box::pin(conn.end_dormant(transport, reason)).await,
            },
        };
    };
    conn.finish(ending);
}

/// Makes the connection's service and runs its first stage; returns the
/// connection, its service and where it goes next, or `None` when the
/// service could not be made (the connection is counted then).
async fn start<M, S, B>(accepted: Box<Accepted<M>>) -> Option<(Conn, S, Step)>
where
    M: MakeService<S>,
    S: HttpService<B>,
    B: ResponseBody,
{
    let Accepted {
        stream,
        handed,
        peer,
        local,
        make_service,
        shared,
        registration,
        permit,
        alive,
    } = *accepted;
    let ctl = Arc::clone(&registration.ctl);
    let mut conn = Conn {
        waiter: Waiter::new(&ctl),
        ctl,
        shared,
        handoff: None,
        info: ConnectionInfo {
            remote: peer,
            local,
            tls: false,
        },
        _held: Held {
            _registration: registration,
            _permit: permit,
            _alive: alive,
        },
    };
    let service = match make(make_service, peer).await {
        Ok(service) => service,
        Err(e) => {
            debug!(error = %e, "the service factory failed; connection closed");
            conn.finish(Ending::Closed);
            return None;
        }
    };
    let step = match handed {
        None => conn.run(stream, None, service.clone()).await,
        // Fresh: told apart from h2c as if just accepted (never TLS: only
        // plain connections are handed over).
        Some((prefix, true)) => conn.run(stream, Some(prefix), service.clone()).await,
        Some((prefix, false)) => conn.run_handed(stream, prefix),
    };
    Some((conn, service, step))
}

struct Conn {
    ctl: Arc<ConnCtl>,
    shared: Arc<Shared>,
    /// Set for a plain connection under gracedown's start_server: it may
    /// move to a newer generation when this one drains.
    handoff: Option<Arc<Link>>,
    info: ConnectionInfo,
    waiter: Waiter,
    _held: Held,
}

/// What a connection holds until it ends, and then releases: its place in
/// the engine's registry and under the connection limit, and the drain's
/// count of live connection tasks.
struct Held {
    _registration: Registration,
    _permit: Option<OwnedSemaphorePermit>,
    _alive: mpsc::Sender<()>,
}

/// A detach: why, and when (engine time).
#[derive(Debug, Clone, Copy)]
struct Detach {
    reason: Reason,
    at: u64,
}

/// What a verdict loop returns when the rules end the connection first: why,
/// and the state it was in (read before the connection is torn down, which
/// ends its request).
struct Ended(Reason, ConnState);

impl Conn {
    /// Counts how the connection ended, then lets go of it (its registry
    /// entry, its place under the limit).
    fn finish(self, ending: Ending) {
        let engine = &self.ctl.engine;
        match ending {
            Ending::Forced(state) => {
                debug!(state = %state, "connection force-closed at the drain deadline");
                engine.count_forced(state);
            }
            Ending::HandedOff => engine.count_handed_off(),
            Ending::Closed if engine.is_draining() => engine.count_drained(),
            Ending::Closed => {}
        }
    }

    /// Serves a connection that has sent no request yet; `handed`: it was
    /// handed over while quiet, with these bytes already read from it.
    async fn run<S, B>(&mut self, stream: Stream, handed: Option<Bytes>, service: S) -> Step
    where
        S: HttpService<B>,
        B: ResponseBody,
    {
        // Each stage that is large and not every connection's is boxed: a
        // stage's future holds room for the largest stage it could go to.
        #[cfg(feature = "tls")]
        if let (None, Some(acceptor)) = (&handed, self.shared.tls.clone()) {
            return Box::pin(self.run_tls(stream, acceptor, service)).await;
        }
        self.handoff = self.shared.handoff.clone();
        let read = handed.unwrap_or_default();
        let (mut stream, mut sniffed) = (stream, BytesMut::from(read));
        let h2 = loop {
            let movable = self.handoff.is_some();
            let rule =
                move |now, phase, ctl: &ConnCtl| first_request_rule(now, phase, ctl, movable);
            match self.bounded(sniff(&mut stream, &mut sniffed), rule).await {
                Ok(Some(h2)) => break h2,
                Ok(None) => return Ending::Closed.into(),
                Err(Ended(Reason::Drain, _)) => {
                    // Quiet since it was accepted, and a newer generation takes it.
                    let transport = Transport::plain(stream, sniffed.freeze());
                    match self.hand_off(transport).await {
                        Ok(ending) => return ending.into(),
                        // Refused: it waits for its first request here.
                        Err(back) => match back.into_stream() {
                            Ok((back, read)) => (stream, sniffed) = (back, BytesMut::from(read)),
                            Err(back) => return Step::Http1(back),
                        },
                    }
                }
                Err(ended) => return self.ended(ended).into(),
            }
        };
        let transport = Transport::plain(stream, sniffed.freeze());
        if h2 {
            self.handoff = None;
            self.ctl.pace_reconnect();
            Box::pin(self.http2(transport, service)).await.into()
        } else {
            Step::Http1(transport)
        }
    }

    /// A TLS connection: the handshake, then the protocol ALPN chose.
    #[cfg(feature = "tls")]
    async fn run_tls<S, B>(
        &mut self,
        stream: Stream,
        acceptor: tokio_rustls::TlsAcceptor,
        service: S,
    ) -> Step
    where
        S: HttpService<B>,
        B: ResponseBody,
    {
        self.info.tls = true;
        let handshake = acceptor.accept(stream);
        // The handshake bound, or a reclaim (a handshake that has dragged on
        // while clients wait at the connection cap).
        let reclaimed = |_, _, ctl: &ConnCtl| {
            ctl.snapshot()
                .reclaim
                .then_some(Verdict::Close(Reason::Reclaim))
        };
        let tls = match self.bounded(handshake, reclaimed).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                debug!(error = %e, "tls handshake failed");
                return Ending::Closed.into();
            }
            Err(ended) => return self.ended(ended).into(),
        };
        self.ctl.set_state(ConnState::NoRequest);
        // TLS cannot move to the next generation: it reconnects, paced.
        self.ctl.pace_reconnect();
        // ALPN decides; no sniffing after TLS.
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let transport = Transport::tls(tls);
        if h2 {
            self.http2(transport, service).await.into()
        } else {
            Step::Http1(transport)
        }
    }

    /// A connection an older generation handed over: plain HTTP/1.1, at a
    /// message boundary, `prefix` read from it already.
    fn run_handed(&mut self, stream: Stream, prefix: Bytes) -> Step {
        self.handoff = self.shared.handoff.clone();
        self.ctl.served_before();
        if !prefix.is_empty() {
            // Unless the older generation said since when it has arrived.
            self.ctl.head_bytes_arrived();
        }
        Step::Http1(Transport::plain(stream, prefix))
    }

    /// Whether this connection moves to a newer generation at its next boundary.
    fn moving(&self) -> bool {
        self.handoff.is_some() && self.ctl.engine.handing_off()
    }

    /// Hands the connection to a newer generation. `Err` with the
    /// connection back when nobody takes it: it is no longer movable, and the
    /// caller serves it on as a drain without a handoff does (what the
    /// client already sent is answered, the last response says
    /// `Connection: close`), so that a refusal never loses a request that
    /// was pipelined behind keep-alive responses.
    async fn hand_off(&mut self, transport: Transport) -> Result<Ending, Transport> {
        let Some(handoff) = self.handoff.take() else {
            return Err(self.served_here(transport));
        };
        let fresh = self.ctl.requests() == 0 && !self.ctl.is_upgrading();
        // Its bounds go on in the next generation from the same times.
        let (engine, s) = (&self.ctl.engine, self.ctl.snapshot());
        let clocks = Clocks {
            quiet_since: engine.engine_to_monotonic(s.idle_since),
            head_since: match s.head_since {
                0 => 0,
                since => engine.engine_to_monotonic(since),
            },
        };
        let (socket, prefix) = match transport.into_plain() {
            Ok(parts) => parts,
            Err(Some(transport)) => return Err(self.served_here(transport)),
            Err(None) => return Ok(Ending::Closed),
        };
        // Boxed: a handoff's future is large (its message buffer), and
        // every connection's task would otherwise hold room for it.
        match Box::pin(handoff.hand_off(socket, prefix, fresh, clocks)).await {
            // Our descriptor went without a FIN: the socket lives on there.
            HandoffOutcome::Forwarded => Ok(Ending::HandedOff),
            HandoffOutcome::Refused(moving) => match Stream::adopt(moving.socket) {
                Ok((stream, _, _)) => {
                    debug!("no generation took the connection; it drains here");
                    Err(self.served_here(Transport::plain(stream, moving.prefix)))
                }
                Err(e) => {
                    debug!(error = %e, "a refused connection could not be taken back; closed");
                    Ok(Ending::Closed)
                }
            },
            HandoffOutcome::Unknown => Ok(Ending::Closed),
        }
    }

    /// A connection that did not move is served here again: hyper reads
    /// what comes (a parked head included), no longer detached.
    fn served_here(&self, transport: Transport) -> Transport {
        self.ctl.unpark();
        self.ctl.set_io_mode(IoMode::Normal);
        transport
    }

    /// Runs `fut` until it completes or the connection's bound (from
    /// `rule`, or the handshake bound when it has none) or the deadline ends it.
    async fn bounded<F: Future>(
        &mut self,
        fut: F,
        rule: impl Fn(u64, Phase, &ConnCtl) -> Option<Verdict>,
    ) -> Result<F::Output, Ended> {
        let mut fut = pin!(fut);
        let handshake = self.ctl.engine.timeouts().handshake;
        loop {
            let engine = &self.ctl.engine;
            let (now, phase) = (engine.now(), engine.phase());
            if matches!(phase, Phase::Forced { .. }) {
                return Err(Ended(Reason::Deadline, self.ctl.state()));
            }
            let verdict = rule(now, phase, &self.ctl).unwrap_or_else(|| {
                let at = self
                    .ctl
                    .snapshot()
                    .idle_since
                    .saturating_add(nanos(handshake));
                if now >= at {
                    Verdict::Close(Reason::HeaderTimeout)
                } else {
                    Verdict::Wait(Some(at))
                }
            });
            let at = match verdict {
                Verdict::Wait(at) => at,
                Verdict::Detach(reason) | Verdict::GoAway(reason) | Verdict::Close(reason) => {
                    return Err(Ended(reason, self.ctl.state()));
                }
            };
            tokio::select! {
                output = fut.as_mut() => return Ok(output),
                () = self.waiter.until(at) => {}
            }
        }
    }

    fn ended(&self, Ended(reason, state): Ended) -> Ending {
        if reason == Reason::Deadline {
            Ending::Forced(state)
        } else {
            trace!(?reason, "connection closed before its first request");
            Ending::Closed
        }
    }

    /// Serves HTTP/1 with hyper until the connection ends or goes dormant.
    async fn http1<S, B>(&mut self, mut transport: Transport, service: S) -> Step
    where
        S: HttpService<B>,
        B: ResponseBody,
    {
        let timeouts = *self.ctl.engine.timeouts();
        let fd = transport.as_fd().as_raw_fd();
        let mut keep_alive = true;
        self.ctl.set_dormant(false);
        loop {
            let movable = self.handoff.is_some().then_some(MAX_PREFIX);
            let (io, back) = ConnIo::new(transport, Arc::clone(&self.ctl), true, movable);
            let mut adapter = self.adapter(service.clone(), Proto::Http1);
            adapter.keep_alive_in_drain = self.handoff.is_some();
            let builder = http1_builder(keep_alive, self.shared.writev);
            // Pinned here and lent (moved into `drive_http1` instead, it
            // would take its room twice in this task: argument and pin), and
            // dropped at the end of this block, which hands the transport back.
            let (result, detach) = {
                let conn = pin!(
                    builder
                        .serve_connection(TokioIo::new(io), adapter)
                        .with_upgrades()
                );
                self.drive_http1(conn).await
            };
            if self.ctl.is_parked() {
                // hyper, dropped, held half a head: it moves with the connection.
                let Ok(returned) = back.await else {
                    return Ending::Closed.into();
                };
                if returned.head.is_none() {
                    returned.transport.close(timeouts.linger).await;
                    return Ending::Closed.into();
                }
                match self.hand_off(returned.into_transport()).await {
                    Ok(ending) => return ending.into(),
                    Err(back) => {
                        // Nobody takes it: the head is served here, and the
                        // connection closes after its response.
                        (transport, keep_alive) = (back, false);
                        continue;
                    }
                }
            }
            if let Err(Ended(reason, state)) = result {
                debug!(?reason, state = %state, "http/1 connection closed by a bound");
                self.ctl.set_io_mode(IoMode::Abort);
                return match reason {
                    Reason::Deadline if state == ConnState::Upgraded => {
                        // The application holds the socket: cut it under it.
                        force_shutdown(fd);
                        Ending::Forced(state)
                    }
                    Reason::Deadline => Ending::Forced(state),
                    _ => Ending::Closed,
                }
                .into();
            }
            if self.ctl.is_upgrading() {
                return self.upgraded(back, fd).await.into();
            }
            let Ok(returned) = back.await else {
                return Ending::Closed.into();
            };
            // Picked up again (or moved) only when hyper stopped at a
            // boundary a detach chose, with every byte it read parsed and
            // nothing in flight. Requests hyper had read ahead and served
            // since the detach (pipelined behind it) were answered with
            // keep-alive: the client's next bytes start a request there.
            let clean = matches!(result, Ok(Ok(())))
                && returned.at_boundary
                && detach.is_some_and(|d| d.reason != Reason::HeaderTimeout)
                && self.ctl.in_flight() == 0;
            let mut returned = returned.transport;
            if !clean {
                if let Ok(Err(e)) = &result {
                    debug!(error = %e, "http/1 connection ended with an error");
                }
                returned.close(timeouts.linger).await;
                return Ending::Closed.into();
            }
            let reason = detach.map(|d| d.reason);
            if reason == Some(Reason::Reclaim) {
                return Ending::Closed.into();
            }
            if reason == Some(Reason::Drain) && self.moving() {
                // At a boundary, every byte read parsed: what comes next
                // (in the socket, or read already) starts a request there.
                match self.hand_off(returned).await {
                    Ok(ending) => return ending.into(),
                    Err(back) => {
                        // Nobody takes it: served here, closing after the
                        // next response.
                        (transport, keep_alive) = (back, false);
                        continue;
                    }
                }
            }
            // What is in the socket now starts a new request.
            match returned.read_now() {
                ReadNow::Data => {
                    trace!("a request raced the close; serving it");
                    self.ctl.set_io_mode(IoMode::Normal);
                    self.ctl.head_starts_now();
                    keep_alive = !self.ctl.engine.is_draining();
                    transport = returned;
                }
                ReadNow::Nothing if reason == Some(Reason::Dormant) => {
                    return Step::Dormant(returned);
                }
                ReadNow::Nothing => {
                    returned.close(timeouts.linger).await;
                    return Ending::Closed.into();
                }
                ReadNow::Closed => return Ending::Closed.into(),
            }
        }
    }

    /// Drives hyper's HTTP/1 connection under the rules; returns hyper's
    /// result (or why the rules ended it) and the detach, if there was one.
    async fn drive_http1<F>(
        &mut self,
        mut conn: Pin<&mut F>,
    ) -> (Result<Result<(), hyper::Error>, Ended>, Option<Detach>)
    where
        F: Future<Output = Result<(), hyper::Error>>,
    {
        let mut detach: Option<Detach> = None;
        let timeouts = *self.ctl.engine.timeouts();
        loop {
            if self.ctl.is_parked() {
                // hyper waits for the rest of a head; dropped with this future.
                return (Ok(Ok(())), detach);
            }
            if detach.is_some_and(|d| d.reason == Reason::Dormant)
                && self.ctl.io_mode() == IoMode::Normal
            {
                // A request had started when hyper read: it serves on.
                detach = None;
            }
            let engine = &self.ctl.engine;
            let now = engine.now();
            let verdict = http1(
                now,
                engine.phase(),
                &self.ctl.snapshot(),
                &timeouts,
                self.moving(),
                detach.map(|d| d.at),
            );
            let at = match verdict {
                Verdict::Wait(at) => at,
                Verdict::Detach(reason) => {
                    trace!(?reason, "http/1 connection detached at its boundary");
                    // Going dormant never cuts a request that has started.
                    self.ctl.set_io_mode(match reason {
                        Reason::Dormant => IoMode::DetachAtBoundary,
                        _ => IoMode::Detach,
                    });
                    detach = Some(Detach { reason, at: now });
                    continue;
                }
                Verdict::Close(reason) | Verdict::GoAway(reason) => {
                    return (Err(Ended(reason, self.ctl.state())), detach);
                }
            };
            // The bounds first: when a bound has passed and a request is
            // waiting too, the connection is detached before hyper reads,
            // and the request is served on after the boundary (that path
            // must not depend on which future the runtime happens to poll).
            self.waiter.set(at);
            let done = std::future::poll_fn(|cx| {
                if self.waiter.poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                conn.as_mut().poll(cx).map(Some)
            })
            .await;
            if let Some(result) = done {
                return (Ok(result), detach);
            }
        }
    }

    /// The application has the connection (WebSocket, `CONNECT`); it comes
    /// back when the application lets go of it.
    async fn upgraded(&mut self, mut back: oneshot::Receiver<Returned>, fd: RawFd) -> Ending {
        loop {
            let phase = self.ctl.engine.phase();
            if matches!(phase, Phase::Forced { .. }) {
                // `back` is held: the descriptor is alive while it is cut.
                force_shutdown(fd);
                return Ending::Forced(ConnState::Upgraded);
            }
            tokio::select! {
                returned = &mut back => {
                    if let Ok(returned) = returned {
                        returned.transport.close(self.ctl.engine.timeouts().linger).await;
                    }
                    return Ending::Closed;
                }
                () = self.waiter.until(None) => {}
            }
        }
    }

    async fn http2<S, B>(&mut self, transport: Transport, service: S) -> Ending
    where
        S: HttpService<B>,
        B: ResponseBody,
    {
        self.ctl.set_state(ConnState::Http2);
        let timeouts = *self.ctl.engine.timeouts();
        probe_vanished_peer(transport.as_fd(), unacknowledged_for(timeouts.send));
        let (io, back) = ConnIo::new(transport, Arc::clone(&self.ctl), false, None);
        let adapter = self.adapter(service, Proto::Http2);
        let streams = Streams::new(self.shared.inline_streams);
        let mut builder = hyper::server::conn::http2::Builder::new(streams.clone());
        builder.timer(TokioTimer::new()).enable_connect_protocol();
        let result = {
            let mut conn = pin!(Inline::new(
                builder.serve_connection(TokioIo::new(io), adapter),
                streams,
            ));
            let mut goaway_at = None;
            loop {
                let engine = &self.ctl.engine;
                let now = engine.now();
                let verdict = http2(
                    now,
                    engine.phase(),
                    &self.ctl.snapshot(),
                    &timeouts,
                    goaway_at,
                );
                let at = match verdict {
                    Verdict::Wait(at) => at,
                    Verdict::GoAway(reason) => {
                        // Two-phase GOAWAY: hyper sends GOAWAY(2^31-1) + PING,
                        // then the real last stream id once the PING is acknowledged.
                        trace!(?reason, "http/2 connection told to go away");
                        conn.as_mut().conn().graceful_shutdown();
                        goaway_at = Some(now);
                        continue;
                    }
                    Verdict::Close(reason) | Verdict::Detach(reason) => {
                        break Err(Ended(reason, ConnState::Http2));
                    }
                };
                tokio::select! {
                    result = conn.as_mut() => break Ok(result),
                    () = self.waiter.until(at) => {}
                }
            }
        };
        let reclaimed = self.ctl.snapshot().reclaim;
        match result {
            Err(Ended(Reason::Deadline, state)) => Ending::Forced(state),
            Err(Ended(reason, _)) => {
                debug!(?reason, "http/2 connection closed by a bound");
                Ending::Closed
            }
            Ok(result) => {
                if let Err(e) = result {
                    debug!(error = %e, "http/2 connection ended with an error");
                }
                if let Ok(returned) = back.await
                    && !reclaimed
                {
                    returned.transport.close(timeouts.linger).await;
                }
                Ending::Closed
            }
        }
    }

    /// A dormant HTTP/1 connection: it keeps its socket (and TLS state) and
    /// its tracker, and nothing of hyper's, until its next byte (then hyper
    /// serves it again), one of its bounds, or the drain.
    ///
    /// Nothing is kept across the wait but a poll of the socket's readiness
    /// and of the waiter, and the stages after it are boxed: this is the
    /// state a quiet keep-alive connection spends its life in.
    async fn dormant(&mut self, transport: &mut Transport) -> Woken {
        self.ctl.set_dormant(true);
        self.shared.trim.enter();
        trace!("http/1 connection dormant");
        let woken = loop {
            let engine = &self.ctl.engine;
            let verdict = http1(
                engine.now(),
                engine.phase(),
                &self.ctl.snapshot(),
                engine.timeouts(),
                self.moving(),
                None,
            );
            let at = match verdict {
                Verdict::Wait(at) => at,
                Verdict::Detach(reason) | Verdict::GoAway(reason) | Verdict::Close(reason) => {
                    break Woken::Rule(reason);
                }
            };
            self.waiter.set(at);
            let readable = std::future::poll_fn(|cx| {
                if transport.poll_read_ready(cx).is_ready() {
                    return Poll::Ready(true);
                }
                self.waiter.poll(cx).map(|()| false)
            })
            .await;
            if readable {
                match transport.read_now() {
                    ReadNow::Data => {
                        trace!("dormant http/1 connection woken by a request");
                        self.ctl.head_starts_now();
                        self.ctl.set_io_mode(IoMode::Normal);
                        break Woken::Request;
                    }
                    ReadNow::Nothing => {}
                    ReadNow::Closed => break Woken::Closed,
                }
            }
        };
        self.shared.trim.leave();
        woken
    }

    /// A dormant connection's end by a rule: moved to a newer generation
    /// (served here again when none takes it), closed (lingering, or at once
    /// when its descriptor is wanted), or force-closed.
    async fn end_dormant(&mut self, transport: Transport, reason: Reason) -> Step {
        match reason {
            Reason::Deadline => Ending::Forced(self.ctl.state()).into(),
            Reason::Drain if self.moving() => match self.hand_off(transport).await {
                Ok(ending) => ending.into(),
                Err(back) => Step::Http1(back),
            },
            Reason::Reclaim => Ending::Closed.into(),
            reason => {
                trace!(?reason, "dormant http/1 connection closed by a bound");
                transport.close(self.ctl.engine.timeouts().linger).await;
                Ending::Closed.into()
            }
        }
    }

    fn adapter<S>(&self, inner: S, proto: Proto) -> Adapter<S> {
        Adapter {
            inner,
            ctl: Arc::clone(&self.ctl),
            info: self.info,
            proto,
            body_timeout: self.ctl.engine.timeouts().body,
            keep_alive_in_drain: false,
        }
    }
}

/// Turns on TCP keep-alive probes for a long-lived connection (HTTP/2), so
/// that a peer that vanished (no FIN, no RST) is noticed while the
/// connection waits, as Go's net/http does for every connection, and bounds
/// how long sent bytes may go unacknowledged (`TCP_USER_TIMEOUT`: a peer that
/// vanished with bytes in flight, which probes do not cover). The kernel's
/// probes, rather than HTTP/2 PINGs: hyper's keep-alive reads the clock and
/// polls a timer on every frame (0.6 µs of a 13 µs request at `h2load
/// -m1`), the kernel's cost nothing until the connection is quiet. A unix
/// socket has neither; nothing is done.
fn probe_vanished_peer(fd: std::os::fd::BorrowedFd<'_>, unacknowledged: std::time::Duration) {
    use rustix::net::sockopt;
    let ms = u32::try_from(unacknowledged.as_millis()).unwrap_or(u32::MAX);
    let set = sockopt::set_tcp_keepidle(fd, PROBE_AFTER)
        .and_then(|()| sockopt::set_tcp_keepintvl(fd, PROBE_EVERY))
        .and_then(|()| sockopt::set_tcp_keepcnt(fd, PROBES))
        .and_then(|()| sockopt::set_socket_keepalive(fd, true))
        .and_then(|()| sockopt::set_tcp_user_timeout(fd, ms));
    if let Err(e) = set {
        trace!(error = %e, "no tcp keep-alive on this connection");
    }
}

/// A connection that has sent nothing yet: the HTTP/1 rule for its first
/// request (`movable`: it may be handed over).
fn first_request_rule(now: u64, phase: Phase, ctl: &ConnCtl, movable: bool) -> Option<Verdict> {
    Some(http1(
        now,
        phase,
        &ctl.snapshot(),
        ctl.engine.timeouts(),
        movable && ctl.engine.handing_off(),
        None,
    ))
}

fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Tells h2c (the preface) from HTTP/1: `Some(true)` for h2c, `None` when
/// the client closes first. TCP peeks, so the bytes stay in the socket and
/// nothing is copied; a partial preface (rare) and unix sockets read into
/// `read` instead, which goes back in front (and survives this future being
/// dropped, so a connection cut short here loses no byte).
async fn sniff(stream: &mut Stream, read: &mut BytesMut) -> Option<bool> {
    if let (true, Stream::Tcp(tcp)) = (read.is_empty(), &*stream) {
        let mut peeked = [0u8; H2_PREFACE.len()];
        let n = tcp.peek(&mut peeked).await.ok()?;
        if n == 0 {
            return None;
        }
        if !H2_PREFACE.starts_with(&peeked[..n]) {
            return Some(false);
        }
        if n == H2_PREFACE.len() {
            return Some(true);
        }
    }
    while read.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(read) {
        let mut chunk = [0u8; H2_PREFACE.len()];
        let want = H2_PREFACE.len() - read.len();
        match stream.read(&mut chunk[..want]).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => read.extend_from_slice(&chunk[..n]),
        }
    }
    Some(read.as_ref() == H2_PREFACE)
}

/// What a connection's task waits on between verdicts: a time, and its
/// tracker's pokes (the phase changed, a request ended in a drain, ...).
/// Polled on every wake-up of the connection, so it touches little: the
/// time, once set, pokes the tracker when it comes, so a wake-up reads the
/// tracker's flag, and registers the task's waker with the tracker (a lock)
/// only when it is not the one registered last (a poke leaves the waker in
/// place). Its own timer's waker (`ConnCtl::poker`) is never the one it
/// registers: `set` polls the timer alone with it.
struct Waiter {
    sleep: Pin<Box<Sleep>>,
    ctl: Arc<ConnCtl>,
    /// The time set had come when it was set: the next wait ends at once.
    due: bool,
    /// The waker last registered with the tracker (a poke wakes it): a
    /// poll with the same one registers nothing.
    registered: Option<Waker>,
}

impl Waiter {
    fn new(ctl: &Arc<ConnCtl>) -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep(std::time::Duration::ZERO)),
            ctl: Arc::clone(ctl),
            due: false,
            registered: None,
        }
    }

    /// Returns at engine time `at`, or when the connection is poked.
    async fn until(&mut self, at: Option<u64>) {
        self.set(at);
        std::future::poll_fn(|cx| self.poll(cx)).await;
    }

    /// Sets the time [`Waiter::poll`] waits for, if any (a time set before
    /// and not come yet may still end a wait, as a poke does: early, never
    /// late).
    fn set(&mut self, at: Option<u64>) {
        let Some(at) = at else {
            return;
        };
        let deadline = self.ctl.engine.instant(at);
        self.sleep.as_mut().reset(deadline.into());
        // Registered now, with a waker that pokes: a wait past its time ends.
        let poker = self.ctl.poker();
        self.due = self
            .sleep
            .as_mut()
            .poll(&mut Context::from_waker(&poker))
            .is_ready();
    }

    /// Ready once the time set has come, or the connection was poked.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if std::mem::take(&mut self.due) {
            return Poll::Ready(());
        }
        // The task's waker does not change from poll to poll: registered
        // once, not on every poll (which cost two atomic exchanges per
        // request).
        if !self
            .registered
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()))
        {
            self.ctl.register_task(cx.waker());
            self.registered = Some(cx.waker().clone());
        }
        if self.ctl.take_poke() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.ctl.forget_task();
    }
}

/// hyper's HTTP/1 connection as gracedown configures it: the drain rules
/// bound the head (in total) and the idle time; the write strategy is hyper's
/// choice for the transport unless flattened writes are asked for
/// ([`Server::http1_writev`](super::Server::http1_writev)).
fn http1_builder(keep_alive: bool, writev: bool) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.keep_alive(keep_alive).header_read_timeout(None);
    if !writev {
        builder.writev(false);
    }
    builder
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;
    use std::time::Duration;

    use super::*;
    use crate::drain::{Bounds, Engine};

    /// A task's waker that counts its wakes.
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counted() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (Arc::clone(&count), Waker::from(count))
    }

    fn wakes(count: &Count) -> usize {
        count.0.load(Ordering::SeqCst)
    }

    /// A registered connection's tracker and the waiter of its task.
    fn waiting() -> (Arc<ConnCtl>, Waiter) {
        let engine = Engine::new(Bounds::DEFAULT);
        let ctl = Arc::clone(&engine.register(ConnState::NoRequest).ctl);
        let waiter = Waiter::new(&ctl);
        (ctl, waiter)
    }

    #[tokio::test]
    async fn every_poke_wakes_the_waiting_task() {
        let (ctl, mut waiter) = waiting();
        let (count, waker) = counted();
        let mut cx = Context::from_waker(&waker);
        for round in 1..=3 {
            assert!(waiter.poll(&mut cx).is_pending());
            assert!(waiter.poll(&mut cx).is_pending());
            ctl.poke();
            assert_eq!(wakes(&count), round, "poke {round} woke the task");
            assert!(waiter.poll(&mut cx).is_ready());
        }
        // A poke between two waits (it wakes the waker of the last) is kept
        // for the next wait.
        ctl.poke();
        assert!(waiter.poll(&mut cx).is_ready());
        // Another task's waker is registered in its place.
        let (other, other_waker) = counted();
        assert!(waiter.poll(&mut cx).is_pending());
        let mut other_cx = Context::from_waker(&other_waker);
        assert!(waiter.poll(&mut other_cx).is_pending());
        ctl.poke();
        assert_eq!((wakes(&count), wakes(&other)), (4, 1));
    }

    #[tokio::test]
    async fn a_poke_that_races_a_poll_leaves_the_task_wakeable() {
        let (ctl, mut waiter) = waiting();
        let (count, waker) = counted();
        let mut cx = Context::from_waker(&waker);
        assert!(waiter.poll(&mut cx).is_pending());
        // Another thread's poke has set its mark, not yet woken.
        let wake = ctl.poke_in_halves();
        assert!(waiter.poll(&mut cx).is_ready(), "the mark ends the wait");
        assert!(waiter.poll(&mut cx).is_pending(), "the next wait registers");
        // The poke's wake finds the waker registered (it stays in place).
        wake();
        assert_eq!(wakes(&count), 1);
        assert!(waiter.poll(&mut cx).is_pending());
        ctl.poke();
        assert_eq!(wakes(&count), 2, "a later poke still wakes the task");
    }

    #[tokio::test]
    async fn a_waiter_that_ends_leaves_no_waker_of_its_task_behind() {
        let (ctl, mut waiter) = waiting();
        let (count, waker) = counted();
        assert!(waiter.poll(&mut Context::from_waker(&waker)).is_pending());
        drop(waker);
        assert_eq!(
            Arc::strong_count(&count),
            3,
            "the waiter's and the tracker's"
        );
        drop(waiter);
        assert_eq!(Arc::strong_count(&count), 1, "the task's alone");
        ctl.poke();
        assert_eq!(wakes(&count), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn every_time_set_wakes_the_waiter_once_it_has_passed() {
        let (ctl, mut waiter) = waiting();
        let (count, waker) = counted();
        let mut cx = Context::from_waker(&waker);
        for round in 1..=3 {
            // The engine's time of a second from now on the runtime's
            // (paused) clock.
            let at = tokio::time::Instant::now() + Duration::from_secs(1);
            waiter.set(Some(ctl.engine.at(at.into_std())));
            assert!(waiter.poll(&mut cx).is_pending());
            assert!(waiter.poll(&mut cx).is_pending());
            tokio::time::advance(Duration::from_secs(2)).await;
            assert_eq!(wakes(&count), round, "time {round} woke the task");
            assert!(waiter.poll(&mut cx).is_ready());
        }
        // A time that has come when it is set ends the next wait at once.
        waiter.set(Some(0));
        assert!(waiter.poll(&mut cx).is_ready());
        assert!(waiter.poll(&mut cx).is_pending());
    }

    #[test]
    fn flattened_writes_reach_hyper_and_vectored_ones_stay_its_choice() {
        // hyper's builder shows its settings only through `Debug`.
        let flat = format!("{:?}", super::http1_builder(true, false));
        assert!(flat.contains("h1_writev: Some(false)"), "{flat}");
        let auto = format!("{:?}", super::http1_builder(true, true));
        assert!(auto.contains("h1_writev: None"), "{auto}");
    }
}
