//! Where Perl's start_server loses the healthy generation or orphans its
//! workers, ours must not: one test per deliberate difference
//! (`docs/design/supervisor.md`, the table of differences from Perl).

use std::os::unix::net::UnixListener;

use crate::support::http::get;
use crate::support::process::{Proc, run};
use crate::support::starter::{Impl, sh_worker};
use crate::support::{TempDir, field, free_port, gracedown};

/// Starts ours with `args` and a worker script; returns it, its address and the first worker's pid.
fn start(args: &[String], script: &str) -> (Proc, std::net::SocketAddr, String) {
    let port = free_port();
    let mut all = vec![format!("--port=127.0.0.1:{port}")];
    all.extend_from_slice(args);
    let proc = Impl::Ours.start(&all, &sh_worker(script));
    let ready = proc.wait_for_line("generation 1 ready", |l| {
        l.contains("worker ready") && l.contains("generation=1")
    });
    let pid = field(&ready, "pid").expect("pid");
    (
        proc,
        format!("127.0.0.1:{port}").parse().expect("addr"),
        pid,
    )
}

/// How many log lines are exactly `line`.
fn count(proc: &Proc, line: &str) -> usize {
    proc.output().iter().filter(|l| *l == line).count()
}

#[test]
fn double_hup_during_a_restart_keeps_the_healthy_generation_serving() {
    // Generation 1 is healthy; every later one is broken and dies after 0.5 s.
    let script =
        r#"[ "$SERVER_STARTER_GENERATION" = 1 ] && exec "$GRACEDOWN" serve; sleep 0.5; exit 3"#;
    let (mut proc, addr, first) = start(&["--interval=1".into()], script);
    proc.signal(libc::SIGHUP);
    proc.wait_for_line("the restart started", |l| {
        l.contains("received HUP, spawning a new worker")
    });
    proc.signal(libc::SIGHUP);
    proc.wait_for_line("the second HUP is coalesced", |l| {
        l.contains("another restart will follow")
    });
    proc.wait_for_line("the broken worker fails", |l| {
        l.contains("seems to have failed to start")
    });
    // Perl would have trusted the half-started worker on the second HUP and killed generation 1.
    assert_eq!(
        get(addr, "/").body,
        format!("from pid {first}.\n"),
        "{}",
        proc.describe()
    );
    assert_eq!(
        count(&proc, "killing old workers"),
        0,
        "{}",
        proc.describe()
    );
    proc.signal(libc::SIGTERM);
    assert!(proc.wait_exit().success());
}

#[test]
fn new_worker_dying_during_kill_old_delay_does_not_take_the_old_generation_down() {
    // Later generations say READY=1 (through gracedown), then die after 1.5 s;
    // stopped before that (a stop signal, start_server's death), the shell
    // takes its process group (its child) along instead of orphaning it.
    let script = r#"[ "$SERVER_STARTER_GENERATION" = 1 ] && exec "$GRACEDOWN" serve
trap 'kill -9 0' TERM
"$GRACEDOWN" serve & child=$!
sleep 1.5 & wait $!
kill -9 $child; exit 9"#;
    let (mut proc, addr, first) = start(
        &["--interval=1".into(), "--kill-old-delay=3".into()],
        script,
    );
    proc.signal(libc::SIGHUP);
    proc.wait_for_line("the new worker is trusted", |l| {
        l.contains("sleeping 3 secs before killing old workers")
    });
    // Three deaths of new workers take longer than the first kill-old-delay.
    proc.wait_for_count("a new worker dying in the delay", 3, |l| {
        l.contains("not signalling old workers")
    });
    assert_eq!(
        count(&proc, "killing old workers"),
        0,
        "{}",
        proc.describe()
    );
    assert_eq!(get(addr, "/").body, format!("from pid {first}.\n"));
    proc.signal(libc::SIGTERM);
    assert!(proc.wait_exit().success());
}

#[test]
fn bad_signal_name_is_rejected_at_start() {
    let mut cmd = Impl::Ours.command(
        &["--port=127.0.0.1:0".into(), "--signal-on-hup=FOO".into()],
        &[],
    );
    cmd.arg("/bin/true");
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("invalid value `FOO` for --signal-on-hup"),
        "{out:?}"
    );
    assert!(
        !out.stderr.contains("starting new worker"),
        "nothing started: {out:?}"
    );
}

#[test]
fn path_over_a_regular_file_or_a_live_socket_is_refused() {
    let dir = TempDir::new("ss-path");
    let file = dir.join("precious");
    std::fs::write(&file, "precious data").expect("write");
    let live = dir.join("live.sock");
    let listener = UnixListener::bind(&live).expect("bind");
    for (path, reason) in [
        (&file, "it exists and is not a socket"),
        (&live, "a server is listening on it"),
    ] {
        let mut cmd = Impl::Ours.command(&[format!("--path={}", path.display())], &[]);
        cmd.arg("/bin/true");
        let out = run(cmd);
        assert_eq!(out.status.code(), Some(255), "{out:?}");
        assert!(
            out.stderr.contains(&format!(
                "refusing to replace `{}`: {reason}",
                path.display()
            )),
            "{out:?}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&file).expect("still there"),
        "precious data"
    );
    drop(listener);
    assert!(live.exists(), "the live socket's file was not removed");
}

#[test]
fn stray_signals_do_not_kill_start_server_and_quit_stops_cleanly() {
    let (mut proc, addr, first) = start(&["--interval=1".into()], r#"exec "$GRACEDOWN" serve"#);
    proc.signal(libc::SIGUSR1);
    proc.wait_for_line("USR1 ignored", |l| l == "received USR1, ignored");
    proc.signal(libc::SIGUSR2);
    proc.wait_for_line("USR2 ignored", |l| l == "received USR2, ignored");
    assert_eq!(get(addr, "/").body, format!("from pid {first}.\n"));
    proc.signal(libc::SIGQUIT);
    proc.wait_for_line("QUIT stops like TERM", |l| {
        l == format!("received QUIT, sending TERM to all workers:{first}")
    });
    assert!(proc.wait_exit().success(), "{}", proc.describe());
    let pid = rustix::process::Pid::from_raw(first.parse().expect("pid")).expect("pid");
    assert!(
        rustix::process::test_kill_process(pid).is_err(),
        "the worker is gone, not orphaned"
    );
}

#[test]
fn workers_get_their_own_process_group_and_default_sigpipe() {
    let script = r#"echo "pgid=$(cut -d' ' -f5 /proc/$$/stat) sigign=$(grep SigIgn /proc/$$/status | cut -f2)"; exec sleep 600"#;
    let (proc, _) = {
        let port = free_port();
        let p = Impl::Ours.start(
            &[format!("--port=127.0.0.1:{port}"), "--interval=0".into()],
            &sh_worker(script),
        );
        (p, port)
    };
    let line = proc.wait_for_line("worker report", |l| l.starts_with("pgid="));
    let worker = proc.wait_for_line("worker pid", |l| l.starts_with("starting new worker "));
    let pid = worker.trim_start_matches("starting new worker ");
    assert!(
        line.contains(&format!("pgid={pid} ")),
        "the worker leads its own group: {line}"
    );
    // Bit 13 (SIGPIPE, value 0x1000) is not ignored.
    let ignored =
        u64::from_str_radix(line.split("sigign=").nth(1).unwrap_or("0"), 16).expect("hex mask");
    assert_eq!(
        ignored & 0x1000,
        0,
        "SIGPIPE is not ignored in workers: {line}"
    );
    let _ = gracedown();
}
