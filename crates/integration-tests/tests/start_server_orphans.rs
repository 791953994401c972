//! No worker outlives start_server, and start_server never freezes on a
//! child: a `kill -9` of start_server, or of its whole process
//! group, makes the worker drain and exit so the port is free again; a child
//! stopped before exec does not keep start_server from handling SIGTERM, nor
//! leaves the port unserved when the current worker dies or the ready
//! timeout passes; a
//! worker that hangs after READY=1 is replaced when the watchdog is on.

use crate::support::http::get;
use crate::support::process::{Proc, send_signal};
use crate::support::starter::{Impl, wait_status};
use crate::support::{TempDir, children, field, free_port, gracedown, wait_ended};

fn serve_worker() -> Vec<std::ffi::OsString> {
    vec![gracedown().into(), "serve".into()]
}

fn ready_pid(proc: &Proc, generation: u32) -> u32 {
    let line = proc.wait_for_line(&format!("generation {generation} ready"), |l| {
        l.contains("worker ready") && l.contains(&format!("generation={generation}"))
    });
    field(&line, "pid")
        .and_then(|p| p.parse().ok())
        .expect("pid in the ready line")
}

/// Kills start_server with SIGKILL (`group`: its whole process group), then
/// checks that the worker drained and that a new start_server gets the port.
fn killed_start_server_leaves_no_worker_behind(group: bool) {
    let port = free_port();
    let args = [format!("--port=127.0.0.1:{port}")];
    let mut first = Impl::Ours.start(&args, &serve_worker());
    let worker = ready_pid(&first, 1);
    // Our start_server leads its own group (Proc), its workers lead theirs.
    send_signal(first.pid(), libc::SIGKILL, group);
    first.wait_exit();
    first.wait_for_line("the orphaned worker drains", |l| {
        l.contains("drain complete")
    });
    wait_ended(worker, "the worker of the killed start_server");
    let second = Impl::Ours.start(&args, &serve_worker());
    let new_worker = ready_pid(&second, 1);
    let addr = format!("127.0.0.1:{port}").parse().expect("addr");
    assert_eq!(get(addr, "/").body, format!("from pid {new_worker}.\n"));
}

#[test]
fn kill_9_of_start_server_makes_its_worker_drain_and_free_the_port() {
    killed_start_server_leaves_no_worker_behind(false);
}

#[test]
fn kill_9_of_start_servers_process_group_makes_its_worker_drain_and_free_the_port() {
    killed_start_server_leaves_no_worker_behind(true);
}

#[test]
fn a_child_stopped_before_exec_does_not_keep_start_server_from_stopping() {
    let port = free_port();
    let mut cmd = Impl::Ours.command(&[format!("--port=127.0.0.1:{port}")], &serve_worker());
    cmd.env("GRACEDOWN_STOP_BEFORE_EXEC", "2");
    let mut proc = Proc::spawn(cmd);
    let worker = ready_pid(&proc, 1);
    proc.signal(libc::SIGHUP);
    proc.wait_for_line("the restart", |l| l.contains("spawning a new worker"));
    // The new child stops itself between fork and exec.
    let stopped = stopped_child(&proc, worker);
    proc.signal(libc::SIGTERM);
    proc.wait_for_line("the stop is handled", |l| {
        l.contains(&format!(
            "received TERM, sending TERM to all workers:{worker}"
        ))
    });
    let status = proc.wait_exit();
    assert!(
        status.success(),
        "start_server exits: {status}\n{}",
        proc.describe()
    );
    wait_ended(worker, "the running worker");
    // Let the stuck child go on: its parent is gone, so it must not run the worker.
    send_signal(stopped, libc::SIGCONT, false);
    wait_ended(stopped, "the child that was stopped before exec");
}

/// The child of start_server that stopped itself before exec (fault
/// injection), other than `worker`.
fn stopped_child(proc: &Proc, worker: u32) -> u32 {
    let deadline = std::time::Instant::now() + crate::support::TEST_WAIT;
    loop {
        let stuck: Vec<u32> = children(proc.pid())
            .into_iter()
            .filter(|&c| c != worker && is_stopped(c))
            .collect();
        if let [child] = stuck[..] {
            return child;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no stopped child\n{}",
            proc.describe()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Our start_server whose generation 2 stops itself before exec at a
/// `SIGHUP`, with a status file.
struct Stuck {
    proc: Proc,
    status: std::path::PathBuf,
    port: u16,
    /// Generation 1's worker.
    worker: u32,
    /// Generation 2's child, stopped before exec.
    stopped: u32,
    _dir: TempDir,
}

impl Stuck {
    fn start(extra: &[&str]) -> Self {
        let dir = TempDir::new("stuck-candidate");
        let status = dir.join("status");
        let port = free_port();
        let mut args = vec![
            format!("--port=127.0.0.1:{port}"),
            format!("--status-file={}", status.display()),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let mut cmd = Impl::Ours.command(&args, &serve_worker());
        cmd.env("GRACEDOWN_STOP_BEFORE_EXEC", "2");
        let proc = Proc::spawn(cmd);
        let worker = ready_pid(&proc, 1);
        proc.signal(libc::SIGHUP);
        let stopped = stopped_child(&proc, worker);
        Self {
            proc,
            status,
            port,
            worker,
            stopped,
            _dir: dir,
        }
    }
}

#[test]
fn the_current_worker_dying_while_a_new_child_is_stuck_before_exec_leaves_the_port_served() {
    let stuck = Stuck::start(&[]);
    // The only serving worker dies: start_server ends the stuck child and
    // starts generation 3, which serves.
    send_signal(stuck.worker, libc::SIGKILL, false);
    let third = ready_pid(&stuck.proc, 3);
    wait_status(&stuck.status, &format!("3:{third}\n"), &stuck.proc);
    let addr = format!("127.0.0.1:{}", stuck.port).parse().expect("addr");
    assert_eq!(get(addr, "/").body, format!("from pid {third}.\n"));
    wait_ended(stuck.stopped, "the child that was stuck before exec");
}

#[test]
fn the_ready_timeout_ends_a_child_stuck_before_exec_and_the_restart_is_retried() {
    let stuck = Stuck::start(&["--ready-timeout=1"]);
    stuck
        .proc
        .wait_for_line("the stuck child is given up on", |l| {
            l.contains("the worker of generation 2 did not start within 1 secs")
        });
    wait_ended(stuck.stopped, "the child that was stuck before exec");
    // Generation 3 takes over from generation 1, which served throughout.
    let third = ready_pid(&stuck.proc, 3);
    wait_status(&stuck.status, &format!("3:{third}\n"), &stuck.proc);
    wait_ended(stuck.worker, "generation 1, replaced");
}

fn is_stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
    })
}

#[test]
fn a_worker_that_hangs_after_ready_is_replaced_when_the_watchdog_is_on() {
    let port = free_port();
    let dir = TempDir::new("watchdog");
    let status = dir.join("status");
    // With --ready-timeout only READY=1 makes a worker trusted, so once the
    // status file lists it, its watchdog runs.
    let args = [
        format!("--port=127.0.0.1:{port}"),
        "--watchdog-timeout=1".to_owned(),
        "--ready-timeout=10".to_owned(),
        format!("--status-file={}", status.display()),
    ];
    let proc = Impl::Ours.start(&args, &serve_worker());
    let hung = ready_pid(&proc, 1);
    wait_status(&status, &format!("1:{hung}\n"), &proc);
    send_signal(hung, libc::SIGSTOP, false);
    proc.wait_for_line("the watchdog fires", |l| {
        l.contains(&format!("worker {hung} sent no WATCHDOG=1"))
    });
    let replacement = ready_pid(&proc, 2);
    let addr = format!("127.0.0.1:{port}").parse().expect("addr");
    assert_eq!(get(addr, "/").body, format!("from pid {replacement}.\n"));
}
