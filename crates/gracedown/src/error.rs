//! The crate's one error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in `gracedown`.
///
/// Messages are lowercase, quote the offending value in backticks and say what
/// was expected; the underlying cause, if any, is the [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An inherited socket cannot be used, or a fallback address cannot be
    /// bound (see [`gracedown_sockets::Error`]).
    #[error(transparent)]
    Sockets(#[from] gracedown_sockets::Error),
    /// A TLS certificate or key file cannot be read.
    #[error("cannot read TLS file `{}`", path.display())]
    TlsFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A TLS PEM file holds nothing usable.
    #[error("TLS file `{}` has no {what} in PEM form", path.display())]
    TlsPem {
        /// The file.
        path: PathBuf,
        /// What was looked for: `certificate` or `private key`.
        what: &'static str,
    },
    /// A TLS session-ticket key file does not hold one key.
    #[error(
        "TLS session-ticket key file `{}` has {len} bytes; it must hold exactly 48 random bytes (make one with `openssl rand 48 > FILE`)",
        path.display()
    )]
    TicketKeyFile {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
    /// The TLS configuration was rejected (e.g. the key does not match the certificate).
    #[error("invalid TLS configuration: {what}")]
    TlsConfig {
        /// What was being configured.
        what: &'static str,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An I/O error while serving (not a per-connection error: those never end the server).
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
    /// Whether the socket-passing environment is malformed or names unusable descriptors.
    pub fn is_environment(&self) -> bool {
        matches!(self, Self::Sockets(e) if e.is_environment())
    }

    /// Whether binding a fallback address failed.
    pub fn is_bind(&self) -> bool {
        matches!(self, Self::Sockets(e) if e.is_bind())
    }

    /// Whether the TLS configuration is unusable.
    pub fn is_tls(&self) -> bool {
        matches!(
            self,
            Self::TlsFile { .. }
                | Self::TlsPem { .. }
                | Self::TlsConfig { .. }
                | Self::TicketKeyFile { .. }
        )
    }
}
