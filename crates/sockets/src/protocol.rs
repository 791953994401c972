//! The socket-passing environment: Server::Starter's `SERVER_STARTER_PORT` and
//! `SERVER_STARTER_GENERATION`, and systemd's `LISTEN_FDS`, `LISTEN_PID` and
//! `LISTEN_FDNAMES`.
//!
//! This module is pure: it parses and formats text. It never reads or writes
//! the process environment and makes no system call, so both directions are
//! tested without a process. [`crate::listener`] turns the specs it produces
//! into sockets; `start_server` uses [`format_server_starter_port`] to write
//! what a Perl `start_server` would write for the same sockets, byte for byte.
//!
//! # Decisions
//!
//! - `SERVER_STARTER_PORT` unset means "not under a superdaemon" (a worker may
//!   fall back to binding by itself); set but empty means "under a superdaemon
//!   that passed no sockets" (Perl's semantics since 0.34).
//! - Entries are split on `;`, empty entries are ignored, and each entry is
//!   split at its *last* `=`, because descriptor numbers are digits and unix
//!   paths may contain `=`.
//! - The key text is kept exactly as written (`localhost:8080`, `[::1]:8080`,
//!   `::1:8080`), since Perl writes the host as the user gave it; the
//!   descriptor itself is the truth about the socket, not the key.
//! - `LISTEN_PID` must equal our pid when present; a missing `LISTEN_PID` is
//!   accepted (as `listenfd` and `systemfd --no-pid` do); a different pid
//!   means the descriptors were meant for another process and are ignored.
//! - When both protocols are present, Server::Starter wins: it is the more
//!   specific of the two (a `start_server` under socket activation consumes
//!   `LISTEN_FDS` itself).

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::path::PathBuf;

use crate::error::Error;

/// `SERVER_STARTER_PORT`: `;`-joined `KEY=FD` entries.
pub const SERVER_STARTER_PORT: &str = "SERVER_STARTER_PORT";
/// `SERVER_STARTER_GENERATION`: the worker's generation, counting from 1.
pub const SERVER_STARTER_GENERATION: &str = "SERVER_STARTER_GENERATION";
/// `LISTEN_FDS`: how many descriptors systemd passed, from [`SD_LISTEN_FDS_START`].
pub const LISTEN_FDS: &str = "LISTEN_FDS";
/// `LISTEN_PID`: the pid the descriptors are meant for.
pub const LISTEN_PID: &str = "LISTEN_PID";
/// `LISTEN_FDNAMES`: `:`-separated names of the passed descriptors.
pub const LISTEN_FDNAMES: &str = "LISTEN_FDNAMES";
/// The first descriptor systemd passes (`SD_LISTEN_FDS_START` in `sd_listen_fds(3)`).
pub const SD_LISTEN_FDS_START: i32 = 3;
/// More descriptors than this in `LISTEN_FDS` is a malformed environment, not a
/// request to allocate for them (the kernel's default hard `RLIMIT_NOFILE`).
pub const MAX_LISTEN_FDS: usize = 1 << 20;

/// What a `SERVER_STARTER_PORT` key says about its socket.
///
/// The key's text is kept as written, so formatting gives back the same bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListenKey {
    /// `PORT`: a bare port (Perl binds `0.0.0.0:PORT`).
    Port(u16),
    /// `HOST:PORT` with an IPv4 address or a host name, as written.
    HostPort {
        /// The host text, e.g. `127.0.0.1` or `localhost`.
        host: String,
        /// The port.
        port: u16,
    },
    /// `[V6]:PORT`, or an IPv6 literal without brackets (`::1:8080`).
    V6 {
        /// The parsed address.
        addr: Ipv6Addr,
        /// The port.
        port: u16,
        /// How the key was written, e.g. `[::1]` or `::1`.
        host: String,
    },
    /// A unix socket path.
    Path(PathBuf),
    /// A systemd descriptor, named by `LISTEN_FDNAMES` (or `unknown`).
    Named(String),
}

impl ListenKey {
    /// The port this key names, if it names one.
    pub fn port(&self) -> Option<u16> {
        match self {
            Self::Port(port) | Self::HostPort { port, .. } | Self::V6 { port, .. } => Some(*port),
            Self::Path(_) | Self::Named(_) => None,
        }
    }

    /// Whether the key claims a unix socket.
    pub fn is_unix(&self) -> bool {
        matches!(self, Self::Path(_))
    }

    /// Whether the key claims a TCP socket (`PORT`, `HOST:PORT`, `[V6]:PORT`).
    pub fn is_tcp(&self) -> bool {
        self.port().is_some()
    }

    /// The IP address the key names literally, if any (`0.0.0.0` for a bare port).
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Self::Port(_) => Some(IpAddr::from([0, 0, 0, 0])),
            Self::HostPort { host, .. } => host.parse().ok(),
            Self::V6 { addr, .. } => Some(IpAddr::V6(*addr)),
            Self::Path(_) | Self::Named(_) => None,
        }
    }
}

impl fmt::Display for ListenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Port(port) => write!(f, "{port}"),
            Self::HostPort { host, port } | Self::V6 { host, port, .. } => {
                write!(f, "{host}:{port}")
            }
            Self::Path(path) => write!(f, "{}", path.display()),
            Self::Named(name) => f.write_str(name),
        }
    }
}

/// One inherited socket: what the environment says it is and its descriptor number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListenSpec {
    /// What the key says the socket is.
    pub key: ListenKey,
    /// The descriptor number, as written. Nothing owns it until a
    /// [`crate::listener::Listeners`] takes it.
    pub fd: i32,
}

impl fmt::Display for ListenSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.fd)
    }
}

/// Where a set of specs came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// `SERVER_STARTER_PORT` was set (possibly empty).
    ServerStarter {
        /// `SERVER_STARTER_GENERATION`, if set.
        generation: Option<u64>,
    },
    /// systemd socket activation (`LISTEN_FDS`).
    Systemd,
    /// Neither: not under a superdaemon.
    None,
}

/// The socket-passing environment, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inherited {
    /// Which protocol passed the sockets.
    pub source: Source,
    /// The sockets, in the order the environment lists them.
    pub specs: Vec<ListenSpec>,
}

/// Parses the socket-passing environment from injected variables.
///
/// `vars` is any set of `(name, value)` pairs (pass `std::env::vars()` for the
/// real environment); `pid` is the pid `LISTEN_PID` is compared with.
///
/// # Errors
///
/// A malformed `SERVER_STARTER_PORT`, `SERVER_STARTER_GENERATION`,
/// `LISTEN_FDS`, `LISTEN_PID` or `LISTEN_FDNAMES`, quoting the bad token.
///
/// # Examples
///
/// ```
/// use gracedown_sockets::protocol::{self, ListenKey, Source};
///
/// let env = [("SERVER_STARTER_PORT", "127.0.0.1:8080=4;/run/app.sock=5"),
///            ("SERVER_STARTER_GENERATION", "2")];
/// let inherited = protocol::parse_env(env, 1234)?;
/// assert_eq!(inherited.source, Source::ServerStarter { generation: Some(2) });
/// assert_eq!(inherited.specs[0].key.port(), Some(8080));
/// assert_eq!(inherited.specs[1].fd, 5);
/// # Ok::<(), gracedown_sockets::Error>(())
/// ```
pub fn parse_env<I, K, V>(vars: I, pid: u32) -> Result<Inherited, Error>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let (mut port, mut generation, mut fds, mut listen_pid, mut names) =
        (None, None, None, None, None);
    for (key, value) in vars {
        let value = value.as_ref().to_owned();
        match key.as_ref() {
            SERVER_STARTER_PORT => port = Some(value),
            SERVER_STARTER_GENERATION => generation = Some(value),
            LISTEN_FDS => fds = Some(value),
            LISTEN_PID => listen_pid = Some(value),
            LISTEN_FDNAMES => names = Some(value),
            _ => {}
        }
    }
    if let Some(port) = port {
        let generation = generation.as_deref().map(parse_generation).transpose()?;
        return Ok(Inherited {
            source: Source::ServerStarter { generation },
            specs: parse_server_starter_port(&port)?,
        });
    }
    match fds {
        Some(fds) => match parse_systemd(&fds, listen_pid.as_deref(), names.as_deref(), pid)? {
            Some(specs) => Ok(Inherited {
                source: Source::Systemd,
                specs,
            }),
            None => Ok(Inherited {
                source: Source::None,
                specs: Vec::new(),
            }),
        },
        None => Ok(Inherited {
            source: Source::None,
            specs: Vec::new(),
        }),
    }
}

/// Parses a `SERVER_STARTER_PORT` value.
///
/// # Errors
///
/// [`Error::EnvEntry`], [`Error::EnvFd`] or [`Error::EnvPort`] for the first bad entry.
///
/// # Examples
///
/// ```
/// use gracedown_sockets::protocol::{parse_server_starter_port, ListenKey};
///
/// let specs = parse_server_starter_port("80=3;[::1]:8080=4")?;
/// assert_eq!(specs[0].key, ListenKey::Port(80));
/// assert_eq!(specs[1].key.to_string(), "[::1]:8080");
/// assert!(parse_server_starter_port("80x=3").is_err());
/// # Ok::<(), gracedown_sockets::Error>(())
/// ```
pub fn parse_server_starter_port(value: &str) -> Result<Vec<ListenSpec>, Error> {
    value
        .split(';')
        .filter(|entry| !entry.is_empty())
        .map(parse_entry)
        .collect()
}

/// Formats specs as `SERVER_STARTER_PORT`, exactly as Perl `start_server`
/// writes it: `KEY=FD` joined by `;`, no trailing `;`, empty for no sockets.
///
/// # Examples
///
/// ```
/// use gracedown_sockets::protocol::{format_server_starter_port, parse_server_starter_port};
///
/// let text = "127.0.0.1:8080=4;18082=5;[::1]:18083=6;/run/app/sock=7";
/// let specs = parse_server_starter_port(text)?;
/// assert_eq!(format_server_starter_port(&specs), text);
/// # Ok::<(), gracedown_sockets::Error>(())
/// ```
pub fn format_server_starter_port(specs: &[ListenSpec]) -> String {
    let entries: Vec<String> = specs.iter().map(ToString::to_string).collect();
    entries.join(";")
}

fn parse_generation(value: &str) -> Result<u64, Error> {
    value.parse().map_err(|_| Error::EnvNumber {
        var: SERVER_STARTER_GENERATION,
        value: value.to_owned(),
    })
}

fn parse_entry(entry: &str) -> Result<ListenSpec, Error> {
    let not_an_entry = || Error::EnvEntry {
        var: SERVER_STARTER_PORT,
        entry: entry.to_owned(),
    };
    let (key, fd_text) = entry.rsplit_once('=').ok_or_else(not_an_entry)?;
    if key.is_empty() {
        return Err(not_an_entry());
    }
    let fd = parse_fd(fd_text).ok_or_else(|| Error::EnvFd {
        var: SERVER_STARTER_PORT,
        entry: entry.to_owned(),
        fd: fd_text.to_owned(),
    })?;
    let key = parse_key(key, entry)?.ok_or_else(not_an_entry)?;
    Ok(ListenSpec { key, fd })
}

/// Classifies a key. `Ok(None)` means "not any shape we know".
fn parse_key(key: &str, entry: &str) -> Result<Option<ListenKey>, Error> {
    if key.starts_with('/') || key.starts_with('.') {
        return Ok(Some(ListenKey::Path(PathBuf::from(key))));
    }
    if key.bytes().all(|b| b.is_ascii_digit()) {
        return parse_port(key, entry).map(|port| Some(ListenKey::Port(port)));
    }
    if let Some((host, port)) = key.rsplit_once(':')
        && !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
        && !host.is_empty()
    {
        let port = parse_port(port, entry)?;
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if bare.contains(':') || bare.len() != host.len() {
            let Ok(addr) = bare.parse::<Ipv6Addr>() else {
                return Ok(None);
            };
            return Ok(Some(ListenKey::V6 {
                addr,
                port,
                host: host.to_owned(),
            }));
        }
        return Ok(Some(ListenKey::HostPort {
            host: host.to_owned(),
            port,
        }));
    }
    // A relative unix path is allowed, but something that starts like an
    // address and fails to be one is an error, not a file name.
    let looks_like_address = key.starts_with(|c: char| c.is_ascii_digit() || c == '[')
        || (key.contains(':') && !key.contains('/'));
    if looks_like_address {
        return Ok(None);
    }
    Ok(Some(ListenKey::Path(PathBuf::from(key))))
}

fn parse_port(text: &str, entry: &str) -> Result<u16, Error> {
    text.parse().map_err(|_| Error::EnvPort {
        var: SERVER_STARTER_PORT,
        entry: entry.to_owned(),
        port: text.to_owned(),
    })
}

fn parse_fd(text: &str) -> Option<i32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// systemd's variables; `Ok(None)` when they are meant for another pid.
fn parse_systemd(
    fds: &str,
    listen_pid: Option<&str>,
    names: Option<&str>,
    pid: u32,
) -> Result<Option<Vec<ListenSpec>>, Error> {
    let count: i32 = fds
        .parse()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| Error::EnvNumber {
            var: LISTEN_FDS,
            value: fds.to_owned(),
        })?;
    if count as usize > MAX_LISTEN_FDS {
        return Err(Error::EnvTooMany {
            var: LISTEN_FDS,
            value: fds.to_owned(),
            max: MAX_LISTEN_FDS,
        });
    }
    if let Some(listen_pid) = listen_pid.filter(|p| !p.is_empty()) {
        let target: u32 = listen_pid.parse().map_err(|_| Error::EnvNumber {
            var: LISTEN_PID,
            value: listen_pid.to_owned(),
        })?;
        if target != pid {
            return Ok(None);
        }
    }
    let names: Vec<String> = match names {
        Some(names) => {
            let list: Vec<String> = names.split(':').map(str::to_owned).collect();
            if list.len() != count as usize {
                return Err(Error::EnvFdNames {
                    names: names.to_owned(),
                    count: count as usize,
                });
            }
            list
        }
        None => vec!["unknown".to_owned(); count as usize],
    };
    Ok(Some(
        names
            .into_iter()
            .zip(SD_LISTEN_FDS_START..)
            .map(|(name, fd)| ListenSpec {
                key: ListenKey::Named(name),
                fd,
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> ListenKey {
        parse_server_starter_port(&format!("{text}=3")).expect("valid key")[0]
            .key
            .clone()
    }

    fn error(text: &str) -> String {
        parse_server_starter_port(text)
            .expect_err("must be rejected")
            .to_string()
    }

    #[test]
    fn parses_bare_port() {
        assert_eq!(key("8080"), ListenKey::Port(8080));
    }

    #[test]
    fn parses_host_port_v4() {
        assert_eq!(
            key("127.0.0.1:8080"),
            ListenKey::HostPort {
                host: "127.0.0.1".into(),
                port: 8080
            }
        );
    }

    #[test]
    fn parses_host_name_as_given() {
        assert_eq!(
            key("localhost:18102"),
            ListenKey::HostPort {
                host: "localhost".into(),
                port: 18102
            }
        );
    }

    #[test]
    fn parses_bracketed_v6() {
        assert_eq!(
            key("[::1]:8080"),
            ListenKey::V6 {
                addr: Ipv6Addr::LOCALHOST,
                port: 8080,
                host: "[::1]".into()
            }
        );
    }

    #[test]
    fn parses_v6_without_brackets_at_last_colon() {
        let parsed = key("::1:18124");
        assert_eq!(
            parsed,
            ListenKey::V6 {
                addr: Ipv6Addr::LOCALHOST,
                port: 18124,
                host: "::1".into()
            }
        );
        assert_eq!(parsed.to_string(), "::1:18124");
    }

    #[test]
    fn parses_absolute_and_relative_paths() {
        assert_eq!(
            key("/run/app/sock"),
            ListenKey::Path("/run/app/sock".into())
        );
        assert_eq!(key("./8080.sock"), ListenKey::Path("./8080.sock".into()));
        assert_eq!(key("app.sock"), ListenKey::Path("app.sock".into()));
        assert_eq!(key("run/a:b"), ListenKey::Path("run/a:b".into()));
    }

    #[test]
    fn splits_at_last_equals_so_paths_may_hold_one() {
        let specs = parse_server_starter_port("/tmp/a=b.sock=7").expect("valid");
        assert_eq!(
            specs,
            vec![ListenSpec {
                key: ListenKey::Path("/tmp/a=b.sock".into()),
                fd: 7
            }]
        );
    }

    #[test]
    fn parses_several_and_ignores_empty_items() {
        let specs = parse_server_starter_port(";80=3;;[::1]:81=4;").expect("valid");
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].fd, 3);
        assert_eq!(specs[1].key.port(), Some(81));
    }

    #[test]
    fn empty_value_is_no_sockets() {
        assert_eq!(parse_server_starter_port("").expect("valid"), vec![]);
    }

    #[test]
    fn accepts_fd_zero() {
        assert_eq!(parse_server_starter_port("80=0").expect("valid")[0].fd, 0);
    }

    #[test]
    fn rejects_address_like_garbage() {
        assert_eq!(
            error("80x=3"),
            "`SERVER_STARTER_PORT` entry `80x=3` is not `PORT=FD`, `HOST:PORT=FD` or `PATH=FD`"
        );
        assert_eq!(
            error("[::1=3"),
            "`SERVER_STARTER_PORT` entry `[::1=3` is not `PORT=FD`, `HOST:PORT=FD` or `PATH=FD`"
        );
        assert_eq!(
            error("[zz::1]:80=3"),
            "`SERVER_STARTER_PORT` entry `[zz::1]:80=3` is not `PORT=FD`, `HOST:PORT=FD` or `PATH=FD`"
        );
        assert_eq!(
            error("host:http=3"),
            "`SERVER_STARTER_PORT` entry `host:http=3` is not `PORT=FD`, `HOST:PORT=FD` or `PATH=FD`"
        );
    }

    #[test]
    fn rejects_entry_without_fd() {
        assert_eq!(
            error("80=3;8080"),
            "`SERVER_STARTER_PORT` entry `8080` is not `PORT=FD`, `HOST:PORT=FD` or `PATH=FD`"
        );
        assert_eq!(
            error("=3"),
            "`SERVER_STARTER_PORT` entry `=3` is not `PORT=FD`, `HOST:PORT=FD` or `PATH=FD`"
        );
    }

    #[test]
    fn rejects_bad_fd() {
        assert_eq!(
            error("80=x"),
            "`SERVER_STARTER_PORT` entry `80=x` has fd `x`, expected a descriptor number (0, 3, 4, ...)"
        );
        assert_eq!(
            error("80=-1"),
            "`SERVER_STARTER_PORT` entry `80=-1` has fd `-1`, expected a descriptor number (0, 3, 4, ...)"
        );
        assert_eq!(
            error("80="),
            "`SERVER_STARTER_PORT` entry `80=` has fd ``, expected a descriptor number (0, 3, 4, ...)"
        );
    }

    #[test]
    fn rejects_port_out_of_range() {
        assert_eq!(
            error("70000=3"),
            "`SERVER_STARTER_PORT` entry `70000=3` has port `70000`, expected 0 to 65535"
        );
        assert_eq!(
            error("127.0.0.1:99999=3"),
            "`SERVER_STARTER_PORT` entry `127.0.0.1:99999=3` has port `99999`, expected 0 to 65535"
        );
    }

    #[test]
    fn round_trips_what_perl_writes() {
        for text in [
            "127.0.0.1:18081=4;18082=5;[::1]:18083=6;/run/app/sock=7",
            "18100=5;localhost:18102=4;[::1]:18101=7;18103=6;127.0.0.1:18104=8;18105=9;/run/app/s2.sock=11",
            "[::1]:18124=4",
            "0.0.0.0:80=0",
            "",
        ] {
            let specs = parse_server_starter_port(text).expect("perl output parses");
            assert_eq!(format_server_starter_port(&specs), text);
        }
    }

    #[test]
    fn env_unset_is_not_under_a_superdaemon() {
        let parsed = parse_env([("PATH", "/bin")], 1).expect("valid");
        assert_eq!(
            parsed,
            Inherited {
                source: Source::None,
                specs: vec![]
            }
        );
    }

    #[test]
    fn env_empty_is_a_superdaemon_without_sockets() {
        let parsed = parse_env([(SERVER_STARTER_PORT, "")], 1).expect("valid");
        assert_eq!(parsed.source, Source::ServerStarter { generation: None });
        assert!(parsed.specs.is_empty());
    }

    #[test]
    fn env_reads_generation() {
        let parsed = parse_env(
            [
                (SERVER_STARTER_PORT, "80=3"),
                (SERVER_STARTER_GENERATION, "12"),
            ],
            1,
        )
        .expect("valid");
        assert_eq!(
            parsed.source,
            Source::ServerStarter {
                generation: Some(12)
            }
        );
    }

    #[test]
    fn env_rejects_bad_generation() {
        let err = parse_env(
            [
                (SERVER_STARTER_PORT, "80=3"),
                (SERVER_STARTER_GENERATION, "two"),
            ],
            1,
        )
        .expect_err("bad generation");
        assert_eq!(
            err.to_string(),
            "`SERVER_STARTER_GENERATION` is `two`, expected a non-negative number"
        );
    }

    #[test]
    fn systemd_fds_start_at_three_with_names() {
        let parsed = parse_env(
            [
                (LISTEN_FDS, "2"),
                (LISTEN_PID, "42"),
                (LISTEN_FDNAMES, "http:admin"),
            ],
            42,
        )
        .expect("valid");
        assert_eq!(parsed.source, Source::Systemd);
        assert_eq!(
            parsed.specs,
            vec![
                ListenSpec {
                    key: ListenKey::Named("http".into()),
                    fd: 3
                },
                ListenSpec {
                    key: ListenKey::Named("admin".into()),
                    fd: 4
                },
            ]
        );
    }

    #[test]
    fn systemd_without_pid_or_names_is_accepted() {
        let parsed = parse_env([(LISTEN_FDS, "1")], 42).expect("valid");
        assert_eq!(
            parsed.specs,
            vec![ListenSpec {
                key: ListenKey::Named("unknown".into()),
                fd: 3
            }]
        );
    }

    #[test]
    fn systemd_for_another_pid_is_ignored() {
        let parsed = parse_env([(LISTEN_FDS, "1"), (LISTEN_PID, "41")], 42).expect("valid");
        assert_eq!(parsed.source, Source::None);
    }

    #[test]
    fn systemd_rejects_malformed_values() {
        let err = parse_env([(LISTEN_FDS, "one")], 42).expect_err("bad count");
        assert_eq!(
            err.to_string(),
            "`LISTEN_FDS` is `one`, expected a non-negative number"
        );
        let err = parse_env([(LISTEN_FDS, "4000000000")], 42).expect_err("too many");
        assert_eq!(
            err.to_string(),
            "`LISTEN_FDS` is `4000000000`, expected a non-negative number"
        );
        let err = parse_env([(LISTEN_FDS, "2000000")], 42).expect_err("too many");
        assert_eq!(
            err.to_string(),
            "`LISTEN_FDS` is `2000000`, more descriptors than a process can hold (at most 1048576)"
        );
        let err = parse_env([(LISTEN_FDS, "1"), (LISTEN_PID, "me")], 42).expect_err("bad pid");
        assert_eq!(
            err.to_string(),
            "`LISTEN_PID` is `me`, expected a non-negative number"
        );
        let err =
            parse_env([(LISTEN_FDS, "2"), (LISTEN_FDNAMES, "http")], 42).expect_err("bad names");
        assert_eq!(
            err.to_string(),
            "`LISTEN_FDNAMES` is `http` (1 names), but `LISTEN_FDS` is 2"
        );
    }

    #[test]
    fn server_starter_wins_over_systemd() {
        let parsed =
            parse_env([(LISTEN_FDS, "1"), (SERVER_STARTER_PORT, "80=5")], 42).expect("valid");
        assert_eq!(parsed.source, Source::ServerStarter { generation: None });
        assert_eq!(parsed.specs[0].fd, 5);
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn key() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<u16>().prop_map(|p| p.to_string()),
                (any::<[u8; 4]>(), any::<u16>())
                    .prop_map(|(ip, p)| format!("{}:{p}", std::net::Ipv4Addr::from(ip))),
                (any::<u128>(), any::<u16>())
                    .prop_map(|(ip, p)| format!("[{}]:{p}", std::net::Ipv6Addr::from(ip))),
                // start_server writes ports without leading zeros.
                "[a-z][a-z0-9-]{0,10}:[1-9][0-9]{0,3}",
                "/[a-z0-9_./-]{1,20}",
            ]
        }

        proptest! {
            #[test]
            fn any_text_parses_or_is_refused_without_panicking(text in "\\PC{0,60}") {
                if let Ok(specs) = parse_server_starter_port(&text) {
                    let again = parse_server_starter_port(&format_server_starter_port(&specs));
                    prop_assert_eq!(again.ok(), Some(specs));
                }
            }

            #[test]
            fn what_perl_writes_parses_and_formats_back_byte_for_byte(
                entries in prop::collection::vec((key(), 0..4096i32), 0..6)
            ) {
                let text = entries
                    .iter()
                    .map(|(k, fd)| format!("{k}={fd}"))
                    .collect::<Vec<_>>()
                    .join(";");
                let specs = parse_server_starter_port(&text);
                prop_assert!(specs.is_ok(), "{text}: {specs:?}");
                let specs = specs.unwrap_or_default();
                prop_assert_eq!(specs.len(), entries.len());
                prop_assert_eq!(format_server_starter_port(&specs), text);
            }

            #[test]
            fn any_systemd_environment_parses_or_is_refused_without_panicking(
                fds in "\\PC{0,12}",
                pid in "\\PC{0,8}",
                names in "\\PC{0,30}",
            ) {
                let vars = [(LISTEN_FDS, fds), (LISTEN_PID, pid), (LISTEN_FDNAMES, names)];
                if let Ok(inherited) = parse_env(vars, 42) {
                    prop_assert!(inherited.specs.len() <= MAX_LISTEN_FDS);
                    prop_assert!(inherited.specs.iter().all(|s| s.fd >= SD_LISTEN_FDS_START));
                }
            }
        }
    }
}
