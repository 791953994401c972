//! Shared test machinery: spawning real processes in their own process group
//! (killed on drop), reading their output line by line with bounded waits,
//! passing descriptors to children, and small real HTTP clients.

#![allow(dead_code, unreachable_pub)] // Each test module uses a different part.

pub mod fds;
pub mod h2raw;
pub mod http;
pub mod process;
pub mod starter;
pub mod tls;
pub mod wrk;

use std::path::PathBuf;
use std::time::Duration;

/// The bound on every wait in these tests.
pub const TEST_WAIT: Duration = Duration::from_secs(20);

/// The `gracedown` binary under test.
pub fn gracedown() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gracedown-dup"))
}

/// The deliberately naive worker (negative control).
pub fn naive_worker() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_naive-worker"))
}

/// The fd-probe helper.
pub fn fd_probe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fd-probe"))
}

/// The path of an installed tool the tests need. The test command
/// (`scripts/test.sh`) installs every one of them, so a missing tool fails
/// the test instead of skipping it.
pub fn tool(name: &str, package: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin"] {
        let path = PathBuf::from(dir).join(name);
        if path.exists() {
            return path;
        }
    }
    panic!(
        "`{name}` is not installed: run `scripts/test.sh`, which installs it (Debian package `{package}`)"
    );
}

/// A free TCP port on 127.0.0.1, for programs that must be told a port number.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// A fresh temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("gd-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `gracedown serve` started by hand on an ephemeral loopback port.
pub struct Worker {
    pub proc: process::Proc,
    pub addr: std::net::SocketAddr,
}

/// Starts `gracedown serve --listen 127.0.0.1:0 ARGS...` and waits until it is ready.
pub fn spawn_worker(args: &[&str]) -> Worker {
    spawn_worker_with(args, &[])
}

/// As [`spawn_worker`], with extra environment (e.g. `RUST_LOG`).
pub fn spawn_worker_with(args: &[&str], env: &[(&str, &str)]) -> Worker {
    let mut cmd = std::process::Command::new(gracedown());
    cmd.args(["serve", "--listen", "127.0.0.1:0"]).args(args);
    // Nor a pod's defaults, should the suite run in one.
    cmd.env_remove("SERVER_STARTER_PORT")
        .env_remove("LISTEN_FDS")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("KUBERNETES_SERVICE_HOST");
    cmd.envs(env.iter().copied());
    let proc = process::Proc::spawn(cmd);
    let line = proc.wait_for_line("worker ready", |l| l.contains("worker ready"));
    let addr = ready_addr(&line).unwrap_or_else(|| panic!("no address in `{line}`"));
    Worker { proc, addr }
}

impl Worker {
    /// Starts a worker that logs each accepted connection (`RUST_LOG=gracedown=debug`).
    pub fn with_accept_log(args: &[&str]) -> Self {
        spawn_worker_with(args, &[("RUST_LOG", "gracedown=debug,gracedown_cli=info")])
    }

    /// Connects and waits (bounded) until the worker has accepted this very connection.
    pub fn connect_accepted(&self) -> std::net::TcpStream {
        let stream = std::net::TcpStream::connect(self.addr).expect("connect");
        stream
            .set_read_timeout(Some(TEST_WAIT))
            .expect("read timeout");
        let me = stream.local_addr().expect("local addr");
        self.proc.wait_for_line("connection accepted", |l| {
            l.contains("connection accepted") && l.contains(&format!("peer={me}"))
        });
        stream
    }

    /// Sends SIGTERM and waits for the `draining` line, which it returns.
    pub fn start_drain(&self) -> String {
        self.proc.signal(libc::SIGTERM);
        self.proc
            .wait_for_line("draining", |l| l.contains(" draining "))
    }

    /// Waits for the `drain complete` line.
    pub fn drain_complete(&self) -> String {
        self.proc
            .wait_for_line("drain complete", |l| l.contains("drain complete"))
    }
}

/// The first TCP address in a `worker ready ... listeners="A,B"` line.
pub fn ready_addr(line: &str) -> Option<std::net::SocketAddr> {
    let list = line.split("listeners=\"").nth(1)?.split('"').next()?;
    list.split(',').find_map(|a| a.parse().ok())
}

/// The `pid=N` field of a log line.
pub fn field(line: &str, name: &str) -> Option<String> {
    // A field stands alone (` idle=1`) or inside a grouped one (`states=idle=1`).
    let key = format!("{name}=");
    let start = line.match_indices(&key).find_map(|(i, _)| {
        let before = line[..i].chars().next_back();
        matches!(before, Some(' ' | '"' | '=')).then_some(i + key.len())
    })?;
    Some(
        line[start..]
            .split(' ')
            .next()?
            .trim_matches('"')
            .to_owned(),
    )
}

/// Whether process `pid` has ended (gone, or a zombie nobody reaped yet).
pub fn has_ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => true,
    }
}

/// Waits (bounded) until process `pid`, which is not our child, has ended:
/// polled, since no event announces another parent's child's exit.
pub fn wait_ended(pid: u32, what: &str) {
    let deadline = std::time::Instant::now() + TEST_WAIT;
    while !has_ended(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} (pid {pid}) still runs after {TEST_WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The children of process `pid` (every thread's).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// The binary of one of the `gracedown` crate's examples, built by the
/// workspace's test build (`target/<profile>/examples/NAME`), and built
/// again here with cargo (a no-op when it is up to date).
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/integration-HASH
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let path = profile.join("examples").join(name);
    // Built every time: a test run of this package alone (`cargo test -p
    // integration-tests`) builds no examples of `gracedown`, and one built
    // before a change to the library would test the library as it was.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = std::process::Command::new(cargo);
    build.args(["build", "-q", "-p", "gracedown", "--example", name]);
    if profile.ends_with("release") {
        build.arg("--release");
    }
    let status = build.status().expect("run cargo");
    assert!(status.success(), "cargo build --example {name}");
    assert!(path.exists(), "example {name} at {}", path.display());
    path
}

/// Waits (bounded) until the server side of the connection `local` ←
/// `remote` has read everything the client sent: its receive queue in
/// `/proc/net/tcp` is empty.
pub fn wait_received(local: std::net::SocketAddr, remote: std::net::SocketAddr) {
    let hex = |addr: std::net::SocketAddr| match addr {
        std::net::SocketAddr::V4(v4) => format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(v4.ip().octets()),
            v4.port()
        ),
        std::net::SocketAddr::V6(_) => unreachable!("IPv4 only here"),
    };
    let (local, remote) = (hex(local), hex(remote));
    let deadline = std::time::Instant::now() + TEST_WAIT;
    loop {
        let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
        let queue = table.lines().find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.get(1) == Some(&local.as_str()) && f.get(2) == Some(&remote.as_str()))
                .then(|| {
                    f.get(4)
                        .and_then(|q| q.split(':').nth(1))
                        .map(str::to_owned)
                })
                .flatten()
        });
        if queue.as_deref() == Some("00000000") {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server never read the bytes (receive queue {queue:?})"
        );
        // The kernel's table is the observation; it changes when the worker reads.
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// How many descriptors process `pid` has open.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(Iterator::count)
        .unwrap_or(0)
}

/// Process `pid`'s descriptors and what they are, sorted (for messages).
pub fn fd_list(pid: u32) -> Vec<String> {
    let mut list: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .map(|e| {
                    let target = std::fs::read_link(e.path()).unwrap_or_default();
                    format!("{}->{}", e.file_name().to_string_lossy(), target.display())
                })
                .collect()
        })
        .unwrap_or_default();
    list.sort();
    list
}

/// The pid of the one worker a status file names.
pub fn status_pid(status: &std::path::Path) -> u32 {
    let content = std::fs::read_to_string(status).expect("status file");
    content
        .trim()
        .split(':')
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("a pid in {content:?}"))
}

/// Process `pid`'s resident memory in KiB (`VmRSS`), 0 once it is gone.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix("VmRSS:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// Every `drain complete` line `proc` has printed so far.
pub fn drain_lines(proc: &process::Proc) -> Vec<String> {
    proc.output()
        .into_iter()
        .filter(|l| l.contains("drain complete"))
        .collect()
}

/// The `drain complete` line of the `nth` drain (1-based), once printed.
pub fn drain_line(proc: &process::Proc, nth: usize) -> String {
    proc.wait_for_count("drain complete", nth, |l| l.contains("drain complete"));
    drain_lines(proc)
        .into_iter()
        .nth(nth - 1)
        .expect("the nth drain line")
}

/// The number a log line gives as `name=N`.
pub fn count(line: &str, name: &str) -> u64 {
    field(line, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {line}"))
}

/// The descriptors of a superdaemon and of its one worker, which must stay
/// the same from one restart to the next.
pub struct SteadyDescriptors {
    superdaemon: u32,
    baseline: Option<(usize, usize)>,
}

impl SteadyDescriptors {
    /// Watches the superdaemon `superdaemon`.
    pub fn new(superdaemon: u32) -> Self {
        Self {
            superdaemon,
            baseline: None,
        }
    }

    /// After restart `generation`, with the worker the status file names:
    /// the first call sets the counts every later one must find.
    pub fn check(&mut self, status: &std::path::Path, generation: u32) {
        let counts = (open_fds(self.superdaemon), open_fds(status_pid(status)));
        match self.baseline {
            None => self.baseline = Some(counts),
            Some(base) => assert_eq!(
                counts,
                base,
                "descriptors of (start_server, worker) after restart {generation}: {:?}",
                fd_list(self.superdaemon)
            ),
        }
    }
}
