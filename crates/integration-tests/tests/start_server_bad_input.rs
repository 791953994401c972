//! Bad input to our start_server: a clear error naming the value, a non-zero
//! exit, nothing left running and no stale files.

use std::process::Command;

use crate::support::process::{Output, run};
use crate::support::starter::Impl;
use crate::support::{TempDir, gracedown};

fn start(args: &[String], program: &[&str]) -> (Output, TempDir) {
    let dir = TempDir::new("ss-bad");
    let mut all = vec![
        format!("--status-file={}", dir.join("status").display()),
        format!("--pid-file={}", dir.join("pid").display()),
    ];
    all.extend_from_slice(args);
    let mut cmd: Command = Impl::Ours.command(&all, &[]);
    cmd.args(program);
    (run(cmd), dir)
}

/// Checks the refusal and returns the last line of its stderr.
fn assert_refused(args: &[&str], program: &[&str], code: i32, text: &str) -> String {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let (out, dir) = start(&args, program);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {out:?}");
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains(text),
        "{args:?}: `{text}` in the last line of {out:?}"
    );
    assert!(
        !out.stderr.contains("starting new worker"),
        "no worker was started: {out:?}"
    );
    for file in ["status", "pid"] {
        assert!(!dir.join(file).exists(), "no stale {file} file: {args:?}");
    }
    last.to_owned()
}

#[test]
fn invalid_option_values_are_named() {
    let gd = gracedown().display().to_string();
    let prog = [gd.as_str(), "serve"];
    assert_refused(
        &["--interval=soon"],
        &prog,
        1,
        "invalid value `soon` for --interval",
    );
    assert_refused(
        &["--backlog=-3"],
        &prog,
        1,
        "invalid value `-3` for --backlog",
    );
    assert_refused(
        &["--signal-on-term=NOPE"],
        &prog,
        1,
        "invalid value `NOPE` for --signal-on-term",
    );
    assert_refused(
        &["--kill-old-delay=x"],
        &prog,
        1,
        "invalid value `x` for --kill-old-delay",
    );
    assert_refused(
        &["--ready-timeout=later"],
        &prog,
        1,
        "invalid value `later` for --ready-timeout",
    );
    assert_refused(&["--port=80x"], &prog, 255, "invalid ``port'' value:80x");
    assert_refused(&["--frobnicate"], &prog, 1, "Unknown option: frobnicate");
}

#[test]
fn port_in_use_exits_with_the_errno() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let gd = gracedown().display().to_string();
    let perl = format!("failed to bind to {addr}:Address already in use");
    let last = assert_refused(&[&format!("--port={addr}")], &[&gd, "serve"], 98, &perl);
    // Perl's line, the cause once (not again with Rust's "(os error 98)").
    assert!(last.ends_with(&perl), "{last:?}");
}

#[test]
fn missing_program_is_refused_before_anything_runs() {
    assert_refused(
        &["--port=127.0.0.1:0"],
        &["/nonexistent/server"],
        255,
        "server program `/nonexistent/server` is not an executable file",
    );
    assert_refused(
        &["--port=127.0.0.1:0"],
        &["no-such-server-program"],
        255,
        "`no-such-server-program` is not an executable file",
    );
    assert_refused(
        &["--port=127.0.0.1:0"],
        &[],
        255,
        "server program not specified",
    );
}

#[test]
fn unreadable_envdir_is_refused() {
    let gd = gracedown().display().to_string();
    assert_refused(
        &["--envdir=/nonexistent/envdir"],
        &[&gd, "serve"],
        2,
        "cannot read the envdir `/nonexistent/envdir`",
    );
}
