//! Memory back to the operating system when connections go dormant.
//!
//! A dormant HTTP/1 connection drops hyper and its buffers (about 16 KiB),
//! but glibc's allocator keeps freed memory that lies between live
//! allocations resident: after a burst of connections that then go quiet,
//! the process would keep the burst's memory. `malloc_trim` hands whole free
//! pages back. It takes the allocator's locks while it walks the heap, so it
//! runs on a blocking thread, once a batch of connections went dormant, a
//! moment after the batch (a burst is trimmed once), and at most once per
//! [`GAP`]. Other allocators (musl, jemalloc as the global allocator) return
//! memory on their own; there this does nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// Dormant connections (each about 16 KiB of hyper buffers freed) before a trim.
const BATCH: usize = 64;
/// How long after a batch the trim runs: the rest of a burst goes first.
const SETTLE: Duration = Duration::from_millis(100);
/// The least time between two trims.
const GAP: Duration = Duration::from_secs(1);

/// Counts connections that went dormant and trims the heap after a batch.
#[derive(Debug, Default)]
pub(crate) struct Trim {
    pending: AtomicUsize,
    scheduled: AtomicBool,
}

impl Trim {
    /// A connection went dormant: its hyper buffers were freed. Called on
    /// the runtime.
    pub(crate) fn released(self: &Arc<Self>) {
        if !cfg!(all(target_os = "linux", target_env = "gnu")) {
            return;
        }
        if self.pending.fetch_add(1, Ordering::Relaxed) + 1 < BATCH
            || self.scheduled.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SETTLE).await;
                this.pending.store(0, Ordering::Relaxed);
                let _ = tokio::task::spawn_blocking(trim).await;
                tokio::time::sleep(GAP).await;
                this.scheduled.store(false, Ordering::Release);
                // A batch that filled during the gap found the trim scheduled
                // and left it to this task.
                if this.pending.load(Ordering::Relaxed) < BATCH
                    || this.scheduled.swap(true, Ordering::AcqRel)
                {
                    return;
                }
            }
        });
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
