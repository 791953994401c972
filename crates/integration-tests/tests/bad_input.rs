//! Bad input to `gracedown serve`: each a one-line error naming the bad value
//! and a distinct exit code.

use std::process::Command;

use crate::support::gracedown;
use crate::support::process::{Output, run};

fn serve(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(gracedown());
    cmd.arg("serve")
        .args(args)
        .env_remove("SERVER_STARTER_PORT")
        .env_remove("LISTEN_FDS");
    cmd.envs(env.iter().copied());
    run(cmd)
}

fn assert_one_line(out: &Output, code: i32, text: &str) {
    assert_eq!(out.status.code(), Some(code), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "one line on stderr: {out:?}");
    assert!(out.stderr.contains(text), "`{text}` in {out:?}");
}

#[test]
fn malformed_server_starter_port_exits_3_naming_the_entry() {
    let out = serve(&[], &[("SERVER_STARTER_PORT", "127.0.0.1:80=3;80x=4")]);
    assert_one_line(
        &out,
        3,
        "gracedown: error: `SERVER_STARTER_PORT` entry `80x=4` is not `PORT=FD`, `HOST:PORT=FD` or `PATH=FD`",
    );
}

#[test]
fn inherited_fd_that_is_not_open_exits_3() {
    let out = serve(&[], &[("SERVER_STARTER_PORT", "8080=97")]);
    assert_one_line(
        &out,
        3,
        "fd 97 (`8080`) is not an open descriptor in this process",
    );
}

#[test]
fn port_in_use_exits_4() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = serve(&["--listen", &addr], &[]);
    assert_one_line(
        &out,
        4,
        &format!("cannot listen on `{addr}`: Address already in use"),
    );
}

#[test]
fn missing_cert_file_exits_5() {
    let out = serve(
        &[
            // An ephemeral port: the default one may be taken on this machine.
            "--listen",
            "127.0.0.1:0",
            "--cert",
            "/nonexistent/cert.pem",
            "--key",
            "/nonexistent/key.pem",
        ],
        &[],
    );
    assert_one_line(
        &out,
        5,
        "cannot read TLS file `/nonexistent/cert.pem`: No such file",
    );
}

#[test]
fn unknown_flag_exits_2() {
    let out = serve(&["--frobnicate"], &[]);
    assert_one_line(&out, 2, "unexpected argument '--frobnicate' found");
}

#[test]
fn bad_listen_address_exits_2_naming_it() {
    let out = serve(&["--listen", "localhost:80"], &[]);
    assert_one_line(&out, 2, "`localhost:80` is not an address to listen on");
    let out = serve(&["--listen", "127.0.0.1:99999"], &[]);
    assert_one_line(&out, 2, "the port `99999` is above 65535");
}

#[test]
fn a_bad_duration_is_named_whole_with_what_is_wrong_and_whose_help_to_read() {
    for (value, why) in [
        ("-1s", "`-1s` is not a duration: a duration is not negative"),
        ("5parsecs", "`parsecs` is not a unit of time"),
        (
            "forever",
            "`forever` is not a duration: a duration is a number with a unit",
        ),
    ] {
        let out = serve(&["--drain-timeout", value], &[]);
        assert_one_line(&out, 2, why);
        assert_one_line(&out, 2, "(see `gracedown serve --help`)");
    }
}

fn bench(args: &[&str]) -> Output {
    let mut cmd = Command::new(gracedown());
    cmd.arg("bench").args(args);
    run(cmd)
}

#[test]
fn bench_refuses_a_port_out_of_range_naming_it() {
    // Ports that do not fit, and port 0: nothing is sent anywhere.
    for (url, port) in [
        ("http://127.0.0.1:99999/", "`99999`"),
        ("http://127.0.0.1:0/", "`0`"),
        ("https://[::1]:65536/", "`65536`"),
    ] {
        let out = bench(&["-d", "1s", url]);
        assert_one_line(&out, 2, port);
    }
}

#[test]
fn bench_refuses_zero_connections_duration_and_timeout_naming_the_option() {
    for (flag, value) in [("-c", "0"), ("-d", "0s"), ("--timeout", "0ms")] {
        let out = bench(&[flag, value, "http://127.0.0.1:9/"]);
        assert_one_line(&out, 2, &format!("'{value}'"));
        assert!(out.stderr.contains("zero"), "{out:?}");
    }
}
