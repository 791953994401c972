//! `start_server`, a Server::Starter-compatible superdaemon.
//!
//! It binds the listening sockets once and keeps them for its whole life;
//! each worker generation inherits them (`SERVER_STARTER_PORT`,
//! `SERVER_STARTER_GENERATION`). On SIGHUP it starts a new generation on the
//! same sockets, waits until that one is trusted (it says `READY=1` on its
//! private `NOTIFY_SOCKET`, or, for workers that cannot, it is still alive
//! after `--interval`), and only then signals the old generation.
//!
//! ```text
//!  cli ─▶ config ─▶ sockets (bind) ─▶ run (driver) ─▶ supervisor (pure state machine)
//!                                         │ spawn (fds placed in pre_exec) / kill / status file
//! ```
//!
//! Perl's Server::Starter 0.35 is the compatibility contract (its own test
//! suite passes against this one); `docs/design/supervisor.md` lists where and
//! why this one differs from Perl.

mod broker;
mod cli;
pub mod config;
mod control;
mod daemon;
mod env;
pub mod error;
pub mod exit;
mod files;
mod logging;
mod run;
pub mod signal;
mod sockets;
mod spawn;
mod spawner;
pub mod supervisor;

use std::process::ExitCode;

pub use config::Config;
pub use error::Error;

/// `--version`.
pub const VERSION_TEXT: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (gracedown; compatible with Server::Starter 0.35)"
);

/// Runs `start_server` with the process's arguments.
pub fn main() -> ExitCode {
    main_with_args(std::env::args_os().skip(1))
}

/// Runs `start_server` with these arguments (without the program name), for
/// programs that embed it (`gracedown start-server`).
pub fn main_with_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    init_logging();
    let args = match cli::Args::parse(args) {
        Ok(args) => args,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(e.exit_code());
        }
    };
    if args.help {
        println!("{}{}", cli::HELP, exit::HELP);
        return ExitCode::SUCCESS;
    }
    if args.version {
        println!("{VERSION_TEXT}");
        return ExitCode::SUCCESS;
    }
    let result = Config::try_from(args).and_then(|config| match &config.mode {
        config::Mode::Run(_) => run::run(&config),
        config::Mode::Restart => {
            let (pid, status) = (
                config.pid_file.unwrap_or_default(),
                config.status_file.unwrap_or_default(),
            );
            control::restart(&pid, &status, &mut |l| tracing::info!("{l}")).map(|()| exit::OK)
        }
        config::Mode::Stop => control::stop(&config.pid_file.unwrap_or_default(), &mut |l| {
            tracing::info!("{l}")
        })
        .map(|()| exit::OK),
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            tracing::error!("{}", error_line(&e));
            ExitCode::from(e.exit_code())
        }
    }
}

/// Log lines are Perl's: the bare message, no time, level or target.
fn init_logging() {
    logging::init();
}

/// An error and its causes on one line.
pub(crate) fn error_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        line.push(':');
        line.push_str(&errno_like(cause));
        source = cause.source();
    }
    line
}

fn errno_like(cause: &(dyn std::error::Error + 'static)) -> String {
    match cause.downcast_ref::<std::io::Error>() {
        Some(io) => errno_text(io),
        None => cause.to_string(),
    }
}

/// An I/O error as Perl's `$!` prints it: `Address already in use`, without `(os error 98)`.
pub(crate) fn errno_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}
