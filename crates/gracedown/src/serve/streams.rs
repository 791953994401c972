//! HTTP/2 streams answered on their connection's task.
//!
//! hyper hands every request stream of an HTTP/2 connection to an executor.
//! Spawned as a task of its own, a stream that is answered at once costs a
//! task, a trip through the scheduler (which often wakes a parked worker
//! thread, a system call and a context switch) and a wake-up back to the
//! connection's task to write the answer: more than the request itself.
//!
//! Here the executor only queues a new stream, and the connection's task
//! polls it once, right after hyper accepted it. A stream that is done then
//! never becomes a task, and its answer leaves in the connection's next
//! write together with the others of the same read. A stream that waits (a
//! handler that awaits a database, a body still to be read or written) is
//! spawned as before and goes on in parallel with its connection. A handler
//! that panics in that first poll costs its own stream only, as it would on
//! a task of its own: the panic is caught and the stream dropped, which
//! resets it. `Tuning::http2_inline_streams: false` spawns every stream at
//! once instead.
//!
//! A stream that queues its answer wakes the connection (h2 does, so that
//! the connection writes it). On the connection's own task that wake would
//! only schedule the task again once its poll is over, and a task woken
//! while it runs is queued where the other worker thread may be unparked
//! for it: a system call and a context switch per request at one stream at
//! a time. So while the connection's task polls, wakes through the
//! connection are taken as "go round again" instead ([`ExecutorState`]'s waker).
//!
//! hyper also hands the executor work from inside a stream (the task that
//! carries an upgraded `CONNECT` stream's writes), from any thread: queuing
//! wakes the connection, and once the connection has ended, work is spawned
//! directly.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use atomic_waker::AtomicWaker;

type Stream = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How many times one poll of the connection goes round (the connection,
/// then its new streams) before it yields to other tasks.
const ROUNDS: usize = 4;

/// The connection's task is polling the connection or its streams.
const POLLING: u8 = 1;
/// Something woke the connection while [`POLLING`].
const WOKEN: u8 = 2;

/// What the executor and the connection share; also the waker the
/// connection and its inline streams are polled with.
#[derive(Default)]
struct ExecutorState {
    queue: Mutex<Queue>,
    /// [`POLLING`] and [`WOKEN`].
    state: AtomicU8,
    /// The connection's task.
    task: AtomicWaker,
}

#[derive(Default)]
struct Queue {
    streams: Vec<Stream>,
    /// The connection has ended (or was dropped): nothing polls the queue.
    closed: bool,
}

impl ExecutorState {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Spawns what is queued, and anything queued from now on.
    fn close(&self) {
        let streams = {
            let mut queue = self.queue();
            queue.closed = true;
            std::mem::take(&mut queue.streams)
        };
        streams.into_iter().for_each(spawn);
    }
}

impl Wake for ExecutorState {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.state.fetch_or(WOKEN, Ordering::AcqRel) & POLLING == 0 {
            self.task.wake();
        }
    }
}

/// On a task of its own (dropped when no runtime is left to run it).
fn spawn(stream: Stream) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        drop(runtime.spawn(stream));
    }
}

/// hyper's executor for one connection's streams: it queues each for
/// [`Inline`] (or spawns it, when the server gives every stream a task).
#[derive(Clone)]
pub(crate) struct Streams {
    shared: Arc<ExecutorState>,
}

impl Streams {
    /// `inline`: streams are first polled on the connection's task.
    pub(crate) fn new(inline: bool) -> Self {
        let shared = ExecutorState::default();
        // A closed queue spawns every stream at once.
        shared.queue().closed = !inline;
        Self {
            shared: Arc::new(shared),
        }
    }
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams").finish_non_exhaustive()
    }
}

impl<F> hyper::rt::Executor<F> for Streams
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, stream: F) {
        let stream: Stream = Box::pin(stream);
        {
            let mut queue = self.shared.queue();
            if !queue.closed {
                queue.streams.push(stream);
                drop(queue);
                // Called from the connection's poll this only marks a round
                // more; from a stream's task it wakes the connection.
                self.shared.wake_by_ref();
                return;
            }
        }
        spawn(stream);
    }
}

pin_project_lite::pin_project! {
    /// A hyper HTTP/2 connection that polls the streams its executor
    /// queued, once each, on its own task.
    pub(crate) struct Inline<C> {
        #[pin]
        conn: C,
        streams: Streams,
        // Swapped with the queue, so that taking new streams allocates
        // nothing once the connection has seen a batch.
        taken: Vec<Stream>,
        waker: Waker,
    }

    impl<C> PinnedDrop for Inline<C> {
        fn drop(this: Pin<&mut Self>) {
            this.streams.shared.close();
        }
    }
}

impl<C> Inline<C> {
    pub(crate) fn new(conn: C, streams: Streams) -> Self {
        Self {
            conn,
            waker: Waker::from(Arc::clone(&streams.shared)),
            streams,
            taken: Vec::new(),
        }
    }

    /// hyper's connection (for its graceful shutdown).
    pub(crate) fn conn(self: Pin<&mut Self>) -> Pin<&mut C> {
        self.project().conn
    }
}

impl<C: Future> Future for Inline<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let mut this = self.project();
        let shared = &*this.streams.shared;
        shared.task.register(cx.waker());
        shared.state.store(POLLING, Ordering::Release);
        let mut inner = Context::from_waker(this.waker);
        for _ in 0..ROUNDS {
            let polled = this.conn.as_mut().poll(&mut inner);
            if let Poll::Ready(output) = polled {
                shared.state.store(0, Ordering::Release);
                // Streams accepted as the connection ended run on their own.
                shared.close();
                return Poll::Ready(output);
            }
            std::mem::swap(&mut shared.queue().streams, this.taken);
            for stream in this.taken.drain(..) {
                // The stream is dropped inside too: a response body whose
                // drop panics costs its stream only.
                let waiting = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    let mut stream = stream;
                    match stream.as_mut().poll(&mut inner) {
                        Poll::Ready(()) => None,
                        Poll::Pending => Some(stream),
                    }
                }));
                if let Ok(Some(stream)) = waiting {
                    // It waits: on a task of its own from now on. Its first
                    // poll there registers that task's waker.
                    spawn(stream);
                }
                // Done, or panicked (the panic hook has reported it):
                // dropped, and with it the stream's reply (hyper resets it).
            }
            // Round again only when something woke the connection meanwhile
            // (an answer queued, more to read); a wake that comes as the
            // poll ends is seen by the swap.
            if shared.state.fetch_and(!WOKEN, Ordering::AcqRel) & WOKEN == 0 {
                if shared.state.swap(0, Ordering::AcqRel) & WOKEN == 0 {
                    return Poll::Pending;
                }
                shared.state.store(POLLING, Ordering::Release);
            }
        }
        shared.state.store(0, Ordering::Release);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
