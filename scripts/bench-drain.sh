#!/usr/bin/env bash
# Benchmarks of the drain engine (BENCHMARKS.md, "Drain engine"):
#   1. wrk req/s with a restart every second / without restarts, same worker, same run;
#   2. gracedown worker / Go net/http worker (peers/go-worker), wrk, HTTP/1.1, no restarts;
#   3. the same over HTTP/2 with TLS, measured with h2load;
#   4. client-visible errors across restarts every 1 s and every 0.2 s, gracedown vs the Go worker,
#      under Perl start_server.
# Needs: start_server (libserver-starter-perl), wrk, h2load (nghttp2-client), curl;
# Go (golang-go) for the peer rows, which are skipped without it.
# Usage: scripts/bench-drain.sh [SECONDS_PER_RUN (10)] [ROUNDS (3)]
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-10}
rounds=${2:-3}
log=$(mktemp /tmp/bench-drain.XXXXXX.log)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

cargo build --release -q -p gracedown-cli
gd=target/release/gracedown
go=""
if command -v go >/dev/null; then
  GO111MODULE=off go build -o target/go-worker peers/go-worker/main.go && go=target/go-worker
fi

. scripts/lib.sh

# start_server PORT SCHEME WORKER... : starts Perl start_server and waits (bounded) until it answers.
started=""
start() {
  local port=$1 scheme=$2; shift 2
  start_server --port="127.0.0.1:$port" -- "$@" >>"$log" 2>&1 &
  started=$!
  pids+=("$started")
  for _ in $(seq 100); do
    curl -sk -o /dev/null "$scheme://127.0.0.1:$port/" && return 0
    sleep 0.1
  done
  echo "worker on port $port did not answer" >&2; exit 1
}
stop() { kill -TERM "$1"; wait "$1" 2>/dev/null || true; }

# wrk URL -> "rps socket_errors non2xx"
run_wrk() {
  local out
  out=$(wrk -t2 -c10 -d"${dur}s" "$1")
  echo "$out" >>"$log"
  local rps errs non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  # "  Socket errors: connect 0, read 5, write 0, timeout 0" and "  Non-2xx or 3xx responses: 3"
  errs=$(awk '/Socket errors:/ {gsub(",", ""); print $4 + $6 + $8 + $10}' <<<"$out" | tail -1)
  non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' <<<"$out")
  echo "$rps ${errs:-0} ${non2xx:-0}"
}

# h2load URL -> rps
run_h2load() {
  local out
  out=$(h2load -c10 -m10 -t1 -D "$dur" "$1" 2>&1)
  echo "$out" >>"$log"
  awk '/^finished in/ {gsub(",","",$4); print $4}' <<<"$out"
}

# with_restarts EVERY PID CMD... : runs CMD while sending HUP to PID every EVERY seconds;
# prints CMD's output and the HUP count.
with_restarts() {
  local every=$1 target=$2; shift 2
  local count_file; count_file=$(mktemp)
  ( n=0; while sleep "$every"; do kill -HUP "$target" 2>/dev/null || break; n=$((n+1)); echo $n >"$count_file"; done ) &
  local hupper=$!
  "$@"
  kill "$hupper"; wait "$hupper" 2>/dev/null || true
  echo "restarts=$(cat "$count_file" 2>/dev/null || echo 0)"
  rm -f "$count_file"
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a/b}'; }

echo "# $(date -u +%FT%TZ), $(nproc) cores, $(uname -r), ${dur}s per run, $rounds rounds; raw output in $log"

# 1 + 4: restart vs no restart, and errors per restart.
declare -A ratios errors restarts fast_errors fast_restarts
for worker in gracedown ${go:+go}; do
  port=$(free_port)
  if [ "$worker" = gracedown ]; then start "$port" http "$gd" serve; else start "$port" http "$go"; fi
  server=$started
  ratios[$worker]=""; errors[$worker]=0; restarts[$worker]=0; fast_errors[$worker]=0; fast_restarts[$worker]=0
  for r in $(seq "$rounds"); do
    read -r base _ _ < <(run_wrk "http://127.0.0.1:$port/")
    out=$(with_restarts 1 "$server" run_wrk "http://127.0.0.1:$port/")
    read -r rps errs non2xx <<<"$(head -1 <<<"$out")"
    n=$(sed -n 's/restarts=//p' <<<"$out")
    ratios[$worker]+="$(ratio "$rps" "$base") "
    errors[$worker]=$((errors[$worker] + errs + non2xx))
    restarts[$worker]=$((restarts[$worker] + n))
    echo "$worker round $r: no restart $base req/s, restart every 1s $rps req/s, $n restarts, $errs socket errors, $non2xx non-2xx"
    out=$(with_restarts 0.2 "$server" run_wrk "http://127.0.0.1:$port/")
    read -r rps errs non2xx <<<"$(head -1 <<<"$out")"
    n=$(sed -n 's/restarts=//p' <<<"$out")
    fast_errors[$worker]=$((fast_errors[$worker] + errs + non2xx))
    fast_restarts[$worker]=$((fast_restarts[$worker] + n))
    echo "$worker round $r: restart every 0.2s $rps req/s, $n restarts, $errs socket errors, $non2xx non-2xx"
  done
  stop "$server"
done

# 2: gracedown / go, HTTP/1.1, no restarts.
h1=""
h2=""
if [ -n "$go" ]; then
  pg=$(free_port); start "$pg" http "$gd" serve; sg=$started
  po=$(free_port); start "$po" http "$go"; so=$started
  for r in $(seq "$rounds"); do
    read -r a _ _ < <(run_wrk "http://127.0.0.1:$pg/")
    read -r b _ _ < <(run_wrk "http://127.0.0.1:$po/")
    h1+="$(ratio "$a" "$b") "
    echo "http/1.1 round $r: gracedown $a req/s, go $b req/s"
  done
  stop "$sg"; stop "$so"
  # 3: the same over HTTP/2 with TLS.
  pg=$(free_port); start "$pg" https "$gd" serve --tls; sg=$started
  po=$(free_port); start "$po" https "$go" -tls; so=$started
  for r in $(seq "$rounds"); do
    a=$(run_h2load "https://127.0.0.1:$pg/")
    b=$(run_h2load "https://127.0.0.1:$po/")
    h2+="$(ratio "$a" "$b") "
    echo "h2 over TLS round $r: gracedown $a req/s, go $b req/s"
  done
  stop "$sg"; stop "$so"
fi

echo
echo "| measure | median | rounds | target |"
echo "| --- | --- | --- | --- |"
for worker in gracedown ${go:+go}; do
  echo "| $worker: req/s with a restart every 1 s / without | $(tr ' ' '\n' <<<"${ratios[$worker]}" | grep . | median) | ${ratios[$worker]}| >= 0.97 |"
  echo "| $worker: client-visible errors, restart every 1 s (wrk socket errors + non-2xx) | ${errors[$worker]} in ${restarts[$worker]} restarts | | 0 |"
  echo "| $worker: client-visible errors, restart every 0.2 s | ${fast_errors[$worker]} in ${fast_restarts[$worker]} restarts | | 0 |"
done
if [ -n "$go" ]; then
  echo "| gracedown / go, HTTP/1.1 (wrk) | $(tr ' ' '\n' <<<"$h1" | grep . | median) | $h1| >= 1.3 |"
  echo "| gracedown / go, HTTP/2 over TLS (h2load -m10) | $(tr ' ' '\n' <<<"$h2" | grep . | median) | $h2| >= 2 |"
fi
