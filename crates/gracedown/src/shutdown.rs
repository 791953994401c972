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
