//! `gracedown experiment`, end to end but short: zero failures and more
//! than one generation per restarting row; a non-zero exit, naming the
//! scenario and the failing class, when the worker drains naively, in the
//! lab and across the emulated WAN; nginx's 502s counted as errors in the
//! proxy scenario; and a fleet behind a real HAProxy replaced one instance
//! at a time, losing nothing with the shutdown delay and failing requests
//! without it.

use std::process::Command;

use serde_json::Value;

use crate::support::process::run;
use crate::support::{TempDir, gracedown, naive_worker};

fn experiment(out: &std::path::Path, extra: &[&str]) -> crate::support::process::Output {
    let mut cmd = Command::new(gracedown());
    cmd.args(["experiment", "--out"]).arg(out).args(extra);
    run(cmd)
}

fn runs(dir: &TempDir) -> Vec<Value> {
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("experiment.json")).expect("json"))
            .expect("valid json");
    json["runs"].as_array().expect("runs").clone()
}

#[test]
fn short_lab_experiment_shows_zero_failures_and_new_generations() {
    let dir = TempDir::new("experiment");
    let out = experiment(
        &dir.0,
        &[
            "--scenario",
            "lab",
            "--duration",
            "1500ms",
            "--intervals",
            "500ms,200ms",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let runs = runs(&dir);
    assert_eq!(runs.len(), 6, "2 protocols x 3 runs: {runs:?}");
    for run in &runs {
        assert_eq!(run["scenario"], "lab", "{run}");
        assert_eq!(run["report"]["errors"], 0, "{run}");
        assert!(
            run["report"]["outcomes"]["ok"].as_u64().unwrap_or(0) > 0,
            "{run}"
        );
        if run["restart_every_ms"].is_number() {
            assert!(run["restarts"].as_u64().unwrap_or(0) >= 2, "{run}");
            assert!(
                run["report"]["generations"].as_u64().unwrap_or(0) > 1,
                "several generations served: {run}"
            );
            assert!(run["report"]["dips"]["per_restart_ms"].is_array(), "{run}");
        }
    }
    for chart in ["lab-http1.svg", "lab-h2.svg"] {
        let svg = std::fs::read_to_string(dir.join(chart)).expect("chart");
        assert!(svg.contains("restart"), "{chart} marks the restarts");
    }
    assert!(
        out.stdout.contains("scene    server     client"),
        "the table: {out:?}"
    );
}

#[test]
fn experiment_fails_naming_the_class_when_the_worker_drains_naively() {
    let dir = TempDir::new("experiment-naive");
    let worker = naive_worker().display().to_string();
    let out = experiment(
        &dir.0,
        &[
            "--scenario",
            "lab",
            "--protocols",
            "http1",
            "--duration",
            "1500ms",
            "--intervals",
            "200ms",
            "--worker",
            &worker,
        ],
    );
    assert_eq!(out.status.code(), Some(6), "{out:?}");
    assert!(
        out.stdout
            .contains("FAILED: requests failed in lab http/1.1"),
        "{out:?}"
    );
    assert!(out.stdout.contains("closed_before_response"), "{out:?}");
}

#[test]
fn across_the_emulated_wan_a_naive_drain_loses_requests_to_the_idle_race() {
    let dir = TempDir::new("experiment-wan");
    let worker = naive_worker().display().to_string();
    let out = experiment(
        &dir.0,
        &[
            "--scenario",
            "wan",
            "--connections",
            "50",
            "--duration",
            "3s",
            "--intervals",
            "500ms",
            "--worker",
            &worker,
        ],
    );
    assert_eq!(out.status.code(), Some(6), "{out:?}");
    assert!(
        out.stdout
            .contains("FAILED: requests failed in wan http/1.1"),
        "{out:?}"
    );
    let runs = runs(&dir);
    let restarting = runs
        .iter()
        .find(|r| r["restart_every_ms"].is_number())
        .expect("a restarting run");
    assert!(
        restarting["report"]["outcomes"]["closed_before_response"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{restarting}"
    );
    assert_eq!(restarting["report"]["rtt_ms"], 50, "{restarting}");
    assert!(
        restarting["report"]["load"]
            .as_str()
            .unwrap_or("")
            .starts_with("think"),
        "{restarting}"
    );
}

#[test]
fn the_proxy_scenario_counts_nginxs_502s_as_errors() {
    let dir = TempDir::new("experiment-proxy");
    let worker = naive_worker().display().to_string();
    let out = experiment(
        &dir.0,
        &[
            "--scenario",
            "proxy",
            "--connections",
            "5",
            "--duration",
            "1s",
            "--intervals",
            "500ms",
            "--worker",
            &worker,
            "--",
            "--broken",
        ],
    );
    assert_eq!(out.status.code(), Some(6), "{out:?}");
    assert!(out.stdout.contains("proxy 5xx"), "{out:?}");
    for run in runs(&dir) {
        assert!(run["proxy_errors"].as_u64().unwrap_or(0) > 0, "{run}");
        assert_eq!(run["errors"], run["proxy_errors"], "{run}");
    }
}

#[test]
fn a_fleet_replaced_behind_haproxy_loses_nothing_with_the_shutdown_delay_only() {
    let dir = TempDir::new("experiment-fleet");
    let out = experiment(
        &dir.0,
        &[
            "--scenario",
            "fleet",
            "--connections",
            "20",
            "--duration",
            "3s",
            "--intervals",
            "500ms",
            "--fleet-lag",
            "300ms..600ms",
            "--fleet-delay",
            "1s",
        ],
    );
    // The rows without the delay fail requests, and are not the verdict.
    assert!(out.status.success(), "{out:?}");
    let runs = runs(&dir);
    assert_eq!(runs.len(), 8, "2 servers x 2 frontends x 2 runs: {runs:?}");
    let mut lost_without_delay = 0;
    for run in &runs {
        assert_eq!(run["scenario"], "fleet", "{run}");
        assert!(
            run["report"]["outcomes"]["ok"].as_u64().unwrap_or(0) > 0,
            "{run}"
        );
        let replacing = run["restart_every_ms"].is_number();
        if replacing {
            assert!(run["restarts"].as_u64().unwrap_or(0) >= 3, "{run}");
            assert!(
                run["report"]["generations"].as_u64().unwrap_or(0) > 3,
                "new instances served: {run}"
            );
        }
        match (run["server"].as_str(), replacing) {
            (Some("gracedown"), _) | (Some("gd-nodelay"), false) => {
                assert_eq!(run["errors"], 0, "{run}");
            }
            (Some("gd-nodelay"), true) => {
                lost_without_delay += run["errors"].as_u64().unwrap_or(0);
            }
            _ => panic!("unexpected row {run}"),
        }
    }
    // Each replacement stops an instance the balancer still routes a third
    // of the requests to for 300-600 ms; without the delay they fail.
    assert!(lost_without_delay > 0, "{runs:?}");
    for frontend in ["l4", "l7"] {
        let chart = format!("fleet-gracedown-{frontend}.svg");
        let svg = std::fs::read_to_string(dir.join(&chart)).expect("chart");
        assert!(svg.contains("restart"), "{chart} marks the replacements");
    }
    assert!(
        out.stdout.contains("fleet-l7 gd-nodelay"),
        "the table: {out:?}"
    );
}
