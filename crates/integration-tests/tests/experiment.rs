//! `gracedown experiment`, end to end but short: zero failures and more
//! than one generation per restarting row; and a non-zero exit, naming the
//! failing class, when the worker drains naively.

use std::process::Command;

use serde_json::Value;

use crate::support::process::run;
use crate::support::{TempDir, gracedown, naive_worker};

fn experiment(out: &std::path::Path, extra: &[&str]) -> crate::support::process::Output {
    let mut cmd = Command::new(gracedown());
    cmd.args([
        "experiment",
        "--duration",
        "1500ms",
        "--intervals",
        "500ms,200ms",
        "--out",
    ])
    .arg(out)
    .args(extra);
    run(cmd)
}
#[test]
fn short_experiment_shows_zero_failures_and_new_generations() {
    let dir = TempDir::new("experiment");
    let out = experiment(&dir.0, &[]);
    assert!(out.status.success(), "{out:?}");
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("experiment.json")).expect("json"))
            .expect("valid json");
    let runs = json["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 6, "2 protocols x 3 runs: {json}");
    for run in runs {
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
        }
    }
    for chart in ["http1.svg", "h2.svg"] {
        let svg = std::fs::read_to_string(dir.join(chart)).expect("chart");
        assert!(svg.contains("restart"), "{chart} marks the restarts");
    }
    assert!(
        out.stdout.contains("server    client    protocol restarts"),
        "the table: {out:?}"
    );
}

#[test]
fn experiment_fails_naming_the_class_when_the_worker_drains_naively() {
    let dir = TempDir::new("experiment-naive");
    let worker = naive_worker().display().to_string();
    let out = experiment(&dir.0, &["--protocols", "http1", "--worker", &worker]);
    assert_eq!(out.status.code(), Some(6), "{out:?}");
    assert!(
        out.stdout.contains("FAILED: requests failed in http/1.1"),
        "{out:?}"
    );
    assert!(out.stdout.contains("closed_before_response"), "{out:?}");
}
