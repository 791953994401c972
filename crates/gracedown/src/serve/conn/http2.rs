//! An HTTP/2 connection (h2c, or ALPN `h2`): hyper serves it, the rules'
//! verdicts bound it, and a drain moves it to the newer generation at a
//! quiet moment (see [`crate::http2`]) or tells it to go away.

use std::os::fd::{AsFd, BorrowedFd};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tracing::{debug, trace};

use super::{Conn, Ended, Ending};
use crate::drain::{ConnState, Http2Verdict, Proto, Reason, http2};
use crate::http2::{State, Wire};
use crate::serve::app::{HttpService, ResponseBody};
use crate::serve::io::{ConnIo, Transport};
use crate::serve::streams::{Inline, Streams};

/// HTTP/2 over TCP: the kernel probes a connection after this long without a
/// segment from the client, then every [`PROBE_EVERY`], and gives up when
/// the probes have gone unanswered for [`unacknowledged_for`] (a peer that
/// vanished is noticed in about a minute, even with a stream open and
/// nothing to send).
const PROBE_AFTER: Duration = Duration::from_secs(30);
const PROBE_EVERY: Duration = Duration::from_secs(10);
/// The kernel's count of unanswered probes (the user timeout set with them
/// decides when it gives up; this keeps a bound if that option is refused).
const PROBES: u32 = 2;

/// How long sent bytes may go unacknowledged (or the client's window stay
/// shut) before the kernel gives up on a connection: the send bound, and at
/// least as long as the probes take.
fn unacknowledged_for(send: Duration) -> Duration {
    send.max(PROBE_AFTER + PROBE_EVERY * PROBES)
}

/// How one hyper connection's service of an HTTP/2 connection ended.
enum Served {
    /// The connection ended.
    Ended(Ending),
    /// It was quiet when it was to move: hyper let go of it, and this is
    /// what moves.
    Quiet(Transport, State),
}

impl Conn {
    /// Serves HTTP/2 with hyper until the connection ends, a bound ends it
    /// or the drain's GOAWAY has been answered; or, when it can move and the
    /// drain moves it, until a quiet moment, when it goes to the newer
    /// generation. `resumed`: it moved here in this state (or was refused
    /// by the newer generation, and goes on here).
    pub(super) async fn http2<S, B>(
        &mut self,
        mut transport: Transport,
        service: S,
        mut resumed: Option<State>,
    ) -> Ending
    where
        S: HttpService<B>,
        B: ResponseBody,
    {
        self.ctl.set_state(ConnState::Http2);
        let timeouts = *self.ctl.engine.timeouts();
        probe_vanished_peer(transport.as_fd(), unacknowledged_for(timeouts.send));
        loop {
            match self
                .serve_http2(transport, service.clone(), resumed.take())
                .await
            {
                Served::Ended(ending) => return ending,
                Served::Quiet(quiet, state) => {
                    match self.hand_off_with(quiet, Some(&state)).await {
                        Ok(ending) => return ending,
                        // Nobody took it: a fresh h2 goes on with it here,
                        // and it goes away as one that cannot move.
                        Err(back) => (transport, resumed) = (back, Some(state)),
                    }
                }
            }
        }
    }

    /// One hyper connection's service of an HTTP/2 connection.
    async fn serve_http2<S, B>(
        &mut self,
        transport: Transport,
        service: S,
        resumed: Option<State>,
    ) -> Served
    where
        S: HttpService<B>,
        B: ResponseBody,
    {
        let timeouts = *self.ctl.engine.timeouts();
        let movable = self.link.is_some();
        let (mut io, back) = ConnIo::new(transport, Arc::clone(&self.ctl), false, None);
        match &resumed {
            Some(state) => io.follow_http2(Wire::resumed(state)),
            None if movable => io.follow_http2(Wire::new()),
            None => {}
        }
        let adapter = self.adapter(service, Proto::Http2);
        let streams = Streams::new(self.shared.inline_streams);
        let mut builder = hyper::server::conn::http2::Builder::new(streams.clone());
        builder.timer(TokioTimer::new()).enable_connect_protocol();
        if movable {
            // Decoding a request then needs no state: what moves is the
            // connection's windows and settings, never a header table.
            builder.header_table_size(0);
        }
        let result = {
            let mut conn = pin!(Inline::new(
                builder.serve_connection(TokioIo::new(io), adapter),
                streams,
            ));
            let mut goaway_at = None;
            let mut move_when_quiet = false;
            loop {
                let engine = &self.ctl.engine;
                let now = engine.now();
                let verdict = http2(
                    now,
                    engine.phase(),
                    &self.ctl.snapshot(),
                    &timeouts,
                    goaway_at,
                    self.ctl.moves(),
                );
                let at = match verdict {
                    Http2Verdict::Wait(at) => at,
                    Http2Verdict::Move(at) => {
                        if self.ctl.is_http2_quiet() {
                            break Err(Stop::Move);
                        }
                        move_when_quiet = true;
                        at
                    }
                    Http2Verdict::GoAway(reason) => {
                        // Two-phase GOAWAY: hyper sends GOAWAY(2^31-1) + PING,
                        // then the real last stream id once the PING is acknowledged.
                        trace!(?reason, "http/2 connection told to go away");
                        conn.as_mut().conn().graceful_shutdown();
                        goaway_at = Some(now);
                        move_when_quiet = false;
                        continue;
                    }
                    Http2Verdict::Close(reason) => {
                        break Err(Stop::Ended(Ended(reason, ConnState::Http2)));
                    }
                };
                // hyper, until it is done; or, to move, until the first
                // moment the connection is quiet (its transport says so as
                // frames go by, within hyper's poll).
                let ctl = &self.ctl;
                let served = std::future::poll_fn(|cx| match conn.as_mut().poll(cx) {
                    Poll::Pending if move_when_quiet && ctl.is_http2_quiet() => Poll::Ready(None),
                    polled => polled.map(Some),
                });
                tokio::select! {
                    result = served => match result {
                        Some(result) => break Ok(result),
                        None => break Err(Stop::Move),
                    },
                    () = self.waiter.until(at) => {}
                }
            }
        };
        // hyper is gone: the transport comes back.
        let reclaimed = self.ctl.snapshot().reclaim;
        match result {
            Err(Stop::Move) => {
                let Ok(returned) = back.await else {
                    return Served::Ended(Ending::Closed);
                };
                match returned.http2.as_deref().and_then(Wire::state) {
                    Some(state) => Served::Quiet(returned.transport, state),
                    None => {
                        debug!("an http/2 connection to move was not quiet after all; closed");
                        Served::Ended(Ending::Closed)
                    }
                }
            }
            Err(Stop::Ended(Ended(Reason::Deadline, state))) => {
                Served::Ended(Ending::Forced(state))
            }
            Err(Stop::Ended(Ended(reason, _))) => {
                debug!(?reason, "http/2 connection closed by a bound");
                Served::Ended(Ending::Closed)
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
                Served::Ended(Ending::Closed)
            }
        }
    }
}

/// Why the service loop stopped before hyper was done.
enum Stop {
    /// The connection is quiet and moves.
    Move,
    /// The rules end it.
    Ended(Ended),
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
fn probe_vanished_peer(fd: BorrowedFd<'_>, unacknowledged: Duration) {
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
