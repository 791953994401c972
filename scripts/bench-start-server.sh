#!/usr/bin/env bash
# Benchmarks of start_server (BENCHMARKS.md, "start_server"):
#   1. resident memory (VmRSS) of start_server with one worker: ours vs Perl's;
#   2. time from `kill -HUP` until the old generation is retired (the status file
#      lists only the new one), for a worker that says READY=1 and has no open
#      connections: ours vs Perl's (which waits --interval, 1 s by default).
# Needs: start_server (libserver-starter-perl), python3.
# Usage: scripts/bench-start-server.sh [RESTARTS (10)]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
restarts=${1:-10}
# Built on its own, as `cargo install --path crates/start-server` would: built
# together with gracedown-cli, Cargo's feature unification would add tokio's
# multi-thread scheduler (and libm) to a binary that runs a current-thread runtime.
cargo build --release -q -p gracedown-cli
cargo build --release -q -p start-server
ours=target/release/start_server
worker=target/release/gracedown
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

measure() {
  local name=$1 bin=$2 port
  port=$(free_port)
  local status="$dir/$name.status"
  "$bin" --port="127.0.0.1:$port" --status-file="$status" -- "$worker" serve 2>>"$dir/$name.log" &
  local pid=$!
  for _ in $(seq 200); do [ -s "$status" ] && break; sleep 0.05; done
  # Every restart: HUP, then poll the status file until one generation, newer, is left.
  python3 - "$pid" "$status" "$restarts" <<'PY' >"$dir/$name.times"
import os, signal, sys, time
pid, status, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
def gens():
    try:
        return [int(l.split(":")[0]) for l in open(status) if ":" in l]
    except FileNotFoundError:
        return []
for _ in range(n):
    before = max(gens())
    t0 = time.monotonic()
    os.kill(pid, signal.SIGHUP)
    deadline = t0 + 30
    while time.monotonic() < deadline:
        g = gens()
        if len(g) == 1 and g[0] > before:
            break
        time.sleep(0.001)
    print(round((time.monotonic() - t0) * 1000, 1))
PY
  # Resident memory with one worker, once the restarts are over and it is idle.
  sleep 1
  local rss pss
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  pss=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup")
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  local median; median=$(sort -g "$dir/$name.times" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  echo "| $name | ${rss} kB | ${pss} kB | ${median} ms | $(tr '\n' ' ' <"$dir/$name.times")|"
}

echo "# $(date -u +%FT%TZ), $(nproc) cores, $(uname -r), $restarts restarts each"
echo "| start_server | VmRSS with one worker | PSS | HUP → old generation retired (median) | each restart (ms) |"
echo "| --- | --- | --- | --- | --- |"
measure gracedown "$ours"
measure perl "$(command -v start_server)"
