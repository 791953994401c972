//! The system's monotonic clocks, in nanoseconds.
//!
//! Read through libc rather than rustix: rustix finds the vDSO by parsing its
//! ELF image itself, which faults under valgrind (rustix issue 1559), and a
//! server must run under the tools its users debug and profile with.

/// Which monotonic clock to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// `CLOCK_MONOTONIC`, what `std::time::Instant` reads on Linux (and
    /// systemd's `MONOTONIC_USEC`).
    Monotonic,
    /// `CLOCK_MONOTONIC_COARSE`: the same clock as of the last tick (1 to
    /// 10 ms behind), read from memory without the time stamp counter.
    MonotonicCoarse,
}

/// The clock's reading in nanoseconds; `None` if the kernel does not have
/// it (a coarse clock in some sandboxes).
///
/// # Examples
///
/// ```
/// use gracedown_sockets::clock::{now_ns, Clock};
///
/// let a = now_ns(Clock::Monotonic).expect("Linux has a monotonic clock");
/// let b = now_ns(Clock::Monotonic).expect("Linux has a monotonic clock");
/// assert!(b >= a);
/// ```
pub fn now_ns(clock: Clock) -> Option<u64> {
    let id = match clock {
        Clock::Monotonic => libc::CLOCK_MONOTONIC,
        Clock::MonotonicCoarse => libc::CLOCK_MONOTONIC_COARSE,
    };
    let mut t = std::mem::MaybeUninit::<libc::timespec>::uninit();
    #[allow(unsafe_code)]
    // SAFETY: `t` is valid for a write of a `timespec`, which `clock_gettime`
    // makes in full when it returns 0, and only then is it read.
    let t = unsafe {
        if libc::clock_gettime(id, t.as_mut_ptr()) != 0 {
            return None;
        }
        t.assume_init()
    };
    let secs = u64::try_from(t.tv_sec).ok()?;
    let nanos = u64::try_from(t.tv_nsec).ok()?;
    Some(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coarse_clock_trails_the_fine_one_by_less_than_a_tick() {
        let fine = now_ns(Clock::Monotonic).expect("CLOCK_MONOTONIC");
        let coarse = now_ns(Clock::MonotonicCoarse).expect("CLOCK_MONOTONIC_COARSE");
        let after = now_ns(Clock::Monotonic).expect("CLOCK_MONOTONIC");
        assert!(coarse <= after, "coarse {coarse} is ahead of {after}");
        // A tick is at most 10 ms (HZ=100); a second of slack for a busy machine.
        assert!(
            fine - coarse.min(fine) < 1_000_000_000,
            "coarse {coarse} trails {fine} by more than a second"
        );
    }
}
