//! start_server's errors, each with the exit code Perl's start_server would use.

use std::io;
use std::path::PathBuf;

/// Everything that stops start_server before or instead of running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A command-line error that Perl reports with exit status 1.
    #[error("{0}")]
    Usage(String),
    /// A usage error that Perl reports with `die` (exit status 255).
    #[error("{0}")]
    Usage255(String),
    /// A value that fails its option's check.
    #[error("invalid value `{value}` for {option}: expected {expected}")]
    InvalidOption {
        /// The option.
        option: &'static str,
        /// The value given.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A `--port` value of no known shape (Perl's message).
    #[error("invalid ``port'' value:{0}")]
    InvalidPort(String),
    /// A bracketed or colon-holding host that is not an IPv6 address.
    #[error("invalid IPv6 address in ``port'' value:{0}")]
    NoIpv6(String),
    /// A host name with no IPv4 address (Perl's message).
    #[error("failed to resolve host:{0}:")]
    Resolve(String),
    /// Binding a socket failed (Perl's message; the exit status is the errno).
    #[error("failed to bind to {addr}")]
    Bind {
        /// The key text of the socket.
        addr: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `--path` names something that is not a stale socket.
    #[error("refusing to replace `{}`: {reason}", path.display())]
    PathInUse {
        /// The path.
        path: PathBuf,
        /// Why: a regular file, or a socket with a live server.
        reason: &'static str,
    },
    /// A file start_server needs could not be used.
    #[error("cannot {action} `{}`", path.display())]
    File {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `--restart` / `--stop` could not reach its goal.
    #[error("{0}")]
    Control(String),
    /// Any other system failure.
    #[error("cannot {action}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// The exit status, as Perl's start_server would exit: 1 for option
    /// errors, the errno for system errors, 255 for other `die`s.
    pub fn exit_code(&self) -> u8 {
        let errno = |e: &io::Error| {
            e.raw_os_error()
                .and_then(|n| u8::try_from(n).ok())
                .filter(|n| *n != 0)
        };
        match self {
            Self::Usage(_) | Self::InvalidOption { .. } => crate::exit::USAGE,
            Self::Bind { source, .. } | Self::File { source, .. } | Self::Io { source, .. } => {
                errno(source).unwrap_or(crate::exit::SETUP)
            }
            _ => crate::exit::SETUP,
        }
    }
}
