//! Command-line arguments, with Server::Starter's option names. clap types
//! stay here; [`crate::config`] turns them into a validated `Config`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;

/// A superdaemon for hot-deploying server programs, compatible with Perl's
/// Server::Starter (`start_server`).
///
/// It binds the listening sockets, runs the server program with them
/// (`SERVER_STARTER_PORT`), and on SIGHUP starts a new generation on the same
/// sockets before it tells the old one to stop. A worker that sends
/// `READY=1` to `NOTIFY_SOCKET` is handed over at once; others after --interval.
///
/// Examples:
///   start_server --port=127.0.0.1:8080 -- gracedown serve
///   start_server --port=8000 --status-file=/tmp/st --pid-file=/tmp/pid -- plackup -s Starlet app.psgi
///   start_server --restart --status-file=/tmp/st --pid-file=/tmp/pid
#[derive(Debug, Parser)]
#[command(
    name = "start_server",
    version = crate::VERSION_TEXT,
    infer_long_args = true,
    after_help = crate::exit::HELP,
)]
pub(crate) struct Args {
    /// TCP port to listen on: `PORT`, `HOST:PORT`, `[IPV6]:PORT`, with `u` before the
    /// port for UDP and `=FD` to pin the descriptor number; repeatable.
    #[arg(long, value_name = "PORT")]
    pub(crate) port: Vec<String>,

    /// Unix socket path to listen on; repeatable.
    #[arg(long, value_name = "PATH")]
    pub(crate) path: Vec<PathBuf>,

    /// Working directory of the server program.
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,

    /// Seconds a new worker must stay alive to be trusted when it does not
    /// send READY=1 (fractions and units allowed: 0.2, 500ms) [default: 1].
    #[arg(long, value_name = "SECONDS")]
    pub(crate) interval: Option<String>,

    /// Signal sent to old workers after a restart [default: TERM].
    #[arg(long, value_name = "SIGNAL")]
    pub(crate) signal_on_hup: Option<String>,

    /// Signal sent to all workers when start_server gets SIGTERM [default: TERM].
    #[arg(long, value_name = "SIGNAL")]
    pub(crate) signal_on_term: Option<String>,

    /// File to write start_server's pid to.
    #[arg(long, value_name = "FILE")]
    pub(crate) pid_file: Option<PathBuf>,

    /// File listing the live generations as `GEN:PID` lines.
    #[arg(long, value_name = "FILE")]
    pub(crate) status_file: Option<PathBuf>,

    /// Directory whose files set environment variables for each new worker
    /// (default: $ENVDIR).
    #[arg(long, value_name = "DIR")]
    pub(crate) envdir: Option<PathBuf>,

    /// Append the log to FILE, or pipe it to a command with `| command`.
    #[arg(long, value_name = "FILE")]
    pub(crate) log_file: Option<String>,

    /// Detach and run in the background (needs --log-file).
    #[arg(long)]
    pub(crate) daemonize: bool,

    /// Restart the worker periodically (see --auto-restart-interval).
    #[arg(long)]
    pub(crate) enable_auto_restart: bool,

    /// Seconds between automatic restarts [default: 360].
    #[arg(long, value_name = "SECONDS")]
    pub(crate) auto_restart_interval: Option<String>,

    /// Seconds to wait after a new worker is up before old workers are
    /// signalled [default: 0, or 5 with auto-restart].
    #[arg(long, value_name = "SECONDS")]
    pub(crate) kill_old_delay: Option<String>,

    /// listen() backlog of every socket [default: SOMAXCONN].
    #[arg(long, value_name = "N")]
    pub(crate) backlog: Option<String>,

    /// Restart the running start_server (needs --pid-file and --status-file),
    /// wait until the new generation is the only one, and report the outcome.
    #[arg(long)]
    pub(crate) restart: bool,

    /// Stop the running start_server (needs --pid-file) and wait until it exits.
    #[arg(long)]
    pub(crate) stop: bool,

    /// New: how long a new worker may take to send READY=1; a worker that
    /// has not by then is killed and the old generation keeps serving. With
    /// this option a worker is only trusted once it says READY=1.
    #[arg(long, value_name = "SECONDS")]
    pub(crate) ready_timeout: Option<String>,

    /// New: how long workers may take to exit after start_server's SIGTERM
    /// before they get SIGKILL [default: wait for ever, like Perl].
    #[arg(long, value_name = "SECONDS")]
    pub(crate) drain_timeout: Option<String>,

    /// The server program and its arguments (put `--` before them).
    #[arg(value_name = "PROGRAM", trailing_var_arg = true, num_args = 1..)]
    pub(crate) command: Vec<OsString>,
}
