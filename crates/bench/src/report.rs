//! Turning [`Samples`] into what people and programs read: a text summary,
//! JSON (schema `gracedown-bench/3`, below) and a CSV timeline. Pure: it
//! writes to any `Write` and does no other I/O.
//!
//! # JSON schema `gracedown-bench/3`
//!
//! ```text
//! { "schema": "gracedown-bench/3",
//!   "target": URL, "protocol": "http/1.1" | "h2c" | "h2 over TLS" | "http/1.1 over TLS",
//!   "load": "back-to-back" | "think MIN..MAXms" | "rate R/s", "rtt_ms": N | null,
//!   "connections": N, "duration_s": F, "elapsed_s": F,
//!   "requests": N,            // final outcomes: ok + every error class
//!   "rps": F,                 // complete responses per second of elapsed time
//!   "outcomes": { "ok", "unprocessed", "connect_failed", "closed_before_response", "truncated", "timeout" },
//!   "errors": N, "status": { "200": N, ... }, "non_2xx": N,
//!   "latency_us": { "p50", "p90", "p99", "p99_9", "max" },  // open loop: from when each request was due
//!   "late": N, "unsent": N,   // open loop: started late; due but never started
//!   "effective_connections": F, // mean connected slots over the run
//!   "connects": N, "goaways": N, "generations": N, "longest_gap_ms": N,
//!   "tls_handshakes": null | { "full": N, "resumed": N },  // TLS: sessions resumed with a ticket
//!   "restarts": N, "markers_ms": [N, ...],
//!   "per_restart": null | { "reconnects": F, "kept": F,       // with restarts: what each cost
//!                           "tls_full": F | null, "tls_resumed": F | null },
//!   "dips": null | { "level_rps", "per_restart_ms": [N, ...], "mean_ms", "max_ms" } }
//! ```

use std::io::{self, Write};

use crate::outcome::{Class, Counts};
use crate::record::{Dips, Samples};

/// The figures of a run, ready to render.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Report {
    /// Always `gracedown-bench/3`.
    pub schema: &'static str,
    /// The URL.
    pub target: String,
    /// The protocol spoken.
    pub protocol: String,
    /// How requests were paced.
    pub load: String,
    /// The emulated round trip, in milliseconds.
    pub rtt_ms: Option<u64>,
    /// Connection slots.
    pub connections: usize,
    /// Requested duration, seconds.
    pub duration_s: f64,
    /// Measured duration, seconds.
    pub elapsed_s: f64,
    /// Final outcomes (ok + errors).
    pub requests: u64,
    /// Complete responses per second.
    pub rps: f64,
    /// Counts per outcome class.
    pub outcomes: Counts,
    /// Client-visible errors.
    pub errors: u64,
    /// Complete responses per status.
    pub status: std::collections::BTreeMap<String, u64>,
    /// Complete responses whose status is not 2xx.
    pub non_2xx: u64,
    /// Latency percentiles of complete responses.
    pub latency_us: Latency,
    /// Open loop: requests that started later than due.
    pub late: u64,
    /// Open loop: requests due before the end that never started.
    pub unsent: u64,
    /// Mean number of connected slots over the run.
    pub effective_connections: f64,
    /// Connections opened.
    pub connects: u64,
    /// GOAWAY frames received.
    pub goaways: u64,
    /// TLS only: how many handshakes were full, and how many resumed a session.
    pub tls_handshakes: Option<TlsHandshakes>,
    /// Distinct `x-gracedown-pid` values seen.
    pub generations: usize,
    /// Longest stretch without a complete response, at timeline resolution.
    pub longest_gap_ms: u64,
    /// Restart markers given to the run.
    pub restarts: usize,
    /// Their offsets from the start.
    pub markers_ms: Vec<u64>,
    /// With restarts: what each restart cost the clients, on average.
    pub per_restart: Option<PerRestart>,
    /// How long throughput stayed below half its level after each restart.
    pub dips: Option<Dips>,
}

/// What one restart cost the clients, on average over the run's restarts:
/// connections opened again, connections that went on (the same TCP
/// connection, moved to the next generation), and under TLS the handshakes
/// the new connections made.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PerRestart {
    /// Connections opened beyond each slot's first, per restart.
    pub reconnects: f64,
    /// Connections that went on across a restart: the slots less the reconnects.
    pub kept: f64,
    /// TLS: full handshakes beyond each slot's first, per restart.
    pub tls_full: Option<f64>,
    /// TLS: resumed handshakes, per restart.
    pub tls_resumed: Option<f64>,
}

impl PerRestart {
    fn new(
        restarts: usize,
        connections: usize,
        connects: u64,
        tls: Option<TlsHandshakes>,
    ) -> Option<Self> {
        if restarts == 0 {
            return None;
        }
        let (r, slots) = (restarts as f64, connections as u64);
        let round = |x: f64| (x * 10.0).round() / 10.0;
        let reconnects = round(connects.saturating_sub(slots) as f64 / r);
        Some(Self {
            reconnects,
            kept: round((slots as f64 - reconnects).max(0.0)),
            tls_full: tls.map(|h| round(h.full.saturating_sub(slots) as f64 / r)),
            tls_resumed: tls.map(|h| round(h.resumed as f64 / r)),
        })
    }
}

/// TLS handshakes by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TlsHandshakes {
    /// Full handshakes (certificate, key exchange).
    pub full: u64,
    /// Resumed sessions (a ticket the server could open).
    pub resumed: u64,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p99_9: u64,
    /// Maximum.
    pub max: u64,
}

impl Report {
    /// Summarises `samples` of a run against `target` speaking `protocol`;
    /// restart dips are measured against `level_rps` when given (the same
    /// run without restarts), else against the run's own level.
    pub fn new(
        samples: &Samples,
        target: &str,
        protocol: &str,
        duration: std::time::Duration,
        level_rps: Option<f64>,
    ) -> Self {
        let t = &samples.tally;
        let tls = samples.protocol.is_tls().then_some(TlsHandshakes {
            full: t.tls_full,
            resumed: t.tls_resumed,
        });
        let elapsed = samples.elapsed.as_secs_f64();
        let ok = t.responses();
        let q = |p: f64| {
            if ok == 0 {
                0
            } else {
                samples.latency.value_at_quantile(p)
            }
        };
        Self {
            schema: "gracedown-bench/3",
            target: target.to_owned(),
            protocol: protocol.to_owned(),
            load: samples.load.describe(),
            rtt_ms: samples.rtt.map(|d| d.as_millis() as u64),
            connections: samples.connections,
            duration_s: duration.as_secs_f64(),
            elapsed_s: elapsed,
            requests: ok + t.errors(),
            rps: if elapsed > 0.0 {
                ok as f64 / elapsed
            } else {
                0.0
            },
            outcomes: t.counts,
            errors: t.errors(),
            status: t.ok.iter().map(|(s, n)| (s.to_string(), *n)).collect(),
            non_2xx: t.non_2xx(),
            latency_us: Latency {
                p50: q(0.5),
                p90: q(0.9),
                p99: q(0.99),
                p99_9: q(0.999),
                max: if ok == 0 { 0 } else { samples.latency.max() },
            },
            late: samples.late,
            unsent: samples.unsent,
            effective_connections: (samples.effective_connections * 100.0).round() / 100.0,
            connects: t.connects,
            goaways: t.goaways,
            tls_handshakes: tls,
            generations: t.pids.len(),
            longest_gap_ms: samples.longest_gap().as_millis() as u64,
            restarts: samples.markers.len(),
            per_restart: PerRestart::new(
                samples.markers.len(),
                samples.connections,
                t.connects,
                tls,
            ),
            markers_ms: samples
                .markers
                .iter()
                .map(|m| m.as_millis() as u64)
                .collect(),
            dips: samples.dips(level_rps),
        }
    }

    /// The human summary.
    ///
    /// # Errors
    ///
    /// The writer's.
    pub fn write_text(&self, out: &mut impl Write) -> io::Result<()> {
        writeln!(
            out,
            "score {}, elapsed {:.3}s = {:.1} / sec",
            self.outcomes.get(Class::Ok),
            self.elapsed_s,
            self.rps
        )?;
        let outcomes: Vec<String> = self
            .outcomes
            .iter()
            .map(|(class, n)| format!("{class} {n}"))
            .collect();
        writeln!(out, "  outcomes: {}", outcomes.join(" | "))?;
        let status: Vec<String> = self
            .status
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        writeln!(
            out,
            "  status: {} (non-2xx {})",
            status.join(", "),
            self.non_2xx
        )?;
        let l = &self.latency_us;
        writeln!(
            out,
            "  latency: p50 {} | p90 {} | p99 {} | p99.9 {} | max {}",
            micros(l.p50),
            micros(l.p90),
            micros(l.p99),
            micros(l.p99_9),
            micros(l.max)
        )?;
        let rtt = self
            .rtt_ms
            .map_or_else(String::new, |ms| format!(", round trip {ms} ms"));
        writeln!(out, "  load: {}{rtt}", self.load)?;
        if self.load.starts_with("rate") {
            writeln!(
                out,
                "  open loop: {} started late, {} due but never started",
                self.late, self.unsent
            )?;
        }
        writeln!(
            out,
            "  connections: {} slots ({} effective), {} connects, {} GOAWAYs | generations seen {} | longest gap {} ms | restarts {}",
            self.connections,
            self.effective_connections,
            self.connects,
            self.goaways,
            self.generations,
            self.longest_gap_ms,
            self.restarts
        )?;
        if let Some(h) = &self.tls_handshakes {
            writeln!(
                out,
                "  tls handshakes: {} full, {} resumed",
                h.full, h.resumed
            )?;
        }
        if let Some(p) = &self.per_restart {
            write!(
                out,
                "  per restart: {} reconnects, {} of {} connections kept",
                p.reconnects, p.kept, self.connections
            )?;
            if let (Some(full), Some(resumed)) = (p.tls_full, p.tls_resumed) {
                write!(out, ", tls handshakes {full} full + {resumed} resumed")?;
            }
            writeln!(out)?;
        }
        if let Some(d) = &self.dips {
            writeln!(
                out,
                "  restart dips (below half of {:.0}/s): mean {:.0} ms, max {} ms",
                d.level_rps, d.mean_ms, d.max_ms
            )?;
        }
        writeln!(out, "  errors: {}", self.errors)
    }

    /// The JSON document.
    ///
    /// # Errors
    ///
    /// The writer's.
    pub fn write_json(&self, out: &mut impl Write) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut *out, self).map_err(io::Error::other)?;
        writeln!(out)
    }
}

/// The timeline as CSV: one row per bucket.
///
/// # Errors
///
/// The writer's.
pub fn write_timeline(samples: &Samples, out: &mut impl Write) -> io::Result<()> {
    write!(out, "t_ms")?;
    for class in Class::ALL {
        write!(out, ",{class}")?;
    }
    writeln!(
        out,
        ",errors,connects,goaways,latency_mean_us,latency_max_us,restarts"
    )?;
    let width = samples.interval.as_millis() as u64;
    for (i, b) in samples.timeline.iter().enumerate() {
        let t = i as u64 * width;
        let restarts = samples
            .markers
            .iter()
            .filter(|m| (m.as_millis() as u64) / width.max(1) == i as u64)
            .count();
        let mean = b.latency_sum_us.checked_div(b.ok()).unwrap_or(0);
        write!(out, "{t}")?;
        for (_, n) in b.counts.iter() {
            write!(out, ",{n}")?;
        }
        writeln!(
            out,
            ",{},{},{},{mean},{},{restarts}",
            b.errors(),
            b.connects,
            b.goaways,
            b.latency_max_us
        )?;
    }
    Ok(())
}

fn micros(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.1}ms", us as f64 / 1000.0)
    } else {
        format!("{us}us")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::outcome::{Outcome, Tally};
    use crate::plan::{Load, Protocol};
    use crate::record::Bucket;

    fn samples() -> Samples {
        let mut tally = Tally::default();
        for outcome in [
            Outcome::Ok(200),
            Outcome::Ok(200),
            Outcome::Ok(200),
            Outcome::Ok(503),
            Outcome::Unprocessed,
            Outcome::ClosedBeforeResponse,
        ] {
            tally.record(outcome);
        }
        tally.connects = 3;
        tally.goaways = 2;
        tally.pids.extend(["10".to_owned(), "11".to_owned()]);
        let mut latency = hdrhistogram::Histogram::new(3).expect("histogram");
        for us in [100, 200, 300, 400] {
            latency.record(us).expect("record");
        }
        let bucket = |ok, closed, unprocessed, connects, goaways, sum, max| {
            let mut counts = Counts::default();
            counts.add(Class::Ok, ok);
            counts.add(Class::ClosedBeforeResponse, closed);
            counts.add(Class::Unprocessed, unprocessed);
            Bucket {
                counts,
                connects,
                goaways,
                latency_sum_us: sum,
                latency_max_us: max,
            }
        };
        Samples {
            tally,
            latency,
            timeline: vec![
                bucket(3, 0, 0, 2, 0, 600, 300),
                bucket(0, 1, 1, 0, 2, 0, 0),
                bucket(1, 0, 0, 1, 0, 400, 400),
            ],
            interval: Duration::from_millis(100),
            elapsed: Duration::from_millis(300),
            markers: vec![Duration::from_millis(150)],
            connections: 2,
            protocol: Protocol::H2c,
            effective_connections: 1.95,
            load: Load::ThinkTime {
                min: Duration::from_millis(500),
                max: Duration::from_millis(1500),
            },
            rtt: Some(Duration::from_millis(50)),
            late: 0,
            unsent: 0,
        }
    }

    fn report() -> Report {
        Report::new(
            &samples(),
            "http://127.0.0.1:8080/",
            "h2c",
            Duration::from_secs(1),
            Some(20.0),
        )
    }

    fn render(f: impl Fn(&mut Vec<u8>) -> io::Result<()>) -> String {
        let mut out = Vec::new();
        f(&mut out).expect("render");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn json_schema_is_stable() {
        let expected = r#"{
  "schema": "gracedown-bench/3",
  "target": "http://127.0.0.1:8080/",
  "protocol": "h2c",
  "load": "think 500..1500ms",
  "rtt_ms": 50,
  "connections": 2,
  "duration_s": 1.0,
  "elapsed_s": 0.3,
  "requests": 5,
  "rps": 13.333333333333334,
  "outcomes": {
    "ok": 4,
    "unprocessed": 1,
    "connect_failed": 0,
    "closed_before_response": 1,
    "truncated": 0,
    "timeout": 0
  },
  "errors": 1,
  "status": {
    "200": 3,
    "503": 1
  },
  "non_2xx": 1,
  "latency_us": {
    "p50": 200,
    "p90": 400,
    "p99": 400,
    "p99_9": 400,
    "max": 400
  },
  "late": 0,
  "unsent": 0,
  "effective_connections": 1.95,
  "connects": 3,
  "goaways": 2,
  "tls_handshakes": null,
  "generations": 2,
  "longest_gap_ms": 100,
  "restarts": 1,
  "markers_ms": [
    150
  ],
  "per_restart": {
    "reconnects": 1.0,
    "kept": 1.0,
    "tls_full": null,
    "tls_resumed": null
  },
  "dips": {
    "level_rps": 20.0,
    "per_restart_ms": [
      100
    ],
    "mean_ms": 100.0,
    "max_ms": 100
  }
}
"#;
        assert_eq!(render(|out| report().write_json(out)), expected);
    }

    #[test]
    fn timeline_csv_is_stable() {
        let expected = "\
t_ms,ok,unprocessed,connect_failed,closed_before_response,truncated,timeout,errors,connects,goaways,latency_mean_us,latency_max_us,restarts
0,3,0,0,0,0,0,0,2,0,200,300,0
100,0,1,0,1,0,0,1,0,2,0,0,1
200,1,0,0,0,0,0,0,1,0,400,400,0
";
        assert_eq!(render(|out| write_timeline(&samples(), out)), expected);
    }

    #[test]
    fn text_summary_is_stable() {
        let expected = "\
score 4, elapsed 0.300s = 13.3 / sec
  outcomes: ok 4 | unprocessed 1 | connect_failed 0 | closed_before_response 1 | truncated 0 | timeout 0
  status: 200: 3, 503: 1 (non-2xx 1)
  latency: p50 200us | p90 400us | p99 400us | p99.9 400us | max 400us
  load: think 500..1500ms, round trip 50 ms
  connections: 2 slots (1.95 effective), 3 connects, 2 GOAWAYs | generations seen 2 | longest gap 100 ms | restarts 1
  per restart: 1 reconnects, 1 of 2 connections kept
  restart dips (below half of 20/s): mean 100 ms, max 100 ms
  errors: 1
";
        assert_eq!(render(|out| report().write_text(out)), expected);
    }

    #[test]
    fn dips_count_the_buckets_below_half_the_level_after_each_restart() {
        let mut s = samples();
        let bucket = |ok| {
            let mut counts = Counts::default();
            counts.add(Class::Ok, ok);
            Bucket {
                counts,
                ..Bucket::default()
            }
        };
        // 100 per bucket (1000/s), dips of 3 and 1 buckets after restarts at 1 s and 2 s.
        let oks = [
            100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 20, 0, 40, 100, 100, 100, 100, 100,
            100, 100, 30, 100, 100, 100,
        ];
        s.timeline = oks.iter().map(|ok| bucket(*ok)).collect();
        s.elapsed = Duration::from_millis(2400);
        s.markers = vec![Duration::from_millis(1000), Duration::from_millis(2000)];
        let own = s.dips(None).expect("markers");
        assert_eq!(own.level_rps, 1000.0);
        assert_eq!(own.per_restart_ms, [300, 100]);
        assert_eq!((own.mean_ms, own.max_ms), (200.0, 300));
        // Against a higher level, every bucket after a restart is below half
        // of it, until the next restart or the end of the run.
        let given = s.dips(Some(2200.0)).expect("markers");
        assert_eq!(given.per_restart_ms, [1000, 400]);
    }
}
