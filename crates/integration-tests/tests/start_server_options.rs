//! The rest of start_server's options, run for real: --log-file (file and
//! pipe), --dir, --daemonize, --enable-auto-restart, the --restart and --stop
//! wrappers, what workers inherit, and sd_notify towards systemd.

use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;
use std::process::Command;

use crate::support::fds::pass_fds;
use crate::support::process::{Proc, run};
use crate::support::starter::{Impl, probe_worker, sh_worker, wait_env, wait_status_where};
use crate::support::{TEST_WAIT, TempDir, free_port};

fn ours(args: &[String], worker: &[std::ffi::OsString]) -> Proc {
    Impl::Ours.start(args, worker)
}

#[test]
fn log_file_appends_and_pipes_and_the_start_line_stays_on_stderr() {
    let dir = TempDir::new("logfile");
    let file = dir.join("log");
    let piped = dir.join("piped");
    for (target, written) in [
        (file.display().to_string(), &file),
        (format!("| cat >> {}", piped.display()), &piped),
    ] {
        let mut proc = ours(
            &[format!("--log-file={target}"), "--interval=0".into()],
            &probe_worker(),
        );
        proc.wait_for_line("the start line on stderr", |l| {
            l.contains("starting now...")
        });
        wait_status_where(
            written,
            "a worker line in the log",
            |s| s.contains("starting new worker"),
            &proc,
        );
        proc.signal(libc::SIGTERM);
        assert!(proc.wait_exit().success());
        let text = std::fs::read_to_string(written).unwrap_or_default();
        assert!(
            !text.contains("starting now..."),
            "the start line goes to the original stderr (as Perl): {text}"
        );
    }
}

#[test]
fn dir_is_the_workers_working_directory() {
    let dir = TempDir::new("workdir");
    let mut proc = ours(
        &[format!("--dir={}", dir.0.display()), "--interval=0".into()],
        &sh_worker(r#"echo "cwd=$(pwd)"; exec sleep 600"#),
    );
    proc.wait_for_line("the worker's cwd", |l| {
        l == format!("cwd={}", dir.0.display())
    });
    proc.signal(libc::SIGTERM);
    assert!(proc.wait_exit().success());
}

#[test]
fn daemonize_detaches_writes_the_daemons_pid_and_stop_waits_for_it() {
    let dir = TempDir::new("daemon");
    let (pid_file, status, log) = (dir.join("pid"), dir.join("status"), dir.join("log"));
    let args = [
        "--daemonize".to_owned(),
        format!("--log-file={}", log.display()),
        format!("--pid-file={}", pid_file.display()),
        format!("--status-file={}", status.display()),
        format!("--port=127.0.0.1:{}", free_port()),
        "--interval=0".to_owned(),
    ];
    let launcher = run(Impl::Ours.command(&args, &probe_worker()));
    assert!(
        launcher.status.success(),
        "the launching process exits 0 at once: {launcher:?}"
    );
    let watcher = Proc::spawn(Command::new("true"));
    wait_status_where(
        &status,
        "a running generation",
        |s| s.starts_with("1:"),
        &watcher,
    );
    let daemon: u32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    let stop = run(Impl::Ours.command(
        &[
            "--stop".into(),
            format!("--pid-file={}", pid_file.display()),
        ],
        &[],
    ));
    assert!(stop.status.success(), "{stop:?}");
    // Exited: gone, or a zombie waiting for init to reap it.
    let state = std::fs::read_to_string(format!("/proc/{daemon}/stat")).unwrap_or_default();
    let state = state
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("gone");
    assert!(
        matches!(state, "gone" | "Z"),
        "--stop returns once start_server has exited (state {state})"
    );
    assert!(
        !pid_file.exists() && !status.exists(),
        "pid and status files removed"
    );
}

#[test]
fn restart_wrapper_reports_success_even_when_a_start_attempt_failed() {
    let dir = TempDir::new("restart");
    let (pid_file, status) = (dir.join("pid"), dir.join("status"));
    let args = [
        format!("--pid-file={}", pid_file.display()),
        format!("--status-file={}", status.display()),
        format!("--port=127.0.0.1:{}", free_port()),
        "--interval=1".to_owned(),
    ];
    // Generation 2 fails, so the generation numbers skip: Perl's --restart would hang for ever.
    let mut proc = ours(
        &args,
        &sh_worker(r#"[ "$SERVER_STARTER_GENERATION" = 2 ] && exit 1; exec "$PROBE" --hold"#),
    );
    wait_env(&proc, 1);
    wait_status_where(&status, "generation 1", |s| s.starts_with("1:"), &proc);
    let restart = run(Impl::Ours.command(
        &[
            "--restart".into(),
            format!("--pid-file={}", pid_file.display()),
            format!("--status-file={}", status.display()),
        ],
        &[],
    ));
    assert!(restart.status.success(), "{restart:?}\n{}", proc.describe());
    assert!(
        restart.stderr.contains("generation 3 is now the only one"),
        "{restart:?}"
    );
    let stop = run(Impl::Ours.command(
        &[
            "--stop".into(),
            format!("--pid-file={}", pid_file.display()),
        ],
        &[],
    ));
    assert!(stop.status.success(), "{stop:?}");
    assert!(proc.wait_exit().success());
}

#[test]
fn workers_inherit_the_listening_sockets_their_handoff_channel_and_nothing_else() {
    // start_server itself inherits a stray descriptor (9) without close-on-exec.
    let stray = std::fs::File::open("/dev/null").expect("open");
    let mut cmd = Impl::Ours.command(
        &[
            format!("--port=127.0.0.1:{}", free_port()),
            "--interval=0".into(),
        ],
        // The shell lists its own descriptors with a glob, which reads the
        // directory itself: with `$(ls /proc/$$/fd)` the listing raced the
        // shell's closing of its end of the substitution's pipe, and a busy
        // machine saw the pipe's two ends (`fds=0 1 2 3 4 5 6`).
        &sh_worker(
            r#"printf 'fds='; for f in /proc/$$/fd/*; do printf '%s ' "${f##*/}"; done; echo "handoff=$GRACEDOWN_HANDOFF_FD kind=$(readlink /proc/$$/fd/$GRACEDOWN_HANDOFF_FD)"; exec sleep 600"#,
        ),
    );
    pass_fds(&mut cmd, &[(stray.as_fd(), 9)]);
    let mut proc = Proc::spawn(cmd);
    let line = proc.wait_for_line("the worker's descriptors", |l| l.starts_with("fds="));
    // 0-2 stdio, 3 the socket, 4 the handoff channel (just above the
    // sockets), 5 the shell's own handle on /proc/PID/fd while it lists it.
    let listed = line.trim_start_matches("fds=");
    let mut fds: Vec<u32> = listed
        .split("handoff=")
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    fds.sort_unstable();
    assert_eq!(fds, [0, 1, 2, 3, 4, 5], "nothing else is open: {line}");
    assert!(fds.contains(&3), "{line}");
    assert!(
        line.contains(" handoff=4 kind=socket:["),
        "the handoff channel is announced and open: {line}"
    );
    assert!(
        !fds.contains(&9),
        "the stray descriptor did not leak: {line}"
    );
    proc.signal(libc::SIGTERM);
    assert!(proc.wait_exit().success());
}

#[test]
fn enable_auto_restart_restarts_after_the_interval() {
    let dir = TempDir::new("auto");
    let status = dir.join("status");
    let args = [
        "--enable-auto-restart".to_owned(),
        "--auto-restart-interval=1".to_owned(),
        "--kill-old-delay=0".to_owned(),
        "--interval=0".to_owned(),
        format!("--status-file={}", status.display()),
    ];
    let mut proc = ours(&args, &probe_worker());
    proc.wait_for_line("auto-restart", |l| {
        l == "autorestart triggered (interval=1)"
    });
    let second = wait_env(&proc, 2);
    assert_eq!(
        second["env"]["ENABLE_AUTO_RESTART"], "1",
        "the control variable reaches workers, as in Perl"
    );
    wait_status_where(
        &status,
        "generation 2 alone",
        |s| s.starts_with("2:") && s.lines().count() == 1,
        &proc,
    );
    proc.signal(libc::SIGTERM);
    assert!(proc.wait_exit().success());
}

#[test]
fn tells_systemd_ready_reloading_and_stopping() {
    let dir = TempDir::new("sd");
    let path = dir.join("notify");
    let socket = UnixDatagram::bind(&path).expect("bind");
    socket.set_read_timeout(Some(TEST_WAIT)).expect("timeout");
    let recv = || {
        let mut buf = [0u8; 256];
        let n = socket
            .recv(&mut buf)
            .expect("a notification within the bound");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let mut cmd = Impl::Ours.command(
        &[format!("--port=127.0.0.1:{}", free_port())],
        &sh_worker(r#"exec "$GRACEDOWN" serve"#),
    );
    cmd.env("NOTIFY_SOCKET", &path);
    let mut proc = Proc::spawn(cmd);
    assert_eq!(recv(), "READY=1");
    proc.signal(libc::SIGHUP);
    let reloading = recv();
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    assert_eq!(recv(), "READY=1");
    proc.signal(libc::SIGTERM);
    assert_eq!(recv(), "STOPPING=1");
    assert!(proc.wait_exit().success());
}
