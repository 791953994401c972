//! Graceful shutdown: what starts it, what a handler sees while it runs, and
//! the report it ends with.
//!
//! The phases (see `docs/design/shutdown.md`): stop accepting and close our
//! copies of the listening sockets (never `shutdown()` them: they are shared
//! with the next generation); let every connection finish under its drain
//! rule; at the deadline, force-close what is left and count it by class;
//! return a [`DrainReport`].

use std::fmt;
use std::time::Duration;

pub use crate::drain::{ConnState, DrainReport, Draining};

/// The default drain deadline.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// After the drain's deadline, how long what it force-closed may take to
/// close (tasks end at their next poll, closes already lingering finish
/// theirs): a process that drains ends at most this long after its deadline.
pub const FORCED_CLOSE: Duration = Duration::from_secs(5);

/// The shutdown timing a process gets when nobody chose one: how long it
/// stays a lame duck after the stop signal
/// ([`Server::shutdown_delay`](crate::serve::Server::shutdown_delay)) and
/// how long the drain after it may take
/// ([`Server::drain_timeout`](crate::serve::Server::drain_timeout)).
///
/// [`Server`](crate::serve::Server) itself always starts from
/// [`ShutdownTiming::DEFAULT`]; [`ShutdownTiming::detect`] is what
/// `gracedown serve` uses, and what an application that wants the same
/// behaviour applies itself.
///
/// # Examples
///
/// ```no_run
/// # fn demo(listeners: Vec<gracedown::listener::Listener>) {
/// use gracedown::shutdown::ShutdownTiming;
///
/// let timing = ShutdownTiming::detect();
/// let server = gracedown::serve::Server::new(listeners)
///     .shutdown_delay(timing.shutdown_delay)
///     .drain_timeout(timing.drain_timeout);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownTiming {
    /// Lame duck for this long after the stop signal.
    pub shutdown_delay: Duration,
    /// Then the drain's deadline.
    pub drain_timeout: Duration,
}

impl ShutdownTiming {
    /// No delay, a 30 s drain: a server whose listening socket outlives it
    /// (under `start_server`, systemd socket activation), or run by hand.
    pub const DEFAULT: Self = Self {
        shutdown_delay: Duration::ZERO,
        drain_timeout: DEFAULT_DRAIN_TIMEOUT,
    };

    /// In a Kubernetes pod: 5 s of lame duck, enough for the endpoint
    /// controller, kube-proxy and ingresses to stop routing to the pod (they
    /// learn of its termination when the process does, and take from a few
    /// hundred milliseconds to a few seconds), then a 15 s drain, so that the
    /// whole shutdown (at most 25 s with [`FORCED_CLOSE`]) ends before
    /// Kubernetes' default `terminationGracePeriodSeconds` of 30 s sends
    /// `SIGKILL`. No `preStop` sleep is needed.
    pub const KUBERNETES: Self = Self {
        shutdown_delay: Duration::from_secs(5),
        drain_timeout: Duration::from_secs(15),
    };

    /// How long a shutdown may take at most from the stop signal: the
    /// delay, the drain's deadline and [`FORCED_CLOSE`] (a second stop
    /// signal makes it shorter). A supervisor's grace period must be longer.
    pub fn longest(&self) -> Duration {
        self.shutdown_delay + self.drain_timeout + FORCED_CLOSE
    }

    /// [`ShutdownTiming::KUBERNETES`] when this process runs in a pod
    /// (Kubernetes sets `KUBERNETES_SERVICE_HOST` in every container) and
    /// owns its listening socket (no `SERVER_STARTER_PORT` or `LISTEN_FDS`:
    /// under a superdaemon the socket outlives the worker at a restart, and
    /// a delay only slows restarts); [`ShutdownTiming::DEFAULT`] otherwise.
    /// (A superdaemon in a pod is stopped with the pod: then the lag is the
    /// superdaemon's to cover, not its workers'.)
    pub fn detect() -> Self {
        let present = |name| std::env::var_os(name).is_some_and(|v| !v.is_empty());
        if present("KUBERNETES_SERVICE_HOST")
            && !present(gracedown_sockets::protocol::SERVER_STARTER_PORT)
            && !present(gracedown_sockets::protocol::LISTEN_FDS)
        {
            Self::KUBERNETES
        } else {
            Self::DEFAULT
        }
    }
}

/// Why a shutdown started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShutdownReason {
    /// `SIGTERM`: Server::Starter's default stop signal, and Kubernetes'.
    Terminate,
    /// `SIGINT`: Ctrl-C.
    Interrupt,
    /// `SIGQUIT`.
    Quit,
    /// The program asked for it.
    Requested,
}

impl fmt::Display for ShutdownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Terminate => "SIGTERM",
            Self::Interrupt => "SIGINT",
            Self::Quit => "SIGQUIT",
            Self::Requested => "request",
        })
    }
}

/// The stop signals `SIGTERM`, `SIGINT` and `SIGQUIT`, as a [`ShutdownReason`].
///
/// # Process-wide effect
///
/// [`Signals::new`] installs tokio signal handlers for the three signals, and
/// they stay installed for the life of the process: from then on a stop
/// signal no longer kills the process, and after the first one a further
/// stop signal only ends a lame-duck delay early (the drain itself goes on).
/// That is what a drain wants, since Server::Starter re-sends its stop signal
/// to every old generation on each restart; only the drain deadline (or
/// `SIGKILL`) ends it. Install them *before* announcing
/// readiness, so that no stop signal can arrive while the default action
/// still applies.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// let mut signals = gracedown::shutdown::Signals::new()?;
/// // ... announce readiness ...
/// let reason = signals.recv().await;
/// println!("stopping on {reason}");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers.
    ///
    /// # Errors
    ///
    /// When a handler cannot be installed (no tokio runtime with signals enabled).
    pub fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            quit: signal(SignalKind::quit())?,
        })
    }

    /// [`Signals::new`], with the error as this crate's [`crate::Error::Io`].
    ///
    /// # Errors
    ///
    /// When a handler cannot be installed.
    pub fn install() -> Result<Self, crate::Error> {
        Self::new().map_err(|source| crate::Error::Io {
            action: "install signal handlers",
            source,
        })
    }

    /// Resolves at the first stop signal and logs which: the shutdown future
    /// to hand to [`crate::serve::Server::serve`].
    pub async fn stopped(mut self) {
        let reason = self.recv().await;
        tracing::info!(signal = %reason, "stop signal received");
    }

    /// Waits for the next stop signal.
    pub async fn recv(&mut self) -> ShutdownReason {
        tokio::select! {
            _ = self.term.recv() => ShutdownReason::Terminate,
            _ = self.int.recv() => ShutdownReason::Interrupt,
            _ = self.quit.recv() => ShutdownReason::Quit,
        }
    }
}

/// A readiness endpoint in one line: a tower service that answers `200
/// ready` while the server serves and `503 draining` from the first moment
/// it is going away (the stop signal, including the whole
/// [shutdown delay](crate::serve::Server::shutdown_delay)), so that a load
/// balancer's health check or Kubernetes' readiness probe takes the instance
/// out of rotation while it still serves what is sent to it.
///
/// It reads the [`Draining`] extension gracedown puts in every request; a
/// request without it (a service not served by gracedown) is answered
/// `200 ready`. A liveness route needs nothing from gracedown: it answers
/// 200 as long as the process serves.
///
/// # Examples
///
/// With axum:
///
/// ```
/// use axum::{Router, routing::get};
/// use gracedown::shutdown::Readiness;
///
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hello\n" }))
///     .route_service("/readyz", Readiness)
///     .route("/livez", get(|| async { "ok\n" }));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Readiness;

impl Readiness {
    /// The answer to a request with these extensions: `200 ready`, or
    /// `503 draining` once the server is going away.
    pub fn answer(extensions: &http::Extensions) -> http::Response<String> {
        let draining = extensions
            .get::<Draining>()
            .is_some_and(Draining::is_draining);
        let (status, body) = if draining {
            (http::StatusCode::SERVICE_UNAVAILABLE, "draining\n")
        } else {
            (http::StatusCode::OK, "ready\n")
        };
        let mut response = http::Response::new(body.to_owned());
        *response.status_mut() = status;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain"),
        );
        // A probe's answer is about this moment only.
        response.headers_mut().insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-store"),
        );
        response
    }
}

impl<B> tower_service::Service<http::Request<B>> for Readiness {
    type Response = http::Response<String>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        std::future::ready(Ok(Self::answer(req.extensions())))
    }
}
