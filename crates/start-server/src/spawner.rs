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

use tokio::process::Child;
use tokio::sync::mpsc;

use crate::spawn::{Plan, spawn};

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
    /// Starts the thread; results arrive on `results`.
    ///
    /// # Errors
    ///
    /// When the thread cannot be started.
    pub(crate) fn start(
        plan: Plan,
        runtime: tokio::runtime::Handle,
        results: mpsc::UnboundedSender<Spawned>,
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
                    let result = spawn(&plan, generation, &env, placed);
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
