//! Interoperation: the Perl/Plack Starlet server (Debian's `starlet`) under
//! our start_server, and our start_server under systemd's
//! `systemd-socket-activate`.

use std::process::Command;

use crate::support::http::get;
use crate::support::process::Proc;
use crate::support::starter::{Impl, wait_status_where};
use crate::support::{TempDir, free_port, gracedown, tool};

#[test]
fn starlet_runs_under_our_start_server_and_restarts_on_hup() {
    let plackup = tool("plackup", "starlet");
    let dir = TempDir::new("starlet");
    let status = dir.join("status");
    let port = free_port();
    let app = r#"sub { [200, ["Content-Type" => "text/plain"], ["starlet generation $ENV{SERVER_STARTER_GENERATION}\n"]] }"#;
    let args = [
        format!("--port=127.0.0.1:{port}"),
        format!("--status-file={}", status.display()),
        "--interval=1".to_owned(),
    ];
    let worker = [
        plackup.into_os_string(),
        "-s".into(),
        "Starlet".into(),
        "--max-workers=2".into(),
        "-e".into(),
        app.into(),
    ];
    let mut proc = Impl::Ours.start(&args, &worker);
    let addr = format!("127.0.0.1:{port}").parse().expect("addr");
    wait_status_where(&status, "generation 1", |s| s.starts_with("1:"), &proc);
    assert_eq!(get(addr, "/").body, "starlet generation 1\n");
    proc.signal(libc::SIGHUP);
    wait_status_where(
        &status,
        "generation 2 alone",
        |s| s.starts_with("2:") && s.lines().count() == 1,
        &proc,
    );
    assert_eq!(get(addr, "/").body, "starlet generation 2\n");
    proc.signal(libc::SIGTERM);
    assert!(proc.wait_exit().success(), "{}", proc.describe());
}

#[test]
fn our_start_server_takes_its_sockets_from_systemd_socket_activation() {
    let activate = tool("systemd-socket-activate", "systemd");
    let port = free_port();
    let mut cmd = Command::new(activate);
    cmd.args(["-l", &format!("127.0.0.1:{port}")])
        .arg(Impl::Ours.program())
        .arg("--interval=1")
        .arg("--")
        .arg(gracedown())
        .arg("serve");
    cmd.env_remove("SERVER_STARTER_PORT")
        .env_remove("NOTIFY_SOCKET");
    let proc = Proc::spawn(cmd);
    proc.wait_for_line("listening", |l| l.contains("Listening on"));
    // The first connection starts start_server, which adopts fd 3 and starts the worker.
    let response = get(format!("127.0.0.1:{port}").parse().expect("addr"), "/");
    assert_eq!(response.status, 200, "{}", proc.describe());
    let ready = proc.wait_for_line("worker ready", |l| l.contains("worker ready"));
    assert!(
        ready.contains(&format!("listeners=\"127.0.0.1:{port}\"")),
        "{ready}"
    );
}
