//! The experiment's results: the scenarios it runs, one row per measured
//! run, and what is made of them: the table, the JSON document and the
//! verdict. Pure: the `gracedown experiment` command orchestrates processes
//! and feeds rows in; this renders them.
//!
//! # JSON schema `gracedown-experiment/2`
//!
//! ```text
//! { "schema": "gracedown-experiment/2",
//!   "runs": [ { "scenario": "lab" | "wan" | "scale" | "proxy" | "fleet",
//!               "frontend": "l4" | "l7" | null,  // the fleet's load balancer path
//!               "server": "gracedown" | "gd-nodelay" | "go",
//!               "client": "gracedown" | "wrk" | "h2load", "protocol": "http/1.1" | "h2",
//!               "restart_every_ms": N | null, "restarts": N, "ratio": F | null,
//!               "proxy_errors": N,  // the proxy's 502/503/504 answers
//!               "errors": N,        // the client's errors plus proxy_errors
//!               "report": gracedown-bench/3 | null, "external": { "rps", "ok", "errors" } | null } ] }
//! ```

use std::fmt::Write as _;
use std::io::{self, Write};
use std::time::Duration;

use crate::external::External;
use crate::outcome::Class;
use crate::plan::{Load, Protocol};
use crate::report::Report;

/// A way to load the server while it restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Scenario {
    /// 10 connections back to back on loopback: the lab proof.
    Lab,
    /// 200 connections pausing 0.5–1.5 s between requests across a 50 ms
    /// round trip: clients on the internet.
    Wan,
    /// 1,000 connections back to back.
    Scale,
    /// A real nginx in front (keep-alive to the upstream), clients pausing
    /// between `POST /echo` requests.
    Proxy,
    /// A fleet of instances with no superdaemon behind a real HAProxy,
    /// replaced one by one as an orchestrator does (the balancer learns of
    /// each stop late), loaded through both of its [`Frontend`]s at once.
    Fleet,
}

/// The server stack a row measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stack {
    /// gracedown (for a fleet: with the shutdown delay).
    Gracedown,
    /// A fleet of gracedown instances without the shutdown delay: they
    /// stop accepting at `SIGTERM`.
    GracedownNoDelay,
    /// The Go `net/http` peer (`Server.Shutdown`).
    Go,
}

impl Stack {
    /// `gracedown`, `gd-nodelay` or `go`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gracedown => "gracedown",
            Self::GracedownNoDelay => "gd-nodelay",
            Self::Go => "go",
        }
    }
}

/// The load client of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Client {
    /// `gracedown bench`: every outcome counted.
    Bench,
    /// wrk, a cross-check (HTTP/1.1).
    Wrk,
    /// h2load, a cross-check (HTTP/2).
    H2load,
}

impl Client {
    /// `gracedown`, `wrk` or `h2load`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bench => "gracedown",
            Self::Wrk => "wrk",
            Self::H2load => "h2load",
        }
    }
}

/// How clients reach a fleet through the load balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Frontend {
    /// `mode tcp`, a connection per `GET /`: the L4 path of a Kubernetes
    /// Service (kube-proxy).
    L4,
    /// `mode http`, keep-alive `POST /echo`: an L7 ingress or load balancer.
    L7,
}

impl Frontend {
    /// Both, in the table's order.
    pub const ALL: [Self; 2] = [Self::L4, Self::L7];

    /// `l4` or `l7`.
    pub fn name(self) -> &'static str {
        match self {
            Self::L4 => "l4",
            Self::L7 => "l7",
        }
    }

    /// The request: method, path and body.
    pub fn request(self) -> (&'static str, &'static str, &'static [u8]) {
        match self {
            Self::L4 => ("GET", "/", b""),
            Self::L7 => ("POST", "/echo", b"hello, fleet\n"),
        }
    }

    /// Whether clients keep their connection between requests.
    pub fn keepalive(self) -> bool {
        self == Self::L7
    }
}

/// The protocols of the experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Wire {
    /// HTTP/1.1 over plain TCP.
    Http1,
    /// HTTP/1.1 over TLS.
    Http1Tls,
    /// HTTP/2 over plain TCP (prior knowledge).
    H2c,
    /// HTTP/2 over TLS.
    H2,
}

impl Wire {
    /// How the table names it: `http/1.1`, `h1/tls`, `h2c` or `h2`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Http1 => "http/1.1",
            Self::Http1Tls => "h1/tls",
            Self::H2c => "h2c",
            Self::H2 => "h2",
        }
    }

    /// How file names (the charts) name it.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Http1 => "http1",
            Self::Http1Tls => "http1-tls",
            Self::H2c => "h2c",
            Self::H2 => "h2",
        }
    }

    /// Whether it runs over TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Self::Http1Tls | Self::H2)
    }

    /// The bench's protocol for it.
    pub fn protocol(self) -> Protocol {
        match self {
            Self::Http1 => Protocol::Http1,
            Self::Http1Tls => Protocol::HttpsHttp1,
            Self::H2c => Protocol::H2c,
            Self::H2 => Protocol::HttpsHttp2,
        }
    }
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Self; 5] = [Self::Lab, Self::Wan, Self::Scale, Self::Proxy, Self::Fleet];

    /// The name on the command line and in the table.
    pub fn name(self) -> &'static str {
        match self {
            Self::Lab => "lab",
            Self::Wan => "wan",
            Self::Scale => "scale",
            Self::Proxy => "proxy",
            Self::Fleet => "fleet",
        }
    }

    /// The scenario named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Connections (for the fleet: through each frontend).
    pub fn connections(self) -> usize {
        match self {
            Self::Lab => 10,
            Self::Wan => 200,
            Self::Scale => 1000,
            Self::Proxy => 100,
            Self::Fleet => 50,
        }
    }

    /// How the clients pace their requests.
    pub fn load(self) -> Load {
        let think = Load::ThinkTime {
            min: Duration::from_millis(500),
            max: Duration::from_millis(1500),
        };
        match self {
            Self::Lab | Self::Scale => Load::BackToBack,
            Self::Wan | Self::Proxy => think,
            // Busier clients: a lag of a second or two meets hundreds of requests.
            Self::Fleet => Load::ThinkTime {
                min: Duration::from_millis(100),
                max: Duration::from_millis(300),
            },
        }
    }

    /// The emulated round trip.
    pub fn rtt(self) -> Option<Duration> {
        (self == Self::Wan).then_some(Duration::from_millis(50))
    }

    /// The protocols it runs.
    pub fn wires(self) -> &'static [Wire] {
        match self {
            Self::Lab => &[Wire::Http1, Wire::H2],
            Self::Scale => &[Wire::Http1, Wire::Http1Tls, Wire::H2c, Wire::H2],
            Self::Wan | Self::Proxy | Self::Fleet => &[Wire::Http1],
        }
    }

    /// How long each run lasts.
    pub fn duration(self) -> Duration {
        match self {
            Self::Lab => Duration::from_secs(5),
            Self::Scale => Duration::from_secs(8),
            Self::Wan | Self::Proxy | Self::Fleet => Duration::from_secs(15),
        }
    }

    /// Whether a proxy stands in front of the server (its 5xx answers are
    /// the server's failures).
    pub fn via_proxy(self) -> bool {
        matches!(self, Self::Proxy | Self::Fleet)
    }

    /// The request: method, path and body.
    pub fn request(self) -> (&'static str, &'static str, &'static [u8]) {
        match self {
            Self::Proxy => ("POST", "/echo", b"hello, upstream\n"),
            _ => ("GET", "/", b""),
        }
    }
}

/// One measured run.
#[derive(Debug, Clone)]
pub struct Row {
    /// The scenario.
    pub scenario: Scenario,
    /// The load balancer's frontend the load went through (the fleet).
    pub frontend: Option<Frontend>,
    /// The server stack.
    pub server: Stack,
    /// The load client.
    pub client: Client,
    /// The protocol.
    pub wire: Wire,
    /// The restart pace, or none.
    pub restart_every: Option<Duration>,
    /// Restarts done during the run.
    pub restarts: u32,
    /// gracedown bench's report.
    pub report: Option<Report>,
    /// An external client's figures.
    pub external: Option<External>,
    /// req/s over the same client's run without restarts.
    pub ratio: Option<f64>,
    /// The proxy's 502, 503 and 504 answers: the server failed them.
    pub proxy_errors: u64,
}

/// The statuses a proxy answers when its upstream failed.
pub const PROXY_FAILURES: [u16; 3] = [502, 503, 504];

impl Row {
    /// Completed responses per second, but for a proxy's 502/503/504
    /// answers, which are the server's failures, not its work.
    pub fn rps(&self) -> f64 {
        match (&self.report, &self.external) {
            (Some(r), _) => {
                let completed = r.outcomes.get(Class::Ok);
                if completed == 0 {
                    r.rps
                } else {
                    let served = completed.saturating_sub(self.proxy_errors);
                    r.rps * served as f64 / completed as f64
                }
            }
            (None, Some(e)) => e.rps,
            (None, None) => 0.0,
        }
    }

    /// Failed requests: the client's errors and the proxy's failures.
    pub fn errors(&self) -> u64 {
        let client = match (&self.report, &self.external) {
            (Some(r), _) => r.errors,
            (None, Some(e)) => e.errors,
            (None, None) => 0,
        };
        client + self.proxy_errors
    }

    /// Whether this row's errors fail the experiment: gracedown's server
    /// measured by gracedown bench (external clients are cross-checks, the
    /// peer is the comparison).
    pub fn is_verdict(&self) -> bool {
        self.server == Stack::Gracedown && self.client == Client::Bench
    }

    /// The scenario's name, with the frontend for the fleet (`fleet-l4`).
    pub fn scene(&self) -> String {
        match self.frontend {
            Some(frontend) => format!("{}-{}", self.scenario.name(), frontend.name()),
            None => self.scenario.name().to_owned(),
        }
    }

    fn every(&self) -> String {
        self.restart_every.map_or("none".to_owned(), |d| {
            format!("every {}", humantime_short(d))
        })
    }
}

fn humantime_short(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Every row of an experiment.
#[derive(Debug, Clone, Default)]
pub struct Results {
    /// In the order measured.
    pub rows: Vec<Row>,
}

impl Results {
    /// Sets each restarting row's ratio: its req/s over the run without
    /// restarts of the same scenario, server, protocol and client.
    pub fn set_ratios(&mut self) {
        let baselines: Vec<(Scenario, Option<Frontend>, Stack, Wire, Client, f64)> = self
            .rows
            .iter()
            .filter(|r| r.restart_every.is_none())
            .map(|r| (r.scenario, r.frontend, r.server, r.wire, r.client, r.rps()))
            .collect();
        for row in self.rows.iter_mut().filter(|r| r.restart_every.is_some()) {
            let base = baselines.iter().find(|(s, f, server, w, c, _)| {
                *s == row.scenario
                    && *f == row.frontend
                    && *server == row.server
                    && *w == row.wire
                    && *c == row.client
            });
            row.ratio = base
                .map(|b| b.5)
                .filter(|b| *b > 0.0)
                .map(|b| row.rps() / b);
        }
    }

    /// Why the experiment failed: one line per verdict row with errors.
    pub fn failures(&self) -> Vec<String> {
        self.rows
            .iter()
            .filter(|r| r.is_verdict() && r.errors() > 0)
            .map(|row| {
                let mut classes: Vec<String> = row
                    .report
                    .iter()
                    .flat_map(|r| r.outcomes.iter())
                    .filter(|(c, n)| c.is_error() && *n > 0)
                    .map(|(c, n)| format!("{c} {n}"))
                    .collect();
                if row.proxy_errors > 0 {
                    classes.push(format!("proxy 5xx {}", row.proxy_errors));
                }
                format!(
                    "{} {} restarts {}: {}",
                    row.scene(),
                    row.wire.name(),
                    row.every(),
                    classes.join(", ")
                )
            })
            .collect()
    }

    /// The table.
    ///
    /// # Errors
    ///
    /// The writer's.
    pub fn write_table(&self, out: &mut impl Write) -> io::Result<()> {
        let classes: Vec<Class> = Class::ALL.into_iter().filter(|c| *c != Class::Ok).collect();
        let mut head = format!(
            "{:<8} {:<10} {:<9} {:<8} {:<11} {:>9} {:>8} {:>6}",
            "scene", "server", "client", "protocol", "restarts", "req/s", "ok", "errors"
        );
        for class in &classes {
            let _ = write!(head, " {:>7}", class.short());
        }
        let _ = write!(
            head,
            " {:>5} {:>8} {:>8} {:>8} {:>7} {:>4} {:>4} {:>6} {:>20}",
            "5xx", "p99", "dip avg", "dip max", "gap", "n", "gens", "ratio", "tls handshakes"
        );
        writeln!(out, "{head}")?;
        for r in &self.rows {
            let mut line = format!(
                "{:<8} {:<10} {:<9} {:<8} {:<11} {:>9.0} {:>8} {:>6}",
                r.scene(),
                r.server.name(),
                r.client.name(),
                r.wire.name(),
                r.every(),
                r.rps(),
                r.report.as_ref().map_or_else(
                    || r.external.as_ref().map_or(0, |e| e.ok),
                    |rep| rep.outcomes.get(Class::Ok)
                ),
                r.errors()
            );
            for class in &classes {
                let n = r
                    .report
                    .as_ref()
                    .map_or("-".to_owned(), |rep| rep.outcomes.get(*class).to_string());
                let _ = write!(line, " {n:>7}");
            }
            let dash = || "-".to_owned();
            let (p99, dip_avg, dip_max, gap, gens) = match &r.report {
                Some(rep) => (
                    format!("{:.1}ms", rep.latency_us.p99 as f64 / 1000.0),
                    rep.dips
                        .as_ref()
                        .map_or_else(dash, |d| format!("{:.0}ms", d.mean_ms)),
                    rep.dips
                        .as_ref()
                        .map_or_else(dash, |d| format!("{}ms", d.max_ms)),
                    format!("{}ms", rep.longest_gap_ms),
                    rep.generations.to_string(),
                ),
                None => (dash(), dash(), dash(), dash(), dash()),
            };
            let proxy = if r.scenario.via_proxy() {
                r.proxy_errors.to_string()
            } else {
                dash()
            };
            // Every TLS handshake, and how many resumed a session (a
            // connection that moved to the next generation makes none).
            let resumed = r
                .report
                .as_ref()
                .and_then(|rep| rep.tls_handshakes)
                .map_or_else(dash, |h| {
                    format!("{} ({} resumed)", h.full + h.resumed, h.resumed)
                });
            let _ = write!(
                line,
                " {proxy:>5} {p99:>8} {dip_avg:>8} {dip_max:>8} {gap:>7} {:>4} {gens:>4} {:>6} {resumed:>20}",
                r.restarts,
                r.ratio.map_or_else(dash, |x| format!("{x:.3}"))
            );
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }

    /// The JSON document (schema `gracedown-experiment/2`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "schema": "gracedown-experiment/2",
            "runs": self.rows.iter().map(|r| serde_json::json!({
                "scenario": r.scenario.name(),
                "frontend": r.frontend.map(Frontend::name),
                "server": r.server.name(),
                "client": r.client.name(),
                "protocol": r.wire.name(),
                "restart_every_ms": r.restart_every.map(|d| d.as_millis() as u64),
                "restarts": r.restarts,
                "ratio": r.ratio,
                "proxy_errors": r.proxy_errors,
                "errors": r.errors(),
                "report": r.report,
                "external": r.external,
            })).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::outcome::{Outcome, Tally};
    use crate::plan::Protocol;
    use crate::record::{Bucket, Samples};

    fn report(ok: u64, closed: u64, status_502: u64, markers: usize) -> Report {
        let mut tally = Tally::default();
        for _ in 0..ok {
            tally.record(Outcome::Ok(200));
        }
        for _ in 0..status_502 {
            tally.record(Outcome::Ok(502));
        }
        for _ in 0..closed {
            tally.record(Outcome::ClosedBeforeResponse);
        }
        let mut latency = hdrhistogram::Histogram::new(3).expect("histogram");
        latency.record(2000).expect("record");
        let samples = Samples {
            tally,
            latency,
            timeline: vec![Bucket::default(); 10],
            interval: Duration::from_millis(100),
            elapsed: Duration::from_secs(1),
            markers: (0..markers)
                .map(|i| Duration::from_millis(200 * i as u64 + 100))
                .collect(),
            connections: 10,
            protocol: Protocol::Http1,
            effective_connections: 10.0,
            load: Load::BackToBack,
            rtt: None,
            late: 0,
            unsent: 0,
        };
        Report::new(
            &samples,
            "http://127.0.0.1:1/",
            "http/1.1",
            Duration::from_secs(1),
            Some(1000.0),
        )
    }

    fn results() -> Results {
        let row = |scenario, restart_every: Option<Duration>, report: Report, proxy_errors| Row {
            scenario,
            frontend: None,
            server: Stack::Gracedown,
            client: Client::Bench,
            wire: Wire::Http1,
            restart_every,
            restarts: u32::from(restart_every.is_some()) * 2,
            report: Some(report),
            external: None,
            ratio: None,
            proxy_errors,
        };
        let mut results = Results {
            rows: vec![
                row(Scenario::Lab, None, report(1000, 0, 0, 0), 0),
                row(
                    Scenario::Lab,
                    Some(Duration::from_secs(1)),
                    report(900, 0, 0, 2),
                    0,
                ),
                row(Scenario::Proxy, None, report(100, 0, 0, 0), 0),
                row(
                    Scenario::Proxy,
                    Some(Duration::from_millis(500)),
                    report(90, 1, 3, 2),
                    3,
                ),
            ],
        };
        results.rows.push(Row {
            client: Client::Wrk,
            report: None,
            external: Some(External {
                rps: 950.0,
                ok: 950,
                errors: 0,
            }),
            ..results.rows[0].clone()
        });
        results.set_ratios();
        results
    }

    #[test]
    fn the_table_names_the_scenario_and_every_error_class() {
        let mut out = Vec::new();
        let mut results = results();
        if let Some(report) = results.rows[1].report.as_mut() {
            report.tls_handshakes = Some(crate::report::TlsHandshakes {
                full: 10,
                resumed: 40,
            });
        }
        results.write_table(&mut out).expect("table");
        let expected = "\
scene    server     client    protocol restarts        req/s       ok errors  unproc connect  closed   trunc timeout   5xx      p99  dip avg  dip max     gap    n gens  ratio       tls handshakes
lab      gracedown  gracedown http/1.1 none             1000     1000      0       0       0       0       0       0     -    2.0ms        -        -  1000ms    0    0      -                    -
lab      gracedown  gracedown http/1.1 every 1s          900      900      0       0       0       0       0       0     -    2.0ms    450ms    700ms  1000ms    2    0  0.900      50 (40 resumed)
proxy    gracedown  gracedown http/1.1 none              100      100      0       0       0       0       0       0     0    2.0ms        -        -  1000ms    0    0      -                    -
proxy    gracedown  gracedown http/1.1 every 500ms        90       93      4       0       0       1       0       0     3    2.0ms    450ms    700ms  1000ms    2    0  0.900                    -
lab      gracedown  wrk       http/1.1 none              950      950      0       -       -       -       -       -     -        -        -        -       -    0    -      -                    -
";
        assert_eq!(String::from_utf8(out).expect("utf-8"), expected);
    }

    #[test]
    fn the_verdict_counts_the_proxys_failures_and_ignores_external_clients() {
        let failures = results().failures();
        assert_eq!(
            failures,
            ["proxy http/1.1 restarts every 500ms: closed_before_response 1, proxy 5xx 3"]
        );
        let json = results().to_json();
        assert_eq!(json["schema"], "gracedown-experiment/2");
        assert_eq!(json["runs"][3]["errors"], 4);
        assert_eq!(json["runs"][3]["scenario"], "proxy");
        assert_eq!(json["runs"][1]["ratio"], 0.9);
    }

    #[test]
    fn fleet_rows_are_named_and_compared_per_frontend() {
        let fleet = |frontend, server, restart_every, report| Row {
            scenario: Scenario::Fleet,
            frontend: Some(frontend),
            server,
            client: Client::Bench,
            wire: Wire::Http1,
            restart_every,
            restarts: 0,
            report: Some(report),
            external: None,
            ratio: None,
            proxy_errors: 0,
        };
        let every = Some(Duration::from_secs(1));
        let mut results = Results {
            rows: vec![
                fleet(Frontend::L4, Stack::Gracedown, None, report(1000, 0, 0, 0)),
                fleet(Frontend::L7, Stack::Gracedown, None, report(500, 0, 0, 0)),
                fleet(Frontend::L4, Stack::Gracedown, every, report(990, 0, 0, 2)),
                fleet(Frontend::L7, Stack::Gracedown, every, report(500, 0, 0, 2)),
                fleet(
                    Frontend::L4,
                    Stack::GracedownNoDelay,
                    None,
                    report(1000, 0, 0, 0),
                ),
                fleet(
                    Frontend::L4,
                    Stack::GracedownNoDelay,
                    every,
                    report(900, 7, 0, 2),
                ),
            ],
        };
        results.set_ratios();
        let ratios: Vec<Option<f64>> = results.rows.iter().map(|r| r.ratio).collect();
        assert_eq!(ratios, [None, None, Some(0.99), Some(1.0), None, Some(0.9)]);
        assert_eq!(results.rows[2].scene(), "fleet-l4");
        // The rows without the delay show what the lag costs; they are not the verdict.
        assert!(results.failures().is_empty(), "{:?}", results.failures());
        let json = results.to_json();
        assert_eq!(json["runs"][3]["frontend"], "l7");
        assert_eq!(json["runs"][3]["scenario"], "fleet");
    }

    #[test]
    fn scenarios_round_trip_by_name() {
        for scenario in Scenario::ALL {
            assert_eq!(Scenario::from_name(scenario.name()), Some(scenario));
        }
        assert_eq!(Scenario::from_name("moon"), None);
    }
}
