//! `gracedown bench`'s load models do what they claim: think time
//! paces each connection, an open-loop rate holds whatever the server does
//! and shows a stall in latency (no coordinated omission), and the
//! round-trip relay adds its delay without creating or hiding an error.

use serde_json::Value;

use crate::bench_outcomes::{bench, misbehave, outcome};

fn latency(json: &Value, at: &str) -> u64 {
    json["latency_us"][at]
        .as_u64()
        .unwrap_or_else(|| panic!("no latency_us.{at} in {json}"))
}

#[test]
fn think_time_paces_each_connection_by_its_mean_pause() {
    let (_server, addr) = misbehave("count");
    let (out, json) = bench(&[
        "-c",
        "4",
        "-d",
        "2s",
        "--think-time",
        "100ms",
        &format!("http://{addr}/"),
    ]);
    assert!(out.status.success(), "{out:?}");
    // 2 s of 100 ms pauses on 4 connections: about 20 requests each.
    let ok = outcome(&json, "ok");
    assert!((64..=88).contains(&ok), "{ok} requests: {json}");
    assert_eq!(json["load"], "think 100ms", "{json}");
}

#[test]
fn a_think_time_range_averages_to_its_middle() {
    let (_server, addr) = misbehave("count");
    let (_, json) = bench(&[
        "-c",
        "10",
        "-d",
        "3s",
        "--think-time",
        "50ms..250ms",
        &format!("http://{addr}/"),
    ]);
    // A mean pause of 150 ms: 10 connections x 3 s / 150 ms = 200.
    let ok = outcome(&json, "ok");
    assert!((160..=240).contains(&ok), "{ok} requests: {json}");
}

#[test]
fn an_open_loop_rate_holds_per_second() {
    let (_server, addr) = misbehave("count");
    let (out, json) = bench(&[
        "-c",
        "10",
        "-d",
        "2s",
        "--rate",
        "500",
        &format!("http://{addr}/"),
    ]);
    assert!(out.status.success(), "{out:?}");
    let ok = outcome(&json, "ok");
    assert!(
        (950..=1050).contains(&ok),
        "500/s for 2 s is 1000 +- 5 %, got {ok}: {json}"
    );
    assert_eq!(json["unsent"], 0, "{json}");
}

#[test]
fn the_round_trip_shows_in_every_request_and_adds_no_error() {
    let (server, addr) = misbehave("count");
    let (out, json) = bench(&[
        "-c",
        "4",
        "-d",
        "2s",
        "--rtt",
        "40ms",
        &format!("http://{addr}/"),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        latency(&json, "p50") >= 40_000,
        "p50 at least the round trip: {json}"
    );
    assert_eq!(json["errors"], 0, "the relay creates no error: {json}");
    assert_eq!(json["rtt_ms"], 40, "{json}");
    // The relay hides nothing either: what the server answered is what arrived.
    server.signal(libc::SIGTERM);
    let line = server.wait_for_line("the server's count", |l| l.starts_with("answered="));
    assert_eq!(line, format!("answered={}", outcome(&json, "ok")), "{json}");
}

#[test]
fn through_the_relay_a_server_that_closes_idle_connections_shows_its_errors() {
    let (_server, addr) = misbehave("idle-close");
    let (_, json) = bench(&[
        "-c",
        "4",
        "-d",
        "1s",
        "--rtt",
        "20ms",
        "--think-time",
        "20ms",
        &format!("http://{addr}/"),
    ]);
    assert!(outcome(&json, "closed_before_response") > 0, "{json}");
}

#[test]
fn an_open_loop_rate_shows_a_stall_that_the_closed_loop_hides() {
    // Back to back, the stall delays one request per connection among thousands.
    let (_closed, addr) = misbehave("stall-once");
    let (_, closed) = bench(&["-c", "2", "-d", "2s", &format!("http://{addr}/")]);
    assert!(
        latency(&closed, "max") >= 500_000,
        "the stalled request itself: {closed}"
    );
    assert!(
        latency(&closed, "p99_9") < 250_000,
        "closed loop hides the stall: {closed}"
    );
    // At a fixed rate, every request due during the stall waits for it.
    let (_open, addr) = misbehave("stall-once");
    let (_, open) = bench(&[
        "-c",
        "10",
        "-d",
        "2s",
        "--rate",
        "200",
        &format!("http://{addr}/"),
    ]);
    assert!(latency(&open, "max") >= 500_000, "{open}");
    assert!(
        latency(&open, "p99_9") >= 250_000,
        "the open loop shows the stall: {open}"
    );
}
