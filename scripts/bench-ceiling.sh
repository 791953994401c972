#!/usr/bin/env bash
# gracedown next to its ceilings (BENCHMARKS.md, "Steady-state cost"): `gracedown
# serve`, plain hyper (crates/gracedown/examples/plain_hyper.rs: the same handler
# body and headers, the same runtime, no drain engine; `http1::Builder` alone for
# the HTTP/1.1 rows, hyper-util's auto server for h2c) and nginx (2 workers, a
# fixed body, scripts/ceiling/nginx.conf), each on a free loopback port, loaded
# in alternation, medians of ROUNDS, printed as ratios. Each row also gives the
# server's CPU time per request (utime + stime of its processes over the run,
# and utime alone): client and server share the machine's cores, so req/s alone
# mixes the two, and the kernel's share moves most with the machine's load.
#
#   http/1.1   wrk -t2 -c10 and -c200; again with both hyper servers writing
#              each response from one buffer (`gracedown serve --http1-flatten`,
#              plain hyper's `writev(false)`: cheaper for small bodies such as
#              this one, dearer for large ones; the "flattened" rows, whose
#              nginx column repeats the runs above; 4 more runs a round)
#   h2c        h2load -c10 -m1 and -m10 (gracedown and plain hyper: nginx's h2c
#              port would speak nothing but h2)
#   h2 + TLS   h2load -c10 -m1 and -m10, TLS 1.3, one ECDSA P-256 certificate
#
# Then the scale curve (wrk at 10, 100, 1,000 and 5,000 connections: req/s and
# p99) and the memory of 5,000 idle keep-alive connections (RSS of every process
# of the server, before and after, divided by the connections).
#
# Needs: wrk, nghttp2-client (h2load), nginx-light, openssl, python3 (the test
# command installs them). The open-file limit is raised to 20,000 when allowed.
# Usage: scripts/bench-ceiling.sh [SECONDS (10)] [ROUNDS (3)] [--no-scale | --memory]
# (--memory: the memory table alone). The scale curve is also drawn as an SVG
# chart, written to $CEILING_CHART (default target/ceiling-scale.svg;
# BENCHMARKS.md's is docs/perf/scale.svg).
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: scripts/bench-ceiling.sh [SECONDS (10)] [ROUNDS (3)] [--no-scale | --memory]"
secs=${1:-10}
rounds=${2:-3}
mode=${3:-}
. scripts/lib.sh
whole_numbers "SECONDS and ROUNDS ($usage)" "$secs" "$rounds"
case "$mode" in ""|--no-scale|--memory) ;; *) echo "the third argument is --no-scale, --memory or nothing, not '$mode'; $usage" >&2; exit 2;; esac
[ $# -le 3 ] || { echo "at most three arguments, not $#: $*; $usage" >&2; exit 2; }
scale=1
[ "$mode" = --no-scale ] && scale=0
ulimit -n 20000 2>/dev/null || echo "note: the open-file limit stays at $(ulimit -n)"
cargo build --release -q -p gracedown-cli
cargo build --release -q -p gracedown --features tls --example plain_hyper
dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for f in "$dir"/nginx.pid "$dir"/*/nginx.pid; do
    [ -f "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null

gd_port=$(free_port); gd_tls=$(free_port)
target/release/gracedown serve --listen "127.0.0.1:$gd_port" 2>"$dir/gd.log" & pids+=($!)
target/release/gracedown serve --listen "127.0.0.1:$gd_tls" --cert "$dir/cert.pem" --key "$dir/key.pem" \
  2>"$dir/gd-tls.log" & pids+=($!)
hy_port=$(free_port); hy_h2c=$(free_port); hy_tls=$(free_port)
target/release/examples/plain_hyper http1 "127.0.0.1:$hy_port" 2>"$dir/hy.log" & pids+=($!)
target/release/examples/plain_hyper auto "127.0.0.1:$hy_tls" "$dir/cert.pem" "$dir/key.pem" 2>"$dir/hy-tls.log" & pids+=($!)
target/release/examples/plain_hyper auto "127.0.0.1:$hy_h2c" 2>"$dir/hy-h2c.log" & pids+=($!)
gdf_port=$(free_port); hyf_port=$(free_port)
target/release/gracedown serve --listen "127.0.0.1:$gdf_port" --http1-flatten 2>"$dir/gdf.log" & pids+=($!)
target/release/examples/plain_hyper http1-flatten "127.0.0.1:$hyf_port" 2>"$dir/hyf.log" & pids+=($!)
gd_h2c=$gd_port
ng_port=$(free_port); ng_tls=$(free_port)
mkdir -p "$dir/body" "$dir/proxy" "$dir/fastcgi" "$dir/uwsgi" "$dir/scgi"
sed -e "s#@PORT@#$ng_port#; s#@TLS_PORT@#$ng_tls#; s#@DIR@#$dir#g" scripts/ceiling/nginx.conf >"$dir/nginx.conf"
/usr/sbin/nginx -c "$dir/nginx.conf" -p "$dir" -g 'daemon on;' 2>"$dir/nginx.err"
for p in $gd_port $gd_tls $hy_port $hy_h2c $hy_tls $gdf_port $hyf_port $ng_port $ng_tls; do wait_port "$p"; done
# The processes serving each port, for CPU time.
declare -A serving=(
  [$gd_port]=${pids[0]} [$gd_tls]=${pids[1]} [$hy_port]=${pids[2]} [$hy_tls]=${pids[3]} [$hy_h2c]=${pids[4]}
  [$gdf_port]=${pids[5]} [$hyf_port]=${pids[6]}
  [$ng_port]="$(pgrep -P "$(cat "$dir/nginx.pid")" | tr '\n' ' ')" [$ng_tls]="$(pgrep -P "$(cat "$dir/nginx.pid")" | tr '\n' ' ')"
)
# CPU time of the processes serving a port, in clock ticks: all of it, and user space alone.
cpu_ticks() { local t=0 u=0 p; for p in $1; do read -r a b < <(awk '{print $14 + $15, $14}' "/proc/$p/stat"); t=$((t + a)); u=$((u + b)); done; echo "$t $u"; }

# One measurement: req/s, the server's CPU microseconds per request (all, and
# user space alone: the kernel's share moves most between runs on a shared
# machine), and (wrk) p99 in ms.
per_request() { # ticks-before ticks-after req/s
  python3 -c "print(f'{($2 - $1) / $(getconf CLK_TCK) / max($3 * $secs, 1) * 1e6:.2f}')"
}
cpu_per_request() { # "total user" before, "total user" after, req/s
  local t0 u0 t1 u1
  read -r t0 u0 <<<"$1"; read -r t1 u1 <<<"$2"
  echo "$(per_request "$t0" "$t1" "$3") $(per_request "$u0" "$u1" "$3")"
}
wrk_run() { # port connections -> req/s, CPU, user CPU, p99
  local t0 t1 out
  t0=$(cpu_ticks "${serving[$1]}")
  out=$(wrk -t2 -c"$2" -d"${secs}s" --latency "http://127.0.0.1:$1/" 2>&1 |
    awk '/^Requests\/sec/ {rps=$2} /^ +99%/ {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; p99=v} END {printf "%.0f %.2f\n", rps, p99}')
  t1=$(cpu_ticks "${serving[$1]}")
  set -- $out
  echo "$1 $(cpu_per_request "$t0" "$t1" "$1") $2"
}
h2_run() { # port url streams -> req/s, CPU, user CPU
  local t0 t1 rps
  t0=$(cpu_ticks "${serving[$1]}")
  rps=$(h2load -c10 -m"$3" -t1 -D"$secs" "$2" 2>&1 | awk '/^finished in/ {gsub(",","",$4); printf "%.0f\n", $4; exit}')
  t1=$(cpu_ticks "${serving[$1]}")
  echo "$rps $(cpu_per_request "$t0" "$t1" "$rps")"
}
# The median (of an even count, the mean of the middle two, whole if the
# values are: req/s).
median() {
  sort -g | awk '{a[NR]=$1; if ($1 ~ /\./) frac=1}
    END {m=int((NR+1)/2); v=(NR % 2) ? a[m] : (a[m] + a[m+1]) / 2; printf(frac ? "%.2f\n" : "%.0f\n", v)}'
}

declare -A results cpus users
measure() { # key command...
  local key=$1; shift
  local out; out=$("$@")
  results[$key]="${results[$key]:-} $(echo "$out" | awk '{print $1}')"
  cpus[$key]="${cpus[$key]:-} $(echo "$out" | awk '{print $2}')"
  users[$key]="${users[$key]:-} $(echo "$out" | awk '{print $3}')"
}

# Memory per idle keep-alive connection, on servers started for it (a server
# that has served load keeps freed memory, which would hide new connections'
# cost): RSS of the server's processes with 5,000 idle connections (each made
# one request) minus before. nginx allocates its connection slots at start
# (`worker_connections`), so its slot size is measured apart: the RSS of the
# same config with 20,000 and with 1,024 slots per worker. Measured three
# times: as the responses arrive, and after the connections have been quiet
# for 2 s and for 5 s (gracedown's connections go dormant after 1 s: hyper's
# buffers are freed, and jemalloc gives the pages back over about a second; a
# second gracedown row lets them go dormant as soon as they are quiet).
idle_memory() { # name port pids...
  local name=$1 port=$2; shift 2
  python3 - "$port" "$name" "$@" <<'PY'
import socket, sys, time
port, name, pids = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
def rss():
    total = 0
    for p in pids:
        for line in open(f"/proc/{p}/status"):
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total
before = rss()
socks = []
for _ in range(5000):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: m\r\n\r\n")
    socks.append(s)
for s in socks:
    data = b""
    while b"from pid" not in data:
        data += s.recv(4096)
after = rss()
time.sleep(2)
quiet = rss()
time.sleep(3)
later = rss()
per = lambda kb: f"{(kb - before) * 1024 / len(socks):.0f} bytes"
print(f"| {name} | {before} kB | {after} kB | {per(after)} | {quiet} kB | {per(quiet)} | {later} kB | {per(later)} |")
PY
}
# A fresh nginx with `slots` connections per worker on `port`; prints its pids.
fresh_nginx() { # name port slots
  local d="$dir/$1"
  mkdir -p "$d/body" "$d/proxy" "$d/fastcgi" "$d/uwsgi" "$d/scgi"
  cp "$dir/cert.pem" "$dir/key.pem" "$d/"
  sed -e "s#@PORT@#$2#; s#@TLS_PORT@#$(free_port)#; s#@DIR@#$d#g; s#worker_connections 20000#worker_connections $3#" \
    scripts/ceiling/nginx.conf >"$d/nginx.conf"
  /usr/sbin/nginx -c "$d/nginx.conf" -p "$d" -g 'daemon on;' 2>"$d/nginx.err"
  wait_port "$2"
}
nginx_pids() { echo "$(cat "$dir/$1/nginx.pid") $(pgrep -P "$(cat "$dir/$1/nginx.pid")" | tr '\n' ' ')"; }
rss_of() { local t=0 p; for p in $1; do t=$((t + $(awk '/^VmRSS:/ {print $2}' "/proc/$p/status"))); done; echo "$t"; }

memory_table() {
echo
echo "| server (fresh) | RSS before | RSS with 5,000 keep-alive connections, just answered | per connection | RSS after 2 s quiet | per connection | after 5 s quiet | per connection |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
port=$(free_port)
target/release/gracedown serve --listen "127.0.0.1:$port" 2>"$dir/gd-mem.log" & pids+=($!)
wait_port "$port"
idle_memory gracedown "$port" "$!"
port=$(free_port)
target/release/gracedown serve --listen "127.0.0.1:$port" --dormant-after 0s 2>"$dir/gd-mem0.log" & pids+=($!)
wait_port "$port"
idle_memory "gracedown --dormant-after 0s" "$port" "$!"
port=$(free_port)
target/release/examples/plain_hyper http1 "127.0.0.1:$port" 2>"$dir/hy-mem.log" & pids+=($!)
wait_port "$port"
idle_memory "plain hyper" "$port" "$!"
port=$(free_port)
fresh_nginx ng-mem "$port" 20000
idle_memory nginx "$port" $(nginx_pids ng-mem)
small=$(free_port)
fresh_nginx ng-small "$small" 1024
slot=$(( ($(rss_of "$(nginx_pids ng-mem)") - $(rss_of "$(nginx_pids ng-small)")) * 1024 / (2 * (20000 - 1024)) ))
echo
echo "nginx allocates about $slot bytes per connection slot at start (2 workers x 20,000 slots), not counted above."
for d in ng-mem ng-small; do kill -TERM "$(cat "$dir/$d/nginx.pid")" 2>/dev/null || true; done
}

if [ "$mode" = --memory ]; then
  memory_table
  exit 0
fi

echo "# $(date -u +%FT%TZ), $(nproc) cores, $(uname -r), $secs s per run, $rounds rounds, medians"
# A fresh server's first load finds its allocator and caches cold: every
# HTTP/1.1 server gets 2 s of wrk first, not counted.
for s in gd hy ng gdf hyf; do
  port_var="${s}_port"; wrk -t2 -c10 -d2s "http://127.0.0.1:${!port_var}/" >/dev/null
done
for _ in $(seq "$rounds"); do
  for c in 10 200; do
    for s in gd hy ng gdf hyf; do
      port_var="${s}_port"; measure "h1-c$c-$s" wrk_run "${!port_var}" "$c"
    done
  done
  for m in 1 10; do
    for s in gd hy; do
      port_var="${s}_h2c"; measure "h2c-m$m-$s" h2_run "${!port_var}" "http://127.0.0.1:${!port_var}/" "$m"
    done
    for s in gd hy ng; do
      port_var="${s}_tls"; measure "h2tls-m$m-$s" h2_run "${!port_var}" "https://127.0.0.1:${!port_var}/" "$m"
    done
  done
done
med() { echo "${results[$1]}" | tr ' ' '\n' | grep -v '^$' | median; }
medcpu() {
  echo "$(echo "${cpus[$1]}" | tr ' ' '\n' | grep -v '^$' | median), $(echo "${users[$1]}" | tr ' ' '\n' | grep -v '^$' | median)"
}
ratio() { python3 -c "print(f'{$1 / $2:.3f}' if $2 else '-')"; }
echo "| load | gracedown req/s (µs CPU/req, of it user) | plain hyper | nginx | gracedown / hyper | gracedown / nginx |"
echo "| --- | --- | --- | --- | --- | --- |"
for row in h1-c10 h1-c200 h2c-m1 h2c-m10 h2tls-m1 h2tls-m10; do
  gd=$(med "$row-gd"); hy=$(med "$row-hy")
  if [ -n "${results[$row-ng]:-}" ]; then
    ng=$(med "$row-ng"); vs_ng=$(ratio "$gd" "$ng"); ng_cell="$ng ($(medcpu "$row-ng"))"
  else
    ng_cell="-"; vs_ng="-"
  fi
  echo "| $row | $gd ($(medcpu "$row-gd")) | $hy ($(medcpu "$row-hy")) | $ng_cell | $(ratio "$gd" "$hy") | $vs_ng |"
done
for c in 10 200; do
  row="h1-c$c"
  gd=$(med "$row-gdf"); hy=$(med "$row-hyf"); ng=$(med "$row-ng")
  echo "| $row flattened | $gd ($(medcpu "$row-gdf")) | $hy ($(medcpu "$row-hyf")) | $ng ($(medcpu "$row-ng")) | $(ratio "$gd" "$hy") | $(ratio "$gd" "$ng") |"
done

[ "$scale" = 1 ] || exit 0
echo
echo "| connections | gracedown req/s, p99 ms | plain hyper | nginx |"
echo "| --- | --- | --- | --- |"
for c in 10 100 1000 5000; do
  line="| $c |"
  for s in gd hy ng; do
    port_var="${s}_port"; line="$line $(wrk_run "${!port_var}" "$c" | awk '{printf "%s, %s", $1, $4}') |"
  done
  echo "$line" | tee -a "$dir/scale.md"
done
# The chart beside the table: throughput and p99 against connections.
chart=${CEILING_CHART:-target/ceiling-scale.svg}
{ echo "| connections | gracedown | plain hyper | nginx |"; cat "$dir/scale.md"; } |
  python3 scripts/ceiling/chart.py "$chart"
echo
echo "Chart: $chart"
memory_table
