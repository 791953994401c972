//! An HTTP/1 connection: hyper serves it under the rules' verdicts; at a
//! message boundary it is detached (then closed, moved or left dormant),
//! an upgrade hands it to the application, and a dormant connection waits
//! for its next byte without hyper.

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;

use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;
use tracing::{debug, trace};

use gracedown_sockets::handoff::MAX_PREFIX;

use super::{Conn, Ended, Ending, Step, Woken};
use crate::drain::{ConnState, IoMode, Phase, Proto, Reason, Verdict, http1};
use crate::serve::app::{HttpService, ResponseBody};
use crate::serve::io::{ConnIo, ReadNow, Returned, Transport, force_shutdown};

/// A detach: what follows once hyper has stopped at the boundary, and when
/// it was chosen (engine time).
#[derive(Debug, Clone, Copy)]
struct Detach {
    then: Then,
    at: u64,
}

/// What follows a detach (the rules' verdict, obeyed as given).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    /// [`Verdict::Move`]: the connection moves to the newer generation.
    Move,
    /// [`Verdict::Detach`]: it closes, or goes dormant for [`Reason::Dormant`].
    Stop(Reason),
}

impl Conn {
    /// Serves HTTP/1 with hyper until the connection ends or goes dormant.
    pub(super) async fn http1<S, B>(&mut self, mut transport: Transport, service: S) -> Step
    where
        S: HttpService<B>,
        B: ResponseBody,
    {
        let timeouts = *self.ctl.engine.timeouts();
        let fd = transport.as_fd().as_raw_fd();
        let mut keep_alive = true;
        self.ctl.set_dormant(false);
        loop {
            // A connection that may move reads no more than a move can carry.
            let prefix_room = self.link.is_some().then_some(MAX_PREFIX);
            let (io, back) = ConnIo::new(transport, Arc::clone(&self.ctl), true, prefix_room);
            let adapter = self.adapter(service.clone(), Proto::Http1);
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
            let then = detach.map(|d| d.then);
            let clean = matches!(result, Ok(Ok(())))
                && returned.at_boundary
                && then.is_some_and(|then| then != Then::Stop(Reason::HeaderTimeout))
                && self.ctl.in_flight() == 0;
            let mut returned = returned.transport;
            if !clean {
                if let Ok(Err(e)) = &result {
                    debug!(error = %e, "http/1 connection ended with an error");
                }
                returned.close(timeouts.linger).await;
                return Ending::Closed.into();
            }
            match then {
                Some(Then::Stop(Reason::Reclaim)) => return Ending::Closed.into(),
                // At a boundary, every byte read parsed: what comes next
                // (in the socket, or read already) starts a request there.
                Some(Then::Move) => match self.hand_off(returned).await {
                    Ok(ending) => return ending.into(),
                    Err(back) => {
                        // Nobody takes it: served here, closing after the
                        // next response.
                        (transport, keep_alive) = (back, false);
                        continue;
                    }
                },
                _ => {}
            }
            // What is in the socket now starts a new request.
            match returned.read_now() {
                ReadNow::Data => {
                    trace!("a request raced the close; serving it");
                    self.ctl.set_io_mode(IoMode::Normal);
                    self.ctl.head_starts_now();
                    keep_alive = !self.ctl.closes_after_response();
                    transport = returned;
                }
                ReadNow::Nothing if then == Some(Then::Stop(Reason::Dormant)) => {
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
            if detach.is_some_and(|d| d.then == Then::Stop(Reason::Dormant))
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
                self.ctl.moves(),
                detach.map(|d| d.at),
            );
            let at = match verdict {
                Verdict::Wait(at) => at,
                Verdict::Move => {
                    trace!("http/1 connection detached at its boundary, to move");
                    self.ctl.set_io_mode(IoMode::Move);
                    detach = Some(Detach {
                        then: Then::Move,
                        at: now,
                    });
                    continue;
                }
                Verdict::Detach(reason) => {
                    trace!(?reason, "http/1 connection detached at its boundary");
                    // Going dormant never cuts a request that has started.
                    self.ctl.set_io_mode(match reason {
                        Reason::Dormant => IoMode::DetachAtBoundary,
                        _ => IoMode::Detach,
                    });
                    detach = Some(Detach {
                        then: Then::Stop(reason),
                        at: now,
                    });
                    continue;
                }
                Verdict::Close(reason) => {
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

    /// A dormant HTTP/1 connection: it keeps its socket (and TLS state) and
    /// its tracker, and nothing of hyper's, until its next byte (then hyper
    /// serves it again), one of its bounds, or the drain.
    ///
    /// Nothing is kept across the wait but a poll of the socket's readiness
    /// and of the waiter, and the stages after it are boxed: this is the
    /// state a quiet keep-alive connection spends its life in.
    pub(super) async fn dormant(&mut self, transport: &mut Transport) -> Woken {
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
                self.ctl.moves(),
                None,
            );
            let at = match verdict {
                Verdict::Wait(at) => at,
                Verdict::Move => break Woken::Move,
                Verdict::Detach(reason) | Verdict::Close(reason) => break Woken::Rule(reason),
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

    /// A dormant connection moves to a newer generation, or is served here
    /// again when none takes it.
    pub(super) async fn move_dormant(&mut self, transport: Transport) -> Step {
        match self.hand_off(transport).await {
            Ok(ending) => ending.into(),
            Err(back) => Step::Http1(back),
        }
    }

    /// A dormant connection's end by a rule: closed (lingering, or at once
    /// when its descriptor is wanted), or force-closed.
    pub(super) async fn end_dormant(&mut self, mut transport: Transport, reason: Reason) -> Step {
        match reason {
            Reason::Deadline => Ending::Forced(self.ctl.state()).into(),
            Reason::Reclaim => Ending::Closed.into(),
            reason => match transport.read_now() {
                // A request that raced the bound is served, as on a
                // connection hyper held (in a drain its response closes).
                ReadNow::Data => {
                    trace!("a request raced the close of a dormant connection; serving it");
                    self.ctl.head_starts_now();
                    self.ctl.set_io_mode(IoMode::Normal);
                    Step::Http1(transport)
                }
                ReadNow::Closed => Ending::Closed.into(),
                ReadNow::Nothing => {
                    trace!(?reason, "dormant http/1 connection closed by a bound");
                    transport.close(self.ctl.engine.timeouts().linger).await;
                    Ending::Closed.into()
                }
            },
        }
    }
}

/// hyper's HTTP/1 connection as gracedown configures it: the drain rules
/// bound the head (in total) and the idle time; the write strategy is hyper's
/// choice for the transport unless flattened writes are asked for
/// ([`Tuning::http1_writev`](crate::serve::Tuning::http1_writev)).
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
    #[test]
    fn flattened_writes_reach_hyper_and_vectored_ones_stay_its_choice() {
        // hyper's builder shows its settings only through `Debug`.
        let flat = format!("{:?}", super::http1_builder(true, false));
        assert!(flat.contains("h1_writev: Some(false)"), "{flat}");
        let auto = format!("{:?}", super::http1_builder(true, true));
        assert!(auto.contains("h1_writev: None"), "{auto}");
    }
}
