//! Why a run could not start.

use std::path::PathBuf;

/// A run that cannot start (a bad URL, no way to trust the server).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// An https URL without `--cacert` or `--insecure`.
    #[error("no trust anchor for https: pass --cacert FILE (PEM) or --insecure")]
    NoTrust,
    /// The CA file is unusable.
    #[error("cannot use `{}` as --cacert: {reason}", path.display())]
    CaCert {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The TLS configuration was refused.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The round-trip relay could not start.
    #[error("cannot start the --rtt relay: {0}")]
    Relay(String),
}
