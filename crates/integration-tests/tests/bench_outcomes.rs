//! `gracedown bench` against servers that misbehave on purpose: each outcome
//! class is produced by a real server and reported in the right class, and
//! the counts agree with what the server says it answered.

use std::process::Command;

use serde_json::Value;

use crate::support::process::{Output, Proc, run};
use crate::support::{TempDir, gracedown};

pub(crate) fn misbehave(mode: &str) -> (Proc, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_misbehave"));
    cmd.arg(mode);
    let proc = Proc::spawn(cmd);
    let line = proc.wait_for_line("listening", |l| l.starts_with("listening "));
    let addr = line.trim_start_matches("listening ").to_owned();
    (proc, addr)
}

pub(crate) fn bench(args: &[&str]) -> (Output, Value) {
    let mut cmd = Command::new(gracedown());
    cmd.arg("bench").arg("--json").args(args);
    let out = run(cmd);
    let json = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("bench printed no JSON ({e}): {out:?}"));
    (out, json)
}

pub(crate) fn outcome(json: &Value, class: &str) -> u64 {
    json["outcomes"][class]
        .as_u64()
        .unwrap_or_else(|| panic!("no outcomes.{class} in {json}"))
}

#[test]
fn a_close_as_the_request_arrives_is_closed_before_response() {
    let (_server, addr) = misbehave("idle-close");
    let (out, json) = bench(&["-c", "2", "-d", "500ms", &format!("http://{addr}/")]);
    assert!(out.status.success(), "{out:?}");
    assert!(outcome(&json, "ok") > 0, "{json}");
    assert!(outcome(&json, "closed_before_response") > 0, "{json}");
    assert_eq!(
        json["errors"],
        outcome(&json, "closed_before_response"),
        "no other class: {json}"
    );
}

#[test]
fn a_reset_mid_response_is_truncated() {
    let (_server, addr) = misbehave("reset-mid-response");
    let (_, json) = bench(&["-c", "2", "-d", "300ms", &format!("http://{addr}/")]);
    assert!(outcome(&json, "truncated") > 0, "{json}");
    assert_eq!(outcome(&json, "ok"), 0, "{json}");
    assert_eq!(json["errors"], outcome(&json, "truncated"), "{json}");
}

#[test]
fn a_server_that_never_answers_is_a_timeout() {
    let (_server, addr) = misbehave("never-answer");
    let (_, json) = bench(&[
        "-c",
        "2",
        "-d",
        "300ms",
        "--timeout",
        "200ms",
        &format!("http://{addr}/"),
    ]);
    assert!(outcome(&json, "timeout") >= 2, "{json}");
    assert_eq!(json["errors"], outcome(&json, "timeout"), "{json}");
}

#[test]
fn a_refused_connection_is_connect_failed() {
    let port = crate::support::free_port();
    let (_, json) = bench(&[
        "-c",
        "1",
        "-d",
        "200ms",
        &format!("http://127.0.0.1:{port}/"),
    ]);
    assert!(outcome(&json, "connect_failed") > 0, "{json}");
    assert_eq!(outcome(&json, "ok"), 0, "{json}");
}

#[test]
fn a_low_goaway_is_unprocessed_and_re_sent_not_an_error() {
    let (_server, addr) = misbehave("goaway-low");
    let (out, json) = bench(&[
        "--h2c",
        "-c",
        "2",
        "-d",
        "500ms",
        "--fail-on-error",
        &format!("http://{addr}/"),
    ]);
    assert!(
        out.status.success(),
        "no error, so --fail-on-error passes: {out:?}"
    );
    assert!(outcome(&json, "unprocessed") > 0, "{json}");
    assert!(outcome(&json, "ok") > 0, "{json}");
    assert_eq!(json["errors"], 0, "{json}");
    assert!(json["goaways"].as_u64().unwrap_or(0) > 0, "{json}");
}

#[test]
fn counts_agree_with_the_server_and_fail_on_error_has_its_exit_code() {
    let (server, addr) = misbehave("count");
    let dir = TempDir::new("bench-count");
    let timeline = dir.join("timeline.csv");
    let plot = dir.join("plot.svg");
    let (out, json) = bench(&[
        "-c",
        "4",
        "-d",
        "500ms",
        "--timeline",
        timeline.to_str().expect("utf-8"),
        "--plot",
        plot.to_str().expect("utf-8"),
        &format!("http://{addr}/"),
    ]);
    assert!(out.status.success(), "{out:?}");
    server.signal(libc::SIGTERM);
    let line = server.wait_for_line("the server's count", |l| l.starts_with("answered="));
    assert_eq!(line, format!("answered={}", outcome(&json, "ok")), "{json}");
    let csv = std::fs::read_to_string(&timeline).expect("timeline written");
    assert!(
        csv.starts_with(
            "t_ms,ok,unprocessed,connect_failed,closed_before_response,truncated,timeout,errors,connects,goaways,latency_mean_us,latency_max_us,restarts\n"
        ),
        "{csv}"
    );
    let rows: u64 = csv
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(1)?.parse::<u64>().ok())
        .sum();
    assert_eq!(
        rows,
        outcome(&json, "ok"),
        "the timeline accounts for every response"
    );
    let svg = std::fs::read_to_string(&plot).expect("plot written");
    assert!(
        svg.starts_with("<svg") && svg.contains(&format!("GET http://{addr}/ (http/1.1)")),
        "{svg:.200}"
    );

    let (_idle, idle_addr) = misbehave("idle-close");
    let mut cmd = Command::new(gracedown());
    cmd.args([
        "bench",
        "-c",
        "1",
        "-d",
        "300ms",
        "--fail-on-error",
        &format!("http://{idle_addr}/"),
    ]);
    let failed = run(cmd);
    assert_eq!(failed.status.code(), Some(6), "{failed:?}");
    assert!(
        failed.stdout.contains("closed_before_response"),
        "{failed:?}"
    );
}
