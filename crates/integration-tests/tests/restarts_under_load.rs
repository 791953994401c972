//! End to end under the real Perl start_server: the worker is restarted with
//! `kill -HUP` every 1 s and every 0.2 s while clients that never retry run.
//! wrk (HTTP/1.1) must see no socket error and no non-2xx; an HTTP/2 client
//! that re-sends only what GOAWAY proves unprocessed must see no error. The
//! same harness against a naive drain must see errors, or it proves nothing.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use gracedown_bench::{Plan, Protocol};

use crate::support::process::Proc;
use crate::support::wrk::{WrkResult, wrk};
use crate::support::{free_port, gracedown, naive_worker, tool};

/// A running Perl start_server and its loopback address.
struct Starter {
    proc: Proc,
    port: u16,
}

fn start(worker: &Path, args: &[&str]) -> Starter {
    let port = free_port();
    let mut cmd = Command::new(tool("start_server", "libserver-starter-perl"));
    cmd.arg(format!("--port=127.0.0.1:{port}"))
        .arg("--")
        .arg(worker)
        .args(args);
    cmd.env_remove("SERVER_STARTER_PORT")
        .env_remove("LISTEN_FDS");
    let proc = Proc::spawn(cmd);
    proc.wait_for_line("first worker ready", |l| {
        l.contains("ready") && l.contains("pid=")
    });
    Starter { proc, port }
}

/// Sends SIGHUP to start_server every `every`, at most `count` times, until stopped.
struct Restarter {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU32>,
    thread: Option<JoinHandle<()>>,
}

impl Restarter {
    fn start(pid: u32, every: Duration, count: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU32::new(0));
        let (stop2, sent2) = (Arc::clone(&stop), Arc::clone(&sent));
        let pid = rustix::process::Pid::from_raw(i32::try_from(pid).expect("pid")).expect("pid");
        let thread = std::thread::spawn(move || {
            for _ in 0..count {
                // Pacing the restarts is the load shape under test, not a synchronisation.
                std::thread::sleep(every);
                if stop2.load(Ordering::Acquire) {
                    return;
                }
                rustix::process::kill_process(pid, rustix::process::Signal::HUP)
                    .expect("HUP start_server");
                sent2.fetch_add(1, Ordering::AcqRel);
            }
        });
        Self {
            stop,
            sent,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u32 {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("restarter thread");
        }
        self.sent.load(Ordering::Acquire)
    }
}

fn wrk_under_restarts(
    worker: &Path,
    args: &[&str],
    every: Duration,
    seconds: u32,
) -> (WrkResult, u32, Starter) {
    let starter = start(worker, args);
    let count = (Duration::from_secs(u64::from(seconds)).as_millis() / every.as_millis()) as u32;
    let restarter = Restarter::start(starter.proc.pid(), every, count);
    let result = wrk(&format!("http://127.0.0.1:{}/", starter.port), 10, seconds);
    let restarts = restarter.finish();
    (result, restarts, starter)
}

fn assert_no_errors(result: &WrkResult, restarts: u32, starter: &Starter) {
    eprintln!("{restarts} restarts, wrk:\n{result:?}");
    assert!(restarts >= 3, "too few restarts happened: {restarts}");
    assert_eq!(
        result.socket_errors(),
        0,
        "wrk socket errors across {restarts} restarts:\n{result:?}"
    );
    assert_eq!(result.non_2xx, 0, "non-2xx responses:\n{result:?}");
    let generations = starter
        .proc
        .output()
        .iter()
        .filter(|l| l.contains("worker ready"))
        .count();
    assert!(
        generations > 2,
        "restarts produced new generations: {generations}\n{}",
        starter.proc.describe()
    );
}

#[test]
fn wrk_sees_no_error_with_a_restart_every_second() {
    let (result, restarts, starter) =
        wrk_under_restarts(&gracedown(), &["serve"], Duration::from_secs(1), 5);
    assert_no_errors(&result, restarts, &starter);
}

#[test]
fn wrk_sees_no_error_with_a_restart_every_200ms() {
    let (result, restarts, starter) =
        wrk_under_restarts(&gracedown(), &["serve"], Duration::from_millis(200), 5);
    assert_no_errors(&result, restarts, &starter);
}

#[test]
fn http2_client_sees_no_error_with_a_restart_every_200ms() {
    let starter = start(&gracedown(), &["serve"]);
    let restarter = Restarter::start(starter.proc.pid(), Duration::from_millis(200), 25);
    let addr = format!("127.0.0.1:{}", starter.port).parse().expect("addr");
    let plan = Plan::new(addr, Protocol::H2c)
        .connections(10)
        .duration(Duration::from_secs(5));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let samples = runtime
        .block_on(gracedown_bench::run(
            &plan,
            Arc::new(gracedown_bench::Progress::default()),
        ))
        .expect("the run starts");
    let tally = samples.tally;
    let restarts = restarter.finish();
    eprintln!("{restarts} restarts, h2: {tally}");
    assert!(restarts >= 3, "too few restarts: {restarts}");
    assert_eq!(
        tally.errors(),
        0,
        "h2 errors across {restarts} restarts: {tally}"
    );
    assert_eq!(tally.non_2xx(), 0, "{tally}");
    assert!(tally.responses() > 1000, "{tally}");
    assert!(
        tally.pids.len() > 2,
        "responses came from several generations: {tally}"
    );
}

#[test]
fn negative_control_naive_drain_shows_errors_under_the_same_harness() {
    let (result, restarts, _starter) =
        wrk_under_restarts(&naive_worker(), &[], Duration::from_millis(200), 5);
    eprintln!("naive drain, {restarts} restarts, wrk:\n{result:?}");
    assert!(restarts >= 3, "too few restarts: {restarts}");
    assert!(
        result.socket_errors() > 0,
        "the naive drain showed no error across {restarts} restarts, so this harness cannot tell a good drain from a bad one:\n{result:?}"
    );
}
