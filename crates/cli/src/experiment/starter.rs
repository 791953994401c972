//! Running the server side of the experiment: a superdaemon (our embedded
//! start_server, or Perl's for the Go peer) with its worker on a loopback
//! port, and the restarts at a fixed pace.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use gracedown_bench::Markers;

use super::process::{BoxError, TempDir, free_port, signal, stop_child};

/// How long start_server may take to start its first worker, or to stop.
const START_STOP_WAIT: Duration = Duration::from_secs(30);

/// start_server with the worker, on a loopback port, its output collected.
pub(super) struct Starter {
    child: Child,
    pub(super) port: u16,
    log: Arc<Mutex<Vec<String>>>,
    _status_dir: TempDir,
}

impl Starter {
    /// Runs `superdaemon... --port=127.0.0.1:PORT --status-file=F -- worker...`
    /// and waits until the first worker is trusted (the status file appears).
    pub(super) fn start(
        superdaemon: &[std::ffi::OsString],
        worker: &[std::ffi::OsString],
    ) -> Result<Self, BoxError> {
        let port = free_port()?;
        let status_dir = TempDir::new()?;
        let status = status_dir.0.join("status");
        let (program, pre) = superdaemon.split_first().ok_or("no superdaemon")?;
        let mut cmd = Command::new(program);
        cmd.args(pre)
            .arg(format!("--port=127.0.0.1:{port}"))
            .arg(format!("--status-file={}", status.display()))
            .arg("--")
            .args(worker);
        cmd.env_remove("SERVER_STARTER_PORT")
            .env_remove("LISTEN_FDS")
            .env_remove("NOTIFY_SOCKET");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start `{}`: {e}", Path::new(program).display()))?;
        let log = Arc::new(Mutex::new(Vec::new()));
        if let Some(stderr) = child.stderr.take() {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    log.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(line);
                }
            });
        }
        let starter = Self {
            child,
            port,
            log,
            _status_dir: status_dir,
        };
        let deadline = Instant::now() + START_STOP_WAIT;
        while !status.exists() {
            if Instant::now() > deadline || starter.exited() {
                return Err(format!("the worker did not start:\n{}", starter.log_text()).into());
            }
            // No event tells that a file appeared; poll it, bounded by the deadline.
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(starter)
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&self) -> bool {
        std::fs::metadata(format!("/proc/{}", self.child.id())).is_err()
    }

    fn log_text(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .join("\n")
    }

    pub(super) fn stop(mut self) -> Result<(), BoxError> {
        if !stop_child(
            &mut self.child,
            rustix::process::Signal::TERM,
            START_STOP_WAIT,
        )? {
            return Err(format!(
                "start_server did not stop within {}s:\n{}",
                START_STOP_WAIT.as_secs(),
                self.log_text()
            )
            .into());
        }
        Ok(())
    }
}

impl Drop for Starter {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            signal(self.pid(), rustix::process::Signal::TERM);
            let _ = self.child.wait();
        }
    }
}

/// Sends SIGHUP to start_server at a fixed pace and marks each on the timeline.
pub(super) struct Restarter {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU32>,
    thread: std::thread::JoinHandle<()>,
}

impl Restarter {
    pub(super) fn start(pid: u32, every: Duration, markers: Markers) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU32::new(0));
        let (stop2, sent2) = (Arc::clone(&stop), Arc::clone(&sent));
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut n = 1u32;
            while !stop2.load(Ordering::Acquire) {
                let next = start + every * n;
                let now = Instant::now();
                if next > now {
                    // The pace of restarts is the experiment's load shape.
                    std::thread::sleep((next - now).min(Duration::from_millis(50)));
                    continue;
                }
                signal(pid, rustix::process::Signal::HUP);
                markers.mark();
                sent2.fetch_add(1, Ordering::AcqRel);
                n += 1;
            }
        });
        Self { stop, sent, thread }
    }

    pub(super) fn finish(self) -> u32 {
        self.stop.store(true, Ordering::Release);
        let _ = self.thread.join();
        self.sent.load(Ordering::Acquire)
    }
}
