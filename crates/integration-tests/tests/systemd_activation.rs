//! Under systemd's own `systemd-socket-activate`, the worker serves the
//! socket it finds in `LISTEN_FDS` (with `LISTEN_PID` set to its pid).

use std::process::Command;

use crate::support::http::get;
use crate::support::process::Proc;
use crate::support::{free_port, gracedown, tool};

#[test]
fn worker_serves_from_listen_fds() {
    let activate = tool("systemd-socket-activate", "systemd");
    let port = free_port();
    let mut cmd = Command::new(activate);
    cmd.args(["-l", &format!("127.0.0.1:{port}")])
        .arg(gracedown())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("SERVER_STARTER_PORT");
    let proc = Proc::spawn(cmd);
    proc.wait_for_line("systemd-socket-activate listening", |l| {
        l.contains("Listening on")
    });
    // The first connection makes systemd-socket-activate start the worker,
    // which takes fd 3 instead of binding `--listen` (an ephemeral port, which
    // the ready line below would show).
    let addr = format!("127.0.0.1:{port}").parse().expect("addr");
    let response = get(addr, "/");
    assert_eq!(response.status, 200, "{}", proc.describe());
    assert!(response.body.starts_with("from pid "), "{response:?}");
    let ready = proc.wait_for_line("worker ready", |l| l.contains("worker ready"));
    assert!(ready.contains(&format!("127.0.0.1:{port}")), "{ready}");
}
