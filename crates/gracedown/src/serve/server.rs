//! The server: accept loops over the listeners (paused at the connection
//! limit, reclaiming idle connections when descriptors run out), one task per
//! connection, and the drain that ends it all with a [`DrainReport`].

use std::future::{Future, IntoFuture};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc, watch};
use tracing::info;

use super::accept::{Acceptor, handed_in};
use super::app::{HttpService, IntoApp, MakeService, ResponseBody};
use super::link::Link;
use super::options::{Timeouts, Tuning};
use super::shared::Shared;
use crate::drain::{Bounds, ConnState, DrainReport, Engine};
use crate::error::Error;
use crate::listener::{ListenAddr, Listener};
use crate::notify::Notifier;
use crate::shutdown::{DEFAULT_DRAIN_TIMEOUT, FORCED_CLOSE, Signals};

/// Serves a tower service (an axum `Router`, a `tower::ServiceBuilder`
/// stack, `tower::service_fn`) on listening sockets over HTTP/1.1 (with
/// upgrades: WebSocket, `CONNECT`), h2c (prior knowledge) and, with
/// [`Server::tls`], TLS with ALPN, until a shutdown future resolves; then
/// drains within a deadline.
///
/// # Bounds
///
/// Every wait is bounded; the defaults follow nginx's:
///
/// | bound | default | field |
/// | --- | --- | --- |
/// | TLS handshake | 10 s | [`Timeouts::handshake`] |
/// | a request head, in total; a new connection's first request | 60 s | [`Timeouts::request_head`] |
/// | between two reads of a request body | 60 s | [`Timeouts::request_body_read`] |
/// | a response the client does not read | 60 s | [`Timeouts::response_send`] |
/// | between requests (HTTP/1 close, HTTP/2 GOAWAY) | 75 s | [`Timeouts::keepalive`] |
/// | open connections | unlimited | [`Server::max_connections`] |
///
/// A bound below a millisecond is taken as a millisecond.
///
/// An HTTP/2 connection over TCP (plain or TLS) has the kernel's keep-alive
/// probes on: quiet for 30 s, it is probed every 10 s, and it ends when
/// nothing came back for the send bound (at least 50 s); bytes sent and not
/// acknowledged for that long end it too (`TCP_USER_TIMEOUT`). So a client
/// that vanished without a FIN or RST is noticed even while a stream waits.
/// A client whose system answers but whose process hangs keeps its streams
/// until their handlers answer (the send bound applies once a response
/// fills the window), as an HTTP/1 connection with a request in flight does.
///
/// # Dormant connections
///
/// An HTTP/1 connection quiet between requests for a while (1 s,
/// [`Tuning::dormant_after`]) lets go of hyper: its state and buffers (about
/// 16 KiB) are dropped, and the connection waits for its next byte with its
/// socket and a small tracker only; its bounds and the drain apply as before,
/// and its next request is served by a fresh hyper connection. With glibc,
/// freed memory is handed back to the system after a batch of connections
/// went dormant (`malloc_trim`), so a burst of clients that then stay
/// connected does not keep the burst's memory. glibc still keeps a page or
/// so per connection after such a burst (about 5.7 KB per idle connection,
/// where a connection's live objects are about 1.1 KB); an allocator with
/// size classes, such as jemalloc as the global allocator (which the
/// `gracedown` binary uses), keeps about 1.9 KB.
///
/// When descriptors run out (`EMFILE`), or a client waits at the connection
/// limit, connections are closed to make room, and the log says so once per
/// episode: first request heads that have been trickling in for more than a
/// second (a slowloris holding places), oldest first, then the connections
/// that have been quiet the longest (HTTP/2 with GOAWAY).
///
/// # HTTP/2 streams
///
/// A stream whose handler answers at once (its future is ready the first
/// time it is polled) is answered on its connection's task, without a task
/// of its own: the answers to the streams of one read leave in one write.
/// A stream that waits (on a body, a database, a timer) goes on as a task of
/// its own, as with hyper's usual executor, and holds up no other stream.
/// A handler that panics costs its own stream only, either way. A handler
/// that does long work without waiting holds up the other streams of its
/// connection while it runs: such work belongs on
/// `tokio::task::spawn_blocking` in any case, or the server can give every
/// stream a task of its own ([`Tuning::http2_inline_streams`]).
///
/// # Drain rules
///
/// When the shutdown future resolves, the server stops accepting and closes
/// its copies of the listeners (never `shutdown()`: they are shared with the
/// next generation). Then, per connection:
///
/// - a TLS handshake in progress completes (bounded), then as below;
/// - a connection with no request yet gets a few seconds to send one, however
///   slowly its bytes trickle in ([`Timeouts::drain_first_request`]);
/// - an HTTP/1 request in flight finishes, answered with `Connection: close`;
/// - an idle HTTP/1 keep-alive connection is *not* closed at the signal: its
///   next request is answered with `Connection: close`; only after the idle
///   bound ([`Timeouts::drain_idle`]) does it close, stopping at a message
///   boundary, and a request that raced that close is still served;
/// - HTTP/2 gets the two-phase GOAWAY and every accepted stream completes;
/// - TLS and HTTP/2 connections, which must reconnect, are told so each at
///   its own moment within the reconnect window
///   ([`Timeouts::reconnect_window`], 1 s), not all at once;
/// - an upgraded connection (WebSocket) belongs to the application, which
///   sees [`crate::shutdown::Draining`] and should close it (WebSocket close
///   code 1001);
/// - every close is lingering (FIN, then read until the client's FIN), so a
///   response is never destroyed by an RST.
///
/// Under gracedown's `start_server` (it sets `GRACEDOWN_HANDOFF_FD`), when a
/// newer generation is ready, connections are not closed at all: each
/// HTTP/1.1 one that is between requests, or gets there after its response
/// (which then keeps alive), moves to the newer generation with the bytes
/// already read from it, on the same TCP connection, a TLS one with its
/// session (no handshake); an HTTP/2 one moves at its first moment with no
/// stream open, with no GOAWAY (one never quiet within a second of its
/// moment gets the GOAWAY as above). The report counts them as handed off.
/// See [`Server::handoff`].
///
/// At the deadline what is left is force-closed and counted by state.
///
/// # Examples
///
/// ```no_run
/// use std::convert::Infallible;
/// use std::time::Duration;
/// use gracedown::listener::Listeners;
/// use gracedown::serve::{RequestBody, Server};
/// use http_body_util::Full;
/// use hyper::body::Bytes;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let listeners = Listeners::from_env()?.take_all_or_bind(&["127.0.0.1:8080".parse()?])?;
/// let service = gracedown::serve::service_fn(|_req: http::Request<RequestBody>| async {
///     Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from("hello\n"))))
/// });
/// let report = Server::new(listeners)
///     .drain_timeout(Duration::from_secs(10))
///     .serve(service)
///     .await?;
/// println!("{report}");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Server {
    listeners: Vec<Listener>,
    drain_timeout: Duration,
    shutdown_delay: Duration,
    timeouts: Timeouts,
    tuning: Tuning,
    max_connections: Option<usize>,
    /// `None`: the supervisor the environment names, read when serving starts.
    notifier: Option<Notifier>,
    handoff: bool,
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::TlsConfig>,
}

impl Server {
    /// A server on these listeners, with the default bounds.
    pub fn new(listeners: Vec<Listener>) -> Self {
        Self {
            listeners,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            shutdown_delay: Duration::ZERO,
            timeouts: Timeouts::default(),
            tuning: Tuning::default(),
            max_connections: None,
            notifier: None,
            handoff: true,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Whether, under gracedown's `start_server`, a drain hands connections
    /// (HTTP/1.1 and HTTP/2, plain or TLS) to the newer generation instead of
    /// closing them (default `true`; see the drain rules above). A movable
    /// HTTP/2 connection advertises a header table of size 0. Elsewhere (Perl's
    /// start_server, systemd, started by hand) there is nothing to hand to
    /// and this changes nothing.
    pub fn handoff(mut self, enabled: bool) -> Self {
        self.handoff = enabled;
        self
    }

    /// Where the server sends `READY=1` once every listener is served,
    /// `WATCHDOG=1` while the runtime is healthy when the supervisor asks for
    /// it (`WATCHDOG_USEC`), and `STOPPING=1` when the drain starts.
    ///
    /// By default, the supervisor the environment names
    /// ([`Notifier::from_env`]: `NOTIFY_SOCKET`, which systemd's
    /// `Type=notify` and gracedown's `start_server` set), read when serving
    /// starts: under `start_server` a new generation takes over as soon as it
    /// serves, not after `--interval`. [`Notifier::none`] sends nothing (for
    /// an application that tells its supervisor itself).
    pub fn notify(mut self, notifier: Notifier) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// Serves TLS on every listener: ALPN `h2` gives HTTP/2, anything else HTTP/1.1.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::tls::TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The drain deadline: how long after the shutdown signal (after the
    /// [shutdown delay](Server::shutdown_delay), if any) connections may take
    /// to finish before they are force-closed (default 30 s).
    pub fn drain_timeout(mut self, deadline: Duration) -> Self {
        self.drain_timeout = deadline;
        self
    }

    /// Lame-duck mode: for this long after the shutdown signal the server
    /// keeps accepting and serving, while it steers clients away (HTTP/1.1
    /// responses say `Connection: close`, HTTP/2 connections get GOAWAY,
    /// paced over the reconnect window) and handlers see [`Draining`]
    /// (`/healthz`-style routes answer 503); only then does it stop
    /// accepting and drain as usual. For a fleet behind a load balancer that
    /// learns of a termination late (Kubernetes removes an endpoint while the
    /// pod gets `SIGTERM`): a server that stops accepting at once refuses
    /// whatever the balancer still sends it. Under gracedown's `start_server`
    /// no delay is needed: the listening socket outlives every generation.
    /// Default: none. When [`Server::serve`] ends on the stop signals, a
    /// second one ends the delay early.
    ///
    /// [`Draining`]: crate::shutdown::Draining
    pub fn shutdown_delay(mut self, delay: Duration) -> Self {
        self.shutdown_delay = delay;
        self
    }

    /// Every bound a connection is held to, by when it applies (default
    /// [`Timeouts::default`]: nginx's).
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Switches that trade one cost for another without changing what is
    /// served (default [`Tuning::default`]).
    pub fn tuning(mut self, tuning: Tuning) -> Self {
        self.tuning = tuning;
        self
    }

    /// At most this many connections are open at once; beyond it accepting
    /// pauses (new clients wait in the kernel's queue), and a client that
    /// waits makes the request heads that have trickled in for over a
    /// second close, or else the longest-idle connection. Default: no limit
    /// other than the descriptor limit. Connections an older generation
    /// hands over are taken even beyond it (refusing one would close it).
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = Some(max.max(1));
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

    /// Serves `app` until the stop signal, then drains and gives the
    /// report: `app` is a tower service ([`HttpService`]: an axum `Router`,
    /// a `tower::ServiceBuilder` stack, [`service_fn`](super::service_fn)),
    /// cloned for every connection, or a factory called per connection with
    /// the client's address ([`MakeService`]: axum's
    /// `router.into_make_service_with_connect_info::<SocketAddr>()`, for its
    /// `ConnectInfo<SocketAddr>`).
    ///
    /// Awaiting the [`Serve`] it returns installs the handlers of
    /// [`Signals`] (with their process-wide effect) and ends on the first of
    /// `SIGTERM`, `SIGINT` and `SIGQUIT`; a second one ends the
    /// [shutdown delay](Server::shutdown_delay) early. [`Serve::with_signals`]
    /// takes handlers installed earlier (before announcing readiness), and
    /// [`Serve::with_graceful_shutdown`] ends on a future of yours instead.
    /// It must run inside a tokio runtime with I/O and time enabled.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(listeners: Vec<gracedown::listener::Listener>) -> Result<(), gracedown::Error> {
    /// use std::net::SocketAddr;
    /// use axum::{Router, routing::get};
    /// use gracedown::serve::Server;
    ///
    /// let app = Router::new().route("/", get(|| async { "hello\n" }));
    /// // Until SIGTERM, as a worker under a superdaemon or an orchestrator runs:
    /// let report = Server::new(listeners).serve(app).await?;
    /// # let (listeners, app) = (Vec::new(), Router::new());
    /// // With axum's `ConnectInfo<SocketAddr>`, until a future of yours:
    /// let make = app.into_make_service_with_connect_info::<SocketAddr>();
    /// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    /// let report = Server::new(listeners)
    ///     .serve(make)
    ///     .with_graceful_shutdown(async { let _ = stopped.await; })
    ///     .await?;
    /// # drop(stop); Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Sockets`] when there is nothing to serve on,
    /// [`Error::Io`] when a listener cannot be registered with the runtime or
    /// the signal handlers cannot be installed. Errors of single connections
    /// never end the server.
    pub fn serve<A, Kind>(self, app: A) -> Serve<A::Make, A::Service, A::Body>
    where
        A: IntoApp<Kind>,
    {
        Serve {
            server: self,
            make: app.into_make(),
            stop: Stop::Signals(None),
            _types: std::marker::PhantomData,
        }
    }

    /// Serves until `shutdown`, then lame duck for the shutdown delay (or
    /// until `skip`), then drains.
    async fn run<M, S, B, F, K>(
        self,
        make_service: M,
        shutdown: F,
        skip: K,
    ) -> Result<DrainReport, Error>
    where
        M: MakeService<S>,
        S: HttpService<B>,
        B: ResponseBody,
        F: Future<Output = ()> + Send,
        K: Future<Output = ()> + Send,
    {
        if self.listeners.is_empty() {
            return Err(gracedown_sockets::Error::NoListeners {
                reason: "the server was given none",
            }
            .into());
        }
        let mut bounds = Bounds::from_options(&self.timeouts, &self.tuning);
        bounds.reconnect_window = bounds.reconnect_window.min(self.drain_timeout / 2);
        let engine = Engine::new(bounds);
        let link = Link::from_env(self.handoff);
        let shared = Arc::new(Shared {
            #[cfg(feature = "tls")]
            tls: self.tls.map(|tls| {
                // Tickets every generation opens, unless the caller chose.
                let tls = match link.as_ref().and_then(|l| l.ticket_keys()) {
                    Some(keys) if !tls.issues_tickets() => tls.ticket_keys(keys),
                    _ => tls,
                };
                // Sessions that move to the next generation are taken out
                // of rustls (the superdaemon carries them).
                let tls = match link.as_ref().is_some_and(|l| l.moves_tls()) {
                    true => tls.secrets_extractable(),
                    false => tls,
                };
                tokio_rustls::TlsAcceptor::from(tls.server_config())
            }),
            link: link.clone().filter(|l| l.hands_off()),
            trim: Arc::default(),
            inline_streams: self.tuning.http2_inline_streams,
            writev: self.tuning.http1_writev,
        });
        let limit = self.max_connections.map(|n| Arc::new(Semaphore::new(n)));
        // Every connection task holds a clone of `alive`; when the last one
        // is dropped, `all_closed` resolves. No hand-kept connection count.
        let (alive, mut all_closed) = mpsc::channel::<()>(1);
        let mut accepting = tokio::task::JoinSet::new();
        for listener in self.listeners {
            let acceptor = Acceptor::new(
                listener,
                make_service.clone(),
                Arc::clone(&shared),
                Arc::clone(&engine),
                limit.clone(),
                alive.clone(),
            )?;
            accepting.spawn(acceptor.run());
        }
        // Key rotations, answers, and connections handed over by an older generation.
        let receiving = link.as_ref().map(|link| {
            link.start(handed_in(
                make_service.clone(),
                Arc::clone(&shared),
                Arc::clone(&engine),
                alive.downgrade(),
            ))
        });
        drop(alive);
        if let Some(link) = &link {
            // Before READY=1: the superdaemon reads this first.
            link.announce().await;
        }
        let notifier = self.notifier.unwrap_or_else(Notifier::from_env);
        let watchdog = notifier.spawn_watchdog();
        notifier.send("READY=1");

        shutdown.await;
        let signal = Instant::now();
        let deadline = signal + self.shutdown_delay + self.drain_timeout;
        notifier.send("STOPPING=1");
        if let Some(watchdog) = watchdog {
            watchdog.abort();
        }
        let lame_duck = if self.shutdown_delay.is_zero() {
            None
        } else {
            // Connections are steered away as in a drain, and accepting
            // goes on: what the balancer still sends is served.
            let at_signal = engine.start_drain(deadline, false);
            info!(
                connections = at_signal.total(),
                delay_ms = self.shutdown_delay.as_millis() as u64,
                "lame duck: serving and accepting for the shutdown delay, telling clients to go elsewhere"
            );
            tokio::select! {
                () = tokio::time::sleep(self.shutdown_delay) => {}
                () = skip => info!("another stop signal: the lame duck ends early"),
            }
            Some(at_signal)
        };
        let hand_off = match &shared.link {
            Some(handoff) => handoff.available().await,
            None => false,
        };
        let at_signal = match lame_duck {
            Some(at_signal) => {
                if hand_off {
                    engine.hand_off_from_now();
                }
                at_signal
            }
            None => engine.start_drain(deadline, hand_off),
        };
        engine.stop_accepting();
        info!(
            connections = at_signal.total(),
            states = %at_signal,
            deadline_ms = deadline.saturating_duration_since(Instant::now()).as_millis() as u64,
            hand_off,
            "draining"
        );
        while accepting.join_next().await.is_some() {}
        let stop_accepting = signal.elapsed();

        let drained = tokio::time::timeout_at(deadline.into(), all_closed.recv())
            .await
            .is_ok();
        let drain = signal.elapsed();
        if !drained {
            engine.force();
            // Forced tasks end at their next poll, closes already lingering
            // within two linger bounds; a task stuck in a handler that never
            // yields is not waited for.
            let _ = tokio::time::timeout(FORCED_CLOSE, all_closed.recv()).await;
        }
        for task in receiving.into_iter().flatten() {
            task.abort();
        }
        let report = engine.report(at_signal, signal, stop_accepting, drain);
        info!(
            connections = report.connections_at_signal(),
            drained = report.drained(),
            handed_off = report.handed_off(),
            forced = report.forced_total(),
            forced_states = %ForcedStates(&report),
            requests_after_signal = report.requests_after_signal(),
            stop_accepting_ms = report.stop_accepting().as_millis() as u64,
            drain_ms = report.drain().as_millis() as u64,
            elapsed_ms = report.elapsed().as_millis() as u64,
            "drain complete"
        );
        Ok(report)
    }

    /// Serves until the first stop signal `signals` receives; a second one
    /// ends the shutdown delay early. Each is logged.
    async fn run_on_signals<M, S, B>(
        self,
        make: M,
        mut signals: Signals,
    ) -> Result<DrainReport, Error>
    where
        M: MakeService<S>,
        S: HttpService<B>,
        B: ResponseBody,
    {
        let (count, received) = watch::channel(0u32);
        let listening = tokio::spawn(async move {
            loop {
                let reason = signals.recv().await;
                tracing::info!(signal = %reason, "stop signal received");
                count.send_modify(|n| *n += 1);
            }
        });
        let (mut first, mut second) = (received.clone(), received);
        let shutdown = async move {
            let _ = first.wait_for(|n| *n >= 1).await;
        };
        let skip = async move {
            let _ = second.wait_for(|n| *n >= 2).await;
        };
        let report = self.run(make, shutdown, skip).await;
        listening.abort();
        report
    }
}

/// A server about to serve an app: await it (it is an [`IntoFuture`]) for
/// the [`DrainReport`]. Made by [`Server::serve`].
#[must_use = "a server serves nothing until it is awaited"]
pub struct Serve<M, S, B> {
    server: Server,
    make: M,
    stop: Stop,
    _types: std::marker::PhantomData<fn() -> (S, B)>,
}

/// What ends the serving.
enum Stop {
    /// The stop signals: these handlers, or ones installed when awaited.
    Signals(Option<Signals>),
    /// A future of the caller's.
    Future(Pin<Box<dyn Future<Output = ()> + Send>>),
}

impl<M, S, B> std::fmt::Debug for Serve<M, S, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serve")
            .field("server", &self.server)
            .field(
                "stop",
                &match self.stop {
                    Stop::Signals(_) => "signals",
                    Stop::Future(_) => "future",
                },
            )
            .finish_non_exhaustive()
    }
}

impl<M, S, B> Serve<M, S, B> {
    /// Ends on `signal` instead of the stop signals (no handler is
    /// installed): the drain starts when it resolves, after the
    /// [shutdown delay](Server::shutdown_delay) if there is one.
    pub fn with_graceful_shutdown<F>(mut self, signal: F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.stop = Stop::Future(Box::pin(signal));
        self
    }

    /// Ends on the stop signals these handlers receive, installed earlier:
    /// a program installs them before it announces readiness, so that no
    /// stop signal can arrive while the default action (death) still
    /// applies. The first starts the shutdown, a second ends the
    /// [shutdown delay](Server::shutdown_delay); each is logged.
    pub fn with_signals(mut self, signals: Signals) -> Self {
        self.stop = Stop::Signals(Some(signals));
        self
    }
}

impl<M, S, B> IntoFuture for Serve<M, S, B>
where
    M: MakeService<S>,
    S: HttpService<B>,
    B: ResponseBody,
{
    type Output = Result<DrainReport, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        let Self {
            server, make, stop, ..
        } = self;
        Box::pin(async move {
            match stop {
                Stop::Future(shutdown) => server.run(make, shutdown, std::future::pending()).await,
                Stop::Signals(signals) => {
                    let signals = match signals {
                        Some(signals) => signals,
                        None => Signals::install()?,
                    };
                    server.run_on_signals(make, signals).await
                }
            }
        })
    }
}

/// `handshake=1 idle=2`: the forced connections per state.
struct ForcedStates<'a>(&'a DrainReport);

impl std::fmt::Display for ForcedStates<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut counts = crate::drain::StateCounts::default();
        for state in ConnState::ALL {
            counts.add(state, self.0.forced(state));
        }
        counts.fmt(f)
    }
}
