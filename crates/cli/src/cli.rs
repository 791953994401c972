//! Command-line arguments (clap). Nothing outside `lib.rs` sees these types.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use gracedown::listener::ListenAddr;

/// Zero-downtime restarts for HTTP servers.
///
/// Examples:
///   gracedown serve --listen 127.0.0.1:8080
///   start_server --port 127.0.0.1:8080 -- gracedown serve
#[derive(Debug, Parser)]
#[command(name = "gracedown", version, after_help = crate::exit::HELP)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the demo worker: answers `from pid N.` on every inherited socket.
    Serve(ServeArgs),
}

/// Run the demo worker.
///
/// Under a superdaemon (Server::Starter's `SERVER_STARTER_PORT`, systemd's
/// `LISTEN_FDS`) it serves the inherited sockets; started by hand it binds
/// `--listen`. Plain sockets speak HTTP/1.1 and h2c (prior knowledge); with
/// `--tls`, HTTP/2 or HTTP/1.1 chosen by ALPN. On SIGTERM it stops accepting
/// and drains.
///
/// Endpoints: `/` (from pid N.), `/sleep?ms=N`, `/stream?chunks=N&interval_ms=M`,
/// `POST /echo`.
#[derive(Debug, Args)]
#[command(after_help = crate::exit::HELP)]
pub(crate) struct ServeArgs {
    /// Address to bind when no socket is inherited (`IP:PORT`, `[IPV6]:PORT`,
    /// `/path` or `unix:PATH`); repeatable.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub(crate) listen: Vec<ListenAddr>,

    /// Serve TLS (ALPN h2 and http/1.1); without --cert/--key, a self-signed
    /// certificate for localhost is generated at start.
    #[arg(long)]
    pub(crate) tls: bool,

    /// PEM certificate chain (implies --tls).
    #[arg(long, value_name = "FILE", requires = "key")]
    pub(crate) cert: Option<PathBuf>,

    /// PEM private key (implies --tls).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub(crate) key: Option<PathBuf>,

    /// How long the drain may take before what is left is force-closed.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub(crate) drain_timeout: Duration,

    /// How long an idle keep-alive connection is kept while draining.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    pub(crate) idle_timeout: Duration,

    /// How long a connection that has sent nothing yet may take to send its
    /// first request while draining.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub(crate) first_request_timeout: Duration,

    /// Worker threads for the runtime (default: one per core).
    #[arg(long, value_name = "N")]
    pub(crate) threads: Option<std::num::NonZeroUsize>,
}
