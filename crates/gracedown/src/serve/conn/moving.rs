//! Connections that move: one handed over by an older generation starts
//! here (plain, or under TLS with its session), and one the rules move goes
//! to the newer generation (or, refused, is served here again).

use std::io;

use bytes::Bytes;
use tracing::debug;

use gracedown_sockets::handoff::{Clocks, Moving, MovingTls};

use super::{Conn, Ending, Step};
use crate::drain::IoMode;
use crate::http2::State;
use crate::serve::app::{HttpService, ResponseBody};
use crate::serve::io::{Stream, Transport};
use crate::serve::link::HandoffOutcome;

impl Conn {
    /// A connection an older generation handed over: plain HTTP/1.1, at a
    /// message boundary, `prefix` read from it already.
    pub(super) fn run_handed(&mut self, stream: Stream, prefix: Bytes) -> Step {
        self.serve_handed(Transport::plain(stream, prefix), false, false)
    }

    /// A connection an older generation handed over under TLS: its session
    /// goes on here, on the same TCP connection, with no handshake; `prefix`
    /// is plaintext it had opened already; `fresh`: no request yet (ALPN
    /// chose HTTP/1.1 at the handshake).
    pub(super) fn run_handed_tls(
        &mut self,
        stream: Stream,
        tls: MovingTls,
        prefix: Bytes,
        fresh: bool,
    ) -> Step {
        let transport = match continued(stream, tls, prefix) {
            Ok(transport) => transport,
            Err(e) => {
                debug!(error = %e, "a handed-over TLS session cannot go on here; closed");
                return Ending::Closed.into();
            }
        };
        self.info.tls = true;
        // Paced, should it have to reconnect (no generation to move to).
        self.ctl.pace_reconnect();
        self.serve_handed(transport, fresh, true)
    }

    /// An HTTP/2 connection an older generation handed over at a quiet
    /// moment (plain, or under TLS with its session): a fresh h2 goes on
    /// from `state`, and it can move on again.
    pub(super) async fn run_handed_http2<S, B>(
        &mut self,
        stream: Stream,
        tls: Option<MovingTls>,
        prefix: Bytes,
        state: &[u8],
        service: S,
    ) -> Ending
    where
        S: HttpService<B>,
        B: ResponseBody,
    {
        let state = match State::decode(state) {
            Ok(state) => state,
            Err(e) => {
                debug!(error = %e, "a handed-over HTTP/2 connection cannot go on here; closed");
                return Ending::Closed;
            }
        };
        let transport = match tls {
            None => Transport::plain(stream, prefix),
            Some(tls) => match continued(stream, tls, prefix) {
                Ok(transport) => {
                    self.info.tls = true;
                    transport
                }
                Err(e) => {
                    debug!(error = %e, "a handed-over TLS session cannot go on here; closed");
                    return Ending::Closed;
                }
            },
        };
        let tls = self.info.tls;
        self.may_move_http2(tls);
        self.ctl.served_before();
        // Paced, should it have to go away (no generation to move to).
        self.ctl.pace_reconnect();
        self.http2(transport, service, Some(state)).await
    }

    /// Serves a handed-over connection as HTTP/1.1: it can move on again;
    /// `fresh`: it has sent no request yet.
    fn serve_handed(&mut self, transport: Transport, fresh: bool, tls: bool) -> Step {
        self.may_move(tls);
        if !fresh {
            self.ctl.served_before();
        }
        if transport.has_prefix() {
            // Unless the older generation said since when it has arrived.
            self.ctl.head_bytes_arrived();
        }
        Step::Http1(transport)
    }

    /// The connection takes the link to the next generation, if this
    /// worker has one (and, under TLS, if sessions move with it): it can
    /// move when this generation drains (whether it does is the rules'
    /// verdict).
    pub(super) fn may_move(&mut self, tls: bool) {
        self.link = self
            .shared
            .link
            .clone()
            .filter(|link| !tls || link.moves_tls());
        self.ctl.set_movable(self.link.is_some());
    }

    /// An HTTP/2 connection takes the link to the next generation, if this
    /// worker has one that carries HTTP/2 state (and, under TLS, sessions).
    pub(super) fn may_move_http2(&mut self, tls: bool) {
        self.link = self
            .shared
            .link
            .clone()
            .filter(|link| link.moves_http2() && (!tls || link.moves_tls()));
        self.ctl.set_movable(self.link.is_some());
    }

    /// The connection cannot move (a newer generation refused it).
    pub(super) fn stays(&mut self) {
        self.link = None;
        self.ctl.set_movable(false);
    }

    /// Hands the connection to a newer generation, as the rules' verdict
    /// says. `Err` with the connection back when nobody takes it (or it
    /// cannot move at this moment): it can no longer move, and the caller
    /// serves it on as a drain without a handoff does (the next request,
    /// already sent or not, is answered with `Connection: close`), so that a
    /// refusal never loses a request that was pipelined behind keep-alive
    /// responses without telling the client.
    pub(super) async fn hand_off(&mut self, transport: Transport) -> Result<Ending, Transport> {
        self.hand_off_with(transport, None).await
    }

    /// [`Conn::hand_off`], for an HTTP/2 connection too: `http2` is its
    /// state at the quiet moment it moves at.
    pub(super) async fn hand_off_with(
        &mut self,
        transport: Transport,
        http2: Option<&State>,
    ) -> Result<Ending, Transport> {
        let link = self.link.take();
        self.stays();
        let Some(link) = link else {
            return Err(self.served_here(transport));
        };
        let fresh = self.ctl.requests() == 0 && !self.ctl.is_upgrading() && http2.is_none();
        // Its bounds go on in the next generation from the same times.
        let (engine, s) = (&self.ctl.engine, self.ctl.snapshot());
        let clocks = Clocks {
            quiet_since: engine.engine_to_monotonic(s.idle_since),
            head_since: match s.head_since {
                0 => 0,
                since => engine.engine_to_monotonic(since),
            },
        };
        let (socket, prefix, tls) = match transport.into_moving() {
            Ok(parts) => parts,
            Err(Some(transport)) => return Err(self.served_here(transport)),
            Err(None) => return Ok(Ending::Closed),
        };
        // Boxed: a handoff's future is large (its message buffer), and
        // every connection's task would otherwise hold room for it.
        let http2 = http2.map(|state| Bytes::from(state.encode()));
        match Box::pin(link.hand_off(socket, prefix, fresh, clocks, tls, http2)).await {
            // Our descriptor went without a FIN (and, under TLS, without a
            // close_notify): the connection lives on there.
            HandoffOutcome::Forwarded => Ok(Ending::HandedOff),
            HandoffOutcome::Refused(moving) => match taken_back(moving) {
                Ok(transport) => {
                    debug!("no generation took the connection; it drains here");
                    Err(self.served_here(transport))
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
}

/// A connection that was refused, back in this process: plain, or its TLS
/// session continued here (rustls let go of it when it was taken out).
fn taken_back(moving: Moving) -> io::Result<Transport> {
    let (stream, _, _) = Stream::adopt(moving.socket)?;
    match moving.tls {
        None => Ok(Transport::plain(stream, moving.prefix)),
        Some(tls) => continued(stream, tls, moving.prefix),
    }
}

/// A TLS session that moved, going on over `stream`.
#[cfg(feature = "tls")]
fn continued(stream: Stream, tls: MovingTls, prefix: Bytes) -> io::Result<Transport> {
    use crate::tls::session::{ContinuedTls, SessionState};
    let state = SessionState::decode(&tls.session)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let session = ContinuedTls::new(stream, state, tls.sealed)?;
    Ok(Transport::moved(session, prefix))
}

/// Without TLS no session can go on.
#[cfg(not(feature = "tls"))]
fn continued(_: Stream, _: MovingTls, _: Bytes) -> io::Result<Transport> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "a TLS session moved to a worker built without TLS",
    ))
}
