//! Binding the listening sockets, and where each goes in the worker.
//!
//! The parent's copies are close-on-exec and never change; each worker gets
//! its own duplicates at the planned numbers (see `spawn`).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use gracedown_sockets::protocol::{ListenKey, ListenSpec, format_server_starter_port};
use socket2::{Domain, SockAddr, Socket, Type};

use crate::config::SocketSpec;
use crate::error::Error;

/// One bound socket and the descriptor number it has in workers.
#[derive(Debug)]
pub(crate) struct Bound {
    /// The key in `SERVER_STARTER_PORT`.
    pub(crate) key: ListenKey,
    /// start_server's own copy (close-on-exec).
    pub(crate) fd: OwnedFd,
    /// The number in the worker.
    pub(crate) target: i32,
}

/// Every socket, in `SERVER_STARTER_PORT` order.
#[derive(Debug, Default)]
pub(crate) struct ListenerSet {
    /// The sockets.
    pub(crate) sockets: Vec<Bound>,
    /// Unix socket paths to remove at exit.
    pub(crate) paths: Vec<PathBuf>,
}

impl ListenerSet {
    /// Binds every spec: TCP/UDP with `SO_REUSEADDR` (and `IPV6_V6ONLY` for
    /// IPv6), then unix paths (mode 0777, as Perl's `umask(0)`).
    ///
    /// # Errors
    ///
    /// The first socket that cannot be bound, named as Perl names it.
    pub(crate) fn bind(
        specs: &[SocketSpec],
        backlog: i32,
        log: &mut dyn FnMut(String),
    ) -> Result<Self, Error> {
        let mut set = Self::default();
        let mut pinned: Vec<i32> = specs
            .iter()
            .filter_map(|s| match s {
                SocketSpec::Inet { fd, .. } => *fd,
                SocketSpec::Unix(_) => None,
            })
            .collect();
        pinned.sort_unstable();
        let mut next = 3;
        let mut take_number = || {
            while pinned.contains(&next) {
                next += 1;
            }
            next += 1;
            next - 1
        };
        for spec in specs {
            match spec {
                SocketSpec::Inet { key, addr, udp, fd } => {
                    let socket = bind_inet(key, *addr, *udp, backlog)?;
                    if let Some(fd) = fd {
                        log(format!("socket is duplicated to file descriptor {fd}"));
                    }
                    let target = fd.unwrap_or_else(&mut take_number);
                    set.sockets.push(Bound {
                        key: key.clone(),
                        fd: socket.into(),
                        target,
                    });
                }
                SocketSpec::Unix(path) => {
                    let socket = bind_unix(path, backlog, log)?;
                    set.paths.push(path.clone());
                    let target = take_number();
                    set.sockets.push(Bound {
                        key: ListenKey::Path(path.clone()),
                        fd: socket.into(),
                        target,
                    });
                }
            }
        }
        Ok(set)
    }

    /// Takes the sockets systemd passed (`LISTEN_FDS`, socket activation),
    /// keyed by their addresses; `None` when not socket-activated.
    ///
    /// # Errors
    ///
    /// A malformed `LISTEN_FDS` or a descriptor that is not a listening socket.
    pub(crate) fn from_systemd() -> Result<Option<Self>, Error> {
        use gracedown_sockets::listener::{ListenAddr, Listener, Listeners};
        let fail = |e: gracedown_sockets::Error| {
            Error::Usage255(format!("socket activation: {}", crate::error_line(&e)))
        };
        let mut inherited = Listeners::from_env().map_err(fail)?;
        if inherited.source() != gracedown_sockets::protocol::Source::Systemd {
            return Ok(None);
        }
        let mut set = Self::default();
        for (target, (_, listener)) in (3..).zip(inherited.take_all().map_err(fail)?) {
            let key = match listener.local_addr() {
                Ok(ListenAddr::Tcp(SocketAddr::V4(a))) => ListenKey::HostPort {
                    host: a.ip().to_string(),
                    port: a.port(),
                },
                Ok(ListenAddr::Tcp(SocketAddr::V6(a))) => ListenKey::V6 {
                    addr: *a.ip(),
                    port: a.port(),
                    host: format!("[{}]", a.ip()),
                },
                Ok(ListenAddr::Unix(path)) => ListenKey::Path(path),
                Err(source) => {
                    return Err(Error::Io {
                        action: "read the address of a socket-activated listener",
                        source,
                    });
                }
            };
            let fd: OwnedFd = match listener {
                Listener::Tcp(l) => l.into(),
                Listener::Unix(l) => l.into(),
            };
            // Workers get the socket as Perl's would be: blocking.
            rustix::io::ioctl_fionbio(&fd, false).map_err(|e| Error::Io {
                action: "make a socket-activated listener blocking",
                source: e.into(),
            })?;
            set.sockets.push(Bound { key, fd, target });
        }
        Ok(Some(set))
    }

    /// `SERVER_STARTER_PORT` for the workers.
    pub(crate) fn env_value(&self) -> String {
        let specs: Vec<ListenSpec> = self
            .sockets
            .iter()
            .map(|b| ListenSpec {
                key: b.key.clone(),
                fd: b.target,
            })
            .collect();
        format_server_starter_port(&specs)
    }

    /// `(source, target)` descriptor numbers, for placing them in a worker.
    pub(crate) fn placements(&self) -> Vec<(RawFd, i32)> {
        self.sockets
            .iter()
            .map(|b| (b.fd.as_raw_fd(), b.target))
            .collect()
    }

    /// Removes the unix socket files that are still sockets (at exit).
    pub(crate) fn remove_paths(&self) {
        for path in &self.paths {
            if is_socket(path) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

fn bind_inet(
    key: &ListenKey,
    addr: std::net::SocketAddr,
    udp: bool,
    backlog: i32,
) -> Result<Socket, Error> {
    let fail = |source| Error::Bind {
        addr: key.to_string(),
        source,
    };
    let kind = if udp { Type::DGRAM } else { Type::STREAM };
    let socket = Socket::new(Domain::for_address(addr), kind, None).map_err(fail)?;
    socket.set_reuse_address(true).map_err(fail)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(fail)?;
    }
    socket.bind(&SockAddr::from(addr)).map_err(fail)?;
    if !udp {
        socket.listen(backlog).map_err(fail)?;
    }
    Ok(socket)
}

fn bind_unix(path: &Path, backlog: i32, log: &mut dyn FnMut(String)) -> Result<Socket, Error> {
    let fail = |source| Error::Bind {
        addr: path.display().to_string(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(_) if !is_socket(path) => {
            return Err(Error::PathInUse {
                path: path.to_owned(),
                reason: "it exists and is not a socket",
            });
        }
        Ok(_) => {
            // A socket file: stale unless something answers on it.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(Error::PathInUse {
                    path: path.to_owned(),
                    reason: "a server is listening on it",
                });
            }
            log(format!("removing existing socket file:{}", path.display()));
            std::fs::remove_file(path).map_err(fail)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e)),
    }
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(fail)?;
    let addr = SockAddr::unix(path).map_err(fail)?;
    // Perl binds under umask(0): the socket file is mode 0777. start_server
    // is single-threaded here, so the umask change is seen by nothing else.
    let saved = rustix::process::umask(rustix::fs::Mode::empty());
    let bound = socket.bind(&addr);
    rustix::process::umask(saved);
    bound.map_err(fail)?;
    socket.listen(backlog).map_err(fail)?;
    Ok(socket)
}

fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}
