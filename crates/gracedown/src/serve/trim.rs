//! Memory back to the operating system when connections go dormant.
//!
//! A dormant HTTP/1 connection drops hyper and its buffers (about 16 KiB),
//! but glibc's allocator keeps freed memory that lies between live
//! allocations resident: after a burst of connections that then go quiet,
//! the process would keep the burst's memory. `malloc_trim` hands whole free
//! pages back. It takes the allocator's locks while it walks the heap, so it
//! runs on a blocking thread, once the number of dormant connections grew by
//! a batch, when the burst that grew it is over (a burst is trimmed once),
//! and at most once per [`GAP`]. Where the global allocator is another one
//! (jemalloc in the `gracedown` binary), that allocator returns memory on its
//! own and the trim only walks glibc's small heap.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// More dormant connections than at the last trim (or the fewest since),
/// each having freed about 16 KiB of hyper buffers, before a trim: a server
/// whose connections only come and go (as many wake as fall dormant) reuses
/// what it freed and is not trimmed.
const BATCH: usize = 256;
/// How long no connection must fall dormant before the trim runs (the rest
/// of a burst goes first; at most [`GAP`] is waited for that).
const SETTLE: Duration = Duration::from_millis(100);
/// The least time between two trims.
const GAP: Duration = Duration::from_secs(1);

/// Counts dormant connections and trims the heap when their number grew by
/// a batch.
#[derive(Debug, Default)]
pub(crate) struct Trim {
    /// Connections dormant now.
    dormant: AtomicUsize,
    /// Dormant connections at the last trim, or the fewest since.
    floor: AtomicUsize,
    scheduled: AtomicBool,
}

impl Trim {
    /// A connection went dormant: its hyper buffers were freed. Called on
    /// the runtime.
    pub(crate) fn enter(self: &Arc<Self>) {
        let dormant = self.dormant.fetch_add(1, Ordering::Relaxed) + 1;
        if !cfg!(all(target_os = "linux", target_env = "gnu"))
            || dormant < self.floor.load(Ordering::Relaxed) + BATCH
            || self.scheduled.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                // A burst first: until none fell dormant for a while (bounded).
                let started = tokio::time::Instant::now();
                loop {
                    let seen = this.dormant.load(Ordering::Relaxed);
                    tokio::time::sleep(SETTLE).await;
                    if this.dormant.load(Ordering::Relaxed) <= seen || started.elapsed() >= GAP {
                        break;
                    }
                }
                this.floor
                    .store(this.dormant.load(Ordering::Relaxed), Ordering::Relaxed);
                let _ = tokio::task::spawn_blocking(trim).await;
                tokio::time::sleep(GAP).await;
                this.scheduled.store(false, Ordering::Release);
                // A batch that grew during the gap found the trim scheduled
                // and left it to this task.
                if this.dormant.load(Ordering::Relaxed) < this.floor.load(Ordering::Relaxed) + BATCH
                    || this.scheduled.swap(true, Ordering::AcqRel)
                {
                    return;
                }
            }
        });
    }

    /// A dormant connection woke up or ended.
    pub(crate) fn leave(&self) {
        let dormant = self
            .dormant
            .fetch_sub(1, Ordering::Relaxed)
            .saturating_sub(1);
        self.floor.fetch_min(dormant, Ordering::Relaxed);
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    #[allow(unsafe_code)]
    // SAFETY: `malloc_trim` has no preconditions: it takes glibc's own arena
    // locks and only releases pages no allocation uses.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_batch_of_new_dormant_connections_trims_once_and_churn_does_not() {
        let trim = Arc::new(Trim::default());
        for _ in 0..BATCH - 1 {
            trim.enter();
        }
        assert!(!trim.scheduled.load(Ordering::Acquire), "below a batch");
        trim.enter();
        assert!(
            trim.scheduled.load(Ordering::Acquire),
            "a batch schedules a trim"
        );
        // The trim runs, then the gap passes with nothing new.
        tokio::time::sleep(2 * SETTLE + GAP + Duration::from_millis(10)).await;
        assert_eq!(trim.floor.load(Ordering::Relaxed), BATCH);
        assert!(!trim.scheduled.load(Ordering::Acquire), "done");
        // Connections waking and falling dormant again: no growth, no trim.
        for _ in 0..3 * BATCH {
            trim.leave();
            trim.enter();
        }
        assert!(
            !trim.scheduled.load(Ordering::Acquire),
            "churn is not trimmed"
        );
        // Half of them wake, then a batch more than the fewest falls dormant.
        for _ in 0..BATCH / 2 {
            trim.leave();
        }
        assert_eq!(trim.floor.load(Ordering::Relaxed), BATCH / 2);
        for _ in 0..BATCH {
            trim.enter();
        }
        assert!(
            trim.scheduled.load(Ordering::Acquire),
            "growth from the fewest"
        );
    }
}
