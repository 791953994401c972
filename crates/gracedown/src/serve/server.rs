//! The server: accept loops over the listeners, one task per connection, and
//! the drain that ends it all with a [`DrainReport`].

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::service::Service;
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info};

use super::conn;
use super::io::Stream;
use super::service::{Activity, HttpService, ResponseBody, Stats};
use crate::error::Error;
use crate::listener::{ListenAddr, Listener};
use crate::notify::Notifier;
use crate::shutdown::{ConnState, DEFAULT_DRAIN_TIMEOUT, DrainReport, Signals};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The bounds of each connection state (see [`Server`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) handshake: Duration,
    pub(crate) first_request: Duration,
    pub(crate) first_request_draining: Duration,
    pub(crate) idle: Duration,
    pub(crate) goaway_ack: Duration,
    pub(crate) linger: Duration,
}

/// What every connection task shares.
pub(crate) struct Shared {
    /// `Some(deadline)` once the drain has started.
    pub(crate) drain: watch::Receiver<Option<Instant>>,
    /// `true` at the deadline: close what is left.
    pub(crate) force: watch::Receiver<bool>,
    pub(crate) stats: Arc<Stats>,
    pub(crate) timeouts: Timeouts,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Shared {
    /// A new connection's state: in the TLS handshake, or waiting for its first request.
    pub(crate) fn initial_state(&self) -> ConnState {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            return ConnState::Handshake;
        }
        ConnState::NoRequest
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

/// Serves a hyper service on listening sockets over HTTP/1.1, h2c (prior
/// knowledge) and, with [`Server::tls`], TLS with ALPN, until a shutdown
/// future resolves; then drains within a deadline.
///
/// # Drain rules
///
/// When the shutdown future resolves, the server stops accepting and closes
/// its copies of the listeners (never `shutdown()`: they are shared with the
/// next generation). Then, per connection:
///
/// - a TLS handshake in progress completes (bounded), then as below;
/// - a connection with no request yet gets a few seconds to send one;
/// - an HTTP/1 request in flight finishes, answered with `Connection: close`;
/// - an idle HTTP/1 keep-alive connection is *not* closed at the signal: its
///   next request is answered with `Connection: close`; only after the idle
///   bound does it close, and a request that raced that close is still served;
/// - HTTP/2 gets the two-phase GOAWAY and every accepted stream completes;
/// - every close is lingering (FIN, then read until the client's FIN), so a
///   response is never destroyed by an RST.
///
/// At the deadline what is left is force-closed and counted by state.
///
/// # Examples
///
/// ```no_run
/// use std::convert::Infallible;
/// use std::time::Duration;
/// use gracedown::listener::Listeners;
/// use gracedown::serve::Server;
/// use http_body_util::Full;
/// use hyper::body::Bytes;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let listeners = Listeners::from_env()?.take_all_or_bind(&["127.0.0.1:8080".parse()?])?;
/// let service = hyper::service::service_fn(|_req| async {
///     Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from("hello\n"))))
/// });
/// let mut signals = gracedown::shutdown::Signals::new()?;
/// let shutdown = async move { signals.recv().await; };
/// let report = Server::new(listeners)
///     .drain_timeout(Duration::from_secs(10))
///     .serve(service, shutdown)
///     .await?;
/// println!("{report}");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Server {
    listeners: Vec<Listener>,
    drain_timeout: Duration,
    timeouts: Timeouts,
    notifier: Notifier,
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::TlsConfig>,
}

impl Server {
    /// A server on these listeners, with the default bounds.
    pub fn new(listeners: Vec<Listener>) -> Self {
        Self {
            listeners,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            timeouts: Timeouts::defaults(),
            notifier: Notifier::none(),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Sends `READY=1` once every listener is served and `STOPPING=1` when
    /// the drain starts, to a supervisor that listens (systemd, `start_server`).
    pub fn notify(mut self, notifier: Notifier) -> Self {
        self.notifier = notifier;
        self
    }

    /// Serves TLS on every listener: ALPN `h2` gives HTTP/2, anything else HTTP/1.1.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::tls::TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The drain deadline: how long after the shutdown signal connections may
    /// take to finish before they are force-closed (default 30 s).
    pub fn drain_timeout(mut self, deadline: Duration) -> Self {
        self.drain_timeout = deadline;
        self
    }

    /// How long an idle HTTP/1 keep-alive connection is kept during a drain,
    /// waiting for the client's next request (default 1 s).
    pub fn idle_timeout(mut self, bound: Duration) -> Self {
        self.timeouts.idle = bound;
        self
    }

    /// How long a connection that has sent no request yet may take to send
    /// one once the drain has started (default 5 s).
    pub fn first_request_timeout(mut self, bound: Duration) -> Self {
        self.timeouts.first_request_draining = bound;
        self
    }

    /// How long a TLS handshake may take (default 10 s).
    pub fn handshake_timeout(mut self, bound: Duration) -> Self {
        self.timeouts.handshake = bound;
        self
    }

    /// The addresses the server listens on.
    ///
    /// # Errors
    ///
    /// The `getsockname` error.
    pub fn local_addrs(&self) -> io::Result<Vec<ListenAddr>> {
        self.listeners.iter().map(Listener::local_addr).collect()
    }

    /// Serves `service` until `shutdown` resolves, then drains and returns the report.
    ///
    /// Must run inside a tokio runtime with I/O and time enabled.
    ///
    /// # Errors
    ///
    /// [`Error::NoListeners`] when there is nothing to serve on, or
    /// [`Error::Io`] when a listener cannot be registered with the runtime.
    /// Errors of single connections never end the server.
    pub async fn serve<S, B, F>(self, service: S, shutdown: F) -> Result<DrainReport, Error>
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
        F: Future<Output = ()> + Send,
    {
        if self.listeners.is_empty() {
            return Err(Error::NoListeners {
                reason: "the server was given none",
            });
        }
        let (drain_tx, drain_rx) = watch::channel(None);
        let (force_tx, force_rx) = watch::channel(false);
        let stats = Arc::new(Stats::default());
        let shared = Arc::new(Shared {
            drain: drain_rx,
            force: force_rx,
            stats: Arc::clone(&stats),
            timeouts: self.timeouts,
            #[cfg(feature = "tls")]
            tls: self
                .tls
                .as_ref()
                .map(|t| tokio_rustls::TlsAcceptor::from(t.server_config())),
        });
        // Every connection task holds a clone of `alive`; when the last one
        // is dropped, `all_closed` resolves. No hand-kept connection count.
        let (alive, mut all_closed) = mpsc::channel::<()>(1);
        let mut accepting = tokio::task::JoinSet::new();
        for listener in self.listeners {
            let listener = TokioListener::new(listener)?;
            accepting.spawn(accept_loop(
                listener,
                service.clone(),
                Arc::clone(&shared),
                alive.clone(),
            ));
        }
        drop(alive);
        self.notifier.send("READY=1");

        shutdown.await;
        let signal = Instant::now();
        let deadline = signal + self.drain_timeout;
        self.notifier.send("STOPPING=1");
        let connections_at_signal = stats.open.load(Ordering::Acquire);
        let at_signal = ConnState::ALL.map(|s| stats.by_state[s as usize].load(Ordering::Acquire));
        drain_tx.send_replace(Some(deadline));
        info!(
            connections = connections_at_signal,
            handshake = at_signal[ConnState::Handshake as usize],
            no_request = at_signal[ConnState::NoRequest as usize],
            idle = at_signal[ConnState::Idle as usize],
            in_flight = at_signal[ConnState::InFlight as usize],
            http2 = at_signal[ConnState::Http2 as usize],
            deadline_ms = self.drain_timeout.as_millis() as u64,
            "draining"
        );
        while accepting.join_next().await.is_some() {}
        let stop_accepting = signal.elapsed();

        let drained = tokio::time::timeout_at(deadline.into(), all_closed.recv())
            .await
            .is_ok();
        let drain = signal.elapsed();
        if !drained {
            force_tx.send_replace(true);
            // Forced tasks end at their next poll; this wait is short.
            let _ = all_closed.recv().await;
        }
        let report = DrainReport {
            connections_at_signal,
            at_signal,
            drained: stats.drained.load(Ordering::Acquire),
            forced: ConnState::ALL.map(|s| stats.forced[s as usize].load(Ordering::Acquire)),
            requests_after_signal: stats.requests_after_signal.load(Ordering::Acquire),
            stop_accepting,
            drain,
            elapsed: signal.elapsed(),
        };
        info!(
            connections = report.connections_at_signal,
            drained = report.drained,
            forced = report.forced_total(),
            forced_handshake = report.forced_in(ConnState::Handshake),
            forced_no_request = report.forced_in(ConnState::NoRequest),
            forced_idle = report.forced_in(ConnState::Idle),
            forced_in_flight = report.forced_in(ConnState::InFlight),
            forced_http2 = report.forced_in(ConnState::Http2),
            requests_after_signal = report.requests_after_signal,
            stop_accepting_ms = report.stop_accepting.as_millis() as u64,
            drain_ms = report.drain.as_millis() as u64,
            elapsed_ms = report.elapsed.as_millis() as u64,
            "drain complete"
        );
        Ok(report)
    }
}

impl Server {
    /// The one-call form: serve until `SIGTERM`, `SIGINT` or `SIGQUIT`, then
    /// drain and return the report (go-gracedown's `Serve` + `Close`).
    ///
    /// Installs the signal handlers of [`Signals`], with
    /// their process-wide effect.
    ///
    /// # Errors
    ///
    /// As [`Server::serve`], and [`Error::Io`] when the signal handlers
    /// cannot be installed.
    pub async fn serve_until_signal<S, B>(self, service: S) -> Result<DrainReport, Error>
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let signals = Signals::install()?;
        self.serve(service, signals.stopped()).await
    }
}

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
        Ok(match listener {
            Listener::Tcp(l) => Self::Tcp(tokio::net::TcpListener::from_std(l).map_err(register)?),
            Listener::Unix(l) => {
                Self::Unix(tokio::net::UnixListener::from_std(l).map_err(register)?)
            }
        })
    }

    async fn accept(&self) -> io::Result<(Stream, String)> {
        match self {
            Self::Tcp(l) => {
                let (stream, peer) = l.accept().await?;
                // Small responses must not wait for Nagle.
                let _ = stream.set_nodelay(true);
                Ok((Stream::Tcp(stream), peer.to_string()))
            }
            Self::Unix(l) => l
                .accept()
                .await
                .map(|(stream, _)| (Stream::Unix(stream), "unix".to_owned())),
        }
    }
}

/// Accepts until the drain starts, then drops the listener (closing our
/// copy only: the socket stays open in the superdaemon and the next generation).
async fn accept_loop<S, B>(
    listener: TokioListener,
    service: S,
    shared: Arc<Shared>,
    alive: mpsc::Sender<()>,
) where
    S: HttpService<B>,
    B: ResponseBody,
{
    let mut drain = shared.drain.clone();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = drain.wait_for(Option::is_some) => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                shared.stats.open.fetch_add(1, Ordering::AcqRel);
                // Created here, so the connection counts in its state from the accept on.
                let activity = Activity::new(Arc::clone(&shared.stats), shared.initial_state());
                // Logged once counted: a drain that starts after this line counts it.
                debug!(peer = %peer, "connection accepted");
                let (service, shared, alive) =
                    (service.clone(), Arc::clone(&shared), alive.clone());
                // Owned by `alive`: the drain waits for this task to drop it.
                tokio::spawn(async move {
                    conn::serve(stream, service, Arc::clone(&shared), activity).await;
                    shared.stats.open.fetch_sub(1, Ordering::AcqRel);
                    drop(alive);
                });
            }
            Err(e) if is_connection_error(&e) => {
                debug!(error = %e, "accept: connection error, ignored")
            }
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS, ENOMEM: back off instead of spinning.
                error!(error = %e, "accept failed; retrying in 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
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
