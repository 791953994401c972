//! Connections that move: one handed over by an older generation starts
//! here, and one the rules move goes to the newer generation (or, refused,
//! is served here again).

use tracing::debug;

use bytes::Bytes;
use gracedown_sockets::handoff::Clocks;

use super::{Conn, Ending, Step};
use crate::drain::IoMode;
use crate::serve::io::{Stream, Transport};
use crate::serve::link::HandoffOutcome;

impl Conn {
    /// A connection an older generation handed over: plain HTTP/1.1, at a
    /// message boundary, `prefix` read from it already.
    pub(super) fn run_handed(&mut self, stream: Stream, prefix: Bytes) -> Step {
        self.may_move();
        self.ctl.served_before();
        if !prefix.is_empty() {
            // Unless the older generation said since when it has arrived.
            self.ctl.head_bytes_arrived();
        }
        Step::Http1(Transport::plain(stream, prefix))
    }

    /// A plain connection takes the link to the next generation, if this
    /// worker has one: it can move when this generation drains (whether it
    /// does is the rules' verdict).
    pub(super) fn may_move(&mut self) {
        self.link = self.shared.link.clone();
        self.ctl.set_movable(self.link.is_some());
    }

    /// The connection cannot move (HTTP/2, a newer generation refused it).
    pub(super) fn stays(&mut self) {
        self.link = None;
        self.ctl.set_movable(false);
    }

    /// Hands the connection to a newer generation, as the rules' verdict
    /// says. `Err` with the connection back when nobody takes it: it can no
    /// longer move, and the caller serves it on as a drain without a
    /// handoff does (the next request, already sent or not, is answered with
    /// `Connection: close`), so that a refusal never loses a request that was
    /// pipelined behind keep-alive responses without telling the client.
    pub(super) async fn hand_off(&mut self, transport: Transport) -> Result<Ending, Transport> {
        let link = self.link.take();
        self.stays();
        let Some(link) = link else {
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
        match Box::pin(link.hand_off(socket, prefix, fresh, clocks)).await {
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
}
