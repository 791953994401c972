//! Running a superdaemon, Perl's or ours, with the same arguments, and
//! reading what conformance compares: worker reports, the status file, logs.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::process::Proc;
use super::{TEST_WAIT, TempDir, free_port, gracedown, tool};

/// Which start_server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impl {
    /// Debian's Perl Server::Starter 0.35: the reference.
    Perl,
    /// gracedown's.
    Ours,
}

impl Impl {
    pub fn program(self) -> PathBuf {
        match self {
            Self::Perl => tool("start_server", "libserver-starter-perl"),
            Self::Ours => PathBuf::from(env!("CARGO_BIN_EXE_start-server-dup")),
        }
    }

    /// `start_server ARGS -- WORKER...` in its own process group.
    pub fn start(self, args: &[String], worker: &[OsString]) -> Proc {
        Proc::spawn(self.command(args, worker))
    }

    pub fn command(self, args: &[String], worker: &[OsString]) -> Command {
        let mut cmd = Command::new(self.program());
        cmd.args(args).arg("--").args(worker);
        for var in [
            "SERVER_STARTER_PORT",
            "SERVER_STARTER_GENERATION",
            "LISTEN_FDS",
            "NOTIFY_SOCKET",
            "ENVDIR",
            "KILL_OLD_DELAY",
            "ENABLE_AUTO_RESTART",
            "AUTO_RESTART_INTERVAL",
        ] {
            cmd.env_remove(var);
        }
        cmd
    }
}

/// `fd-probe --hold`: a worker that reports its environment and sockets as
/// JSON lines and stays alive until signalled.
pub fn probe_worker() -> Vec<OsString> {
    vec![super::fd_probe().into(), "--hold".into()]
}

/// A worker that runs `script` in sh, with `$PROBE` and `$GRACEDOWN` set.
pub fn sh_worker(script: &str) -> Vec<OsString> {
    let script = format!(
        "PROBE='{}'; GRACEDOWN='{}'; {script}",
        super::fd_probe().display(),
        super::gracedown().display()
    );
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

/// The JSON `env` report of the worker of `generation`.
pub fn wait_env(proc: &Proc, generation: u32) -> Value {
    let wanted = generation.to_string();
    let line = proc.wait_for_line(&format!("env report of generation {wanted}"), |l| {
        serde_json::from_str::<Value>(l)
            .is_ok_and(|v| v["env"]["SERVER_STARTER_GENERATION"] == wanted.as_str())
    });
    serde_json::from_str(&line).expect("json")
}

/// Waits (bounded) until the status file holds exactly `expected`.
pub fn wait_status(path: &Path, expected: &str, proc: &Proc) {
    wait_status_where(path, expected, |now| now == expected, proc);
}

/// Waits (bounded) until the status file's content satisfies `pred`.
pub fn wait_status_where(path: &Path, what: &str, pred: impl Fn(&str) -> bool, proc: &Proc) {
    let deadline = Instant::now() + TEST_WAIT;
    loop {
        let now = std::fs::read_to_string(path).unwrap_or_default();
        if pred(&now) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "status file is {now:?}, expected {what}\n{}",
            proc.describe()
        );
        // A status file is replaced by rename; polling it is the observation.
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// start_server's own log lines (not the JSON reports of workers), with
/// every pid replaced by `P1`, `P2`, ... in order of first appearance.
pub fn normalized_log(proc: &Proc) -> Vec<String> {
    let mut pids: Vec<String> = Vec::new();
    proc.output()
        .into_iter()
        .filter(|l| !l.starts_with('{') && !l.contains(" INFO ") && !l.contains(" DEBUG "))
        .map(|line| {
            let mut out = String::new();
            let mut rest = line.as_str();
            while let Some(i) = rest.find(|c: char| c.is_ascii_digit()) {
                let (before, digits_on) = rest.split_at(i);
                let end = digits_on
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(digits_on.len());
                let (digits, after) = digits_on.split_at(end);
                out.push_str(before);
                let is_pid = before.ends_with("pid:")
                    || before.ends_with("worker ")
                    || before.ends_with("workers:")
                    || before.ends_with(',');
                if is_pid && digits.len() > 2 {
                    let n = pids.iter().position(|p| p == digits).unwrap_or_else(|| {
                        pids.push(digits.to_owned());
                        pids.len() - 1
                    });
                    out.push_str(&format!("P{}", n + 1));
                } else {
                    out.push_str(digits);
                }
                rest = after;
            }
            out.push_str(rest);
            out
        })
        .collect()
}

/// Replaces the descriptor numbers of a `SERVER_STARTER_PORT` value with `FD`.
pub fn without_fds(port_env: &str) -> String {
    port_env
        .split(';')
        .map(|e| match e.rsplit_once('=') {
            Some((key, _)) => format!("{key}=FD"),
            None => e.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// Waits until the status file at `path` names generation `generation`
/// alone (the older ones have drained and exited).
pub fn wait_alone(path: &Path, generation: u32, proc: &Proc) {
    let wanted = format!("{generation}:");
    wait_status_where(
        path,
        &format!("generation {generation} alone"),
        |s| s.starts_with(&wanted) && s.lines().count() == 1,
        proc,
    );
}

/// A superdaemon with `gracedown serve` workers on a fresh loopback port,
/// and its status file.
pub struct Served {
    pub proc: Proc,
    pub addr: std::net::SocketAddr,
    pub status: PathBuf,
    _dir: TempDir,
}

impl Served {
    /// `which` start_server with `gracedown serve WORKER_ARGS` workers
    /// logging at `log` (`RUST_LOG`); returns once generation 1 serves.
    pub fn start(which: Impl, worker_args: &[&str], log: &str) -> Self {
        let dir = TempDir::new("served");
        let status = dir.join("status");
        let port = free_port();
        let mut worker: Vec<OsString> = vec![gracedown().into(), "serve".into()];
        worker.extend(worker_args.iter().map(OsString::from));
        worker.push(format!("--listen=127.0.0.1:{port}").into());
        let mut cmd = which.command(
            &[
                format!("--port=127.0.0.1:{port}"),
                format!("--status-file={}", status.display()),
                "--interval=1".into(),
            ],
            &worker,
        );
        cmd.env("RUST_LOG", log);
        let proc = Proc::spawn(cmd);
        wait_status_where(&status, "generation 1", |s| s.starts_with("1:"), &proc);
        Self {
            proc,
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            status,
            _dir: dir,
        }
    }

    /// Restarts and waits until generation `generation` alone is left.
    pub fn restart_to(&self, generation: u32) {
        self.proc.signal(libc::SIGHUP);
        self.wait_alone(generation);
    }

    /// Waits until generation `generation` is in the status file (ready:
    /// the older ones are told to drain then).
    pub fn wait_ready(&self, generation: u32) {
        let wanted = format!("{generation}:");
        wait_status_where(
            &self.status,
            &format!("generation {generation} ready"),
            |s| s.lines().any(|l| l.starts_with(&wanted)),
            &self.proc,
        );
    }

    /// Waits until generation `generation` alone is left (the older ones
    /// have drained and exited).
    pub fn wait_alone(&self, generation: u32) {
        wait_alone(&self.status, generation, &self.proc);
    }

    /// A connection to it, reads bounded by [`TEST_WAIT`].
    pub fn connect(&self) -> std::net::TcpStream {
        let stream = std::net::TcpStream::connect(self.addr).expect("connect");
        stream
            .set_read_timeout(Some(TEST_WAIT))
            .expect("read timeout");
        stream
    }

    /// The `drain complete` lines so far.
    pub fn drains(&self) -> Vec<String> {
        super::drain_lines(&self.proc)
    }
}
