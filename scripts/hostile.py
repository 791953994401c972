#!/usr/bin/env python3
"""What hostile or unusual clients do to a restart, measured on this machine.

Usage:
  scripts/hostile.py pipelined [CONNECTIONS] [RESTARTS] [PIPELINE]
      start_server with gracedown serve; each of CONNECTIONS (20) clients
      writes PIPELINE (20) `POST /echo` requests (each body unique) in one
      write, reads every response and checks each body, again and again,
      while start_server gets RESTARTS (20) SIGHUPs 0.3 s apart. A request
      whose connection closed before its response, without
      `Connection: close`, is lost; a wrong body is a mismatch.
  scripts/hostile.py cap [MAX_CONNECTIONS] [SLOW]
      gracedown serve --max-connections MAX_CONNECTIONS (50), SLOW (100)
      connections each trickling a head a byte a second; then a new client
      sends GET /: how long until it is answered (bounded at 90 s).
  scripts/hostile.py restarts [HEADER_BOUND_S] [EVERY_S]
      start_server with gracedown serve --header-read-timeout HEADER_BOUND_S
      (10) and a SIGHUP every EVERY_S (4) seconds; 20 connections trickle a
      head a byte a second: how long until the server closes them (bounded
      at 60 s; a bound that restarts with every move never closes them).

Runs target/release/{gracedown,start_server} on free loopback ports; exits 1
when the scenario's promise is broken (a request lost, a client never
served, a slow head never closed). Build first:
cargo build --release -p gracedown-cli -p start-server
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRACEDOWN = os.path.join(ROOT, "target/release/gracedown")
START_SERVER = os.path.join(ROOT, "target/release/start_server")


def whole(args, i, name, default):
    if len(args) <= i:
        return default
    try:
        n = int(args[i])
    except ValueError:
        sys.exit(f"error: {name} must be a whole number, not {args[i]!r}")
    if n < 1:
        sys.exit(f"error: {name} must be at least 1, not {n}")
    return n


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_response(sock, buf):
    """One response (Content-Length or chunked) from sock; returns (status, body, buf)."""
    def fill():
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError
        return chunk

    while b"\r\n\r\n" not in buf:
        buf += fill()
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    body = b""
    if b"content-length" in headers:
        n = int(headers[b"content-length"])
        while len(buf) < n:
            buf += fill()
        body, buf = buf[:n], buf[n:]
    elif b"chunked" in headers.get(b"transfer-encoding", b""):
        while True:
            while b"\r\n" not in buf:
                buf += fill()
            size_line, buf = buf.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(buf) < size + 2:
                buf += fill()
            body += buf[:size]
            buf = buf[size + 2:]
            if size == 0:
                break
    return status, body, buf, headers.get(b"connection") == b"close"


def client(port, pipeline, stop, counts, lock, cid):
    seq = 0
    while not stop.is_set():
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        except OSError:
            with lock:
                counts["connect_failed"] += 1
            stop.wait(0.1)
            continue
        with sock:
            while not stop.is_set():
                bodies = []
                wire = b""
                for _ in range(pipeline):
                    body = f"client {cid} request {seq}".encode()
                    seq += 1
                    bodies.append(body)
                    wire += (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                             % len(body)) + body
                try:
                    sock.sendall(wire)
                except OSError:
                    with lock:
                        counts["lost"] += pipeline
                    break
                buf = b""
                answered = 0
                closing = False
                try:
                    for body in bodies:
                        status, got, buf, closing = read_response(sock, buf)
                        answered += 1
                        with lock:
                            counts["ok" if status == 200 and got == body else "mismatched"] += 1
                        if closing:
                            break
                except (EOFError, OSError):
                    pass
                except (ValueError, IndexError):
                    # Bytes that are no response where one belongs: the
                    # responses crossed, the worst a restart can do.
                    with lock:
                        counts["mismatched"] += 1
                    break
                unanswered = pipeline - answered
                if unanswered:
                    # Announced by Connection: close: the client knows they
                    # were not processed (RFC 9112 §9.6), and re-sends them.
                    key = "unprocessed_after_close" if closing else "lost"
                    with lock:
                        counts[key] += unanswered
                if closing or unanswered:
                    break


def wait_port(port, proc):
    deadline = time.time() + 20
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit("error: the server exited before it served")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"error: nothing served port {port} within 20 s")


def trickle(socks, stop, closed_at, start):
    """A byte a second on each socket; records when each one is closed."""
    while not stop.is_set():
        for i, s in enumerate(socks):
            if closed_at[i] is not None:
                continue
            try:
                s.send(b"a")
                s.setblocking(False)
                try:
                    if s.recv(1) == b"":
                        closed_at[i] = time.time() - start
                except BlockingIOError:
                    pass
                finally:
                    s.setblocking(True)
            except OSError:
                closed_at[i] = time.time() - start
        stop.wait(1)


def slow_connections(port, n):
    """`n` connections that have sent half a head; exits if one cannot."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", port))
            s.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        except OSError as e:
            for t in socks + [s]:
                t.close()
            sys.exit(f"error: slow connection {len(socks) + 1} of {n}: {e}")
        socks.append(s)
    return socks


@contextlib.contextmanager
def serving(argv):
    """`argv` (start_server or gracedown serve) in its own process group,
    serving on its port; the whole group is ended afterwards."""
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        yield server
    finally:
        # The group outlives its leader (start_server's workers lead groups
        # of their own and end when it does: their parent-death signal).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@contextlib.contextmanager
def trickling(port, n):
    """`n` connections trickling a head a byte a second while the block
    runs; yields when each was closed by the server (seconds, or None)."""
    start = time.time()
    socks = slow_connections(port, n)
    closed = [None] * len(socks)
    stop = threading.Event()
    thread = threading.Thread(target=trickle, args=(socks, stop, closed, start), daemon=True)
    thread.start()
    try:
        yield closed
    finally:
        stop.set()
        thread.join()
        for s in socks:
            s.close()


def pipelined(args):
    connections = whole(args, 0, "CONNECTIONS", 20)
    restarts = whole(args, 1, "RESTARTS", 20)
    pipeline = whole(args, 2, "PIPELINE", 20)
    port = free_port()
    counts = {"ok": 0, "lost": 0, "mismatched": 0, "unprocessed_after_close": 0,
              "connect_failed": 0}
    with tempfile.TemporaryDirectory() as tmp, serving(
            [START_SERVER, f"--port=127.0.0.1:{port}", f"--status-file={tmp}/status",
             "--", GRACEDOWN, "serve"]) as server:
        wait_port(port, server)
        stop = threading.Event()
        lock = threading.Lock()
        threads = [threading.Thread(target=client, args=(port, pipeline, stop, counts, lock, c),
                                    daemon=True)
                   for c in range(connections)]
        try:
            for t in threads:
                t.start()
            time.sleep(0.5)
            for _ in range(restarts):
                server.send_signal(signal.SIGHUP)
                time.sleep(0.3)
            time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
    print(f"connections={connections} restarts={restarts} pipeline={pipeline} "
          + " ".join(f"{k}={v}" for k, v in counts.items()))
    sys.exit(1 if counts["lost"] or counts["mismatched"] or not counts["ok"] else 0)


def cap(args):
    limit = whole(args, 0, "MAX_CONNECTIONS", 50)
    slow = whole(args, 1, "SLOW", 100)
    port = free_port()
    answered = None
    with serving([GRACEDOWN, "serve", f"--listen=127.0.0.1:{port}",
                  f"--max-connections={limit}"]) as server:
        wait_port(port, server)
        with trickling(port, slow) as closed:
            asked = time.time()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=90) as c:
                    c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if c.recv(64).startswith(b"HTTP/1.1 200"):
                        answered = time.time() - asked
            except OSError:
                pass
            taken = sum(c is not None for c in closed)
    shown = f"{answered:.1f} s" if answered is not None else "never (90 s)"
    print(f"max_connections={limit} slow={slow} new client answered after {shown}; "
          f"slow connections closed meanwhile: {taken}")
    sys.exit(0 if answered is not None else 1)


def restarts(args):
    bound = whole(args, 0, "HEADER_BOUND_S", 10)
    every = whole(args, 1, "EVERY_S", 4)
    port = free_port()
    sighups = 0
    with tempfile.TemporaryDirectory() as tmp, serving(
            [START_SERVER, f"--port=127.0.0.1:{port}", f"--status-file={tmp}/status", "--",
             GRACEDOWN, "serve", f"--header-read-timeout={bound}s"]) as server:
        wait_port(port, server)
        start = time.time()
        with trickling(port, 20) as closed:
            while time.time() - start < 60 and any(c is None for c in closed):
                time.sleep(every)
                server.send_signal(signal.SIGHUP)
                sighups += 1
            done = [c for c in closed if c is not None]
    last = f"{max(done):.1f} s" if done else "-"
    print(f"header_bound={bound}s sighup_every={every}s restarts={sighups} "
          f"closed={len(done)}/20 last_closed_after={last}")
    sys.exit(0 if len(done) == 20 else 1)


def main():
    for path in (GRACEDOWN, START_SERVER):
        if not os.access(path, os.X_OK):
            sys.exit(f"error: {path} is missing: cargo build --release -p gracedown-cli -p start-server")
    scenarios = {"pipelined": pipelined, "cap": cap, "restarts": restarts}
    if len(sys.argv) < 2 or sys.argv[1] not in scenarios:
        sys.exit("usage: scripts/hostile.py pipelined|cap|restarts [N...] (see the script's header)")
    scenarios[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
