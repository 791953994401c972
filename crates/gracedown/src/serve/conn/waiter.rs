//! What a connection's task waits on between two verdicts of the rules.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use tokio::time::Sleep;

use crate::drain::ConnCtl;

/// What a connection's task waits on between verdicts: a time, and its
/// tracker's pokes (the phase changed, a request ended in a drain, ...).
/// Polled on every wake-up of the connection, so it touches little: the
/// time, once set, pokes the tracker when it comes, so a wake-up reads the
/// tracker's flag, and registers the task's waker with the tracker (a lock)
/// only when it is not the one registered last (a poke leaves the waker in
/// place). Its own timer's waker (`ConnCtl::poker`) is never the one it
/// registers: `set` polls the timer alone with it.
pub(super) struct Waiter {
    sleep: Pin<Box<Sleep>>,
    ctl: Arc<ConnCtl>,
    /// The time set had come when it was set: the next wait ends at once.
    due: bool,
    /// The waker last registered with the tracker (a poke wakes it): a
    /// poll with the same one registers nothing.
    registered: Option<Waker>,
}

impl Waiter {
    pub(super) fn new(ctl: &Arc<ConnCtl>) -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep(std::time::Duration::ZERO)),
            ctl: Arc::clone(ctl),
            due: false,
            registered: None,
        }
    }

    /// Returns at engine time `at`, or when the connection is poked.
    pub(super) async fn until(&mut self, at: Option<u64>) {
        self.set(at);
        std::future::poll_fn(|cx| self.poll(cx)).await;
    }

    /// Sets the time [`Waiter::poll`] waits for, if any (a time set before
    /// and not come yet may still end a wait, as a poke does: early, never
    /// late).
    pub(super) fn set(&mut self, at: Option<u64>) {
        let Some(at) = at else {
            return;
        };
        let deadline = self.ctl.engine.instant(at);
        self.sleep.as_mut().reset(deadline.into());
        // Registered now, with a waker that pokes: a wait past its time ends.
        let poker = self.ctl.poker();
        self.due = self
            .sleep
            .as_mut()
            .poll(&mut Context::from_waker(&poker))
            .is_ready();
    }

    /// Ready once the time set has come, or the connection was poked.
    pub(super) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if std::mem::take(&mut self.due) {
            return Poll::Ready(());
        }
        // The task's waker does not change from poll to poll: registered
        // once, not on every poll (which cost two atomic exchanges per
        // request).
        if !self
            .registered
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()))
        {
            self.ctl.register_task(cx.waker());
            self.registered = Some(cx.waker().clone());
        }
        if self.ctl.take_poke() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.ctl.forget_task();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;
    use std::time::Duration;

    use super::*;
    use crate::drain::{Bounds, ConnState, Engine};

    /// A task's waker that counts its wakes.
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counted() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (Arc::clone(&count), Waker::from(count))
    }

    fn wakes(count: &Count) -> usize {
        count.0.load(Ordering::SeqCst)
    }

    /// A registered connection's tracker and the waiter of its task.
    fn waiting() -> (Arc<ConnCtl>, Waiter) {
        let engine = Engine::new(Bounds::DEFAULT);
        let ctl = Arc::clone(&engine.register(ConnState::NoRequest).ctl);
        let waiter = Waiter::new(&ctl);
        (ctl, waiter)
    }

    #[tokio::test]
    async fn every_poke_wakes_the_waiting_task() {
        let (ctl, mut waiter) = waiting();
        let (count, waker) = counted();
        let mut cx = Context::from_waker(&waker);
        for round in 1..=3 {
            assert!(waiter.poll(&mut cx).is_pending());
            assert!(waiter.poll(&mut cx).is_pending());
            ctl.poke();
            assert_eq!(wakes(&count), round, "poke {round} woke the task");
            assert!(waiter.poll(&mut cx).is_ready());
        }
        // A poke between two waits (it wakes the waker of the last) is kept
        // for the next wait.
        ctl.poke();
        assert!(waiter.poll(&mut cx).is_ready());
        // Another task's waker is registered in its place.
        let (other, other_waker) = counted();
        assert!(waiter.poll(&mut cx).is_pending());
        let mut other_cx = Context::from_waker(&other_waker);
        assert!(waiter.poll(&mut other_cx).is_pending());
        ctl.poke();
        assert_eq!((wakes(&count), wakes(&other)), (4, 1));
    }

    #[tokio::test]
    async fn a_poke_that_races_a_poll_leaves_the_task_wakeable() {
        let (ctl, mut waiter) = waiting();
        let (count, waker) = counted();
        let mut cx = Context::from_waker(&waker);
        assert!(waiter.poll(&mut cx).is_pending());
        // Another thread's poke has set its mark, not yet woken.
        let wake = ctl.poke_in_halves();
        assert!(waiter.poll(&mut cx).is_ready(), "the mark ends the wait");
        assert!(waiter.poll(&mut cx).is_pending(), "the next wait registers");
        // The poke's wake finds the waker registered (it stays in place).
        wake();
        assert_eq!(wakes(&count), 1);
        assert!(waiter.poll(&mut cx).is_pending());
        ctl.poke();
        assert_eq!(wakes(&count), 2, "a later poke still wakes the task");
    }

    #[tokio::test]
    async fn a_waiter_that_ends_leaves_no_waker_of_its_task_behind() {
        let (ctl, mut waiter) = waiting();
        let (count, waker) = counted();
        assert!(waiter.poll(&mut Context::from_waker(&waker)).is_pending());
        drop(waker);
        assert_eq!(
            Arc::strong_count(&count),
            3,
            "the waiter's and the tracker's"
        );
        drop(waiter);
        assert_eq!(Arc::strong_count(&count), 1, "the task's alone");
        ctl.poke();
        assert_eq!(wakes(&count), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn every_time_set_wakes_the_waiter_once_it_has_passed() {
        let (ctl, mut waiter) = waiting();
        let (count, waker) = counted();
        let mut cx = Context::from_waker(&waker);
        for round in 1..=3 {
            // The engine's time of a second from now on the runtime's
            // (paused) clock.
            let at = tokio::time::Instant::now() + Duration::from_secs(1);
            waiter.set(Some(ctl.engine.at(at.into_std())));
            assert!(waiter.poll(&mut cx).is_pending());
            assert!(waiter.poll(&mut cx).is_pending());
            tokio::time::advance(Duration::from_secs(2)).await;
            assert_eq!(wakes(&count), round, "time {round} woke the task");
            assert!(waiter.poll(&mut cx).is_ready());
        }
        // A time that has come when it is set ends the next wait at once.
        waiter.set(Some(0));
        assert!(waiter.poll(&mut cx).is_ready());
        assert!(waiter.poll(&mut cx).is_pending());
    }
}
