#!/usr/bin/env bash
# Benchmarks of `gracedown bench` itself (BENCHMARKS.md, "gracedown bench"):
#   1. its req/s / wrk's, HTTP/1.1, same server, same connections and threads;
#   2. its req/s / h2load's (-m 1), h2c, same;
#   3. its resident memory after 60 s / after 10 s of a 60 s run (constant memory).
# Needs: wrk, h2load (nghttp2-client).
# Usage: scripts/bench-bench.sh [SECONDS_PER_RUN (5)] [ROUNDS (3)]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
dur=${1:-5}
rounds=${2:-3}
cargo build --release -q -p gracedown-cli
gd=target/release/gracedown
port=$(free_port)
"$gd" serve --listen "127.0.0.1:$port" 2>/dev/null &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.05; done
url="http://127.0.0.1:$port/"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a/b}'; }
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
bench_rps() { "$gd" bench --json -t 2 -c 10 -d "${dur}s" "$@" | python3 -c 'import json,sys; print(json.load(sys.stdin)["rps"])'; }

echo "# $(date -u +%FT%TZ), $(nproc) cores, $(uname -r), ${dur}s per run, $rounds rounds"
h1="" h2=""
for r in $(seq "$rounds"); do
  w=$(wrk -t2 -c10 -d"${dur}s" "$url" | awk '/Requests\/sec/ {print $2}')
  b=$(bench_rps "$url")
  h=$(h2load -c10 -m1 -t2 -D "$dur" "$url" 2>&1 | awk '/^finished in/ {gsub(",","",$4); print $4}')
  c=$(bench_rps --h2c "$url")
  h1+="$(ratio "$b" "$w") "; h2+="$(ratio "$c" "$h") "
  echo "round $r: http/1.1 bench $b wrk $w | h2c bench $c h2load $h"
done

# Memory: sample VmRSS of a 60 s run at 10 s and at 60 s.
"$gd" bench -t 2 -c 10 -d 60s "$url" >/dev/null &
b=$!
sleep 10; rss10=$(awk '/VmRSS/ {print $2}' "/proc/$b/status")
sleep 49; rss60=$(awk '/VmRSS/ {print $2}' "/proc/$b/status")
wait "$b"

echo
echo "| measure | median | rounds | target |"
echo "| --- | --- | --- | --- |"
echo "| gracedown bench / wrk, HTTP/1.1 (-c10, 2 threads) | $(median <<<"$h1") | $h1| >= 1.0 |"
echo "| gracedown bench / h2load -m1, h2c (-c10, 2 threads) | $(median <<<"$h2") | $h2| >= 1.0 |"
echo "| RSS after 60 s / after 10 s | $(ratio "$rss60" "$rss10") | ${rss10} kB, ${rss60} kB | <= 1.10 |"
