#!/usr/bin/env python3
"""Pipelined clients across restarts: how many requests are lost.

Usage: scripts/pipelined-restarts.py [CONNECTIONS] [RESTARTS] [PIPELINE] [-- START_SERVER_ARGS...]

Runs target/release/start_server with target/release/gracedown serve on a free
loopback port. Each of CONNECTIONS clients writes PIPELINE `POST /echo` requests
(each body unique) in one write, reads every response, checks each body, and
does it again, while start_server gets RESTARTS SIGHUPs 0.3 s apart. A request
whose response never came (the connection closed first) is lost; a response
with the wrong body is a mismatch. Exits 1 if any request was lost or
mismatched. Build first: cargo build --release -p gracedown-cli -p start-server
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time


def whole(arg, name, default):
    if arg is None:
        return default
    try:
        n = int(arg)
    except ValueError:
        sys.exit(f"error: {name} must be a whole number, not {arg!r}")
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
                except (EOFError, OSError, socket.timeout):
                    pass
                unanswered = pipeline - answered
                if unanswered:
                    # Announced by Connection: close: the client knows they
                    # were not processed (RFC 9112 §9.6), and re-sends them.
                    key = "unprocessed_after_close" if closing else "lost"
                    with lock:
                        counts[key] += unanswered
                if closing or unanswered:
                    break


def main():
    args = sys.argv[1:]
    extra = []
    if "--" in args:
        i = args.index("--")
        args, extra = args[:i], args[i + 1:]
    connections = whole(args[0] if len(args) > 0 else None, "CONNECTIONS", 20)
    restarts = whole(args[1] if len(args) > 1 else None, "RESTARTS", 20)
    pipeline = whole(args[2] if len(args) > 2 else None, "PIPELINE", 20)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    start_server = os.path.join(root, "target/release/start_server")
    gracedown = os.path.join(root, "target/release/gracedown")
    for path in (start_server, gracedown):
        if not os.access(path, os.X_OK):
            sys.exit(f"error: {path} is missing: cargo build --release -p gracedown-cli -p start-server")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        status = os.path.join(tmp, "status")
        server = subprocess.Popen(
            [start_server, f"--port=127.0.0.1:{port}", f"--status-file={status}", *extra,
             "--", gracedown, "serve"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        try:
            deadline = time.time() + 20
            while not (os.path.exists(status) and open(status).read().strip()):
                if time.time() > deadline or server.poll() is not None:
                    sys.exit("error: start_server did not start its first worker in 20 s")
                time.sleep(0.05)
            stop = threading.Event()
            lock = threading.Lock()
            counts = {"ok": 0, "lost": 0, "mismatched": 0, "unprocessed_after_close": 0,
                      "connect_failed": 0}
            threads = [threading.Thread(target=client, args=(port, pipeline, stop, counts, lock, c))
                       for c in range(connections)]
            for t in threads:
                t.start()
            time.sleep(0.5)
            for _ in range(restarts):
                server.send_signal(signal.SIGHUP)
                time.sleep(0.3)
            time.sleep(0.5)
            stop.set()
            for t in threads:
                t.join(30)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
    print(f"connections={connections} restarts={restarts} pipeline={pipeline} "
          + " ".join(f"{k}={v}" for k, v in counts.items()))
    sys.exit(1 if counts["lost"] or counts["mismatched"] else 0)


if __name__ == "__main__":
    main()
