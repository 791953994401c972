//! Per-connection recording (no sharing while running) and the merged samples.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::outcome::{Outcome, Tally};

/// One timeline bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Bucket {
    /// Complete responses.
    pub ok: u64,
    /// Client-visible errors (connect_failed, closed_before_response, truncated, timeout).
    pub errors: u64,
    /// Requests proven unprocessed and re-sent.
    pub unprocessed: u64,
    /// Connections opened.
    pub connects: u64,
    /// GOAWAY frames received.
    pub goaways: u64,
    /// Sum of latencies of the complete responses, in microseconds.
    pub latency_sum_us: u64,
    /// Highest latency of a complete response, in microseconds.
    pub latency_max_us: u64,
}

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
        match outcome {
            Outcome::Ok(_) => {
                bucket.ok += 1;
                bucket.latency_sum_us += latency;
                bucket.latency_max_us = bucket.latency_max_us.max(latency);
                let _ = self.latency.record(latency.max(1));
            }
            Outcome::Unprocessed => bucket.unprocessed += 1,
            _ => bucket.errors += 1,
        }
    }

    /// A re-sent request (already counted in the tally), on the timeline.
    pub(crate) fn outcome_unprocessed(&mut self) {
        self.bucket(Instant::now()).unprocessed += 1;
    }

    /// The slot's connection closed (or was dropped).
    pub(crate) fn disconnect(&mut self) {
        if let Some(since) = self.connected_since.take() {
            self.connected += since.elapsed();
        }
    }

    pub(crate) fn connect(&mut self) {
        self.disconnect();
        self.connected_since = Some(Instant::now());
        self.tally.connects += 1;
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
}

impl Samples {
    pub(crate) fn merge(
        recorders: Vec<Recorder>,
        interval: Duration,
        elapsed: Duration,
        markers: Vec<Duration>,
        connections: usize,
        protocol: crate::plan::Protocol,
    ) -> Self {
        let mut tally = Tally::default();
        let mut latency = histogram();
        let mut timeline: Vec<Bucket> = Vec::new();
        let mut connected = Duration::ZERO;
        for mut r in recorders {
            r.disconnect();
            connected += r.connected;
            tally.merge(&r.tally);
            let _ = latency.add(&r.latency);
            if timeline.len() < r.buckets.len() {
                timeline.resize(r.buckets.len(), Bucket::default());
            }
            for (into, from) in timeline.iter_mut().zip(&r.buckets) {
                into.ok += from.ok;
                into.errors += from.errors;
                into.unprocessed += from.unprocessed;
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
        }
    }

    /// The longest run of timeline buckets with no complete response,
    /// inside the run (bucket resolution).
    pub fn longest_gap(&self) -> Duration {
        let mut longest = 0u32;
        let mut run = 0u32;
        for bucket in &self.timeline {
            if bucket.ok == 0 {
                run += 1;
                longest = longest.max(run);
            } else {
                run = 0;
            }
        }
        self.interval * longest
    }
}
