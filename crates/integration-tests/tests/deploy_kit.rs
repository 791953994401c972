//! The deploy kit (`deploy/`), validated offline with the real tools: the
//! Kubernetes manifests against Kubernetes' own schemas
//! (`kubernetes-validate`, from PyPI), the systemd units with
//! `systemd-analyze verify`, and `scripts/check-deploy.py`: every grace
//! period covers the server's shutdown delay plus its drain, the probes are
//! on /readyz and /livez. The checker itself is shown to fail on a kit that
//! does not fit.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::process::{Output, run};
use crate::support::{TempDir, gracedown, tool};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn deploy(path: &str) -> PathBuf {
    repository().join("deploy").join(path)
}

/// The Python environment with kubernetes-validate (and PyYAML), which
/// `scripts/test.sh` creates.
fn venv(program: &str) -> PathBuf {
    let dir = std::env::var_os("GRACEDOWN_DEPLOY_VENV")
        .map_or_else(|| repository().join("target/deploy-venv"), PathBuf::from);
    let path = dir.join("bin").join(program);
    assert!(
        path.exists(),
        "`{}` is missing: run `scripts/test.sh`, which installs kubernetes-validate from PyPI there",
        path.display()
    );
    path
}

const MANIFESTS: [&str; 1] = ["kubernetes/gracedown.yaml"];
const UNITS: [&str; 3] = [
    "systemd/gracedown.service",
    "systemd/gracedown-starter.service",
    "systemd/gracedown-starter.socket",
];

fn check(manifests: &[PathBuf], units: &[PathBuf]) -> Output {
    let mut cmd = Command::new(venv("python"));
    cmd.arg(repository().join("scripts/check-deploy.py"))
        .args(manifests)
        .arg("--")
        .args(units);
    run(cmd)
}

#[test]
fn the_kubernetes_manifests_pass_kubernetes_schemas_strictly() {
    // The newest schemas the validator knows, and an older release still in use.
    for version in [None, Some("1.30")] {
        let mut cmd = Command::new(venv("kubernetes-validate"));
        cmd.arg("--strict");
        if let Some(version) = version {
            cmd.args(["--kubernetes-version", version]);
        }
        cmd.args(MANIFESTS.map(deploy));
        let out = run(cmd);
        assert!(out.status.success(), "{out:?}");
        for resource in ["deployment/gracedown", "service/gracedown"] {
            assert!(
                out.stdout
                    .contains(&format!("passed for resource {resource}"))
                    || out
                        .stderr
                        .contains(&format!("passed for resource {resource}")),
                "{resource}: {out:?}"
            );
        }
    }
}

#[test]
fn the_systemd_units_pass_systemd_analyze_verify() {
    // The units name the installed binaries; verify checks that they exist,
    // so the copies name the ones under test.
    let dir = TempDir::new("deploy-units");
    let start_server = PathBuf::from(env!("CARGO_BIN_EXE_start-server-dup"));
    for unit in UNITS {
        let text = std::fs::read_to_string(deploy(unit)).expect("unit");
        let text = text
            .replace(
                "/usr/local/bin/gracedown",
                &gracedown().display().to_string(),
            )
            .replace(
                "/usr/local/bin/start_server",
                &start_server.display().to_string(),
            );
        let name = Path::new(unit).file_name().expect("name");
        std::fs::write(dir.0.join(name), text).expect("copy");
    }
    let mut cmd = Command::new(tool("systemd-analyze", "systemd"));
    cmd.arg("verify")
        .args(UNITS.map(|u| dir.0.join(Path::new(u).file_name().expect("name"))));
    let out = run(cmd);
    // verify exits 0 on settings it ignores; anything it says is a defect.
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stderr.trim(), "", "{out:?}");
    assert_eq!(out.stdout.trim(), "", "{out:?}");
}

#[test]
fn every_grace_period_covers_the_servers_delay_and_drain_and_probes_its_endpoints() {
    let out = check(&MANIFESTS.map(deploy), &UNITS.map(deploy));
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout.contains("ok: 1 manifest(s), 3 unit(s)"),
        "{out:?}"
    );

    // The same kit, each timing made too short, and a probe moved: each is named.
    let dir = TempDir::new("deploy-broken");
    let broken = |from: &str, name: &str, edits: &[(&str, &str)]| {
        let mut text = std::fs::read_to_string(deploy(from)).expect("read");
        for (old, new) in edits {
            assert!(text.contains(old), "{from} has `{old}`");
            text = text.replace(old, new);
        }
        let path = dir.0.join(name);
        std::fs::write(&path, text).expect("write");
        path
    };
    let manifest = broken(
        "kubernetes/gracedown.yaml",
        "gracedown.yaml",
        &[
            (
                "terminationGracePeriodSeconds: 30",
                "terminationGracePeriodSeconds: 25",
            ),
            ("path: /livez", "path: /healthz"),
            ("failureThreshold: 3", "failureThreshold: 1"),
        ],
    );
    let bare = broken(
        "systemd/gracedown.service",
        "gracedown.service",
        &[("--drain-timeout 15s", "--drain-timeout 1m")],
    );
    let starter = broken(
        "systemd/gracedown-starter.service",
        "gracedown-starter.service",
        &[("--drain-timeout=40", "--drain-timeout=25")],
    );
    let out = check(&[manifest], &[bare, starter]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    for expected in [
        "terminationGracePeriodSeconds 25 does not cover the shutdown delay 5 s + drain timeout 15 s + 5 s to close what it forced",
        "livenessProbe is on '/healthz', not /livez",
        "the livenessProbe fails after 10 s of refused connections, within the drain (15 s + 5 s)",
        "TimeoutStopSec 30 does not cover the shutdown delay 5 s + drain timeout 60 s + 5 s to close what it forced",
        "start_server kills workers at 25 s, before their delay 0 s + drain 30 s + 5 s to close what it forced",
    ] {
        assert!(out.stdout.contains(expected), "`{expected}` in {out:?}");
    }
    assert_eq!(out.stdout.lines().count(), 5, "{out:?}");
}
