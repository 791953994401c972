//! Adoption of real inherited descriptors in a child process (`fd-probe`):
//! TCP v4, v6 and unix listeners are taken, made close-on-exec and
//! non-blocking; a non-socket, a UDP socket, a non-listening socket, a closed
//! number and a family mismatch each give their own error.

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixListener;
use std::process::Command;

use serde_json::Value;

use crate::support::{TempDir, fd_probe, fds::pass_fds, process::run};

fn probe(fds: &[(BorrowedFd<'_>, i32)], env: &[(&str, &str)]) -> Vec<Value> {
    let mut cmd = Command::new(fd_probe());
    cmd.env_remove("SERVER_STARTER_PORT")
        .env_remove("LISTEN_FDS")
        .envs(env.iter().copied());
    pass_fds(&mut cmd, fds);
    let out = run(cmd);
    assert!(out.status.success(), "fd-probe failed: {out:?}");
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad json `{l}`: {e}")))
        .collect()
}

fn entry<'a>(lines: &'a [Value], key: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["key"] == key)
        .unwrap_or_else(|| panic!("no line for `{key}` in {lines:#?}"))
}

#[test]
fn adopts_tcp_v4_v6_and_unix_listeners_as_cloexec_nonblocking() {
    let v4 = TcpListener::bind("127.0.0.1:0").expect("bind v4");
    let v6 = TcpListener::bind("[::1]:0").expect("bind v6");
    let dir = TempDir::new("adopt");
    let path = dir.join("app.sock");
    let unix = UnixListener::bind(&path).expect("bind unix");
    let v4_key = v4.local_addr().expect("addr").to_string();
    let v6_key = v6.local_addr().expect("addr").to_string();
    let unix_key = path.display().to_string();
    let env = format!("{v4_key}=3;{v6_key}=4;{unix_key}=5");
    let lines = probe(
        &[(v4.as_fd(), 3), (v6.as_fd(), 4), (unix.as_fd(), 5)],
        &[
            ("SERVER_STARTER_PORT", &env),
            ("SERVER_STARTER_GENERATION", "7"),
        ],
    );
    assert_eq!(lines[0]["source"], "ServerStarter { generation: Some(7) }");
    for (key, kind, addr) in [
        (&v4_key, "tcp", v4_key.clone()),
        (&v6_key, "tcp", v6_key.clone()),
        (&unix_key, "unix", format!("unix:{unix_key}")),
    ] {
        let line = entry(&lines, key);
        assert_eq!(line["kind"], kind, "{line}");
        assert_eq!(line["addr"], addr.as_str(), "{line}");
        assert_eq!(
            line["cloexec_before"], false,
            "inherited fds arrive without CLOEXEC: {line}"
        );
        assert_eq!(line["cloexec"], true, "adoption sets CLOEXEC: {line}");
        assert_eq!(
            line["nonblocking"], true,
            "adoption sets O_NONBLOCK: {line}"
        );
    }
    let retake = lines
        .iter()
        .find_map(|l| l["retake"].as_str())
        .expect("retake line");
    assert_eq!(
        retake,
        format!("fd 3 (`{v4_key}`) was already taken by this process")
    );
}

#[test]
fn unusable_descriptors_each_give_their_typed_error() {
    let file = std::fs::File::open("/dev/null").expect("open /dev/null");
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let connected = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let v4 = TcpListener::bind("127.0.0.1:0").expect("bind v4");
    let env = "8001=3;127.0.0.1:8002=4;8003=5;8004=9;[::1]:8005=6";
    let lines = probe(
        &[
            (file.as_fd(), 3),
            (udp.as_fd(), 4),
            (connected.as_fd(), 5),
            (v4.as_fd(), 6),
        ],
        &[("SERVER_STARTER_PORT", env)],
    );
    let error = |key: &str| {
        entry(&lines, key)["error"]
            .as_str()
            .unwrap_or("(adopted)")
            .to_owned()
    };
    assert_eq!(error("8001"), "fd 3 (`8001`) is not a socket");
    assert_eq!(
        error("127.0.0.1:8002"),
        "fd 4 (`127.0.0.1:8002`) is a datagram (UDP or unix datagram) socket, expected a stream listener (TCP or unix)"
    );
    assert_eq!(
        error("8003"),
        "fd 5 (`8003`) is a stream socket that is not listening (no `listen()` was called)"
    );
    assert_eq!(
        error("8004"),
        "fd 9 (`8004`) is not an open descriptor in this process"
    );
    assert_eq!(
        error("[::1]:8005"),
        "fd 6 (`[::1]:8005`) is an IPv4 socket, but its key says IPv6"
    );
}

#[test]
fn systemd_descriptors_are_adopted_from_fd_three() {
    let v4 = TcpListener::bind("127.0.0.1:0").expect("bind v4");
    let addr = v4.local_addr().expect("addr").to_string();
    let lines = probe(
        &[(v4.as_fd(), 3)],
        &[("LISTEN_FDS", "1"), ("LISTEN_FDNAMES", "web")],
    );
    assert_eq!(lines[0]["source"], "Systemd");
    let line = entry(&lines, "web");
    assert_eq!(line["addr"], addr.as_str());
    assert_eq!(line["cloexec"], true);
}
