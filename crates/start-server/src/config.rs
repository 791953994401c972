//! The validated configuration: every option checked once, with the bad
//! value named, before anything is bound or started.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use gracedown_sockets::protocol::ListenKey;

use crate::cli::Args;
use crate::error::Error;
use crate::signal::Signal;

/// One socket to listen on, in `SERVER_STARTER_PORT` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketSpec {
    /// A TCP (or, with `u`, UDP) socket.
    Inet {
        /// The key in `SERVER_STARTER_PORT` (the host text as given).
        key: ListenKey,
        /// Where to bind.
        addr: SocketAddr,
        /// `u` before the port.
        udp: bool,
        /// `=FD`: the descriptor number the worker gets.
        fd: Option<i32>,
    },
    /// A unix stream socket.
    Unix(PathBuf),
}

/// Where the log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// Appended to a file.
    File(PathBuf),
    /// Piped to a shell command.
    Pipe(String),
}

/// What this invocation does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Run the superdaemon with this program and arguments.
    Run(Vec<OsString>),
    /// `--restart`: restart a running instance and wait for the outcome.
    Restart,
    /// `--stop`: stop a running instance and wait until it exits.
    Stop,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// What to do.
    pub mode: Mode,
    /// Sockets: all `--port` in order, then all `--path`.
    pub sockets: Vec<SocketSpec>,
    /// `--dir`.
    pub dir: Option<PathBuf>,
    /// `--interval`.
    pub interval: Duration,
    /// `--signal-on-hup`.
    pub signal_on_hup: Signal,
    /// `--signal-on-term`.
    pub signal_on_term: Signal,
    /// `--pid-file`.
    pub pid_file: Option<PathBuf>,
    /// `--status-file`.
    pub status_file: Option<PathBuf>,
    /// `--log-file`.
    pub log: Option<LogTarget>,
    /// `--daemonize`.
    pub daemonize: bool,
    /// `--backlog`.
    pub backlog: i32,
    /// `--ready-timeout`: when set, only READY=1 makes a worker trusted.
    pub ready_timeout: Option<Duration>,
    /// `--drain-timeout`: SIGKILL what is left this long after the stop signal.
    pub drain_timeout: Option<Duration>,
    /// `--watchdog-timeout`: a ready worker silent this long is replaced.
    pub watchdog_timeout: Option<Duration>,
    /// `--ticket-key-rotation`: how often the shared TLS session-ticket keys
    /// are replaced.
    pub ticket_key_rotation: Duration,
    /// Variables the options set for start_server and its workers
    /// (`ENVDIR`, `ENABLE_AUTO_RESTART`, `AUTO_RESTART_INTERVAL`, `KILL_OLD_DELAY`).
    pub control_env: Vec<(String, String)>,
}

/// The default `listen()` backlog: the kernel's maximum, as Perl's `SOMAXCONN`.
pub const DEFAULT_BACKLOG: i32 = 4096;

impl TryFrom<Args> for Config {
    type Error = Error;

    fn try_from(args: Args) -> Result<Self, Error> {
        let mode = if args.restart {
            if args.pid_file.is_none() || args.status_file.is_none() {
                return Err(Error::Usage255(
                    "--restart option requires --pid-file and --status-file to be set as well"
                        .into(),
                ));
            }
            Mode::Restart
        } else if args.stop {
            if args.pid_file.is_none() {
                return Err(Error::Usage255(
                    "--stop option requires --pid-file to be set as well".into(),
                ));
            }
            Mode::Stop
        } else {
            if args.daemonize && args.log_file.is_none() {
                return Err(Error::Usage255(
                    "Usage: --log-file option must be specified together with --deamonize".into(),
                ));
            }
            if args.command.is_empty() {
                return Err(Error::Usage255("server program not specified".into()));
            }
            check_program(&args.command[0], args.dir.as_deref())?;
            Mode::Run(args.command)
        };
        let mut control_env = Vec::new();
        if let Some(dir) = &args.envdir {
            if let Err(source) = std::fs::read_dir(dir) {
                return Err(Error::File {
                    action: "read the envdir",
                    path: dir.clone(),
                    source,
                });
            }
            control_env.push(("ENVDIR".to_owned(), dir.display().to_string()));
        }
        if args.enable_auto_restart {
            control_env.push(("ENABLE_AUTO_RESTART".to_owned(), "1".to_owned()));
        }
        if let Some(v) = &args.kill_old_delay {
            seconds("--kill-old-delay", v)?;
            control_env.push(("KILL_OLD_DELAY".to_owned(), v.clone()));
        }
        if let Some(v) = &args.auto_restart_interval {
            seconds("--auto-restart-interval", v)?;
            control_env.push(("AUTO_RESTART_INTERVAL".to_owned(), v.clone()));
        }
        let mut sockets = Vec::new();
        for spec in &args.port {
            sockets.push(parse_port(spec)?);
        }
        sockets.extend(args.path.iter().cloned().map(SocketSpec::Unix));
        let backlog = match &args.backlog {
            None => DEFAULT_BACKLOG,
            Some(v) => v
                .trim()
                .parse()
                .ok()
                .filter(|n: &i32| *n > 0)
                .ok_or_else(|| Error::InvalidOption {
                    option: "--backlog",
                    value: v.clone(),
                    expected: "a positive whole number",
                })?,
        };
        let log = args
            .log_file
            .map(|v| match v.trim_start().strip_prefix('|') {
                Some(cmd) => LogTarget::Pipe(cmd.trim_start().to_owned()),
                None => LogTarget::File(PathBuf::from(v)),
            });
        Ok(Self {
            mode,
            sockets,
            dir: args.dir,
            interval: args
                .interval
                .as_deref()
                .map(|v| seconds("--interval", v))
                .transpose()?
                .unwrap_or(Duration::from_secs(1)),
            signal_on_hup: signal_option("--signal-on-hup", args.signal_on_hup.as_deref())?,
            signal_on_term: signal_option("--signal-on-term", args.signal_on_term.as_deref())?,
            pid_file: args.pid_file,
            status_file: args.status_file,
            log,
            daemonize: args.daemonize,
            backlog,
            ready_timeout: args
                .ready_timeout
                .as_deref()
                .map(|v| seconds("--ready-timeout", v))
                .transpose()?,
            drain_timeout: args
                .drain_timeout
                .as_deref()
                .map(|v| seconds("--drain-timeout", v))
                .transpose()?,
            watchdog_timeout: args
                .watchdog_timeout
                .as_deref()
                .map(|v| seconds("--watchdog-timeout", v))
                .transpose()?
                .filter(|d| !d.is_zero()),
            ticket_key_rotation: args
                .ticket_key_rotation
                .as_deref()
                .map(|v| seconds("--ticket-key-rotation", v))
                .transpose()?
                .map_or(DEFAULT_TICKET_KEY_ROTATION, |d| {
                    d.max(MIN_TICKET_KEY_ROTATION)
                }),
            control_env,
        })
    }
}

/// Perl retries a program that cannot be executed for ever; a missing or
/// non-executable program is an error before anything is bound.
fn check_program(program: &std::ffi::OsStr, dir: Option<&std::path::Path>) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let path = std::path::Path::new(program);
    let found = if program.as_encoded_bytes().contains(&b'/') {
        let full = match dir {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.to_owned(),
        };
        executable(&full)
    } else {
        std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|d| executable(&d.join(path))))
    };
    if found {
        Ok(())
    } else {
        Err(Error::Usage255(format!(
            "server program `{}` is not an executable file (nor found in PATH)",
            path.display()
        )))
    }
}

fn signal_option(option: &'static str, value: Option<&str>) -> Result<Signal, Error> {
    match value {
        None => Ok(Signal::TERM),
        Some(v) => Signal::parse(v).ok_or_else(|| Error::InvalidOption {
            option,
            value: v.to_owned(),
            expected: "a signal name (TERM, SIGTERM, USR1, ...) or number",
        }),
    }
}

/// Seconds as Perl's integers, or fractions (`0.2`), or with a unit (`500ms`).
/// `--ticket-key-rotation`'s default: twice a day.
pub const DEFAULT_TICKET_KEY_ROTATION: Duration = Duration::from_secs(12 * 3600);

/// The shortest rotation: a key lives at least this long.
const MIN_TICKET_KEY_ROTATION: Duration = Duration::from_secs(1);

pub(crate) fn seconds(option: &'static str, value: &str) -> Result<Duration, Error> {
    let text = value.trim();
    let parsed = if text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        text.parse::<f64>()
            .ok()
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
    } else {
        humantime::parse_duration(text).ok()
    };
    parsed.ok_or_else(|| Error::InvalidOption {
        option,
        value: value.to_owned(),
        expected: "seconds (1, 0.2) or a duration with a unit (500ms, 2s)",
    })
}

/// Perl's two `--port` shapes: `[u]PORT[=FD]` and `HOST:[u]PORT[=FD]` /
/// `[HOST]:[u]PORT[=FD]`, whitespace around parts trimmed.
pub(crate) fn parse_port(spec: &str) -> Result<SocketSpec, Error> {
    let invalid = || Error::InvalidPort(spec.to_owned());
    let text = spec.trim();
    let (main, fd) = match text.rsplit_once('=') {
        Some((main, fd)) => {
            let fd = fd.trim();
            if fd.is_empty() || !fd.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid());
            }
            (
                main.trim_end(),
                Some(fd.parse::<i32>().map_err(|_| invalid())?),
            )
        }
        None => (text, None),
    };
    let port_part = |p: &str| -> Result<(bool, u16), Error> {
        let p = p.trim_start();
        let (udp, digits) = match p.strip_prefix('u') {
            Some(rest) => (true, rest),
            None => (false, p),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        Ok((udp, digits.parse().map_err(|_| invalid())?))
    };
    if let Ok((udp, port)) = port_part(main) {
        // By default Perl binds IPv4 only, for compatibility.
        let addr = SocketAddr::from(([0, 0, 0, 0], port));
        return Ok(SocketSpec::Inet {
            key: ListenKey::Port(port),
            addr,
            udp,
            fd,
        });
    }
    let (host, port) = main.rsplit_once(':').ok_or_else(invalid)?;
    let (udp, port) = port_part(port)?;
    let host = host.trim();
    let host = host
        .strip_prefix('[')
        .map(|h| h.strip_suffix(']').unwrap_or(h))
        .unwrap_or(host)
        .trim();
    if host.contains(']') || host.contains('[') {
        return Err(invalid());
    }
    if host.contains(':') {
        let ip: Ipv6Addr = host.parse().map_err(|_| Error::NoIpv6(spec.to_owned()))?;
        let key = ListenKey::V6 {
            addr: ip,
            port,
            host: format!("[{host}]"),
        };
        return Ok(SocketSpec::Inet {
            key,
            addr: SocketAddr::from((ip, port)),
            udp,
            fd,
        });
    }
    let ip = resolve_v4(host).ok_or_else(|| Error::Resolve(host.to_owned()))?;
    let key = ListenKey::HostPort {
        host: host.to_owned(),
        port,
    };
    Ok(SocketSpec::Inet {
        key,
        addr: SocketAddr::new(ip, port),
        udp,
        fd,
    })
}

/// The first IPv4 address of `host`, as Perl's `gethostbyname`.
fn resolve_v4(host: &str) -> Option<IpAddr> {
    if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
        return Some(IpAddr::V4(ip));
    }
    (host, 0)
        .to_socket_addrs()
        .ok()?
        .map(|a| a.ip())
        .find(IpAddr::is_ipv4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(spec: &str) -> String {
        match parse_port(spec).expect("valid") {
            SocketSpec::Inet { key, .. } => key.to_string(),
            SocketSpec::Unix(p) => p.display().to_string(),
        }
    }

    #[test]
    fn port_keys_are_what_perl_writes() {
        assert_eq!(key("8080"), "8080");
        assert_eq!(key(" 8080 "), "8080");
        assert_eq!(key("127.0.0.1:8080"), "127.0.0.1:8080");
        assert_eq!(key("localhost:8080"), "localhost:8080");
        assert_eq!(key("[::1]:8080"), "[::1]:8080");
        assert_eq!(key("::1:8080"), "[::1]:8080");
        assert_eq!(key("u8080"), "8080");
        assert_eq!(key("127.0.0.1:8080=5"), "127.0.0.1:8080");
    }

    #[test]
    fn port_spec_parts() {
        assert_eq!(
            parse_port("u9000=0").expect("valid"),
            SocketSpec::Inet {
                key: ListenKey::Port(9000),
                addr: "0.0.0.0:9000".parse().expect("addr"),
                udp: true,
                fd: Some(0)
            }
        );
    }

    #[test]
    fn invalid_ports_quote_the_spec() {
        for bad in [
            "",
            "http",
            "80x",
            "127.0.0.1:",
            "127.0.0.1:x",
            "8080=x",
            "99999",
        ] {
            let err = parse_port(bad).expect_err(bad);
            assert_eq!(
                err.to_string(),
                format!("invalid ``port'' value:{bad}"),
                "{bad}"
            );
        }
        assert_eq!(
            parse_port("[zz::1]:80").expect_err("bad v6").to_string(),
            "invalid IPv6 address in ``port'' value:[zz::1]:80"
        );
    }

    #[test]
    fn durations_accept_perl_integers_fractions_and_units() {
        assert_eq!(
            seconds("--interval", "1").expect("int"),
            Duration::from_secs(1)
        );
        assert_eq!(
            seconds("--interval", "0.2").expect("fraction"),
            Duration::from_millis(200)
        );
        assert_eq!(
            seconds("--interval", "500ms").expect("unit"),
            Duration::from_millis(500)
        );
        assert_eq!(
            seconds("--interval", "soon").expect_err("bad").to_string(),
            "invalid value `soon` for --interval: expected seconds (1, 0.2) or a duration with a unit (500ms, 2s)"
        );
    }

    mod properties {
        use proptest::prelude::*;

        use std::ffi::OsString;

        use super::*;
        use crate::cli::Args;

        /// A word that may look like an option, a value or `--`.
        fn word() -> impl Strategy<Value = String> {
            prop_oneof![
                "\\PC{0,12}",
                "-{1,2}[a-z-]{0,16}(=\\PC{0,8})?",
                Just("--".to_owned()),
            ]
        }

        proptest! {
            #[test]
            fn any_command_line_parses_or_is_refused_without_panicking(
                words in prop::collection::vec(word(), 0..8)
            ) {
                if let Ok(args) = Args::parse(words.iter().map(OsString::from)) {
                    // Validation never panics either (it binds nothing).
                    let _ = Config::try_from(args);
                }
            }

            #[test]
            fn options_round_trip_in_every_spelling(
                ports in prop::collection::vec(1..65535u16, 1..4),
                interval in 0..1000u32,
                dashes in 1..3usize,
                inline in any::<bool>(),
                program in "[a-z]{1,8}",
            ) {
                let dash = "-".repeat(dashes);
                let mut words = Vec::new();
                for port in &ports {
                    if inline {
                        words.push(format!("{dash}port=127.0.0.1:{port}"));
                    } else {
                        words.push(format!("{dash}port"));
                        words.push(format!("127.0.0.1:{port}"));
                    }
                }
                words.push(format!("{dash}interval={interval}"));
                words.extend(["--".to_owned(), program.clone(), "--port=1".to_owned()]);
                let args = Args::parse(words.iter().map(OsString::from));
                prop_assert!(args.is_ok(), "{words:?}");
                let args = args.unwrap_or_default();
                let expected: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
                prop_assert_eq!(&args.port, &expected);
                prop_assert_eq!(args.interval, Some(interval.to_string()));
                prop_assert_eq!(args.command, vec![OsString::from(program), OsString::from("--port=1")]);
            }

            #[test]
            fn durations_and_port_specs_parse_or_are_refused_without_panicking(text in "\\PC{0,24}") {
                let _ = seconds("--interval", &text);
                let _ = parse_port(&text);
            }

            #[test]
            fn huge_second_counts_are_refused_not_a_panic(digits in "[1-9][0-9]{20,39}(\\.[0-9]{1,4})?") {
                prop_assert!(seconds("--interval", &digits).is_err());
            }
        }
    }
}
