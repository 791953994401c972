//! The only place where a raw descriptor number from the environment becomes a
//! socket: validate it, claim it once, own it as an `OwnedFd`, and make it
//! close-on-exec and non-blocking.
//!
//! The checks follow the listener-side rules of the protocol page: trust the
//! descriptor, not the key. `fstat` says whether it is a socket, `SO_TYPE`
//! whether it is a stream, `SO_ACCEPTCONN` whether it listens, `SO_DOMAIN`
//! its family, which must agree with what the key claims.
//!
//! # Caveat
//!
//! A descriptor number from the environment can only be trusted if nothing
//! else in this process opened a descriptor with that number first. Take the
//! inherited sockets early, before opening other files or sockets; every
//! listener library (listenfd, sd-listen-fds) has the same caveat.
#![allow(unsafe_code)] // Adopting inherited descriptors needs `from_raw_fd`; see each SAFETY note.

use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};
use std::sync::{Mutex, PoisonError};

use rustix::fs::FileType;
use rustix::io::FdFlags;
use rustix::net::{AddressFamily, SocketType};

use super::socket::Listener;
use crate::error::Error;
use crate::protocol::{ListenKey, ListenSpec};

/// Descriptor numbers this process has taken ownership of, so that no number
/// becomes two `OwnedFd`s even if the environment is parsed twice.
static CLAIMED: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// What a validated, not yet adopted, inherited socket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An `AF_INET` or `AF_INET6` stream listener, with its bound address.
    Tcp(SocketAddr),
    /// An `AF_UNIX` stream listener.
    Unix,
}

/// Validates `spec`'s descriptor without taking it.
pub(crate) fn inspect(spec: &ListenSpec) -> Result<Kind, Error> {
    if is_claimed(spec.fd) {
        return Err(Error::AlreadyTaken {
            fd: spec.fd,
            key: spec.key.to_string(),
        });
    }
    with_borrowed(spec, |fd| validate(spec, fd))
}

/// Validates `spec`'s descriptor and takes ownership of it, exactly once per process.
pub(crate) fn adopt(spec: &ListenSpec) -> Result<Listener, Error> {
    let mut claimed = CLAIMED.lock().unwrap_or_else(PoisonError::into_inner);
    if claimed.contains(&spec.fd) {
        return Err(Error::AlreadyTaken {
            fd: spec.fd,
            key: spec.key.to_string(),
        });
    }
    let kind = with_borrowed(spec, |fd| validate(spec, fd))?;
    // SAFETY: the descriptor is open (checked by `with_borrowed`), it is a
    // listening socket (checked by `validate`), the environment handed it to
    // this process to take, and `CLAIMED`, locked for this whole block, shows
    // that no `OwnedFd` was made from this number before. From here on the
    // `OwnedFd` is its only owner.
    let owned = unsafe { OwnedFd::from_raw_fd(spec.fd) };
    claimed.push(spec.fd);
    drop(claimed);
    let fail = |action| {
        move |source: rustix::io::Errno| Error::Fd {
            action,
            fd: spec.fd,
            source: source.into(),
        }
    };
    rustix::io::fcntl_setfd(&owned, FdFlags::CLOEXEC).map_err(fail("set close-on-exec on"))?;
    rustix::io::ioctl_fionbio(&owned, true).map_err(fail("set non-blocking mode on"))?;
    Ok(match kind {
        Kind::Tcp(_) => Listener::Tcp(std::net::TcpListener::from(owned)),
        Kind::Unix => Listener::Unix(std::os::unix::net::UnixListener::from(owned)),
    })
}

/// Takes the handoff channel descriptor named by `var`, exactly once per
/// process: an open unix seqpacket socket, made close-on-exec and non-blocking.
pub(crate) fn adopt_channel(fd: i32, var: &'static str) -> Result<OwnedFd, Error> {
    let mut claimed = CLAIMED.lock().unwrap_or_else(PoisonError::into_inner);
    let key = || var.to_owned();
    if claimed.contains(&fd) {
        return Err(Error::AlreadyTaken { fd, key: key() });
    }
    // SAFETY: `fcntl(F_GETFD)` takes any integer and touches no memory.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(Error::FdNotOpen { fd, key: key() });
    }
    // SAFETY: the number is open (checked just above) and nothing in this
    // function closes it.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let fail = |action| {
        move |source: rustix::io::Errno| Error::Fd {
            action,
            fd,
            source: source.into(),
        }
    };
    let stat = rustix::fs::fstat(borrowed).map_err(fail("fstat"))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::Socket {
        return Err(Error::NotASocket { fd, key: key() });
    }
    let socket_type =
        rustix::net::sockopt::socket_type(borrowed).map_err(fail("read SO_TYPE of"))?;
    let family =
        rustix::net::sockopt::socket_domain(borrowed).map_err(fail("read SO_DOMAIN of"))?;
    if socket_type != SocketType::SEQPACKET || family != AddressFamily::UNIX {
        return Err(Error::NotAChannel { fd, key: key() });
    }
    // SAFETY: open and a unix seqpacket socket (checked above), handed to this
    // process by its superdaemon to take, and `CLAIMED`, locked for this whole
    // block, shows that no `OwnedFd` was made from this number before.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    claimed.push(fd);
    drop(claimed);
    rustix::io::fcntl_setfd(&owned, FdFlags::CLOEXEC).map_err(fail("set close-on-exec on"))?;
    rustix::io::ioctl_fionbio(&owned, true).map_err(fail("set non-blocking mode on"))?;
    Ok(owned)
}

fn is_claimed(fd: i32) -> bool {
    CLAIMED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .contains(&fd)
}

/// Runs `f` on a borrow of `spec.fd` after checking that the number is open.
fn with_borrowed<T>(
    spec: &ListenSpec,
    f: impl FnOnce(BorrowedFd<'_>) -> Result<T, Error>,
) -> Result<T, Error> {
    // SAFETY: `fcntl(F_GETFD)` takes any integer and touches no memory; it
    // only reports whether the number is an open descriptor (EBADF if not).
    let open = unsafe { libc::fcntl(spec.fd, libc::F_GETFD) } >= 0;
    if !open {
        return Err(Error::FdNotOpen {
            fd: spec.fd,
            key: spec.key.to_string(),
        });
    }
    // SAFETY: the number is open (checked above) and stays open while `f`
    // runs: nothing in this function closes it, and a descriptor that the
    // environment hands to us is not closed behind our back by other code
    // (see the module's caveat).
    let fd = unsafe { BorrowedFd::borrow_raw(spec.fd) };
    f(fd)
}

fn validate(spec: &ListenSpec, fd: BorrowedFd<'_>) -> Result<Kind, Error> {
    let key = || spec.key.to_string();
    let fail = |action| {
        move |source: rustix::io::Errno| Error::Fd {
            action,
            fd: spec.fd,
            source: source.into(),
        }
    };
    let stat = rustix::fs::fstat(fd).map_err(fail("fstat"))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::Socket {
        return Err(Error::NotASocket {
            fd: spec.fd,
            key: key(),
        });
    }
    let socket_type = rustix::net::sockopt::socket_type(fd).map_err(fail("read SO_TYPE of"))?;
    if socket_type != SocketType::STREAM {
        let found = match socket_type {
            SocketType::DGRAM => "datagram (UDP or unix datagram)",
            SocketType::SEQPACKET => "seqpacket",
            SocketType::RAW => "raw",
            _ => "non-stream",
        };
        return Err(Error::NotAStream {
            fd: spec.fd,
            key: key(),
            found,
        });
    }
    let listening =
        rustix::net::sockopt::socket_acceptconn(fd).map_err(fail("read SO_ACCEPTCONN of"))?;
    if !listening {
        return Err(Error::NotListening {
            fd: spec.fd,
            key: key(),
        });
    }
    let family = rustix::net::sockopt::socket_domain(fd).map_err(fail("read SO_DOMAIN of"))?;
    let found = match family {
        AddressFamily::INET => "IPv4",
        AddressFamily::INET6 => "IPv6",
        AddressFamily::UNIX => "unix",
        _ => "unknown-family",
    };
    let expected = expected_family(&spec.key);
    if !expected.accepts(found) {
        return Err(Error::WrongFamily {
            fd: spec.fd,
            key: key(),
            expected: expected.0,
            found,
        });
    }
    if found == "unix" {
        return Ok(Kind::Unix);
    }
    let addr = rustix::net::getsockname(fd).map_err(fail("read the address of"))?;
    let addr = SocketAddr::try_from(addr).map_err(|source| Error::Fd {
        action: "decode the address of",
        fd: spec.fd,
        source: source.into(),
    })?;
    Ok(Kind::Tcp(addr))
}

/// The family a key claims, as the text used in messages.
struct Expected(&'static str);

impl Expected {
    fn accepts(&self, found: &str) -> bool {
        match self.0 {
            "IPv4" | "IPv6" | "unix" => self.0 == found,
            "TCP" => found == "IPv4" || found == "IPv6",
            _ => found != "unknown-family",
        }
    }
}

fn expected_family(key: &ListenKey) -> Expected {
    match key {
        ListenKey::V6 { .. } => Expected("IPv6"),
        ListenKey::Path(_) => Expected("unix"),
        ListenKey::Named(_) => Expected("TCP or unix"),
        // A bare port or a host name may be bound either way by superdaemons
        // other than Perl's; an IPv4 literal may not.
        ListenKey::Port(_) | ListenKey::HostPort { .. } => match key.ip() {
            Some(ip) if !matches!(key, ListenKey::Port(_)) && ip.is_ipv4() => Expected("IPv4"),
            _ => Expected("TCP"),
        },
    }
}
