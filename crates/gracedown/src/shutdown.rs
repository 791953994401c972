//! Graceful shutdown: what starts it, what a handler sees while it runs, and
//! the report it ends with.
//!
//! The phases (see `docs/design/shutdown.md`): stop accepting and close our
//! copies of the listening sockets (never `shutdown()` them: they are shared
//! with the next generation); let every connection finish under its drain
//! rule; at the deadline, force-close what is left and count it by class;
//! return a [`DrainReport`].

use std::fmt;
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// The default drain deadline.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

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
/// signal no longer kills the process, and after the first one, further stop
/// signals are ignored. That is what a drain wants, since Server::Starter
/// re-sends its stop signal to every old generation on each restart; only the
/// drain deadline (or `SIGKILL`) ends it. Install them *before* announcing
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

/// What a request handler sees of the drain; found in every request's
/// extensions.
///
/// Streaming responses, long polls and upgraded connections use it to end
/// cleanly before the deadline closes them.
///
/// # Examples
///
/// ```
/// use gracedown::shutdown::Draining;
///
/// fn handler(req: &http::Request<()>) {
///     if let Some(draining) = req.extensions().get::<Draining>() {
///         if draining.is_draining() {
///             // Finish up: the server is shutting down.
///         }
///     }
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Draining {
    rx: watch::Receiver<Option<Instant>>,
}

impl Draining {
    pub(crate) fn new(rx: watch::Receiver<Option<Instant>>) -> Self {
        Self { rx }
    }

    /// Whether the server has started to drain.
    pub fn is_draining(&self) -> bool {
        self.rx.borrow().is_some()
    }

    /// When the drain will force-close what is left, once draining.
    pub fn deadline(&self) -> Option<Instant> {
        *self.rx.borrow()
    }

    /// Resolves when the drain starts (at once if it has), with its deadline.
    pub async fn wait(&mut self) -> Instant {
        match self.rx.wait_for(Option::is_some).await {
            Ok(deadline) => deadline.unwrap_or_else(Instant::now),
            // The server is gone: there is nothing left to wait for.
            Err(_) => Instant::now(),
        }
    }
}

/// The state a connection was in when it had to be force-closed at the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnState {
    /// In the TLS handshake.
    Handshake,
    /// Accepted, but no request has arrived yet.
    NoRequest,
    /// HTTP/1, between requests.
    Idle,
    /// HTTP/1, a request in flight.
    InFlight,
    /// HTTP/2, streams still open.
    Http2,
}

impl ConnState {
    pub(crate) const ALL: [Self; 5] = [
        Self::Handshake,
        Self::NoRequest,
        Self::Idle,
        Self::InFlight,
        Self::Http2,
    ];

    /// The state's name in logs and reports (`in_flight`, `http2`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Handshake => "handshake",
            Self::NoRequest => "no_request",
            Self::Idle => "idle",
            Self::InFlight => "in_flight",
            Self::Http2 => "http2",
        }
    }
}

/// What a graceful shutdown did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DrainReport {
    /// Connections open when the drain started.
    pub connections_at_signal: u64,
    /// Of those, how many were in each [`ConnState`] (in [`ConnState`] order).
    pub at_signal: [u64; 5],
    /// Connections that closed cleanly during the drain.
    pub drained: u64,
    /// Connections force-closed at the deadline, per [`ConnState`] (in [`ConnState`] order).
    pub forced: [u64; 5],
    /// Requests answered after the drain started.
    pub requests_after_signal: u64,
    /// From the signal until every listener was closed.
    pub stop_accepting: Duration,
    /// From the signal until every connection closed by itself, or until the deadline.
    pub drain: Duration,
    /// From the signal until the last connection closed, forced ones included.
    pub elapsed: Duration,
}

impl DrainReport {
    /// Connections force-closed in `state`.
    pub fn forced_in(&self, state: ConnState) -> u64 {
        self.forced[state as usize]
    }

    /// Connections that were in `state` when the drain started.
    pub fn at_signal_in(&self, state: ConnState) -> u64 {
        self.at_signal[state as usize]
    }

    /// Every force-closed connection.
    pub fn forced_total(&self) -> u64 {
        self.forced.iter().sum()
    }
}

impl fmt::Display for DrainReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connections_at_signal={} drained={} forced={} requests_after_signal={} stop_accepting_ms={} drain_ms={} elapsed_ms={}",
            self.connections_at_signal,
            self.drained,
            self.forced_total(),
            self.requests_after_signal,
            self.stop_accepting.as_millis(),
            self.drain.as_millis(),
            self.elapsed.as_millis(),
        )?;
        for state in ConnState::ALL {
            let n = self.forced_in(state);
            if n > 0 {
                write!(f, " forced_{}={n}", state.name())?;
            }
        }
        Ok(())
    }
}
