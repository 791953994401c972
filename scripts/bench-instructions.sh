#!/usr/bin/env bash
# User-space instructions per HTTP/1.1 request, counted (BENCHMARKS.md, "Steady-state
# cost"): `gracedown serve` and plain hyper (crates/gracedown/examples/plain_hyper.rs)
# each run under valgrind's callgrind on a free loopback port; wrk loads it for 2 s
# untimed, then for SECONDS with the count on, and the instructions the server ran
# are divided by the requests wrk completed.
#
# A count, not a time: it does not move with the machine's load as req/s and CPU
# time do on a shared machine (runs of one build agree within about 0.5 %), so it
# shows changes of a few percent that timings hide. It misses what costs time
# without instructions (cache misses, the kernel), so the timed scripts stay the
# measure of throughput. The profiles are kept in target/instructions/ for
# `callgrind_annotate` (per function, `--inclusive=yes` for whole call trees).
# nginx (scripts/ceiling/nginx.conf, one worker) is counted too where it is
# installed; its flattened or vectored writes are its own either way.
#
# --flatten runs both servers with hyper's flattened HTTP/1 writes (`gracedown
# serve --http1-flatten`, `plain_hyper http1-flatten`).
#
# Needs: valgrind, wrk (and nginx-light for the nginx row). Usage: scripts/bench-instructions.sh [SECONDS (5)] [CONNECTIONS (10)] [--flatten]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
conns=${2:-10}
. scripts/lib.sh
whole_numbers "SECONDS and CONNECTIONS" "$secs" "$conns"
[ $# -le 3 ] || { echo "at most three arguments, not $#: $*" >&2; exit 2; }
gd_flags=() hy_mode=http1 writes=vectored
case "${3:-}" in
  "") ;;
  --flatten) gd_flags=(--http1-flatten) hy_mode=http1-flatten writes=flattened ;;
  *) echo "the third argument is --flatten or nothing, not '$3'" >&2; exit 2;;
esac
for tool in valgrind callgrind_control wrk; do
  command -v "$tool" >/dev/null || { echo "needs $tool (Debian: apt-get install valgrind wrk)" >&2; exit 2; }
done
cargo build --release -q -p gracedown-cli
cargo build --release -q -p gracedown --example plain_hyper
out=target/instructions
mkdir -p "$out"
pids=()
dir=$(mktemp -d)
cleanup() {
  for p in ${pids[@]+"${pids[@]}"}; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

# count NAME PORT COMMAND...: instructions per request of COMMAND, serving on PORT,
# into $result. Not run in a subshell, so that the cleanup knows the server's pid.
count() {
  local name=$1 port=$2; shift 2
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out/$name.cg" "$@" \
    2>"$out/$name.log" >/dev/null &
  local pid=$!
  pids+=("$pid")
  # Slow to start under valgrind: up to 30 s.
  wait_port "$port" 600 "$out/$name.log"
  callgrind_control -i on "$pid" >/dev/null 2>&1
  wrk -t2 -c"$conns" -d2s "http://127.0.0.1:$port/" >/dev/null
  callgrind_control -z "$pid" >/dev/null 2>&1
  local requests
  requests=$(wrk -t2 -c"$conns" -d"${secs}s" "http://127.0.0.1:$port/" | awk '/requests in/ {print $1}')
  callgrind_control -i off "$pid" >/dev/null 2>&1
  kill -TERM "$pid"
  # nginx without its master notices the signal when its wait for events
  # ends: a connection ends it.
  (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local instructions
  instructions=$(awk '/Collected :/ {print $4}' "$out/$name.log")
  [ "${instructions:-0}" -gt 0 ] && [ "${requests:-0}" -gt 0 ] || { echo "$name: no count (see $out/$name.log)" >&2; exit 1; }
  result=$((instructions / requests))
}

gd_port=$(free_port)
count gracedown "$gd_port" target/release/gracedown serve --listen "127.0.0.1:$gd_port" ${gd_flags[@]+"${gd_flags[@]}"}
gd=$result
hy_port=$(free_port)
count plain-hyper "$hy_port" target/release/examples/plain_hyper "$hy_mode" "127.0.0.1:$hy_port"
hy=$result
# nginx as in scripts/bench-ceiling.sh, one process without a master (so that
# valgrind follows it); as root it must stay root, or callgrind_control cannot
# reach it.
ng=
if [ -x /usr/sbin/nginx ]; then
  ng_port=$(free_port)
  mkdir -p "$dir/body" "$dir/proxy" "$dir/fastcgi" "$dir/uwsgi" "$dir/scgi"
  user=; [ "$(id -u)" = 0 ] && user="user root;"
  # Plain HTTP/1.1 only: the TLS port's lines go.
  sed -e "/ssl/d; s#@PORT@#$ng_port#; s#@DIR@#$dir#g" \
    -e "s#^worker_processes 2;#$user worker_processes 1; master_process off; daemon off;#" \
    -e "s#worker_connections 20000#worker_connections 1024#" scripts/ceiling/nginx.conf >"$dir/nginx.conf"
  count nginx "$ng_port" /usr/sbin/nginx -c "$dir/nginx.conf" -p "$dir"
  ng=$result
fi
echo "instructions per HTTP/1.1 request, $writes writes, wrk -c$conns, ${secs} s under callgrind ($(date -u +%F))"
echo "gracedown serve  $gd"
echo "plain hyper      $hy"
echo "nginx            ${ng:-(not installed: Debian nginx-light)}"
python3 -c "print(f'gracedown / hyper {$gd / $hy:.3f}')"
[ -z "$ng" ] || python3 -c "print(f'gracedown / nginx {$gd / $ng:.3f}')"
