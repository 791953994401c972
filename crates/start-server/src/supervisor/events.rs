//! What goes into the state machine and what comes out: its settings, the
//! events the driver reports, and the actions it asks the driver to perform.

use std::time::Duration;

use crate::signal::Signal;

/// Settings that do not change while running.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A worker alive this long is trusted (when it does not say READY=1).
    pub interval: Duration,
    /// When set, only READY=1 makes a worker trusted, within this bound.
    pub ready_timeout: Option<Duration>,
    /// Sent to old generations after a restart.
    pub signal_on_hup: Signal,
    /// Sent to all workers on SIGTERM.
    pub signal_on_term: Signal,
    /// SIGKILL what is left this long after the stop signal.
    pub drain_timeout: Option<Duration>,
    /// A ready worker that sends no `WATCHDOG=1` for this long is killed
    /// and replaced.
    pub watchdog: Option<Duration>,
}

/// Settings read from the environment (and the envdir) at each wake-up,
/// as Perl does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dynamic {
    /// `KILL_OLD_DELAY` (default 0, or 5 s with auto-restart).
    pub kill_old_delay: Option<Duration>,
    /// `AUTO_RESTART_INTERVAL` when `ENABLE_AUTO_RESTART` is set (default 360 s).
    pub auto_restart: Option<Duration>,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// start_server is set up: start the first generation.
    Start,
    /// SIGHUP.
    Hup,
    /// SIGTERM, SIGINT or SIGQUIT.
    Stop(StopSignal),
    /// The worker of `generation` was spawned as `pid`.
    Spawned {
        /// The generation.
        generation: u64,
        /// Its pid.
        pid: u32,
    },
    /// The child of `generation` was forked as `pid` and runs towards its
    /// `exec` (the spawn has not necessarily returned: a child stopped
    /// before `exec` keeps it from returning, and is then known only so).
    Forked {
        /// The generation.
        generation: u64,
        /// The child's pid.
        pid: u32,
    },
    /// The worker of `generation` could not be spawned (exec or chdir failed).
    SpawnFailed {
        /// The generation.
        generation: u64,
        /// Why, for the log.
        error: String,
    },
    /// A child exited with this raw wait status.
    Exited {
        /// The child.
        pid: u32,
        /// The raw wait status (exit code << 8, or the signal number).
        status: i32,
    },
    /// The worker of `generation` said READY=1.
    Ready {
        /// The generation.
        generation: u64,
    },
    /// The worker of `generation` said WATCHDOG=1.
    Watchdog {
        /// The generation.
        generation: u64,
    },
    /// Time passed (a deadline from [`Supervisor::next_deadline`](super::Supervisor::next_deadline) was reached).
    Tick,
}

/// The stop signal start_server received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGTERM: workers get `--signal-on-term`.
    Term,
    /// SIGINT: workers get SIGTERM.
    Int,
    /// SIGQUIT: like SIGTERM (Perl dies and orphans the workers).
    Quit,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Spawn a worker of this generation; answer with `Spawned` or `SpawnFailed`.
    Spawn {
        /// The generation.
        generation: u64,
    },
    /// Send a signal.
    Signal {
        /// The target.
        pid: u32,
        /// The signal.
        signal: Signal,
    },
    /// Write the status file with this content.
    WriteStatus(String),
    /// A log line.
    Log(String),
    /// A systemd notification for start_server's own supervisor.
    Notify(&'static str),
    /// Exit with this status.
    Exit(u8),
}
