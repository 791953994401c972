//! One connection, from accept to close: TLS handshake, protocol choice
//! (ALPN, or the h2c preface), serving HTTP/1.1 (with upgrades) or HTTP/2,
//! and acting on the drain rules' verdicts until it ends.

mod http1;
mod http2;
mod moving;
#[cfg(feature = "tls")]
mod tls;
mod waiter;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tracing::{debug, trace};

use gracedown_sockets::handoff::MovingTls;

use self::waiter::Waiter;
use super::app::{HttpService, MakeService, ResponseBody};
use super::info::ConnectionInfo;
use super::io::{Stream, Transport};
use super::link::Link;
use super::service::{Adapter, make};
use super::shared::Shared;
use crate::drain::{ConnCtl, ConnState, Phase, Proto, Reason, Registration, Verdict, http1};

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
    /// The rules move it to the newer generation.
    Move,
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
    /// A connection an older generation handed over, and what came with it.
    pub(crate) handed: Option<Handed>,
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

/// What came with a connection an older generation handed over.
pub(crate) struct Handed {
    /// The bytes it had read from it already (plaintext under TLS), served first.
    pub(crate) prefix: Bytes,
    /// It had sent no request yet (plain, it may still turn out to be h2c).
    pub(crate) fresh: bool,
    /// Its TLS session, continued here.
    pub(crate) tls: Option<MovingTls>,
    /// An HTTP/2 connection's state at the quiet moment it moved at.
    pub(crate) http2: Option<Bytes>,
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
            // that moves to the next generation alive until it moves.
            Step::Http1(transport) => Box::pin(conn.http1(transport, service.clone())).await,
            Step::Dormant(mut transport) => match conn.dormant(&mut transport).await {
                Woken::Request => Step::Http1(transport),
                Woken::Closed => break Ending::Closed,
                Woken::Move => Box::pin(conn.move_dormant(transport)).await,
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
        link: None,
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
        Some(Handed {
            prefix,
            tls,
            http2: Some(state),
            ..
        }) => Box::pin(conn.run_handed_http2(stream, tls, prefix, &state, service.clone()))
            .await
            .into(),
        // Under TLS, ALPN chose HTTP/1.1 already.
        Some(Handed {
            prefix,
            fresh,
            tls: Some(tls),
            http2: None,
        }) => conn.run_handed_tls(stream, tls, prefix, fresh),
        // Fresh: told apart from h2c as if just accepted.
        Some(Handed {
            prefix,
            fresh: true,
            tls: None,
            http2: None,
        }) => conn.run(stream, Some(prefix), service.clone()).await,
        Some(Handed {
            prefix,
            fresh: false,
            tls: None,
            http2: None,
        }) => conn.run_handed(stream, prefix),
    };
    Some((conn, service, step))
}

/// One connection's task: what every stage of it reads.
struct Conn {
    ctl: Arc<ConnCtl>,
    shared: Arc<Shared>,
    /// The channel to the next generation, for a connection under
    /// gracedown's start_server that can move when this one drains.
    link: Option<Arc<Link>>,
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

/// What a verdict loop returns when the rules end the connection first: why,
/// and the state it was in (read before the connection is torn down, which
/// ends its request).
#[derive(Debug, Clone, Copy)]
struct Ended(Reason, ConnState);

/// Why [`Conn::bounded`] stopped before its future completed.
#[derive(Debug, Clone, Copy)]
enum Stopped {
    /// The rules move the connection to the newer generation.
    Move,
    /// The rules end it.
    Ended(Ended),
}

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
        self.may_move(false);
        let read = handed.unwrap_or_default();
        let (mut stream, mut sniffed) = (stream, BytesMut::from(read));
        let h2 = loop {
            match self
                .bounded(sniff(&mut stream, &mut sniffed), first_request_rule)
                .await
            {
                Ok(Some(h2)) => break h2,
                Ok(None) => return Ending::Closed.into(),
                Err(Stopped::Move) => {
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
                Err(stopped) => return self.stopped_early(stopped).into(),
            }
        };
        let transport = Transport::plain(stream, sniffed.freeze());
        if h2 {
            self.may_move_http2(false);
            self.ctl.pace_reconnect();
            Box::pin(self.http2(transport, service, None)).await.into()
        } else {
            Step::Http1(transport)
        }
    }

    /// Runs `fut` until it completes or the connection's bound (from
    /// `rule`, or the handshake bound when it has none) or the deadline ends it.
    async fn bounded<F: Future>(
        &mut self,
        fut: F,
        rule: impl Fn(u64, Phase, &ConnCtl) -> Option<Verdict>,
    ) -> Result<F::Output, Stopped> {
        let mut fut = std::pin::pin!(fut);
        let handshake = self.ctl.engine.timeouts().handshake;
        loop {
            let engine = &self.ctl.engine;
            let (now, phase) = (engine.now(), engine.phase());
            if matches!(phase, Phase::Forced { .. }) {
                return Err(Stopped::Ended(Ended(Reason::Deadline, self.ctl.state())));
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
                Verdict::Move => return Err(Stopped::Move),
                Verdict::Detach(reason) | Verdict::Close(reason) => {
                    return Err(Stopped::Ended(Ended(reason, self.ctl.state())));
                }
            };
            tokio::select! {
                output = fut.as_mut() => return Ok(output),
                () = self.waiter.until(at) => {}
            }
        }
    }

    /// How a connection ended that the rules stopped before its first
    /// request (a move is not an end: the caller hands it off).
    fn stopped_early(&self, stopped: Stopped) -> Ending {
        match stopped {
            Stopped::Ended(Ended(Reason::Deadline, state)) => Ending::Forced(state),
            Stopped::Ended(Ended(reason, _)) => {
                trace!(?reason, "connection closed before its first request");
                Ending::Closed
            }
            Stopped::Move => Ending::Closed,
        }
    }

    fn adapter<S>(&self, inner: S, proto: Proto) -> Adapter<S> {
        Adapter {
            inner,
            ctl: Arc::clone(&self.ctl),
            info: self.info,
            proto,
            body_timeout: self.ctl.engine.timeouts().body,
        }
    }
}

/// A connection that has sent nothing yet: the HTTP/1 rule for its first
/// request.
fn first_request_rule(now: u64, phase: Phase, ctl: &ConnCtl) -> Option<Verdict> {
    Some(http1(
        now,
        phase,
        &ctl.snapshot(),
        ctl.engine.timeouts(),
        ctl.moves(),
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
