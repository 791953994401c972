#!/usr/bin/env python3
"""Checks that the deploy kit's timings and probes fit together.

    check-deploy.py KUBERNETES_YAML... -- SYSTEMD_UNIT...

Kubernetes: every container that runs `gracedown serve` (or nothing: the
image's default, deploy/Dockerfile's `serve`) has a grace period longer than
its longest shutdown: its shutdown delay, its drain timeout (gracedown
serve's pod defaults, 5 s and 15 s, where the arguments do not say) and the
5 s that what the drain's deadline forced may take to close; a readiness
probe on /readyz; a liveness probe on /livez that tolerates the drain (its
connection is refused once accepting stops, so periodSeconds x
failureThreshold must exceed the drain); and no preStop hook (the delay is
the server's own). systemd: a unit's TimeoutStopSec covers what it runs:
gracedown serve's longest shutdown, or start_server's --drain-timeout, which
in turn covers its worker's.

Needs PyYAML (installed with kubernetes-validate). Prints one line per
problem and exits 1 if there is any.
"""

import re
import shlex
import sys

import yaml

# gracedown serve's defaults in a pod and elsewhere (ShutdownTiming), and
# how long what the drain's deadline forced may take to close (FORCED_CLOSE).
POD = {"--shutdown-delay": 5.0, "--drain-timeout": 15.0}
HOST = {"--shutdown-delay": 0.0, "--drain-timeout": 30.0}
FORCED_CLOSE = 5.0
# systemd's default TimeoutStopSec; Kubernetes' default grace period.
SYSTEMD_STOP = 90.0
KUBERNETES_GRACE = 30.0

# Go-style (gracedown: 1m30s) and systemd's forms (1min 30sec, 2minutes).
UNITS = {
    "us": 1e-6, "usec": 1e-6, "ms": 0.001, "msec": 0.001,
    "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hour": 3600.0, "hours": 3600.0,
}


def seconds(text):
    """`1m30s`, `500ms`, `1min 30sec`, `35` (seconds), `infinity` -> seconds."""
    text = str(text).strip()
    if text == "infinity":
        return float("inf")
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]+)", text)
    compact = text.replace(" ", "")
    if not parts or "".join(n + u for n, u in parts) != compact or any(u not in UNITS for _, u in parts):
        raise ValueError(f"`{text}` is not a duration")
    return sum(float(n) * UNITS[u] for n, u in parts)


def option(args, name, default):
    """The value of `--name VALUE` or `--name=VALUE` in args, else default."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return seconds(args[i + 1])
        if arg.startswith(name + "="):
            return seconds(arg.split("=", 1)[1])
    return default


def serve_timing(args, defaults):
    """(delay, drain) of a `gracedown serve` command line."""
    return (
        option(args, "--shutdown-delay", defaults["--shutdown-delay"]),
        option(args, "--drain-timeout", defaults["--drain-timeout"]),
    )


def longest(delay, drain):
    return delay + drain + FORCED_CLOSE


def check_kubernetes(path, problems):
    with open(path) as f:
        documents = [d for d in yaml.safe_load_all(f) if d]
    for doc in documents:
        if doc.get("kind") not in ("Deployment", "StatefulSet", "DaemonSet"):
            continue
        name = f"{path}: {doc['kind']} {doc['metadata']['name']}"
        pod = doc["spec"]["template"]["spec"]
        grace = float(pod.get("terminationGracePeriodSeconds", KUBERNETES_GRACE))
        for container in pod["containers"]:
            where = f"{name}, container {container['name']}"
            command = list(container.get("command", [])) + list(container.get("args", []))
            if not command:
                command = ["serve"]  # deploy/Dockerfile's CMD
            if "serve" not in command:
                continue
            delay, drain = serve_timing(command, POD)
            if longest(delay, drain) >= grace:
                problems.append(
                    f"{where}: terminationGracePeriodSeconds {grace:g} does not cover the shutdown delay "
                    f"{delay:g} s + drain timeout {drain:g} s + {FORCED_CLOSE:g} s to close what it forced"
                )
            if delay <= 0:
                problems.append(f"{where}: no shutdown delay: requests sent during the endpoint lag fail")
            for probe, path_ in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
                got = container.get(probe, {}).get("httpGet", {}).get("path")
                if got != path_:
                    problems.append(f"{where}: {probe} is on {got!r}, not {path_}")
            liveness = container.get("livenessProbe", {})
            # Kubernetes' defaults: every 10 s, 3 failures.
            tolerated = float(liveness.get("periodSeconds", 10)) * float(liveness.get("failureThreshold", 3))
            if liveness and tolerated <= drain + FORCED_CLOSE:
                problems.append(
                    f"{where}: the livenessProbe fails after {tolerated:g} s of refused connections, "
                    f"within the drain ({drain:g} s + {FORCED_CLOSE:g} s): a draining pod would be killed"
                )
            if container.get("lifecycle", {}).get("preStop"):
                problems.append(f"{where}: a preStop hook delays SIGTERM past the shutdown delay")


def unit_settings(path):
    settings = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;[" or "=" not in line:
                continue
            key, value = line.split("=", 1)
            settings[key.strip()] = value.strip()
    return settings


def check_unit(path, problems):
    settings = unit_settings(path)
    if "ExecStart" not in settings:
        return
    command = shlex.split(settings["ExecStart"])
    stop = seconds(settings.get("TimeoutStopSec", SYSTEMD_STOP))
    programs = [c.rsplit("/", 1)[-1] for c in command]
    if "start_server" in programs:
        split = command.index("--") if "--" in command else len(command)
        supervisor, worker = command[:split], command[split + 1:]
        kill_at = option(supervisor, "--drain-timeout", None)
        if kill_at is None:
            problems.append(f"{path}: start_server has no --drain-timeout: systemd's {stop:g} s decides")
            kill_at = stop
        if "serve" in worker:
            delay, drain = serve_timing(worker, HOST)
            if longest(delay, drain) > kill_at:
                problems.append(
                    f"{path}: start_server kills workers at {kill_at:g} s, before their delay {delay:g} s "
                    f"+ drain {drain:g} s + {FORCED_CLOSE:g} s to close what it forced"
                )
        if kill_at >= stop:
            problems.append(
                f"{path}: TimeoutStopSec {stop:g} does not cover start_server's --drain-timeout {kill_at:g}"
            )
    elif "serve" in command:
        delay, drain = serve_timing(command, HOST)
        if longest(delay, drain) >= stop:
            problems.append(
                f"{path}: TimeoutStopSec {stop:g} does not cover the shutdown delay {delay:g} s "
                f"+ drain timeout {drain:g} s + {FORCED_CLOSE:g} s to close what it forced"
            )


def main(argv):
    if "--" not in argv:
        sys.exit(__doc__)
    split = argv.index("--")
    manifests, units = argv[:split], argv[split + 1:]
    problems = []
    for path in manifests:
        try:
            check_kubernetes(path, problems)
        except ValueError as e:
            problems.append(f"{path}: {e}")
    for path in units:
        try:
            check_unit(path, problems)
        except ValueError as e:
            problems.append(f"{path}: {e}")
    for problem in problems:
        print(problem)
    if problems:
        sys.exit(1)
    print(f"ok: {len(manifests)} manifest(s), {len(units)} unit(s)")


if __name__ == "__main__":
    main(sys.argv[1:])
