//! sd_notify readiness: with `NOTIFY_SOCKET` set, the worker sends `READY=1`
//! once it serves, and `STOPPING=1` when it starts to drain.

use std::os::unix::net::UnixDatagram;
use std::process::Command;

use crate::support::http::get;
use crate::support::process::Proc;
use crate::support::{TEST_WAIT, TempDir, gracedown, ready_addr};

fn recv(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 256];
    let n = socket
        .recv(&mut buf)
        .expect("a notification within the bound");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn worker_says_ready_when_serving_and_stopping_when_draining() {
    let dir = TempDir::new("notify");
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    socket.set_read_timeout(Some(TEST_WAIT)).expect("timeout");
    let mut cmd = Command::new(gracedown());
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .env("NOTIFY_SOCKET", &path);
    cmd.env_remove("SERVER_STARTER_PORT")
        .env_remove("LISTEN_FDS");
    let mut proc = Proc::spawn(cmd);

    assert_eq!(recv(&socket), "READY=1");
    let line = proc.wait_for_line("worker ready", |l| l.contains("worker ready"));
    let addr = ready_addr(&line).expect("address");
    assert_eq!(get(addr, "/").status, 200, "serving once READY=1 was sent");

    proc.signal(libc::SIGTERM);
    assert_eq!(recv(&socket), "STOPPING=1");
    assert!(proc.wait_exit().success());
}
