//! Against the real Perl Server::Starter (Debian's `libserver-starter-perl`):
//! the worker serves HTTP/1.1 and h2c on the inherited TCP socket, a unix
//! `--path` socket works, and `kill -HUP` gives a new generation with a new
//! pid while the old one exits cleanly.

use std::process::Command;

use crate::support::http::{get, get_unix, h2c_get};
use crate::support::process::Proc;
use crate::support::{TempDir, field, free_port, gracedown, tool};

fn start_server(args: &[String]) -> Proc {
    let mut cmd = Command::new(tool("start_server", "libserver-starter-perl"));
    cmd.args(args).arg("--").arg(gracedown()).arg("serve");
    cmd.env_remove("SERVER_STARTER_PORT")
        .env_remove("LISTEN_FDS");
    Proc::spawn(cmd)
}

fn ready_line(proc: &Proc, generation: u32) -> String {
    proc.wait_for_line(&format!("worker ready generation={generation}"), |l| {
        l.contains("worker ready")
            && field(l, "generation").as_deref() == Some(&generation.to_string())
    })
}

#[test]
fn serves_http1_and_h2c_and_hup_starts_a_new_generation() {
    let port = free_port();
    let mut server = start_server(&[format!("--port=127.0.0.1:{port}"), "--interval=0".into()]);
    let first = ready_line(&server, 1);
    let old_pid = field(&first, "pid").expect("pid in ready line");
    let addr = format!("127.0.0.1:{port}").parse().expect("addr");

    let h1 = get(addr, "/");
    assert_eq!(h1.body, format!("from pid {old_pid}.\n"));
    assert_eq!(h1.header("x-gracedown-generation"), Some("1"));
    let h2 = h2c_get(addr, "/");
    assert_eq!(h2.body, format!("from pid {old_pid}.\n"));

    server.signal(libc::SIGHUP);
    let second = ready_line(&server, 2);
    let new_pid = field(&second, "pid").expect("pid in ready line");
    assert_ne!(new_pid, old_pid);
    // Perl logs the old worker's raw wait status: 0 is a clean exit.
    server.wait_for_line("old worker exits with status 0", |l| {
        l == format!("old worker {old_pid} died, status:0")
    });
    let after = get(addr, "/");
    assert_eq!(after.body, format!("from pid {new_pid}.\n"));
    assert_eq!(after.header("x-gracedown-generation"), Some("2"));

    server.signal(libc::SIGTERM);
    server.wait_for_line("start_server exits", |l| l == "exiting");
    assert!(server.wait_exit().success());
}

#[test]
fn serves_a_unix_path_socket() {
    let dir = TempDir::new("perl-path");
    let path = dir.join("app.sock");
    let server = start_server(&[format!("--path={}", path.display()), "--interval=0".into()]);
    let ready = ready_line(&server, 1);
    assert!(
        ready.contains(&format!("unix:{}", path.display())),
        "{ready}"
    );
    let pid = field(&ready, "pid").expect("pid");
    let response = get_unix(&path, "/");
    assert_eq!(response.body, format!("from pid {pid}.\n"));
}
