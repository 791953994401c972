//! Command-line arguments, parsed the way Perl's Getopt::Long (default
//! configuration) parses start_server's: long options with one or two
//! dashes, `--opt=value` or `--opt value`, unique abbreviations (`--int 0`),
//! options anywhere before `--` (permuted), everything after `--` for the
//! program. Error messages and the exit status (1) are Getopt::Long's.
//!
//! Hand-written rather than clap: clap does not accept single-dash long
//! options or permute the way Getopt::Long does, and start_server stays
//! resident for a service's whole life, so its code size matters.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::error::Error;

/// The raw options, as given; [`crate::config`] validates them.
#[derive(Debug, Default)]
pub(crate) struct Args {
    pub(crate) port: Vec<String>,
    pub(crate) path: Vec<PathBuf>,
    pub(crate) dir: Option<PathBuf>,
    pub(crate) interval: Option<String>,
    pub(crate) signal_on_hup: Option<String>,
    pub(crate) signal_on_term: Option<String>,
    pub(crate) pid_file: Option<PathBuf>,
    pub(crate) status_file: Option<PathBuf>,
    pub(crate) envdir: Option<PathBuf>,
    pub(crate) log_file: Option<String>,
    pub(crate) daemonize: bool,
    pub(crate) enable_auto_restart: bool,
    pub(crate) auto_restart_interval: Option<String>,
    pub(crate) kill_old_delay: Option<String>,
    pub(crate) backlog: Option<String>,
    pub(crate) restart: bool,
    pub(crate) stop: bool,
    pub(crate) ready_timeout: Option<String>,
    pub(crate) drain_timeout: Option<String>,
    pub(crate) watchdog_timeout: Option<String>,
    pub(crate) ticket_key_rotation: Option<String>,
    pub(crate) help: bool,
    pub(crate) version: bool,
    pub(crate) command: Vec<OsString>,
}

/// Every option, with whether it takes a value.
const OPTIONS: [(&str, bool); 23] = [
    ("port", true),
    ("path", true),
    ("interval", true),
    ("log-file", true),
    ("pid-file", true),
    ("dir", true),
    ("signal-on-hup", true),
    ("signal-on-term", true),
    ("backlog", true),
    ("envdir", true),
    ("enable-auto-restart", false),
    ("daemonize", false),
    ("auto-restart-interval", true),
    ("kill-old-delay", true),
    ("status-file", true),
    ("restart", false),
    ("stop", false),
    ("help", false),
    ("version", false),
    ("ready-timeout", true),
    ("drain-timeout", true),
    ("watchdog-timeout", true),
    ("ticket-key-rotation", true),
];

/// `start_server --help`.
pub(crate) const HELP: &str = "\
Usage:
  start_server [options] -- server-prog server-arg1 server-arg2 ...

  # start Plack using Starlet listening at TCP port 8000
  start_server --port=8000 -- plackup -s Starlet --max-workers=100 index.psgi
  # restart or stop a running instance
  start_server --restart --pid-file=/tmp/ss.pid --status-file=/tmp/ss.status
  start_server --stop --pid-file=/tmp/ss.pid

A superdaemon for hot-deploying server programs, compatible with Perl's
Server::Starter. It binds the sockets, runs the server program with them
(SERVER_STARTER_PORT, SERVER_STARTER_GENERATION), and on SIGHUP starts a new
generation on the same sockets before it tells the old one to stop. A worker
that sends READY=1 to NOTIFY_SOCKET is trusted at once; others after --interval.

Options (one or two dashes; --opt=value or --opt value; unique abbreviations):
  --port=PORT              TCP port to listen on: PORT, HOST:PORT, [IPV6]:PORT; `u' before the
                           port for UDP, `=FD' after it to pin the descriptor; repeatable
  --path=PATH              unix socket to listen on; repeatable
  --dir=DIR                working directory of the server program
  --interval=SECONDS       a worker that does not say READY=1 is trusted once alive this long
                           (default 1; fractions and units allowed: 0.2, 500ms)
  --signal-on-hup=SIGNAL   sent to old workers after a restart (default TERM)
  --signal-on-term=SIGNAL  sent to all workers when start_server gets SIGTERM (default TERM)
  --pid-file=FILE          write start_server's pid here (locked while running)
  --status-file=FILE       live generations as GEN:PID lines
  --envdir=DIR             files setting variables for each new worker (default $ENVDIR)
  --log-file=FILE          append the log to FILE, or `| command' to pipe it
  --daemonize              run in the background (needs --log-file)
  --enable-auto-restart    restart periodically
  --auto-restart-interval=SECONDS   (default 360)
  --kill-old-delay=SECONDS wait this long after a new worker is up before signalling the old
                           (default 0, or 5 with auto-restart)
  --backlog=N              listen() backlog (default SOMAXCONN)
  --restart                restart the running instance (needs --pid-file, --status-file) and
                           wait until the new generation is the only one
  --stop                   stop the running instance (needs --pid-file) and wait until it exits
  --ready-timeout=SECONDS  new: only READY=1 makes a worker trusted; one that has not said it
                           by then is killed and the old generation keeps serving
  --drain-timeout=SECONDS  new: SIGKILL workers still running this long after SIGTERM
                           (default: wait for ever, like Perl)
  --watchdog-timeout=SECONDS  new: a worker that said READY=1 (or WATCHDOG=1) must send
                           WATCHDOG=1 at least this often (it gets WATCHDOG_USEC); one that
                           stops is killed and replaced like a crashed one (default: off)
  --ticket-key-rotation=SECONDS  new: how often the TLS session-ticket keys that every
                           generation shares are replaced (default 12h); they live in memory
                           only and reach gracedown workers on their handoff channel
  --help, --version

Signals: HUP restarts; TERM, INT and QUIT stop (workers get --signal-on-term, or TERM for
INT); USR1 and USR2 are logged and ignored.
";

impl Args {
    /// Parses the arguments after the program name.
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] with Getopt::Long's message.
    pub(crate) fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Self, Error> {
        let mut parsed = Self::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let Some(text) = arg.to_str().filter(|t| t.starts_with('-') && *t != "-") else {
                parsed.command.push(arg);
                continue;
            };
            if text == "--" {
                parsed.command.extend(args);
                break;
            }
            let body = text.strip_prefix("--").unwrap_or(&text[1..]);
            let (given, inline) = match body.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (body, None),
            };
            let (name, takes_value) = lookup(given)?;
            let value = match (takes_value, inline) {
                (true, Some(value)) => Some(value),
                (true, None) => match args.next() {
                    Some(next) => Some(next.to_string_lossy().into_owned()),
                    None => {
                        return Err(Error::Usage(format!("Option {given} requires an argument")));
                    }
                },
                (false, Some(_)) => {
                    return Err(Error::Usage(format!(
                        "Option {given} does not take an argument"
                    )));
                }
                (false, None) => None,
            };
            parsed.set(name, value.unwrap_or_default());
        }
        Ok(parsed)
    }

    fn set(&mut self, name: &str, value: String) {
        match name {
            "port" => self.port.push(value),
            "path" => self.path.push(value.into()),
            "interval" => self.interval = Some(value),
            "log-file" => self.log_file = Some(value),
            "pid-file" => self.pid_file = Some(value.into()),
            "dir" => self.dir = Some(value.into()),
            "signal-on-hup" => self.signal_on_hup = Some(value),
            "signal-on-term" => self.signal_on_term = Some(value),
            "backlog" => self.backlog = Some(value),
            "envdir" => self.envdir = Some(value.into()),
            "enable-auto-restart" => self.enable_auto_restart = true,
            "daemonize" => self.daemonize = true,
            "auto-restart-interval" => self.auto_restart_interval = Some(value),
            "kill-old-delay" => self.kill_old_delay = Some(value),
            "status-file" => self.status_file = Some(value.into()),
            "restart" => self.restart = true,
            "stop" => self.stop = true,
            "help" => self.help = true,
            "version" => self.version = true,
            "ready-timeout" => self.ready_timeout = Some(value),
            "watchdog-timeout" => self.watchdog_timeout = Some(value),
            "ticket-key-rotation" => self.ticket_key_rotation = Some(value),
            _ => self.drain_timeout = Some(value),
        }
    }
}

/// An option by its exact name or a unique prefix, as Getopt::Long matches.
fn lookup(given: &str) -> Result<(&'static str, bool), Error> {
    if let Some(&(name, takes)) = OPTIONS.iter().find(|(name, _)| *name == given) {
        return Ok((name, takes));
    }
    let candidates: Vec<&(&str, bool)> = OPTIONS
        .iter()
        .filter(|(name, _)| !given.is_empty() && name.starts_with(given))
        .collect();
    match candidates[..] {
        [&(name, takes)] => Ok((name, takes)),
        [] => Err(Error::Usage(format!("Unknown option: {given}"))),
        _ => {
            let mut names: Vec<&str> = candidates.iter().map(|(n, _)| *n).collect();
            names.sort_unstable();
            Err(Error::Usage(format!(
                "Option {given} is ambiguous ({})",
                names.join(", ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        Args::parse(args.iter().map(OsString::from)).map_err(|e| e.to_string())
    }

    #[test]
    fn long_options_with_one_or_two_dashes_and_either_value_form() {
        let args = parse(&[
            "--port=80",
            "-port",
            "81",
            "--path",
            "/s",
            "-interval=0.2",
            "--",
            "app",
            "--port=9",
        ])
        .expect("valid");
        assert_eq!(args.port, ["80", "81"]);
        assert_eq!(args.path, [PathBuf::from("/s")]);
        assert_eq!(args.interval.as_deref(), Some("0.2"));
        assert_eq!(args.command, ["app", "--port=9"]);
    }

    #[test]
    fn unique_abbreviations_and_permutation_as_getopt_long() {
        let args = parse(&["--int", "0", "app", "--pid=/p", "x"]).expect("valid");
        assert_eq!(args.interval.as_deref(), Some("0"));
        assert_eq!(args.pid_file, Some(PathBuf::from("/p")));
        assert_eq!(args.command, ["app", "x"]);
    }

    #[test]
    fn errors_are_getopt_long_messages() {
        assert_eq!(
            parse(&["--frobnicate"]).expect_err("unknown"),
            "Unknown option: frobnicate"
        );
        assert_eq!(
            parse(&["--port=1", "./app", "-s", "x"]).expect_err("ambiguous"),
            "Option s is ambiguous (signal-on-hup, signal-on-term, status-file, stop)"
        );
        assert_eq!(
            parse(&["--port"]).expect_err("missing"),
            "Option port requires an argument"
        );
        assert_eq!(
            parse(&["--daemonize=1"]).expect_err("flag"),
            "Option daemonize does not take an argument"
        );
    }
}
