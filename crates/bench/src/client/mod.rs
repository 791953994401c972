//! Running a [`Plan`]: one task per connection slot, each with one request
//! outstanding at a time, recording into its own [`Recorder`]; the recorders
//! are merged into [`Samples`] at the end, so nothing is shared while running.

mod conn;
mod h1;
mod h2;
mod sniff;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::error::BenchError;
use crate::plan::{Load, Plan, Protocol};
use crate::record::{LATE, Recorder, Run, Samples};
use crate::relay::Relay;

/// Live counts for a progress display, updated as requests end.
#[derive(Debug, Default)]
pub struct Progress {
    /// Requests that ended (any outcome).
    pub done: AtomicU64,
    /// Of those, client-visible errors.
    pub errors: AtomicU64,
}

/// What every slot shares.
pub(crate) struct Shared {
    pub(crate) plan: Plan,
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) request: bytes::Bytes,
    pub(crate) progress: Arc<Progress>,
    /// Where connections go: the target, or the relay in front of it.
    pub(crate) connect_to: SocketAddr,
    /// When the run started.
    pub(crate) start: Instant,
    /// Open loop: the next request to claim, and how many were sent.
    tickets: AtomicU64,
    sent: AtomicU64,
}

/// Runs the plan to its end and returns what it measured.
///
/// Requests are started until the plan's duration has passed; each one then
/// ends (bounded by the request timeout). Runs on the caller's tokio runtime;
/// a multi-thread runtime spreads the slots over its workers.
///
/// # Errors
///
/// [`BenchError`] when TLS cannot be configured.
pub async fn run(plan: &Plan, progress: Arc<Progress>) -> Result<Samples, BenchError> {
    let tls = if plan.protocol.is_tls() {
        Some(tls::config(plan)?)
    } else {
        None
    };
    // The relay lives as long as the run.
    let relay = match plan.rtt {
        Some(rtt) => Some(
            Relay::start(plan.addr, rtt)
                .await
                .map_err(|e| BenchError::Relay(e.to_string()))?,
        ),
        None => None,
    };
    let connect_to = relay.as_ref().map_or(plan.addr, Relay::addr);
    let mut plan = plan.clone();
    if plan.protocol == Protocol::Https {
        // Let ALPN decide once, then speak that on every connection.
        plan.protocol = match conn::connect(&plan, connect_to, tls.as_ref()).await {
            Ok(io) if io.is_h2() => Protocol::HttpsHttp2,
            _ => Protocol::HttpsHttp1,
        };
    }
    let start = Instant::now();
    let shared = Arc::new(Shared {
        request: h1::request_bytes(&plan),
        plan,
        tls,
        progress,
        connect_to,
        start,
        tickets: AtomicU64::new(0),
        sent: AtomicU64::new(0),
    });
    let deadline = start + shared.plan.duration;
    let interval = shared.plan.interval;
    let mut slots = JoinSet::new();
    for slot in 0..shared.plan.connections {
        let shared = Arc::clone(&shared);
        slots.spawn(async move {
            let mut recorder = Recorder::new(start.into_std(), interval);
            let mut pacer = Pacer::new(slot as u64);
            let tls = shared.tls.as_ref().map(tls::for_client);
            let tls = tls.as_ref();
            match shared.plan.protocol {
                Protocol::Http1 | Protocol::HttpsHttp1 => {
                    h1::slot(&shared, tls, deadline, &mut recorder, &mut pacer).await
                }
                _ => h2::slot(&shared, tls, deadline, &mut recorder, &mut pacer).await,
            }
            recorder
        });
    }
    let mut recorders = Vec::new();
    while let Some(slot) = slots.join_next().await {
        if let Ok(recorder) = slot {
            recorders.push(recorder);
        }
    }
    drop(relay);
    let plan = &shared.plan;
    let unsent = match plan.load {
        Load::Rate { per_second } => {
            let due = (per_second * plan.duration.as_secs_f64()).ceil() as u64;
            due.saturating_sub(shared.sent.load(Ordering::Acquire))
        }
        _ => 0,
    };
    Ok(Samples::merge(
        recorders,
        Run {
            interval,
            elapsed: start.elapsed(),
            markers: plan.markers.since(start.into_std()),
            connections: plan.connections,
            protocol: plan.protocol,
            load: plan.load,
            rtt: plan.rtt,
            unsent,
        },
    ))
}

/// When each request of a slot starts, by the plan's [`Load`].
#[derive(Debug)]
pub(crate) struct Pacer {
    rng: fastrand::Rng,
    first: bool,
}

impl Pacer {
    fn new(slot: u64) -> Self {
        Self {
            rng: fastrand::Rng::with_seed(0x9e37_79b9_7f4a_7c15 ^ slot),
            first: true,
        }
    }

    /// Waits until the slot's next request is due; returns when it counts as
    /// started (for its latency), or `None` once the run is over.
    pub(crate) async fn next(
        &mut self,
        shared: &Shared,
        deadline: Instant,
        recorder: &mut Recorder,
    ) -> Option<std::time::Instant> {
        let first = std::mem::replace(&mut self.first, false);
        match shared.plan.load {
            Load::BackToBack => {}
            Load::ThinkTime { min, max } => {
                // The first request comes anywhere in the first pause, so
                // that the connections do not all start together.
                let low = if first { Duration::ZERO } else { min };
                let span = max.saturating_sub(low).as_nanos() as u64;
                let pause = low + Duration::from_nanos(self.rng.u64(0..=span));
                let at = (Instant::now() + pause).min(deadline);
                tokio::time::sleep_until(at).await;
            }
            Load::Rate { per_second } => {
                let ticket = shared.tickets.fetch_add(1, Ordering::AcqRel);
                let due = shared.start + Duration::from_secs_f64(ticket as f64 / per_second);
                if due >= deadline {
                    return None;
                }
                tokio::time::sleep_until(due).await;
                shared.sent.fetch_add(1, Ordering::AcqRel);
                if Instant::now().saturating_duration_since(due) > LATE {
                    recorder.late += 1;
                }
                // Latency counts from when the request was due.
                return Some(due.into_std());
            }
        }
        (Instant::now() < deadline).then(std::time::Instant::now)
    }
}

/// Bounded reconnect back-off after a failed connect: 5 ms doubling to 500 ms.
#[derive(Debug)]
pub(crate) struct Backoff(Duration);

impl Backoff {
    pub(crate) fn new() -> Self {
        Self(Duration::from_millis(5))
    }

    pub(crate) fn reset(&mut self) {
        self.0 = Duration::from_millis(5);
    }

    pub(crate) async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_millis(500));
    }
}

impl Shared {
    pub(crate) fn ended(&self, error: bool) {
        self.progress.done.fetch_add(1, Ordering::Relaxed);
        if error {
            self.progress.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}
