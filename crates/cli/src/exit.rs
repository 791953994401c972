//! Exit codes, one per class of failure, listed in `--help` and the README.

use std::process::ExitCode;

/// Success.
pub const OK: u8 = 0;
/// An unexpected runtime failure.
pub const FAILURE: u8 = 1;
/// Bad command-line usage (unknown flag, bad value).
pub const USAGE: u8 = 2;
/// The socket-passing environment is malformed or names unusable descriptors.
pub const ENVIRONMENT: u8 = 3;
/// A listening address could not be bound (e.g. in use).
pub const BIND: u8 = 4;
/// The TLS certificate or key is missing or unusable.
pub const TLS: u8 = 5;
/// Requests failed (`gracedown bench --fail-on-error`, `gracedown experiment`).
pub const REQUESTS_FAILED: u8 = 6;

/// The text for `--help`.
pub const HELP: &str = "\
Exit codes:
  0  success
  1  unexpected failure
  2  bad usage (unknown flag, bad value)
  3  bad socket-passing environment (SERVER_STARTER_PORT, LISTEN_FDS)
  4  cannot bind a listening address (e.g. in use)
  5  TLS certificate or key missing or unusable (bench: no trust anchor)
  6  requests failed (bench --fail-on-error, experiment)";

/// Maps a library error to its exit code.
pub(crate) fn for_error(error: &gracedown::Error) -> ExitCode {
    ExitCode::from(if error.is_environment() {
        ENVIRONMENT
    } else if error.is_bind() {
        BIND
    } else if error.is_tls() {
        TLS
    } else {
        FAILURE
    })
}
