#!/usr/bin/env python3
"""Slow request heads against the bounds, as a slowloris client sends them.

Usage:
  scripts/slow-heads.py cap [MAX_CONNECTIONS] [SLOW]
      gracedown serve --max-connections MAX_CONNECTIONS (50), SLOW (100)
      connections each trickling a head a byte a second; then a new client
      sends GET /: how long until it is answered (bounded at 90 s).
  scripts/slow-heads.py restarts [HEADER_BOUND_S] [EVERY_S]
      start_server with gracedown serve --header-read-timeout HEADER_BOUND_S
      (10) and a SIGHUP every EVERY_S (4) seconds; 20 connections trickle a
      head a byte a second: how long until the server closes them (bounded
      at 60 s; a bound that restarts with every move never closes them).

Runs target/release/{gracedown,start_server} on free loopback ports.
Build first: cargo build --release -p gracedown-cli -p start-server
"""

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
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", port))
            s.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        except OSError:
            pass
        socks.append(s)
    return socks


def stop_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def cap(args):
    limit = whole(args, 0, "MAX_CONNECTIONS", 50)
    slow = whole(args, 1, "SLOW", 100)
    port = free_port()
    server = subprocess.Popen(
        [GRACEDOWN, "serve", f"--listen=127.0.0.1:{port}", f"--max-connections={limit}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    stop = threading.Event()
    try:
        wait_port(port, server)
        start = time.time()
        socks = slow_connections(port, slow)
        closed = [None] * len(socks)
        t = threading.Thread(target=trickle, args=(socks, stop, closed, start))
        t.start()
        asked = time.time()
        answered = None
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=90)
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = c.recv(64)
            if data.startswith(b"HTTP/1.1 200"):
                answered = time.time() - asked
        except OSError:
            pass
        stop.set()
        t.join()
        for s in socks:
            s.close()
    finally:
        stop.set()
        stop_group(server)
    shown = f"{answered:.1f} s" if answered is not None else "never (90 s)"
    print(f"max_connections={limit} slow={slow} new client answered after {shown}; "
          f"slow connections closed meanwhile: {sum(c is not None for c in closed)}")
    sys.exit(0 if answered is not None else 1)


def restarts(args):
    bound = whole(args, 0, "HEADER_BOUND_S", 10)
    every = whole(args, 1, "EVERY_S", 4)
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen(
            [START_SERVER, f"--port=127.0.0.1:{port}", f"--status-file={tmp}/status", "--",
             GRACEDOWN, "serve", f"--header-read-timeout={bound}s"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        stop = threading.Event()
        try:
            wait_port(port, server)
            start = time.time()
            socks = slow_connections(port, 20)
            closed = [None] * len(socks)
            t = threading.Thread(target=trickle, args=(socks, stop, closed, start))
            t.start()
            sighups = 0
            while time.time() - start < 60 and any(c is None for c in closed):
                time.sleep(every)
                server.send_signal(signal.SIGHUP)
                sighups += 1
            stop.set()
            t.join()
            for s in socks:
                s.close()
        finally:
            stop.set()
            stop_group(server)
    done = [c for c in closed if c is not None]
    last = f"{max(done):.1f} s" if done else "-"
    print(f"header_bound={bound}s sighup_every={every}s restarts={sighups} "
          f"closed={len(done)}/{len(closed)} last_closed_after={last}")
    sys.exit(0 if len(done) == len(closed) else 1)


def main():
    for path in (GRACEDOWN, START_SERVER):
        if not os.access(path, os.X_OK):
            sys.exit(f"error: {path} is missing: cargo build --release -p gracedown-cli -p start-server")
    if len(sys.argv) < 2 or sys.argv[1] not in ("cap", "restarts"):
        sys.exit("usage: scripts/slow-heads.py cap|restarts [N...] (see the script's header)")
    {"cap": cap, "restarts": restarts}[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
