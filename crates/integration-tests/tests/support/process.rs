//! Child processes for tests: own process group, killed on drop, output
//! captured line by line for bounded waits and for failure messages.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::TEST_WAIT;

/// A running child whose stdout and stderr lines are collected.
#[derive(Debug)]
pub struct Proc {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    log: Arc<Mutex<Vec<String>>>,
    what: String,
}

impl Proc {
    /// Spawns `cmd` in a new process group with piped stdout and stderr.
    pub fn spawn(mut cmd: Command) -> Self {
        use std::os::unix::process::CommandExt;
        let what = format!("{cmd:?}");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let (tx, lines) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        pump(out, tx.clone(), Arc::clone(&log));
        pump(err, tx, Arc::clone(&log));
        Self {
            child,
            lines,
            log,
            what,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (bounded) until some line the child printed, since it started,
    /// matches `pred`, and returns the first such line.
    pub fn wait_for_line(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + TEST_WAIT;
        loop {
            if let Some(line) = self.log.lock().expect("log lock").iter().find(|l| pred(l)) {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            // Each new line wakes us; the log above is the truth.
            if self.lines.recv_timeout(left).is_err() && Instant::now() >= deadline {
                panic!("timed out waiting for {what}\n{}", self.describe());
            }
        }
    }

    /// Waits (bounded) until `n` lines the child printed match `pred`.
    pub fn wait_for_count(&self, what: &str, n: usize, pred: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + TEST_WAIT;
        loop {
            if self
                .log
                .lock()
                .expect("log lock")
                .iter()
                .filter(|l| pred(l))
                .count()
                >= n
            {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if self.lines.recv_timeout(left).is_err() && Instant::now() >= deadline {
                panic!("timed out waiting for {n} × {what}\n{}", self.describe());
            }
        }
    }

    /// Sends `signal` to the child process (not its group).
    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid fits i32");
        let pid = rustix::process::Pid::from_raw(pid).expect("non-zero pid");
        let signal = rustix::process::Signal::from_named_raw(signal).expect("known signal");
        rustix::process::kill_process(pid, signal).expect("deliver signal");
    }

    /// Waits (bounded) for the child to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        wait_bounded(&mut self.child)
            .unwrap_or_else(|| panic!("timed out waiting for exit\n{}", self.describe()))
    }

    /// Everything the child printed so far.
    pub fn output(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    /// The command and its output, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "command: {}\noutput:\n{}",
            self.what,
            self.log.lock().expect("log lock").join("\n")
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Kill the whole group: the child and anything it started.
        let pgid = i32::try_from(self.child.id()).expect("pid fits i32");
        if let Some(pid) = rustix::process::Pid::from_raw(pgid) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = self.child.wait();
    }
}

fn pump(
    stream: impl Read + Send + 'static,
    tx: mpsc::Sender<String>,
    log: Arc<Mutex<Vec<String>>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            log.lock().expect("log lock").push(line.clone());
            let _ = tx.send(line);
        }
    });
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to completion (bounded, killed past [`TEST_WAIT`]).
pub fn run(mut cmd: Command) -> Output {
    use std::os::unix::process::CommandExt;
    let what = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let read_all = |mut stream: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stream.read_to_string(&mut text);
            text
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = read_all(Box::new(child.stderr.take().expect("piped stderr")));
    let status = wait_bounded(&mut child).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("timed out waiting for {what} to exit")
    });
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// The child's exit status, or `None` if it is still running after [`TEST_WAIT`].
fn wait_bounded(child: &mut Child) -> Option<ExitStatus> {
    let deadline = Instant::now() + TEST_WAIT;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        // std offers no exit event to wait on; poll in 10 ms steps, bounded above.
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends `signal` to process `pid` (one this test started, or one of its
/// descendants); with `group`, to the process group `pid` leads.
pub fn send_signal(pid: u32, signal: i32, group: bool) {
    let pid = rustix::process::Pid::from_raw(i32::try_from(pid).expect("pid fits i32"))
        .expect("non-zero pid");
    let signal = rustix::process::Signal::from_named_raw(signal).expect("known signal");
    if group {
        rustix::process::kill_process_group(pid, signal).expect("deliver signal to the group");
    } else {
        rustix::process::kill_process(pid, signal).expect("deliver signal");
    }
}
