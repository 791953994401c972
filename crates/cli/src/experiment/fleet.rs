//! The `fleet` scenario: instances with no superdaemon behind a real HAProxy
//! (Debian's), replaced one at a time as Kubernetes does a rolling update:
//! start the new instance, add it to the balancer once it listens and wait
//! until the balancer has it up, then send the old one `SIGTERM` and take it
//! out of the balancer only after a propagation lag (the endpoint
//! controller, kube-proxy and ingresses learn of a termination late).
//!
//! HAProxy runs in a private directory with two frontends over the same
//! instances, neither retrying: `mode tcp` (L4) and `mode http` (L7). Its
//! backends have a fixed pool of server slots, disabled until an instance
//! takes one; the runtime API socket (`set server ... addr`, `state
//! ready|maint`, `show servers state`) moves instances in and out.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gracedown_bench::Markers;
use gracedown_bench::experiment::Frontend;

use super::process::{BoxError, TempDir, free_port, signal, stop_child, wait_listening};

/// How long HAProxy or an instance may take to start listening.
const START_WAIT: Duration = Duration::from_secs(20);

/// Server slots per backend beyond the fleet's size: the surge instance and
/// the old ones still in the balancer during their lag.
const SPARE_SLOTS: usize = 16;

/// One instance's program.
#[derive(Debug, Clone)]
pub(super) enum Program {
    /// `gracedown serve` with this shutdown delay (none: it stops accepting
    /// at `SIGTERM`, as `axum::serve(..).with_graceful_shutdown(..)` does,
    /// though it still serves what is in its accept queue then, which axum
    /// resets).
    Gracedown {
        /// This program (`gracedown`).
        exe: PathBuf,
        /// `--shutdown-delay`.
        delay: Duration,
    },
    /// `peers/go-worker`: net/http with `Server.Shutdown`.
    Go(PathBuf),
}

impl Program {
    fn command(&self, port: u16) -> Command {
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = match self {
            Self::Gracedown { exe, delay } => {
                let mut cmd = Command::new(exe);
                cmd.args(["serve", "--listen", &listen, "--shutdown-delay"])
                    .arg(format!("{}ms", delay.as_millis()));
                cmd
            }
            Self::Go(binary) => {
                let mut cmd = Command::new(binary);
                cmd.args(["-listen", &listen]);
                cmd
            }
        };
        // Each instance binds its own socket: no superdaemon, no pod defaults.
        cmd.env_remove("SERVER_STARTER_PORT")
            .env_remove("LISTEN_FDS")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        cmd
    }
}

/// HAProxy, running, and its runtime API.
pub(super) struct Haproxy {
    child: Child,
    dir: TempDir,
    /// The `mode tcp` frontend's port.
    l4: u16,
    /// The `mode http` frontend's port.
    l7: u16,
}

/// Where Debian installs HAProxy.
fn haproxy_program() -> Result<PathBuf, BoxError> {
    ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| "the fleet scenario needs HAProxy (Debian package haproxy)".into())
}

impl Haproxy {
    /// Starts HAProxy with `slots` disabled servers per backend and waits
    /// until both frontends accept connections.
    fn start(slots: usize) -> Result<Self, BoxError> {
        let program = haproxy_program()?;
        let dir = TempDir::new()?;
        let (l4, l7) = (free_port()?, free_port()?);
        let conf = dir.0.join("haproxy.cfg");
        std::fs::write(&conf, config(&dir.0, l4, l7, slots))?;
        let log = std::fs::File::create(dir.0.join("haproxy.log"))?;
        let child = Command::new(&program)
            .arg("-db")
            .arg("-f")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start `{}`: {e}", program.display()))?;
        let mut haproxy = Self { child, dir, l4, l7 };
        let deadline = Instant::now() + START_WAIT;
        for port in [l4, l7] {
            if !wait_listening(port, &mut haproxy.child, deadline) {
                return Err(format!("HAProxy did not start listening:\n{}", haproxy.log()).into());
            }
        }
        for slot in 0..slots {
            haproxy.remove(slot)?;
        }
        Ok(haproxy)
    }

    /// The frontend's port.
    pub(super) fn port(&self, frontend: Frontend) -> u16 {
        match frontend {
            Frontend::L4 => self.l4,
            Frontend::L7 => self.l7,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("haproxy.log")).unwrap_or_default()
    }

    /// One runtime API command (one connection each: HAProxy's
    /// non-interactive mode), and its answer.
    fn command(&self, command: &str) -> Result<String, BoxError> {
        let socket = self.dir.0.join("admin.sock");
        let mut stream = UnixStream::connect(&socket)
            .map_err(|e| format!("HAProxy's runtime API `{}`: {e}", socket.display()))?;
        stream.set_read_timeout(Some(START_WAIT))?;
        stream.write_all(format!("{command}\n").as_bytes())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    }

    /// Points slot `slot` of both backends at `port` and puts it in
    /// rotation, then waits until HAProxy reports it running.
    fn add(&self, slot: usize, port: u16) -> Result<(), BoxError> {
        for backend in BACKENDS {
            let answer = self.command(&format!(
                "set server {backend}/s{slot} addr 127.0.0.1 port {port}"
            ))?;
            if !answer.contains("changed") && !answer.contains("no need to change") {
                return Err(
                    format!("HAProxy refused the address of {backend}/s{slot}: {answer}").into(),
                );
            }
            self.command(&format!("set server {backend}/s{slot} state ready"))?;
        }
        let deadline = Instant::now() + START_WAIT;
        while !BACKENDS
            .iter()
            .all(|b| self.running(b, slot).unwrap_or(false))
        {
            if Instant::now() > deadline {
                return Err(
                    format!("HAProxy did not put s{slot} (port {port}) in rotation").into(),
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Takes slot `slot` of both backends out of rotation (maintenance: no
    /// new requests or connections; those open go on, as with kube-proxy's
    /// connection tracking).
    fn remove(&self, slot: usize) -> Result<(), BoxError> {
        for backend in BACKENDS {
            let answer = self.command(&format!("set server {backend}/s{slot} state maint"))?;
            if !answer.trim().is_empty() {
                return Err(
                    format!("HAProxy refused to take {backend}/s{slot} out: {answer}").into(),
                );
            }
        }
        Ok(())
    }

    /// Whether the slot's server is running in rotation (`show servers
    /// state`: operational state 2, administrative state 0).
    fn running(&self, backend: &str, slot: usize) -> Result<bool, BoxError> {
        let state = self.command(&format!("show servers state {backend}"))?;
        let name = format!("s{slot}");
        Ok(state.lines().any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(3) == Some(&name.as_str())
                && fields.get(5) == Some(&"2")
                && fields.get(6) == Some(&"0")
        }))
    }

    fn stop(&mut self) -> Result<(), BoxError> {
        // SIGUSR1: soft stop, existing sessions finish.
        if !stop_child(&mut self.child, rustix::process::Signal::USR1, START_WAIT)? {
            return Err("HAProxy did not stop".into());
        }
        Ok(())
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The backends, one per frontend.
const BACKENDS: [&str; 2] = ["l4", "l7"];

/// The configuration: two frontends, no retries, a pool of slots (put in
/// maintenance through the runtime API before any traffic: the `disabled`
/// keyword's configuration maintenance is not lifted by `state ready`).
fn config(dir: &Path, l4: u16, l7: u16, slots: usize) -> String {
    let servers = (0..slots)
        .map(|i| format!("    server s{i} 127.0.0.1:9\n"))
        .collect::<String>();
    let dir = dir.display();
    // Two descriptors per proxied connection, within the inherited limit.
    let files = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(65536);
    let maxconn = (files.saturating_sub(100) / 2).clamp(256, 20_000);
    format!(
        "global
    stats socket {dir}/admin.sock mode 600 level admin
    maxconn {maxconn}
defaults
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    # A failed request is the client's: no retry, no redispatch.
    retries 0
frontend l4
    mode tcp
    bind 127.0.0.1:{l4}
    default_backend l4
backend l4
    mode tcp
    balance roundrobin
{servers}frontend l7
    mode http
    bind 127.0.0.1:{l7}
    default_backend l7
backend l7
    mode http
    balance roundrobin
    retry-on none
{servers}"
    )
}

/// An instance in the fleet.
struct Instance {
    child: Child,
    slot: usize,
}

/// The fleet: HAProxy, the instances in rotation, and the old ones going away.
pub(super) struct Fleet {
    pub(super) haproxy: Haproxy,
    program: Program,
    logs: TempDir,
    live: Vec<Instance>,
    /// Stopped (`SIGTERM`) and still in the balancer until their time comes.
    leaving: Vec<(Instant, Instance)>,
    /// Stopped and out of the balancer: reaped when they exit.
    exiting: Vec<Child>,
    free: Vec<usize>,
    started: u32,
}

impl Fleet {
    /// Starts HAProxy and `size` instances, each in rotation.
    pub(super) fn start(program: Program, size: usize) -> Result<Self, BoxError> {
        let slots = size + SPARE_SLOTS;
        let mut fleet = Self {
            haproxy: Haproxy::start(slots)?,
            program,
            logs: TempDir::new()?,
            live: Vec::new(),
            leaving: Vec::new(),
            exiting: Vec::new(),
            free: (0..slots).rev().collect(),
            started: 0,
        };
        for _ in 0..size {
            let instance = fleet.launch()?;
            fleet.live.push(instance);
        }
        Ok(fleet)
    }

    /// Starts an instance, waits until it listens, and puts it in rotation.
    fn launch(&mut self) -> Result<Instance, BoxError> {
        let slot = self.free.pop().ok_or(
            "every HAProxy slot is taken: the replacements outpace the lag (raise the interval)",
        )?;
        let port = free_port()?;
        self.started += 1;
        let log_path = self.logs.0.join(format!("instance-{}.log", self.started));
        let log = std::fs::File::create(&log_path)?;
        let mut cmd = self.program.command(port);
        cmd.stderr(log);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start an instance: {e}"))?;
        if !wait_listening(port, &mut child, Instant::now() + START_WAIT) {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(format!("an instance did not start listening on {port}:\n{log}").into());
        }
        if let Err(e) = self.haproxy.add(slot, port) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        Ok(Instance { child, slot })
    }

    /// One replacement: a new instance in rotation, then `SIGTERM` to the
    /// oldest, which leaves the balancer after `lag`.
    fn replace(&mut self, lag: Duration, markers: &Markers) -> Result<(), BoxError> {
        let new = self.launch()?;
        self.live.push(new);
        let old = self.live.remove(0);
        signal(old.child.id(), rustix::process::Signal::TERM);
        markers.mark();
        self.leaving.push((Instant::now() + lag, old));
        Ok(())
    }

    /// Takes out of the balancer the instances whose lag is over, and reaps
    /// those that exited.
    fn tend(&mut self) -> Result<(), BoxError> {
        let now = Instant::now();
        let mut i = 0;
        while i < self.leaving.len() {
            if self.leaving[i].0 <= now {
                let (_, instance) = self.leaving.remove(i);
                // Tracked before anything can fail, so that it is ended on drop.
                self.exiting.push(instance.child);
                self.haproxy.remove(instance.slot)?;
                self.free.insert(0, instance.slot);
            } else {
                i += 1;
            }
        }
        self.exiting
            .retain_mut(|child| child.try_wait().ok().flatten().is_none());
        Ok(())
    }

    /// Waits for the leaving instances' lag and for every stopped instance
    /// to exit (their drain), bounded.
    fn settle(&mut self, bound: Duration) -> Result<(), BoxError> {
        let deadline = Instant::now() + bound;
        while !self.leaving.is_empty() || !self.exiting.is_empty() {
            self.tend()?;
            if Instant::now() > deadline {
                return Err(format!(
                    "{} stopped instance(s) did not exit within {}s",
                    self.leaving.len() + self.exiting.len(),
                    bound.as_secs()
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Stops every instance and HAProxy.
    pub(super) fn stop(mut self) -> Result<(), BoxError> {
        for instance in self.live.drain(..) {
            signal(instance.child.id(), rustix::process::Signal::TERM);
            self.leaving.push((Instant::now(), instance));
        }
        // A second SIGTERM ends a shutdown delay: nothing routes here any more.
        self.tend()?;
        for child in &self.exiting {
            signal(child.id(), rustix::process::Signal::TERM);
        }
        let settled = self.settle(Duration::from_secs(60));
        let stopped = self.haproxy.stop();
        settled.and(stopped)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let leaving = self.leaving.drain(..).map(|(_, i)| i.child);
        let live = self.live.drain(..).map(|i| i.child);
        for mut child in leaving.chain(live).chain(self.exiting.drain(..)) {
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Replaces instances at a fixed pace on a thread of its own, each old one
/// leaving the balancer after a lag drawn from `lag`, and marks each
/// `SIGTERM` on the timeline. Dropped without [`Rollout::finish`] (a
/// panic), it stops the thread and the fleet ends with it.
pub(super) struct Rollout {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(Fleet, Result<u32, String>)>>,
}

impl Drop for Rollout {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            // The fleet it gives back is dropped: every process ends.
            let _ = thread.join();
        }
    }
}

impl Rollout {
    pub(super) fn start(
        mut fleet: Fleet,
        every: Duration,
        lag: (Duration, Duration),
        markers: Markers,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let result = (|| -> Result<u32, BoxError> {
                let start = Instant::now();
                let mut done = 0u32;
                while !stopping.load(Ordering::Acquire) {
                    fleet.tend()?;
                    if start + every * (done + 1) <= Instant::now() {
                        let spread = lag.1.saturating_sub(lag.0);
                        let lag = lag.0 + spread.mul_f64(fastrand::f64());
                        fleet.replace(lag, &markers)?;
                        done += 1;
                    }
                    // The pace of replacements is the scenario's shape.
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(done)
            })();
            (fleet, result.map_err(|e| e.to_string()))
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops replacing, lets the stopped instances leave and drain, and
    /// gives the fleet back with the number of replacements.
    pub(super) fn finish(mut self) -> Result<(Fleet, u32), BoxError> {
        self.stop.store(true, Ordering::Release);
        let thread = self.thread.take().ok_or("the rollout was finished twice")?;
        let (mut fleet, result) = thread.join().map_err(|_| "the rollout thread panicked")?;
        let replaced = result?;
        fleet.settle(Duration::from_secs(60))?;
        Ok((fleet, replaced))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haproxy_gets_two_frontends_without_retries_and_a_slot_pool_per_backend() {
        let config = config(Path::new("/run/x"), 1001, 1002, 3);
        assert!(
            config.contains("stats socket /run/x/admin.sock mode 600 level admin"),
            "{config}"
        );
        assert!(config.contains("retries 0"), "{config}");
        assert!(config.contains("retry-on none"), "{config}");
        for (frontend, mode, port) in [("l4", "tcp", 1001), ("l7", "http", 1002)] {
            let section =
                format!("frontend {frontend}\n    mode {mode}\n    bind 127.0.0.1:{port}\n");
            assert!(config.contains(&section), "{config}");
        }
        // Each backend has the slots s0..s2, no other server.
        assert_eq!(config.matches("    server s").count(), 6, "{config}");
        assert!(config.contains("    server s2 127.0.0.1:9\n"), "{config}");
        assert!(!config.contains("disabled"), "{config}");
    }

    #[test]
    fn each_instance_binds_its_own_port_and_ignores_a_pods_defaults() {
        let gracedown = Program::Gracedown {
            exe: PathBuf::from("/opt/gracedown"),
            delay: Duration::from_millis(2500),
        };
        let cmd = gracedown.command(4242);
        let argv: Vec<_> = cmd.get_args().collect();
        assert_eq!(
            argv,
            [
                "serve",
                "--listen",
                "127.0.0.1:4242",
                "--shutdown-delay",
                "2500ms"
            ]
        );
        let removed: Vec<_> = cmd
            .get_envs()
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| name.to_owned())
            .collect();
        for name in [
            "SERVER_STARTER_PORT",
            "LISTEN_FDS",
            "KUBERNETES_SERVICE_HOST",
        ] {
            assert!(removed.iter().any(|n| n == name), "{name} in {removed:?}");
        }
        let go = Program::Go(PathBuf::from("/opt/go-worker")).command(4243);
        assert_eq!(
            go.get_args().collect::<Vec<_>>(),
            ["-listen", "127.0.0.1:4243"]
        );
    }
}
