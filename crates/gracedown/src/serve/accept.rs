//! Where connections come from: each listener's accept loop (paused at the
//! connection limit, reclaiming slow heads and idle connections when
//! descriptors run out, taking what waits in the queue of a socket it owns
//! when accepting stops), and connections an older generation hands over.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gracedown_sockets::handoff::Moving;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tracing::{debug, error, info, warn};

use super::app::{HttpService, MakeService, ResponseBody};
use super::conn;
use super::io::Stream;
use super::shared::Shared;
use crate::drain::{ConnState, Engine};
use crate::error::Error;
use crate::listener::Listener;

/// How many idle connections are reclaimed at once when descriptors run out.
const RECLAIM_BATCH: usize = 16;

/// What serves a connection handed over by an older generation: registered
/// and served like an accepted one, counted by the drain (`alive`) as long
/// as the server runs; one that arrives after the server ended is closed.
pub(super) fn handed_in<M, S, B>(
    make_service: M,
    shared: Arc<Shared>,
    engine: Arc<Engine>,
    alive: mpsc::WeakSender<()>,
) -> impl Fn(Moving) + Send + 'static
where
    M: MakeService<S>,
    S: HttpService<B>,
    B: ResponseBody,
{
    move |Moving {
              socket,
              prefix,
              fresh,
              clocks,
              tls,
              http2,
          }| {
        let Some(alive) = alive.upgrade() else {
            return;
        };
        let (stream, peer, local) = match Stream::adopt(socket) {
            Ok(adopted) => adopted,
            Err(e) => {
                debug!(error = %e, "a handed-over connection cannot be served; closed");
                return;
            }
        };
        debug!(peer = ?peer, buffered = prefix.len(), "connection handed over");
        let registration = engine.register(ConnState::NoRequest);
        if let Some(clocks) = clocks {
            // Its bounds go on from where the older generation was: a
            // slow head or a quiet connection is not given a new clock by
            // every restart.
            let head_since = match clocks.head_since {
                0 => 0,
                ns => engine.monotonic_to_engine(ns),
            };
            let quiet_since = engine.monotonic_to_engine(clocks.quiet_since);
            registration.ctl.continue_bounds(quiet_since, head_since);
        }
        tokio::spawn(conn::serve(Box::new(conn::Accepted {
            stream,
            handed: Some(conn::Handed {
                prefix,
                fresh,
                tls,
                http2,
            }),
            peer,
            local,
            make_service: make_service.clone(),
            shared: Arc::clone(&shared),
            registration,
            permit: None,
            alive,
        })));
    }
}

/// An accepted connection: the stream, the peer's and the local address (TCP).
type Accepted = (Stream, Option<SocketAddr>, Option<SocketAddr>);

/// At most this many connections are taken from an accept queue when
/// accepting stops (Linux's default `somaxconn`).
const SWEEP_MAX: usize = 4096;

/// A listener registered with the runtime.
enum TokioListener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

impl TokioListener {
    fn new(listener: Listener) -> Result<Self, Error> {
        let register = |source| Error::Io {
            action: "register a listener with the runtime",
            source,
        };
        // A listener the user built may still be blocking; tokio needs it not to be.
        listener.set_nonblocking().map_err(register)?;
        Ok(match listener {
            Listener::Tcp(l) => Self::Tcp(tokio::net::TcpListener::from_std(l).map_err(register)?),
            Listener::Unix(l) => {
                Self::Unix(tokio::net::UnixListener::from_std(l).map_err(register)?)
            }
        })
    }

    async fn accept(&self) -> io::Result<Accepted> {
        match self {
            Self::Tcp(l) => {
                let (stream, peer) = l.accept().await?;
                // Small responses must not wait for Nagle.
                let _ = stream.set_nodelay(true);
                let local = stream.local_addr().ok();
                Ok((Stream::Tcp(stream), Some(peer), local))
            }
            Self::Unix(l) => l
                .accept()
                .await
                .map(|(stream, _)| (Stream::Unix(stream), None, None)),
        }
    }

    /// A client from the kernel's accept queue if one waits, without
    /// waiting (and without the runtime's readiness, which may lag).
    fn try_accept(&self) -> io::Result<Option<Accepted>> {
        let flags = rustix::net::SocketFlags::NONBLOCK | rustix::net::SocketFlags::CLOEXEC;
        let accepted = match self {
            Self::Tcp(l) => rustix::net::accept_with(l, flags).map(|fd| {
                let stream = std::net::TcpStream::from(fd);
                let _ = stream.set_nodelay(true);
                let (peer, local) = (stream.peer_addr().ok(), stream.local_addr().ok());
                tokio::net::TcpStream::from_std(stream).map(|s| (Stream::Tcp(s), peer, local))
            }),
            Self::Unix(l) => rustix::net::accept_with(l, flags).map(|fd| {
                tokio::net::UnixStream::from_std(std::os::unix::net::UnixStream::from(fd))
                    .map(|s| (Stream::Unix(s), None, None))
            }),
        };
        match accepted {
            Ok(registered) => registered.map(Some),
            Err(rustix::io::Errno::AGAIN) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether a client is waiting in the kernel's accept queue.
    fn has_waiting_client(&self) -> bool {
        let fd = match self {
            Self::Tcp(l) => l.as_fd(),
            Self::Unix(l) => l.as_fd(),
        };
        let mut fds = [rustix::event::PollFd::new(
            &fd,
            rustix::event::PollFlags::IN,
        )];
        matches!(rustix::event::poll(&mut fds, Some(&rustix::event::Timespec::default())), Ok(n) if n > 0)
    }
}

/// One listener's accept loop.
pub(super) struct Acceptor<M> {
    listener: TokioListener,
    /// Bound by this process: nobody else holds the socket, and what is in
    /// its queue when accepting stops is taken ([`Acceptor::sweep`]).
    owned: bool,
    make_service: M,
    shared: Arc<Shared>,
    engine: Arc<Engine>,
    limit: Option<Arc<Semaphore>>,
    alive: mpsc::Sender<()>,
    /// Accept failures since the last warning, and when that was.
    failures: Failures,
}

/// Accept failures, warned about at most once per [`WARN_EVERY`].
#[derive(Debug, Default)]
struct Failures {
    warned: Option<Instant>,
    failed: u64,
    reclaimed: u64,
}

/// At most one warning about failing accepts this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

impl<M> Acceptor<M> {
    /// The accept loop of `listener`, registered with the runtime.
    pub(super) fn new(
        listener: Listener,
        make_service: M,
        shared: Arc<Shared>,
        engine: Arc<Engine>,
        limit: Option<Arc<Semaphore>>,
        alive: mpsc::Sender<()>,
    ) -> Result<Self, Error> {
        let owned = listener.is_bound_here();
        Ok(Self {
            listener: TokioListener::new(listener)?,
            owned,
            make_service,
            shared,
            engine,
            limit,
            alive,
            failures: Failures::default(),
        })
    }

    /// Accepts until the drain starts, then drops the listener (closing our
    /// copy only: the socket stays open in the superdaemon and the next generation).
    pub(super) async fn run<S, B>(mut self)
    where
        M: MakeService<S>,
        S: HttpService<B>,
        B: ResponseBody,
    {
        let mut accepting = self.engine.subscribe_accepting();
        loop {
            let Some(permit) = self.permit(&mut accepting).await else {
                return self.sweep();
            };
            let accepted = tokio::select! {
                biased;
                _ = accepting.wait_for(|a| !*a) => {
                    drop(permit);
                    return self.sweep();
                }
                accepted = self.listener.accept() => accepted,
            };
            match accepted {
                Ok(accepted) => self.spawn(accepted, permit),
                Err(e) if is_connection_error(&e) => {
                    debug!(error = %e, "accept: connection error, ignored");
                }
                Err(e) => {
                    drop(permit);
                    let out_of_descriptors = is_out_of_descriptors(&e);
                    let reclaimed = if out_of_descriptors {
                        self.engine.reclaim(RECLAIM_BATCH)
                    } else {
                        0
                    };
                    self.failed(&e, reclaimed);
                    // The reclaimed connections need a moment to close.
                    let pause = if reclaimed > 0 { 10 } else { 100 };
                    tokio::select! {
                        _ = accepting.wait_for(|a| !*a) => return self.sweep(),
                        () = tokio::time::sleep(Duration::from_millis(pause)) => {}
                    }
                }
            }
        }
    }

    /// Serves an accepted connection on a task of its own.
    fn spawn<S, B>(&self, accepted: Accepted, permit: Option<OwnedSemaphorePermit>)
    where
        M: MakeService<S>,
        S: HttpService<B>,
        B: ResponseBody,
    {
        let (stream, peer, local) = accepted;
        // Registered here, so the connection counts from the accept on.
        let registration = self.engine.register(self.shared.initial_state());
        match peer {
            Some(peer) => debug!(peer = %peer, "connection accepted"),
            None => debug!(peer = "unix", "connection accepted"),
        }
        // Owned by `alive`: the drain waits for this task to drop it.
        tokio::spawn(conn::serve(Box::new(conn::Accepted {
            stream,
            handed: None,
            peer,
            local,
            make_service: self.make_service.clone(),
            shared: Arc::clone(&self.shared),
            registration,
            permit,
            alive: self.alive.clone(),
        })));
    }

    /// When accepting stops on a socket this process bound (no superdaemon):
    /// takes the clients already in the kernel's accept queue, without
    /// waiting, and serves them like every other connection of the drain,
    /// before the listener is dropped. Closing the only copy of a socket
    /// resets every queued connection: clients a load balancer sent before
    /// it stopped routing here, which had connected and were waiting for
    /// their accept. A shared socket's queue is left to the next generation.
    /// Bounded by the queue's length at most and by the connection limit.
    fn sweep<S, B>(self)
    where
        M: MakeService<S>,
        S: HttpService<B>,
        B: ResponseBody,
    {
        if !self.owned {
            return;
        }
        let mut swept = 0usize;
        // The kernel caps a queue at somaxconn (4096 by default); a bound
        // against a flood that keeps it full.
        while swept < SWEEP_MAX {
            let permit = match &self.limit {
                Some(limit) => match Arc::clone(limit).try_acquire_owned() {
                    Ok(permit) => Some(permit),
                    Err(_) => break,
                },
                None => None,
            };
            match self.listener.try_accept() {
                Ok(Some(accepted)) => {
                    self.spawn(accepted, permit);
                    swept += 1;
                }
                Ok(None) => break,
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    debug!(error = %e, "accept queue sweep stopped");
                    break;
                }
            }
        }
        if swept > 0 {
            info!(
                connections = swept,
                "took the connections waiting in the accept queue before closing the listener"
            );
        }
    }

    /// Counts a failed accept, and warns at most once per [`WARN_EVERY`].
    fn failed(&mut self, e: &io::Error, reclaimed: usize) {
        let failures = &mut self.failures;
        failures.failed += 1;
        failures.reclaimed += reclaimed as u64;
        if failures.warned.is_some_and(|at| at.elapsed() < WARN_EVERY) {
            return;
        }
        let (failed, reclaimed) = (failures.failed, failures.reclaimed);
        if is_out_of_descriptors(e) {
            warn!(error = %e, open = self.engine.open(), failed, reclaimed,
                "out of descriptors: closing slow request heads and the longest-idle connections (at most one such line per 10 s)");
        } else {
            error!(error = %e, failed, "accept failed; retrying every 100 ms (at most one such line per 10 s)");
        }
        *failures = Failures {
            warned: Some(Instant::now()),
            ..Failures::default()
        };
    }

    /// A connection slot (at once without a limit). While waiting at the
    /// limit, a client in the accept queue makes a slow head or the
    /// longest-idle connection close (see [`Engine::reclaim`]). `None` when the drain starts.
    async fn permit(
        &mut self,
        accepting: &mut watch::Receiver<bool>,
    ) -> Option<Option<OwnedSemaphorePermit>> {
        let Some(limit) = self.limit.clone() else {
            return Some(None);
        };
        loop {
            tokio::select! {
                biased;
                _ = accepting.wait_for(|a| !*a) => return None,
                permit = Arc::clone(&limit).acquire_owned() => return permit.ok().map(Some),
                () = tokio::time::sleep(Duration::from_millis(100)) => {
                    if self.listener.has_waiting_client() {
                        let reclaimed = self.engine.reclaim(1);
                        self.at_limit(reclaimed);
                    }
                }
            }
        }
    }
}

impl<M> Acceptor<M> {
    /// A client waits at the connection limit; warns at most once per [`WARN_EVERY`].
    fn at_limit(&mut self, reclaimed: usize) {
        let failures = &mut self.failures;
        failures.reclaimed += reclaimed as u64;
        if failures.warned.is_some_and(|at| at.elapsed() < WARN_EVERY) {
            return;
        }
        warn!(
            open = self.engine.open(),
            reclaimed = failures.reclaimed,
            "at the connection limit with clients waiting: closing slow request heads and the longest-idle connections (at most one such line per 10 s)"
        );
        *failures = Failures {
            warned: Some(Instant::now()),
            ..Failures::default()
        };
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    ) || e.raw_os_error() == Some(libc::EPROTO)
}

fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}
