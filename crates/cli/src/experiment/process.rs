//! The processes of an experiment, whatever they run: a signal by pid, a
//! port to wait for, a child stopped within a bound, a free port, a private
//! temporary directory.

use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// An experiment's errors, reported at its edge.
pub(super) type BoxError = Box<dyn std::error::Error>;

/// Sends `signal` to the process `pid` (one the experiment started).
pub(super) fn signal(pid: u32, signal: rustix::process::Signal) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// Polls until something accepts connections on 127.0.0.1:`port`: `true`,
/// or `false` once `child` has exited or `deadline` passed. No event tells
/// that a port started listening; the poll is bounded by the deadline.
pub(super) fn wait_listening(port: u16, child: &mut Child, deadline: Instant) -> bool {
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline || !matches!(child.try_wait(), Ok(None)) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Sends `signal` to `child` and waits for it to exit, at most `bound`;
/// past it, kills and reaps it and returns `false`.
pub(super) fn stop_child(
    child: &mut Child,
    signal_to_send: rustix::process::Signal,
    bound: Duration,
) -> std::io::Result<bool> {
    signal(child.id(), signal_to_send);
    let deadline = Instant::now() + bound;
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(false);
        }
        // Exits are not events a `Child` can wait on with a bound; poll.
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(true)
}

pub(super) fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A private temporary directory, removed on drop.
pub(super) struct TempDir(pub(super) PathBuf);

impl TempDir {
    pub(super) fn new() -> std::io::Result<Self> {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("gracedown-experiment-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path)?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
