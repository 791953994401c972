//! Readiness-gated handover: a worker that says READY=1 is trusted at once;
//! one that never speaks is trusted after --interval; one that crashes or
//! hangs before it is ready leaves the old generation serving, with no
//! failed request under load.

use std::time::{Duration, Instant};

use crate::support::process::Proc;
use crate::support::starter::{
    Impl, probe_worker, sh_worker, wait_env, wait_status, wait_status_where,
};
use crate::support::wrk::wrk;
use crate::support::{TempDir, example, field, free_port};

fn ready_pid(proc: &Proc, generation: u32) -> String {
    let line = proc.wait_for_line(&format!("generation {generation} ready"), |l| {
        l.contains("worker ready") && l.contains(&format!("generation={generation} "))
    });
    field(&line, "pid").expect("pid")
}

#[test]
fn worker_saying_ready_is_handed_over_long_before_the_interval() {
    let dir = TempDir::new("ready");
    let status = dir.join("status");
    let args = [
        format!("--port=127.0.0.1:{}", free_port()),
        format!("--status-file={}", status.display()),
        "--interval=30".to_owned(),
    ];
    let proc = Impl::Ours.start(&args, &sh_worker(r#"exec "$GRACEDOWN" serve"#));
    let first = ready_pid(&proc, 1);
    wait_status(&status, &format!("1:{first}\n"), &proc);
    let hup = Instant::now();
    proc.signal(libc::SIGHUP);
    let second = ready_pid(&proc, 2);
    wait_status(&status, &format!("2:{second}\n"), &proc);
    // The interval is 30 s and the status wait is bounded by 20 s: reaching
    // here at all means READY=1 did the handover, not the interval.
    assert!(hup.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_library_server_says_ready_without_being_told_to() {
    // The README's example: `Server::new(..).serve(..)` and no
    // `.notify(..)`; the server notifies the supervisor the environment names.
    let dir = TempDir::new("readme");
    let status = dir.join("status");
    let args = [
        format!("--port=127.0.0.1:{}", free_port()),
        format!("--status-file={}", status.display()),
        "--interval=30".to_owned(),
    ];
    let proc = Impl::Ours.start(&args, &[example("readme").into()]);
    let generation = |n: u32| move |now: &str| now.lines().any(|l| l.starts_with(&format!("{n}:")));
    wait_status_where(&status, "generation 1", generation(1), &proc);
    proc.signal(libc::SIGHUP);
    // Bounded by 20 s, and the interval is 30 s: only READY=1 hands over in time.
    wait_status_where(
        &status,
        "generation 2 alone",
        |now| generation(2)(now) && !generation(1)(now),
        &proc,
    );
}

#[test]
fn silent_worker_falls_back_to_the_interval() {
    let dir = TempDir::new("silent");
    let status = dir.join("status");
    let args = [
        format!("--status-file={}", status.display()),
        "--interval=1".to_owned(),
    ];
    let proc = Impl::Ours.start(&args, &probe_worker());
    let report = wait_env(&proc, 1);
    assert!(
        report["env"]["NOTIFY_SOCKET"]
            .as_str()
            .is_some_and(|s| s.starts_with('@')),
        "{report}"
    );
    let started = Instant::now();
    wait_status(&status, &format!("1:{}\n", report["pid"]), &proc);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "trusted only after the interval"
    );
}

/// Generation 1 serves; later generations run `broken`. Under wrk, a HUP
/// must not cost a request, and generation 1 must still be the one serving.
fn broken_restart_under_load(extra: &[&str], broken: &str, expect_line: &str) {
    let port = free_port();
    let mut args = vec![
        format!("--port=127.0.0.1:{port}"),
        "--interval=1".to_owned(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let script =
        format!(r#"[ "$SERVER_STARTER_GENERATION" = 1 ] && exec "$GRACEDOWN" serve; {broken}"#);
    let mut proc = Impl::Ours.start(&args, &sh_worker(&script));
    let first = ready_pid(&proc, 1);
    let hupper = {
        let pid = proc.pid();
        std::thread::spawn(move || {
            // Let wrk get going first; pacing the load, not synchronising.
            std::thread::sleep(Duration::from_millis(500));
            let pid = rustix::process::Pid::from_raw(pid as i32).expect("pid");
            rustix::process::kill_process(pid, rustix::process::Signal::HUP).expect("HUP");
        })
    };
    let result = wrk(&format!("http://127.0.0.1:{port}/"), 10, 4);
    hupper.join().expect("hupper");
    proc.wait_for_line(expect_line, |l| l.contains(expect_line));
    assert_eq!(result.socket_errors() + result.non_2xx, 0, "{result:?}");
    assert_eq!(
        crate::support::http::get(format!("127.0.0.1:{port}").parse().expect("addr"), "/").body,
        format!("from pid {first}.\n")
    );
    proc.signal(libc::SIGTERM);
    assert!(proc.wait_exit().success(), "{}", proc.describe());
}

#[test]
fn worker_crashing_before_ready_leaves_the_old_generation_serving_without_errors() {
    broken_restart_under_load(&[], "exit 1", "seems to have failed to start");
}

#[test]
fn worker_hanging_before_ready_is_killed_at_the_ready_timeout_without_errors() {
    broken_restart_under_load(
        &["--ready-timeout=1"],
        "exec sleep 600",
        "did not send READY=1 within 1 secs",
    );
}
