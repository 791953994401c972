//! Conformance: the same scenario against Perl's start_server (Debian's
//! Server::Starter 0.35, the reference) and ours, comparing what must be
//! identical: the worker's environment, generation numbering, the status
//! file, the log lines, the exit codes of setup failures.

use serde_json::Value;

use crate::support::process::run;
use crate::support::starter::{
    Impl, normalized_log, probe_worker, sh_worker, wait_env, wait_status, without_fds,
};
use crate::support::{TempDir, free_port};

struct Observed {
    env: Value,
    sockets: Vec<(String, String, String)>,
}

fn observe_environment(which: Impl, args: &[String]) -> Observed {
    let mut proc = which.start(args, &probe_worker());
    let report = wait_env(&proc, 1);
    let keys: Vec<String> = report["env"]["SERVER_STARTER_PORT"]
        .as_str()
        .unwrap_or_default()
        .split(';')
        .filter_map(|e| e.rsplit_once('=').map(|(k, _)| k.to_owned()))
        .collect();
    let mut sockets = Vec::new();
    for key in &keys {
        let line = proc.wait_for_line(&format!("adoption report of `{key}`"), |l| {
            serde_json::from_str::<Value>(l).is_ok_and(|v| v["key"] == key.as_str())
        });
        let v: Value = serde_json::from_str(&line).expect("json");
        sockets.push((key.clone(), v["kind"].to_string(), v["error"].to_string()));
    }
    proc.signal(libc::SIGTERM);
    assert!(proc.wait_exit().success(), "{}", proc.describe());
    Observed {
        env: report["env"].clone(),
        sockets,
    }
}

#[test]
fn worker_environment_is_the_same_as_under_perl() {
    let dir = TempDir::new("conf-env");
    let (p1, p2, p3, p4) = (free_port(), free_port(), free_port(), free_port());
    let envdir = dir.join("envdir");
    std::fs::create_dir_all(&envdir).expect("envdir");
    std::fs::write(envdir.join("GREETING"), "hello\n").expect("envdir file");
    let args = vec![
        format!("--port=127.0.0.1:{p1}"),
        format!("--port=localhost:{p2}"),
        format!("--port=[::1]:{p3}"),
        format!("--port=::1:{p4}"),
        format!("--path={}", dir.join("app.sock").display()),
        format!("--envdir={}", envdir.display()),
        "--kill-old-delay=0".to_owned(),
        "--interval=1".to_owned(),
    ];
    let perl = observe_environment(Impl::Perl, &args);
    let ours = observe_environment(Impl::Ours, &args);
    let port =
        |o: &Observed| without_fds(o.env["SERVER_STARTER_PORT"].as_str().unwrap_or_default());
    assert_eq!(
        port(&ours),
        format!(
            "127.0.0.1:{p1}=FD;localhost:{p2}=FD;[::1]:{p3}=FD;[::1]:{p4}=FD;{}=FD",
            dir.join("app.sock").display()
        )
    );
    assert_eq!(
        port(&ours),
        port(&perl),
        "SERVER_STARTER_PORT keys and order"
    );
    for key in [
        "SERVER_STARTER_GENERATION",
        "ENVDIR",
        "KILL_OLD_DELAY",
        "ENABLE_AUTO_RESTART",
        "AUTO_RESTART_INTERVAL",
    ] {
        assert_eq!(ours.env[key], perl.env[key], "{key}");
    }
    assert_eq!(
        ours.sockets, perl.sockets,
        "every socket is usable the same way"
    );
    assert!(
        ours.sockets.iter().all(|(_, _, err)| err == "null"),
        "{:?}",
        ours.sockets
    );
}

#[test]
fn empty_server_starter_port_without_sockets_as_perl() {
    let perl = observe_environment(Impl::Perl, &["--interval=1".into()]);
    let ours = observe_environment(Impl::Ours, &["--interval=1".into()]);
    assert_eq!(perl.env["SERVER_STARTER_PORT"], "");
    assert_eq!(
        ours.env["SERVER_STARTER_PORT"],
        perl.env["SERVER_STARTER_PORT"]
    );
}

fn restart_scenario(
    which: Impl,
    worker: &[std::ffi::OsString],
    final_generation: u32,
) -> Vec<String> {
    let dir = TempDir::new("conf-restart");
    let status = dir.join("status");
    let args = vec![
        format!("--port=127.0.0.1:{}", free_port()),
        format!("--status-file={}", status.display()),
        "--interval=1".to_owned(),
    ];
    let mut proc = which.start(&args, worker);
    let first = wait_env(&proc, 1);
    wait_status(&status, &format!("1:{}\n", first["pid"]), &proc);
    proc.signal(libc::SIGHUP);
    let last = wait_env(&proc, final_generation);
    wait_status(
        &status,
        &format!("{final_generation}:{}\n", last["pid"]),
        &proc,
    );
    proc.signal(libc::SIGTERM);
    assert!(proc.wait_exit().success(), "{}", proc.describe());
    assert!(!status.exists(), "the status file is removed at exit");
    normalized_log(&proc)
}

#[test]
fn status_file_generations_and_log_lines_match_perl_across_a_restart() {
    let perl = restart_scenario(Impl::Perl, &probe_worker(), 2);
    let ours = restart_scenario(Impl::Ours, &probe_worker(), 2);
    assert_eq!(
        ours,
        [
            "start_server (pid:P1) starting now...",
            "starting new worker P2",
            "received HUP, spawning a new worker",
            "starting new worker P3",
            "new worker is now running, sending TERM to old workers:P2",
            "killing old workers",
            "old worker P2 died, status:15",
            "received TERM, sending TERM to all workers:P3",
            "worker P3 died, status:15",
            "exiting",
        ]
    );
    assert_eq!(ours, perl);
}

#[test]
fn failed_start_skips_a_generation_as_perl_does() {
    let worker =
        sh_worker(r#"[ "$SERVER_STARTER_GENERATION" = 2 ] && exit 7; exec "$PROBE" --hold"#);
    let perl = restart_scenario(Impl::Perl, &worker, 3);
    let ours = restart_scenario(Impl::Ours, &worker, 3);
    assert!(
        ours.contains(&"new worker P3 seems to have failed to start, exit status:1792".to_owned()),
        "{ours:#?}"
    );
    assert_eq!(ours, perl);
}

#[test]
fn setup_failures_exit_with_perls_codes() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let in_use = format!("--port={}", taken.local_addr().expect("addr"));
    let cases: Vec<(&str, Vec<String>, bool)> = vec![
        ("port in use", vec![in_use], true),
        ("invalid port", vec!["--port=80x".into()], true),
        ("no program", vec!["--port=0".into()], false),
        (
            "--daemonize without --log-file",
            vec!["--daemonize".into()],
            true,
        ),
        ("unknown option", vec!["--frobnicate".into()], true),
    ];
    for (what, args, with_program) in cases {
        let code = |which: Impl| {
            let mut cmd = which.command(&args, &[]);
            if with_program {
                cmd.arg("/bin/true");
            }
            run(cmd).status.code()
        };
        assert_eq!(code(Impl::Ours), code(Impl::Perl), "{what}");
    }
}

#[test]
fn option_errors_are_getopt_longs() {
    for (args, message) in [
        (vec!["--frobnicate"], "Unknown option: frobnicate"),
        (
            vec!["--port=1", "/bin/true", "-s", "x"],
            "Option s is ambiguous (signal-on-hup, signal-on-term, status-file, stop)",
        ),
    ] {
        for which in [Impl::Perl, Impl::Ours] {
            // Not `Impl::command`, which puts `--` first: these need the options unseparated.
            let mut direct = std::process::Command::new(which.program());
            direct.args(&args);
            let out = run(direct);
            assert_eq!(out.status.code(), Some(1), "{which:?} {args:?}: {out:?}");
            assert_eq!(
                out.stderr.lines().next(),
                Some(message),
                "{which:?} {args:?}: {out:?}"
            );
        }
    }
}
