//! Per-connection recording (no sharing while running) and the merged samples.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::outcome::{Class, Counts, Outcome, Tally};
use crate::plan::Load;

/// One timeline bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Bucket {
    /// Outcomes that ended in this bucket, per class.
    pub counts: Counts,
    /// Connections opened.
    pub connects: u64,
    /// GOAWAY frames received.
    pub goaways: u64,
    /// Sum of latencies of the complete responses, in microseconds.
    pub latency_sum_us: u64,
    /// Highest latency of a complete response, in microseconds.
    pub latency_max_us: u64,
}

impl Bucket {
    /// Complete responses.
    pub fn ok(&self) -> u64 {
        self.counts.get(Class::Ok)
    }

    /// Client-visible errors.
    pub fn errors(&self) -> u64 {
        self.counts.errors()
    }
}

/// How late an open-loop request may start before it counts as late: the
/// timer's resolution with room to spare.
pub(crate) const LATE: Duration = Duration::from_millis(10);

/// What one connection slot saw.
#[derive(Debug)]
pub(crate) struct Recorder {
    start: Instant,
    interval: Duration,
    pub(crate) tally: Tally,
    latency: Histogram<u64>,
    buckets: Vec<Bucket>,
    connected_since: Option<Instant>,
    connected: Duration,
    /// Open loop: requests that started later than due (by more than [`LATE`]).
    pub(crate) late: u64,
}

/// Latencies are kept in microseconds, auto-resizing, with 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant digits is within hdrhistogram's 0..=5")
}

impl Recorder {
    pub(crate) fn new(start: Instant, interval: Duration) -> Self {
        Self {
            start,
            interval,
            tally: Tally::default(),
            latency: histogram(),
            buckets: Vec::new(),
            connected_since: None,
            connected: Duration::ZERO,
            late: 0,
        }
    }

    fn bucket(&mut self, at: Instant) -> &mut Bucket {
        let index = (at.saturating_duration_since(self.start).as_nanos()
            / self.interval.as_nanos().max(1)) as usize;
        if self.buckets.len() <= index {
            self.buckets.resize(index + 1, Bucket::default());
        }
        &mut self.buckets[index]
    }

    /// Counts the final outcome of a request started at `started`.
    pub(crate) fn outcome(&mut self, outcome: Outcome, started: Instant, pid: Option<String>) {
        let now = Instant::now();
        self.tally.record(outcome);
        self.tally.pids.extend(pid);
        let latency = now.saturating_duration_since(started).as_micros() as u64;
        let bucket = self.bucket(now);
        bucket.counts.add(outcome.class(), 1);
        if let Outcome::Ok(_) = outcome {
            bucket.latency_sum_us += latency;
            bucket.latency_max_us = bucket.latency_max_us.max(latency);
            let _ = self.latency.record(latency.max(1));
        }
    }

    /// The slot's connection closed (or was dropped).
    pub(crate) fn disconnect(&mut self) {
        if let Some(since) = self.connected_since.take() {
            self.connected += since.elapsed();
        }
    }

    /// A connection opened; `resumed`: for TLS, whether its handshake
    /// resumed a session.
    pub(crate) fn connect(&mut self, resumed: Option<bool>) {
        self.disconnect();
        self.connected_since = Some(Instant::now());
        self.tally.connects += 1;
        match resumed {
            Some(true) => self.tally.tls_resumed += 1,
            Some(false) => self.tally.tls_full += 1,
            None => {}
        }
        self.bucket(Instant::now()).connects += 1;
    }

    pub(crate) fn goaways(&mut self, n: u64) {
        if n > 0 {
            self.tally.goaways += n;
            self.bucket(Instant::now()).goaways += n;
        }
    }
}

/// Everything a run measured.
#[derive(Debug, Clone)]
pub struct Samples {
    /// Outcome counts.
    pub tally: Tally,
    /// Latency of complete responses, in microseconds.
    pub latency: Histogram<u64>,
    /// Per-interval counts, from the start of the run.
    pub timeline: Vec<Bucket>,
    /// Width of a timeline bucket.
    pub interval: Duration,
    /// From the first request to the last outcome.
    pub elapsed: Duration,
    /// Restart markers, as offsets from the start.
    pub markers: Vec<Duration>,
    /// Connection slots.
    pub connections: usize,
    /// The protocol spoken (for `https://`, what ALPN chose).
    pub protocol: crate::plan::Protocol,
    /// Mean number of connected slots over the run: below the slot count
    /// when connections were being re-established.
    pub effective_connections: f64,
    /// How requests were paced.
    pub load: Load,
    /// The emulated round trip, if any.
    pub rtt: Option<Duration>,
    /// Open loop: requests that started later than due (all connections busy).
    pub late: u64,
    /// Open loop: requests due before the end that never started.
    pub unsent: u64,
}

/// How long throughput stayed low after each restart.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Dips {
    /// The no-restart level, in complete responses per second.
    pub level_rps: f64,
    /// Per restart: how long (bucket resolution) throughput stayed below
    /// half the level, until the next restart or 5 s.
    pub per_restart_ms: Vec<u64>,
    /// Their mean.
    pub mean_ms: f64,
    /// Their maximum.
    pub max_ms: u64,
}

impl Samples {
    pub(crate) fn merge(recorders: Vec<Recorder>, run: Run) -> Self {
        let Run {
            interval,
            elapsed,
            markers,
            connections,
            protocol,
            load,
            rtt,
            unsent,
        } = run;
        let mut tally = Tally::default();
        let mut latency = histogram();
        let mut timeline: Vec<Bucket> = Vec::new();
        let mut connected = Duration::ZERO;
        let mut late = 0;
        for mut r in recorders {
            late += r.late;
            r.disconnect();
            connected += r.connected;
            tally.merge(&r.tally);
            let _ = latency.add(&r.latency);
            if timeline.len() < r.buckets.len() {
                timeline.resize(r.buckets.len(), Bucket::default());
            }
            for (into, from) in timeline.iter_mut().zip(&r.buckets) {
                into.counts.merge(&from.counts);
                into.connects += from.connects;
                into.goaways += from.goaways;
                into.latency_sum_us += from.latency_sum_us;
                into.latency_max_us = into.latency_max_us.max(from.latency_max_us);
            }
        }
        let effective_connections = if elapsed.is_zero() {
            0.0
        } else {
            connected.as_secs_f64() / elapsed.as_secs_f64()
        };
        Self {
            tally,
            latency,
            timeline,
            interval,
            elapsed,
            markers,
            connections,
            protocol,
            effective_connections,
            load,
            rtt,
            late,
            unsent,
        }
    }

    /// The longest run of timeline buckets with no complete response,
    /// inside the run (bucket resolution).
    pub fn longest_gap(&self) -> Duration {
        let mut longest = 0u32;
        let mut run = 0u32;
        for bucket in &self.timeline {
            if bucket.ok() == 0 {
                run += 1;
                longest = longest.max(run);
            } else {
                run = 0;
            }
        }
        self.interval * longest
    }
}

/// What a run was, beside what its slots recorded.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    pub(crate) interval: Duration,
    pub(crate) elapsed: Duration,
    pub(crate) markers: Vec<Duration>,
    pub(crate) connections: usize,
    pub(crate) protocol: crate::plan::Protocol,
    pub(crate) load: Load,
    pub(crate) rtt: Option<Duration>,
    pub(crate) unsent: u64,
}

/// How far after a restart a dip is looked for, when no restart follows sooner.
const DIP_WINDOW: Duration = Duration::from_secs(5);

impl Samples {
    /// The whole buckets of the timeline (the last one is cut short by the end of the run).
    pub fn whole_buckets(&self) -> &[Bucket] {
        let whole = self.elapsed.as_nanos() / self.interval.as_nanos().max(1);
        let whole = usize::try_from(whole)
            .unwrap_or(usize::MAX)
            .min(self.timeline.len());
        &self.timeline[..whole]
    }

    /// The restart dips: per restart marker, the time throughput stays
    /// below half of `level_rps` (the caller's no-restart measurement), or,
    /// without one, of this run's own level: the 75th percentile of its
    /// buckets after the first second, which restarts pull down less than
    /// the median.
    pub fn dips(&self, level_rps: Option<f64>) -> Option<Dips> {
        if self.markers.is_empty() {
            return None;
        }
        let buckets = self.whole_buckets();
        let per_s = 1.0 / self.interval.as_secs_f64();
        let level_rps = level_rps.unwrap_or_else(|| {
            let skip = (per_s as usize).min(buckets.len().saturating_sub(1));
            let mut steady: Vec<u64> = buckets[skip..].iter().map(Bucket::ok).collect();
            steady.sort_unstable();
            steady
                .get(steady.len() * 3 / 4)
                .map_or(0.0, |ok| *ok as f64 * per_s)
        });
        let half = level_rps / per_s / 2.0;
        let width = self.interval.as_nanos().max(1);
        let index = |d: Duration| (d.as_nanos() / width) as usize;
        let per_restart_ms: Vec<u64> = self
            .markers
            .iter()
            .enumerate()
            .map(|(i, start)| {
                let end = self
                    .markers
                    .get(i + 1)
                    .copied()
                    .unwrap_or(Duration::MAX)
                    .min(*start + DIP_WINDOW);
                let (from, to) = (index(*start), index(end).min(buckets.len()));
                let low = buckets
                    .get(from..to)
                    .unwrap_or_default()
                    .iter()
                    .filter(|b| (b.ok() as f64) < half)
                    .count() as u32;
                (self.interval * low).as_millis() as u64
            })
            .collect();
        let max_ms = per_restart_ms.iter().copied().max().unwrap_or(0);
        let mean_ms = per_restart_ms.iter().sum::<u64>() as f64 / per_restart_ms.len() as f64;
        Some(Dips {
            level_rps,
            per_restart_ms,
            mean_ms,
            max_ms,
        })
    }
}
