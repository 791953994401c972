#!/usr/bin/env bash
# Benchmark of connection handoff (BENCHMARKS.md, "Connections that survive"):
# N idle keep-alive connections (each has made one request), then `kill -HUP`
# to the superdaemon; measured: the time until the old generation is gone
# (the status file lists only the new one), and how many of the N connections
# answer their next request (same TCP connection) rather than being closed.
# The -tls rows do the same over TLS (HTTP/1.1 by ALPN): a connection that
# answers after the restart is the same TLS session (one handshake each; a
# client's TLS socket cannot make a second).
#   gracedown            our start_server, `gracedown serve` (handoff)
#   gracedown-no-handoff our start_server, `gracedown serve --no-handoff`
#   go                   Perl start_server, the Go net/http worker (peers/go-worker)
# Needs: python3; for the go row, golang-go and libserver-starter-perl.
# Usage: scripts/bench-handoff.sh [CONNECTIONS (1000)] [RESTARTS (5)]
set -euo pipefail
cd "$(dirname "$0")/.."
conns=${1:-1000}
restarts=${2:-5}
cargo build --release -q -p gracedown-cli
dir=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$dir"' EXIT
go=""
if command -v go >/dev/null && [ -x /usr/bin/start_server ]; then
  GO111MODULE=off go build -o "$dir/go-worker" peers/go-worker/main.go && go="$dir/go-worker"
fi

measure() {
  local name=$1 mode=$2; shift 2
  python3 - "$name" "$conns" "$restarts" "$dir" "$mode" "$@" <<'PY'
import os, select, signal, socket, ssl, subprocess, sys, time
name, n, restarts, tmp, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
command = sys.argv[6:]
tls = None
if mode == "tls":
    # The worker's certificate is self-signed, made at its start.
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    tls.set_alpn_protocols(["http/1.1"])

def connect():
    c = socket.create_connection(("127.0.0.1", port))
    return tls.wrap_socket(c) if tls else c
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
status = os.path.join(tmp, name + ".status")
argv = [a.replace("PORT", str(port)).replace("STATUS", status) for a in command]
log = open(os.path.join(tmp, name + ".log"), "w")
proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

def gens():
    try:
        return [int(l.split(":")[0]) for l in open(status) if ":" in l]
    except (FileNotFoundError, ValueError):
        return []

def wait(pred, what, bound=30):
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.001)
    raise SystemExit(f"{name}: timed out waiting for {what}")

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"

def exchange(socks):
    """One request on every socket at once; the sockets that got a whole response."""
    pending, got, ok = {}, {}, []
    for c in socks:
        try:
            c.sendall(REQUEST)
            pending[c.fileno()] = c
            got[c.fileno()] = b""
        except OSError:
            pass
    deadline = time.monotonic() + 30
    while pending and time.monotonic() < deadline:
        ready, _, _ = select.select(list(pending.values())[:1000], [], [], 1)
        for c in ready:
            fd = c.fileno()
            try:
                data = c.recv(65536)
            except OSError:
                data = b""
            if not data:
                del pending[fd]
                continue
            got[fd] += data
            head, sep, body = got[fd].partition(b"\r\n\r\n")
            if sep:
                length = 0
                for line in head.split(b"\r\n"):
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length":
                        length = int(v)
                if len(body) >= length:
                    ok.append(c)
                    del pending[fd]
    return ok

try:
    wait(lambda: len(gens()) == 1, "the first generation")
    times, survived = [], []
    for _ in range(restarts):
        socks = [connect() for _ in range(n)]
        alive = exchange(socks)
        assert len(alive) == n, f"{name}: {len(alive)} of {n} answered before the restart"
        before = max(gens())
        t0 = time.monotonic()
        os.kill(proc.pid, signal.SIGHUP)
        wait(lambda: (g := gens()) and len(g) == 1 and g[0] > before, "the old generation to go")
        times.append((time.monotonic() - t0) * 1000)
        survived.append(len(exchange(socks)))
        for c in socks:
            c.close()
    times.sort()
    print(f"| {name} | {n} | {times[len(times) // 2]:.1f} ms | {' '.join(f'{t:.1f}' for t in times)} | "
          f"{min(survived)} of {n} (min over {restarts}) |")
finally:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
PY
}

echo "# $(date -u +%FT%TZ), $(nproc) cores, $(uname -r), $conns idle connections, $restarts restarts each"
echo "| server | idle connections | HUP → old generation gone (median) | each (ms) | connections answered after the restart |"
echo "| --- | --- | --- | --- | --- |"
gd=target/release/gracedown
measure gracedown plain "$gd" start-server --port=127.0.0.1:PORT --status-file=STATUS -- "$gd" serve
measure gracedown-no-handoff plain "$gd" start-server --port=127.0.0.1:PORT --status-file=STATUS -- "$gd" serve --no-handoff
measure gracedown-tls tls "$gd" start-server --port=127.0.0.1:PORT --status-file=STATUS -- "$gd" serve --tls
measure gracedown-tls-no-handoff tls "$gd" start-server --port=127.0.0.1:PORT --status-file=STATUS -- "$gd" serve --tls --no-handoff
if [ -n "$go" ]; then
  measure go plain /usr/bin/start_server --port=127.0.0.1:PORT --status-file=STATUS --interval=1 -- "$go"
  measure go-tls tls /usr/bin/start_server --port=127.0.0.1:PORT --status-file=STATUS --interval=1 -- "$go" -tls
fi
