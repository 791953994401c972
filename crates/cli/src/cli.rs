//! Command-line arguments (clap). Nothing outside `lib.rs` sees these types.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use gracedown::listener::ListenAddr;

/// Zero-downtime restarts for HTTP servers.
///
/// Examples:
///   gracedown experiment                       the main job: restarts under load, every error counted
///   gracedown bench -c 10 -d 30s http://127.0.0.1:8080/
///   gracedown serve --listen 127.0.0.1:8080     the demo worker
///   start_server --port=127.0.0.1:8080 -- gracedown serve
#[derive(Debug, Parser)]
#[command(name = "gracedown", version, verbatim_doc_comment, after_help = crate::exit::HELP)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the demo worker: answers `from pid N.` on every inherited socket.
    ///
    /// Under a superdaemon (Server::Starter's `SERVER_STARTER_PORT`, systemd's
    /// `LISTEN_FDS`) it serves the inherited sockets; started by hand it binds
    /// `--listen`. Plain sockets speak HTTP/1.1 and h2c (prior knowledge); with
    /// `--tls`, HTTP/2 or HTTP/1.1 chosen by ALPN. On SIGTERM it stops accepting
    /// and drains.
    ///
    /// Endpoints: `/` (from pid N.), `/sleep?ms=N`, `/stream?chunks=N&interval_ms=M`,
    /// `POST /echo`, `/bytes?n=N`, `/healthz` (503 while draining).
    #[command(verbatim_doc_comment)]
    Serve(ServeArgs),
    /// Load-test a URL and account for every request (never re-sends behind your back).
    ///
    /// Each request ends in exactly one outcome: ok, unprocessed (an HTTP/2
    /// stream a GOAWAY or REFUSED_STREAM proves the server never processed; only
    /// these are re-sent), connect_failed, closed_before_response, truncated or
    /// timeout.
    ///
    /// Examples:
    ///   gracedown bench -c 10 -d 30s http://127.0.0.1:8080/
    ///   gracedown bench --h2c -c 10 -d 10s --json http://127.0.0.1:8080/ > run.json
    ///   gracedown bench --insecure --http2 https://127.0.0.1:8443/
    #[command(verbatim_doc_comment)]
    Bench(BenchArgs),
    /// The main job: restart a worker under load, as real clients load it, and report every error.
    ///
    /// Runs `start_server` (this binary's `start-server`) with `gracedown serve`
    /// on a free loopback port and, per scenario and protocol, runs `gracedown
    /// bench` without restarts and with a restart every second:
    ///
    ///   lab    10 connections back to back on loopback (HTTP/1.1 and h2 over TLS)
    ///   wan    200 connections pausing 0.5-1.5 s between requests, 50 ms round trip
    ///   scale  1,000 connections back to back (HTTP/1.1 and h2 over TLS)
    ///   proxy  a real nginx in front (keep-alive upstream), 100 clients pausing
    ///          between POST /echo requests; nginx's 502/503/504 count as errors
    ///
    /// Prints one table (a row per run, its scenario named), writes
    /// `experiment.json` and a chart per scenario and protocol into --out, and
    /// exits 6 if any request failed. The defaults (lab and wan) take about a
    /// minute.
    ///
    /// Examples:
    ///   gracedown experiment
    ///   gracedown experiment --scenario lab,wan,scale,proxy --peer go
    ///   gracedown experiment --scenario lab --intervals 1s,200ms --compare wrk,h2load
    ///   gracedown experiment --scenario wan --worker ./my-server -- --port-from-env
    #[command(verbatim_doc_comment)]
    Experiment(ExperimentArgs),
}

/// Arguments of `gracedown experiment` (its help text is on `Command::Experiment`).
#[derive(Debug, Args)]
#[command(verbatim_doc_comment, after_help = crate::exit::HELP)]
pub(crate) struct ExperimentArgs {
    /// Scenarios, in order: `lab`, `wan`, `scale`, `proxy`, `fleet` (instances
    /// behind HAProxy replaced one by one; its restart intervals are the
    /// pace of replacements).
    #[arg(long = "scenario", value_name = "LIST", value_delimiter = ',', default_value = "lab,wan", value_parser = scenario)]
    pub(crate) scenarios: Vec<gracedown_bench::experiment::Scenario>,

    /// Length of each run (default: the scenario's, 5 s to 15 s).
    #[arg(short = 'd', long, allow_hyphen_values = true, value_name = "DURATION", value_parser = positive_duration)]
    pub(crate) duration: Option<Duration>,

    /// Connections of the load (default: the scenario's).
    #[arg(short = 'c', long, value_name = "N", value_parser = positive_count)]
    pub(crate) connections: Option<usize>,

    /// Restart intervals, one run each, after a run without restarts.
    #[arg(long, allow_hyphen_values = true, value_name = "DURATIONS", value_delimiter = ',', default_value = "1s", value_parser = positive_duration)]
    pub(crate) intervals: Vec<Duration>,

    /// Protocols: `http1` (plain HTTP/1.1) and `h2` (HTTP/2 over TLS, ALPN)
    /// (default: the scenario's; wan and proxy are HTTP/1.1 only).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub(crate) protocols: Vec<ExperimentProtocol>,

    /// Directory for experiment.json and the charts.
    #[arg(long, value_name = "DIR", default_value = "experiment-out")]
    pub(crate) out: PathBuf,

    /// Also run these external clients against the same server with the
    /// same restarts (`wrk` for HTTP/1.1, `h2load` for h2), as a cross-check,
    /// in the scenarios without pauses between requests (lab, scale).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub(crate) compare: Vec<Client>,

    /// Also measure a peer stack the same way: `go` runs peers/go-worker
    /// (net/http, Server.Shutdown) under Perl's start_server; needs golang-go
    /// and libserver-starter-perl.
    #[arg(long, value_name = "PEER")]
    pub(crate) peer: Option<Peer>,

    /// The fleet scenario: instances behind the load balancer.
    #[arg(long, value_name = "N", default_value = "3", value_parser = positive_count)]
    pub(crate) fleet_size: usize,

    /// The fleet scenario: how late the load balancer learns that an
    /// instance was stopped, drawn at random in `MIN..MAX` per replacement.
    #[arg(long, value_name = "MIN..MAX", default_value = "500ms..2500ms", value_parser = duration_range)]
    pub(crate) fleet_lag: (Duration, Duration),

    /// The fleet scenario: the `--shutdown-delay` of the gracedown row (the
    /// `gd-nodelay` row has none).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = positive_duration)]
    pub(crate) fleet_delay: Duration,

    /// Run this worker program instead of `gracedown serve` (it must take its
    /// socket from SERVER_STARTER_PORT); arguments after `--`. Not for the
    /// fleet scenario.
    #[arg(long, value_name = "PROGRAM")]
    pub(crate) worker: Option<PathBuf>,

    /// Arguments for --worker.
    #[arg(last = true, value_name = "ARGS")]
    pub(crate) worker_args: Vec<String>,
}

fn scenario(text: &str) -> Result<gracedown_bench::experiment::Scenario, String> {
    gracedown_bench::experiment::Scenario::from_name(text)
        .ok_or_else(|| format!("`{text}` is not a scenario: lab, wan, scale, proxy or fleet"))
}

/// An external load client for `--compare`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Client {
    /// wrk (HTTP/1.1 rows).
    Wrk,
    /// h2load (h2 rows).
    H2load,
}

/// A peer stack for `--peer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Peer {
    /// The Go 1.8+ design: net/http with Server.Shutdown under Perl start_server.
    Go,
}

/// A protocol of the experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ExperimentProtocol {
    /// HTTP/1.1 over plain TCP.
    Http1,
    /// HTTP/1.1 over TLS (self-signed certificate, ALPN http/1.1).
    H1Tls,
    /// HTTP/2 over plain TCP, with prior knowledge.
    H2c,
    /// HTTP/2 over TLS (self-signed certificate, ALPN h2).
    H2,
}

impl ExperimentProtocol {
    /// The experiment's protocol it names.
    pub(crate) fn wire(self) -> gracedown_bench::experiment::Wire {
        use gracedown_bench::experiment::Wire;
        match self {
            Self::Http1 => Wire::Http1,
            Self::H1Tls => Wire::Http1Tls,
            Self::H2c => Wire::H2c,
            Self::H2 => Wire::H2,
        }
    }
}

/// Arguments of `gracedown bench` (its help text is on `Command::Bench`).
#[derive(Debug, Args)]
#[command(verbatim_doc_comment, after_help = crate::exit::HELP)]
pub(crate) struct BenchArgs {
    /// The URL (`http://` or `https://`).
    #[arg(value_name = "URL")]
    pub(crate) url: String,

    /// Connections, each with one request outstanding at a time.
    #[arg(short = 'c', long, value_name = "N", default_value_t = 10, value_parser = positive_count)]
    pub(crate) connections: usize,

    /// How long to start new requests.
    #[arg(short = 'd', long, allow_hyphen_values = true, value_name = "DURATION", default_value = "10s", value_parser = positive_duration)]
    pub(crate) duration: Duration,

    /// Runtime threads (default: one per core).
    #[arg(short = 't', long, value_name = "N")]
    pub(crate) threads: Option<std::num::NonZeroUsize>,

    /// HTTP/2 with prior knowledge on an http:// URL.
    #[arg(long)]
    pub(crate) h2c: bool,

    /// Offer only http/1.1 over TLS.
    #[arg(long, conflicts_with = "http2")]
    pub(crate) http1: bool,

    /// Offer only h2 over TLS (on http:// URLs: h2c).
    #[arg(long)]
    pub(crate) http2: bool,

    /// A new connection for every HTTP/1.1 request.
    #[arg(long)]
    pub(crate) no_keepalive: bool,

    /// Skip TLS certificate verification.
    #[arg(short = 'k', long)]
    pub(crate) insecure: bool,

    /// Trust the certificates in this PEM file.
    #[arg(long, value_name = "FILE")]
    pub(crate) cacert: Option<PathBuf>,

    /// Request method.
    #[arg(short = 'm', long, value_name = "METHOD", default_value = "GET")]
    pub(crate) method: String,

    /// An extra request header (`Name: value`); repeatable.
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub(crate) headers: Vec<String>,

    /// The request body.
    #[arg(long, value_name = "TEXT", conflicts_with = "body_file")]
    pub(crate) body: Option<String>,

    /// The request body, from a file.
    #[arg(long, value_name = "FILE")]
    pub(crate) body_file: Option<PathBuf>,

    /// How long one request may take before it counts as a timeout.
    #[arg(long, allow_hyphen_values = true, value_name = "DURATION", default_value = "10s", value_parser = positive_duration)]
    pub(crate) timeout: Duration,

    /// Each connection pauses a random time between a response and its next
    /// request: `MIN..MAX` (uniform) or one duration, e.g. `500ms..1.5s`.
    #[arg(long, allow_hyphen_values = true, value_name = "MIN..MAX", value_parser = think_time, conflicts_with = "rate", help_heading = LOAD)]
    pub(crate) think_time: Option<(Duration, Duration)>,

    /// Open loop: start R requests per second in total, whatever the server
    /// does; latency counts from when each request was due, and requests
    /// that start late or never are counted.
    #[arg(long, value_name = "R", value_parser = positive_rate, help_heading = LOAD)]
    pub(crate) rate: Option<f64>,

    /// Route connections through a relay that delays each direction by half
    /// this round trip (bytes, FIN and RST kept in order), as across a WAN.
    #[arg(long, allow_hyphen_values = true, value_name = "DURATION", value_parser = positive_duration, help_heading = LOAD)]
    pub(crate) rtt: Option<Duration>,

    /// Print the report as JSON (schema gracedown-bench/1) instead of text.
    #[arg(long)]
    pub(crate) json: bool,

    /// Write the per-100 ms timeline as CSV to FILE.
    #[arg(long, value_name = "FILE")]
    pub(crate) timeline: Option<PathBuf>,

    /// Write a chart of the timeline (throughput and errors over time) as SVG to FILE.
    #[arg(long, value_name = "FILE.svg")]
    pub(crate) plot: Option<PathBuf>,

    /// Exit with status 6 if any request failed.
    #[arg(long)]
    pub(crate) fail_on_error: bool,
}

/// Arguments of `gracedown serve` (its help text is on `Command::Serve`).
#[derive(Debug, Args)]
#[command(verbatim_doc_comment, after_help = crate::exit::HELP)]
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

    /// How long the drain may take before what is left is force-closed
    /// [default: 30s; 15s in a Kubernetes pod]
    #[arg(long, allow_hyphen_values = true, value_name = "DURATION", value_parser = duration)]
    pub(crate) drain_timeout: Option<Duration>,

    /// Lame duck for this long after the stop signal: keep accepting and
    /// serving while /readyz and /healthz answer 503 and clients are told to
    /// go elsewhere (Connection: close, HTTP/2 GOAWAY), then drain. For a
    /// fleet behind a load balancer that learns of the stop late; not needed
    /// under start_server. A second stop signal ends it early
    /// [default: 0s; 5s in a Kubernetes pod (KUBERNETES_SERVICE_HOST set, no
    /// inherited socket), where delay + drain timeout fit in the default
    /// terminationGracePeriodSeconds of 30]
    #[arg(long, allow_hyphen_values = true, value_name = "DURATION", value_parser = duration)]
    pub(crate) shutdown_delay: Option<Duration>,

    /// How long an idle keep-alive connection is kept while draining.
    #[arg(long, allow_hyphen_values = true, value_name = "DURATION", default_value = "1s", value_parser = duration)]
    pub(crate) idle_timeout: Duration,

    /// How long a connection that has sent nothing yet may take to send its
    /// first request while draining.
    #[arg(long, allow_hyphen_values = true, value_name = "DURATION", default_value = "5s", value_parser = duration)]
    pub(crate) first_request_timeout: Duration,

    /// TLS session-ticket key (48 random bytes: `openssl rand 48 > FILE`)
    /// shared with the other generations, so that clients resume their
    /// sessions across restarts; repeat to keep older keys for opening
    /// tickets (the first one issues them). Under gracedown's start_server
    /// the keys come from it without this option.
    #[arg(long, value_name = "FILE")]
    pub(crate) ticket_key_file: Vec<PathBuf>,

    /// Once draining, the window over which TLS and HTTP/2 connections are
    /// told to reconnect, each at its own moment (at most half the drain
    /// timeout; 0: all at once).
    #[arg(long, allow_hyphen_values = true, value_name = "DURATION", default_value = "1s", value_parser = duration)]
    pub(crate) reconnect_window: Duration,

    /// Close connections when draining, as under any other superdaemon,
    /// instead of handing plain HTTP/1.1 connections to the next generation
    /// (which gracedown's start_server offers).
    #[arg(long)]
    pub(crate) no_handoff: bool,

    /// Give every HTTP/2 stream a task of its own from the start, instead of
    /// answering streams that are ready at once on their connection's task.
    #[arg(long)]
    pub(crate) http2_stream_tasks: bool,

    /// Write each HTTP/1 response from one buffer that head and body are
    /// copied into, instead of a vectored write: cheaper for small responses,
    /// dearer for large bodies, whose size the buffer then keeps until the
    /// connection goes dormant (see `Server::http1_writev`).
    #[arg(long)]
    pub(crate) http1_flatten: bool,

    /// Worker threads for the runtime (default: one per core).
    #[arg(long, value_name = "N")]
    pub(crate) threads: Option<std::num::NonZeroUsize>,

    /// How long a request head may take in total, and a new connection to
    /// start its first request (nginx's client_header_timeout).
    #[arg(long, allow_hyphen_values = true, value_name = "DURATION", default_value = "60s", value_parser = positive_duration, help_heading = LIMITS)]
    pub(crate) header_read_timeout: Duration,

    /// How long a handler waits between two reads of a request body
    /// (nginx's client_body_timeout).
    #[arg(long, allow_hyphen_values = true, value_name = "DURATION", default_value = "60s", value_parser = positive_duration, help_heading = LIMITS)]
    pub(crate) body_read_timeout: Duration,

    /// How long a response may wait for a client that does not read it
    /// (nginx's send_timeout).
    #[arg(long, allow_hyphen_values = true, value_name = "DURATION", default_value = "60s", value_parser = positive_duration, help_heading = LIMITS)]
    pub(crate) send_timeout: Duration,

    /// How long a connection may stay quiet between requests: HTTP/1 closes,
    /// HTTP/2 sends GOAWAY (nginx's keepalive_timeout).
    #[arg(long, allow_hyphen_values = true, value_name = "DURATION", default_value = "75s", value_parser = positive_duration, help_heading = LIMITS)]
    pub(crate) keepalive_timeout: Duration,

    /// How long a TLS handshake may take.
    #[arg(long, allow_hyphen_values = true, value_name = "DURATION", default_value = "10s", value_parser = positive_duration, help_heading = LIMITS)]
    pub(crate) handshake_timeout: Duration,

    /// How long an HTTP/1 connection stays quiet between requests before it
    /// goes dormant: hyper's state and buffers (about 16 KiB) are dropped
    /// until its next byte ("0s": as soon as it is seen quiet).
    #[arg(long, allow_hyphen_values = true, value_name = "DURATION", default_value = "1s", value_parser = duration, help_heading = LIMITS)]
    pub(crate) dormant_after: Duration,

    /// At most this many open connections; beyond it accepting pauses, and
    /// when a client waits a request head trickling in for over a second, or
    /// else the longest-idle connection, is closed (default: no limit but the
    /// descriptor limit, where the same connections are reclaimed).
    #[arg(long, value_name = "N", help_heading = LIMITS)]
    pub(crate) max_connections: Option<std::num::NonZeroUsize>,
}

/// The heading of the connection bounds in `gracedown serve --help`.
const LIMITS: &str = "Limits";

/// The heading of the load models in `gracedown bench --help`.
const LOAD: &str = "Load model";

/// `MIN..MAX` or one duration, MIN at most MAX.
pub(crate) fn think_time(text: &str) -> Result<(Duration, Duration), String> {
    let (min, max) = match text.split_once("..") {
        Some((min, max)) => (duration(min)?, duration(max)?),
        None => {
            let one = duration(text)?;
            (one, one)
        }
    };
    if min > max {
        return Err(format!(
            "`{text}`: the shortest pause is longer than the longest"
        ));
    }
    Ok((min, max))
}

/// A rate above zero.
pub(crate) fn positive_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "`{text}` is not a rate above zero (requests per second, e.g. 500)"
        )),
    }
}

/// A count of at least 1.
pub(crate) fn positive_count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err(format!("`{text}` is zero; give at least 1")),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{text}` is not a whole number")),
    }
}

/// A duration with a unit (`60s`, `500ms`, `1m30s`), zero allowed.
pub(crate) fn duration(text: &str) -> Result<Duration, String> {
    use humantime::DurationError;
    humantime::parse_duration(text.trim()).map_err(|e| {
        let why = match e {
            DurationError::UnknownUnit { unit, .. } => format!("`{unit}` is not a unit of time"),
            DurationError::NumberOverflow => "it is too long".to_owned(),
            _ if text
                .trim_start()
                .strip_prefix('-')
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit())) =>
            {
                "a duration is not negative".to_owned()
            }
            _ => "a duration is a number with a unit".to_owned(),
        };
        format!("`{text}` is not a duration: {why}; write e.g. 500ms, 10s or 1m30s")
    })
}

/// `MIN..MAX`, two durations with `MIN <= MAX` (`500ms..2.5s`).
pub(crate) fn duration_range(text: &str) -> Result<(Duration, Duration), String> {
    let (min, max) = text
        .split_once("..")
        .ok_or_else(|| format!("`{text}` is not a range: write MIN..MAX, e.g. 500ms..2500ms"))?;
    let (min, max) = (duration(min)?, duration(max)?);
    if min > max {
        return Err(format!("`{text}`: the minimum is above the maximum"));
    }
    Ok((min, max))
}

/// A duration with a unit (`60s`, `500ms`) that is not zero.
pub(crate) fn positive_duration(text: &str) -> Result<Duration, String> {
    match duration(text)? {
        d if d.is_zero() => Err(format!(
            "`{text}` is zero; give a positive duration such as 500ms or 10s"
        )),
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lag_range_is_two_durations_in_order() {
        let ms = Duration::from_millis;
        assert_eq!(duration_range("500ms..2500ms"), Ok((ms(500), ms(2500))));
        assert_eq!(duration_range("1s..1s"), Ok((ms(1000), ms(1000))));
        for (bad, says) in [
            ("2s", "is not a range"),
            ("3s..1s", "the minimum is above the maximum"),
            ("1s..x", "`x` is not a duration"),
        ] {
            let e = duration_range(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
