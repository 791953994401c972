//! Running a [`Plan`]: one task per connection slot, each with one request
//! outstanding at a time, counted into a per-slot [`Tally`] merged at the end.

mod h2;
mod sniff;

use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::outcome::Tally;
use crate::plan::{Plan, Protocol};

/// Runs the plan to its end and returns the counts.
///
/// Requests are started until `plan.duration` has passed; each one then ends
/// (bounded by the request timeout). Must run inside a tokio runtime.
pub async fn run(plan: &Plan) -> Tally {
    let deadline = Instant::now() + plan.duration;
    let mut slots = JoinSet::new();
    for _ in 0..plan.connections {
        let plan = plan.clone();
        slots.spawn(async move {
            match plan.protocol {
                Protocol::H2c => h2::slot(&plan, deadline).await,
            }
        });
    }
    let mut tally = Tally::default();
    while let Some(slot) = slots.join_next().await {
        if let Ok(slot) = slot {
            tally.merge(&slot);
        }
    }
    tally
}
