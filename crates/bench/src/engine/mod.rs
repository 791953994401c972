//! Running a [`Plan`]: one task per connection slot, each with one request
//! outstanding at a time, recording into its own [`Recorder`]; the recorders
//! are merged into [`Samples`] at the end, so nothing is shared while running.

mod conn;
mod h1;
mod h2;
mod sniff;
mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::error::BenchError;
use crate::plan::{Plan, Protocol};
use crate::record::{Recorder, Samples};

/// Live counts for a progress display, updated as requests end.
#[derive(Debug, Default)]
pub struct Progress {
    /// Requests that ended (any outcome).
    pub done: AtomicU64,
    /// Of those, client-visible errors.
    pub errors: AtomicU64,
}

/// What every slot shares (read-only).
pub(crate) struct Shared {
    pub(crate) plan: Plan,
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) request: bytes::Bytes,
    pub(crate) progress: Arc<Progress>,
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
    let mut plan = plan.clone();
    if plan.protocol == Protocol::Https {
        // Let ALPN decide once, then speak that on every connection.
        plan.protocol = match conn::connect(&plan, tls.as_ref()).await {
            Ok(io) if io.is_h2() => Protocol::HttpsHttp2,
            _ => Protocol::HttpsHttp1,
        };
    }
    let shared = Arc::new(Shared {
        request: h1::request_bytes(&plan),
        plan,
        tls,
        progress,
    });
    let start = Instant::now();
    let deadline = start + shared.plan.duration;
    let interval = shared.plan.interval;
    let mut slots = JoinSet::new();
    for _ in 0..shared.plan.connections {
        let shared = Arc::clone(&shared);
        slots.spawn(async move {
            let mut recorder = Recorder::new(start.into_std(), interval);
            match shared.plan.protocol {
                Protocol::Http1 | Protocol::HttpsHttp1 => {
                    h1::slot(&shared, deadline, &mut recorder).await
                }
                _ => h2::slot(&shared, deadline, &mut recorder).await,
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
    let elapsed = start.elapsed();
    let markers = shared.plan.markers.since(start.into_std());
    Ok(Samples::merge(
        recorders,
        interval,
        elapsed,
        markers,
        shared.plan.connections,
        shared.plan.protocol,
    ))
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
