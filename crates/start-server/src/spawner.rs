//! Worker spawns off the event loop: `fork`/`exec` blocks until the child has
//! exec'd, and a child that stops (or is stopped) before it does would
//! otherwise freeze start_server's only event loop, deaf to signals and to
//! its workers' deaths. A dedicated thread spawns and reports back.
//!
//! The thread lives as long as start_server: the parent-death signal of a
//! worker fires when the *thread* that forked it exits.

use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc as std_mpsc;

use tokio::io::AsyncReadExt;
use tokio::process::Child;
use tokio::sync::mpsc;

use crate::spawn::{Plan, spawn};
use crate::supervisor::Event;

/// One spawn's result.
#[derive(Debug)]
pub(crate) struct Spawned {
    pub(crate) generation: u64,
    pub(crate) result: std::io::Result<Child>,
}

/// One spawn to make.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) generation: u64,
    pub(crate) env: Vec<(OsString, OsString)>,
    /// This generation's own descriptor and its number in the worker;
    /// closed here once the worker has its copy.
    pub(crate) extra: Option<(OwnedFd, i32)>,
}

/// The spawning thread's inbox.
#[derive(Debug)]
pub(crate) struct Spawner {
    requests: std_mpsc::Sender<Request>,
}

impl Spawner {
    /// Starts the thread; results arrive on `results`, and each child's
    /// pid as [`Event::Forked`] on `forks` as soon as it runs (before its
    /// spawn returns).
    ///
    /// # Errors
    ///
    /// When the thread cannot be started.
    pub(crate) fn start(
        plan: Plan,
        runtime: tokio::runtime::Handle,
        results: mpsc::UnboundedSender<Spawned>,
        forks: mpsc::UnboundedSender<Event>,
    ) -> std::io::Result<Self> {
        let (requests, inbox) = std_mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("spawner".into())
            .spawn(move || {
                // tokio's child handles need the runtime that reaps them.
                let _runtime = runtime.enter();
                for request in inbox {
                    let Request {
                        generation,
                        env,
                        extra,
                    } = request;
                    let placed = extra.as_ref().map(|(fd, target)| (fd.as_fd(), *target));
                    // Without the pipe a stuck child is only known once killed
                    // by other means; the spawn itself goes on.
                    let pipe = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).ok();
                    let writer = pipe.map(|(read, write)| {
                        tokio::spawn(report_fork(read, generation, forks.clone()));
                        write
                    });
                    let result = spawn(
                        &plan,
                        generation,
                        &env,
                        placed,
                        writer.as_ref().map(AsFd::as_fd),
                    );
                    // The reader sees the end of the pipe once the child has
                    // exec'd (close-on-exec) and this copy is gone.
                    drop(writer);
                    drop(extra);
                    if results.send(Spawned { generation, result }).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Self { requests })
    }

    /// Asks for a worker.
    pub(crate) fn spawn(&self, request: Request) {
        // The thread only ends when start_server does.
        let _ = self.requests.send(request);
    }
}

/// Reads the pid a child of `generation` writes as soon as it runs, and
/// reports it; nothing when the pipe ends first (the fork failed).
async fn report_fork(read: OwnedFd, generation: u64, forks: mpsc::UnboundedSender<Event>) {
    let Ok(mut read) = tokio::net::unix::pipe::Receiver::from_owned_fd(read) else {
        return;
    };
    let mut pid = [0u8; std::mem::size_of::<libc::pid_t>()];
    if read.read_exact(&mut pid).await.is_ok()
        && let Ok(pid) = u32::try_from(libc::pid_t::from_ne_bytes(pid))
    {
        let _ = forks.send(Event::Forked { generation, pid });
    }
}
