//! The crate's one error type: a socket-passing environment or a descriptor
//! that cannot be used, or an address that cannot be bound.

use std::io;

/// Everything that can go wrong taking or binding listening sockets.
///
/// Messages are lowercase, quote the offending value in backticks and say what
/// was expected; the underlying cause, if any, is the [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `SERVER_STARTER_PORT` entry has no recognisable shape.
    #[error("`{var}` entry `{entry}` is not `PORT=FD`, `HOST:PORT=FD` or `PATH=FD`")]
    EnvEntry {
        /// The variable.
        var: &'static str,
        /// The whole entry, as written.
        entry: String,
    },
    /// A `SERVER_STARTER_PORT` entry's descriptor is not a number.
    #[error("`{var}` entry `{entry}` has fd `{fd}`, expected a descriptor number (0, 3, 4, ...)")]
    EnvFd {
        /// The variable.
        var: &'static str,
        /// The whole entry, as written.
        entry: String,
        /// The descriptor text.
        fd: String,
    },
    /// A `SERVER_STARTER_PORT` entry's port is out of range.
    #[error("`{var}` entry `{entry}` has port `{port}`, expected 0 to 65535")]
    EnvPort {
        /// The variable.
        var: &'static str,
        /// The whole entry, as written.
        entry: String,
        /// The port text.
        port: String,
    },
    /// A variable that must hold a number does not.
    #[error("`{var}` is `{value}`, expected a non-negative number")]
    EnvNumber {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
    /// `LISTEN_FDS` counts more descriptors than one process can hold.
    #[error("`{var}` is `{value}`, more descriptors than a process can hold (at most {max})")]
    EnvTooMany {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// The limit.
        max: usize,
    },
    /// `LISTEN_FDNAMES` does not name as many descriptors as `LISTEN_FDS` counts.
    #[error("`LISTEN_FDNAMES` is `{names}` ({} names), but `LISTEN_FDS` is {count}", names.split(':').count())]
    EnvFdNames {
        /// `LISTEN_FDNAMES`.
        names: String,
        /// `LISTEN_FDS`.
        count: usize,
    },
    /// The environment names a descriptor that is not open in this process.
    #[error("fd {fd} (`{key}`) is not an open descriptor in this process")]
    FdNotOpen {
        /// The descriptor number.
        fd: i32,
        /// The key that named it.
        key: String,
    },
    /// The descriptor is open but is not a socket.
    #[error("fd {fd} (`{key}`) is not a socket")]
    NotASocket {
        /// The descriptor number.
        fd: i32,
        /// The key that named it.
        key: String,
    },
    /// The descriptor is a socket, but not a stream (TCP or unix stream) socket.
    #[error("fd {fd} (`{key}`) is a {found} socket, expected a stream listener (TCP or unix)")]
    NotAStream {
        /// The descriptor number.
        fd: i32,
        /// The key that named it.
        key: String,
        /// What it is instead, e.g. `datagram (UDP)`.
        found: &'static str,
    },
    /// The descriptor is a stream socket that is not listening.
    #[error(
        "fd {fd} (`{key}`) is a stream socket that is not listening (no `listen()` was called)"
    )]
    NotListening {
        /// The descriptor number.
        fd: i32,
        /// The key that named it.
        key: String,
    },
    /// The socket's family is not the one the key claims.
    #[error("fd {fd} (`{key}`) is an {found} socket, but its key says {expected}")]
    WrongFamily {
        /// The descriptor number.
        fd: i32,
        /// The key that named it.
        key: String,
        /// What the key claims.
        expected: &'static str,
        /// What the socket is.
        found: &'static str,
    },
    /// The descriptor is not a handoff channel (a unix seqpacket socket).
    #[error("fd {fd} (`{key}`) is not a unix seqpacket socket, as a handoff channel is")]
    NotAChannel {
        /// The descriptor number.
        fd: i32,
        /// The variable that named it.
        key: String,
    },
    /// The descriptor was taken before; every inherited descriptor is taken once.
    #[error("fd {fd} (`{key}`) was already taken by this process")]
    AlreadyTaken {
        /// The descriptor number.
        fd: i32,
        /// The key that named it.
        key: String,
    },
    /// A system call on an inherited descriptor failed.
    #[error("cannot {action} fd {fd}")]
    Fd {
        /// What was being done.
        action: &'static str,
        /// The descriptor number.
        fd: i32,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Binding a listening address failed.
    #[error("cannot listen on `{addr}`")]
    Bind {
        /// The address, as given.
        addr: String,
        /// The cause (e.g. address in use).
        #[source]
        source: io::Error,
    },
    /// There is nothing to serve on.
    #[error("no listening sockets: {reason}")]
    NoListeners {
        /// Why there are none.
        reason: &'static str,
    },
}

impl Error {
    /// Whether the socket-passing environment is malformed or names unusable descriptors.
    pub fn is_environment(&self) -> bool {
        matches!(
            self,
            Self::EnvEntry { .. }
                | Self::EnvFd { .. }
                | Self::EnvPort { .. }
                | Self::EnvNumber { .. }
                | Self::EnvTooMany { .. }
                | Self::EnvFdNames { .. }
                | Self::FdNotOpen { .. }
                | Self::NotASocket { .. }
                | Self::NotAStream { .. }
                | Self::NotListening { .. }
                | Self::WrongFamily { .. }
                | Self::NotAChannel { .. }
                | Self::AlreadyTaken { .. }
                | Self::Fd { .. }
                | Self::NoListeners { .. }
        )
    }

    /// Whether binding a fallback address failed.
    pub fn is_bind(&self) -> bool {
        matches!(self, Self::Bind { .. })
    }
}
