#!/usr/bin/env python3
"""Helpers for scripts/bench-vrrp (run inside the lab's namespaces).

  vrrp_probe.py probe ADDR PORT SPAN_S     client probe: a new TCP connection
      and GET / every 10 ms, 50 ms to connect and answer, for SPAN_S seconds;
      prints "gap_ms failures successes" (gap = longest time between two
      successful answers; with no success at all, the whole span).
  vrrp_probe.py ok ADDR PORT COUNT LIMIT_S  exits 0 once COUNT probes in a
      row succeed, 1 if that does not happen within LIMIT_S seconds.
  vrrp_probe.py serve PORT NAME            a tiny HTTP server answering
      200 "NAME" to every GET (the keepalived stack's web backend).
  vrrp_probe.py status ADDR PORT           piha's vrrp status field
      `scheduling` from the admin API, or "?".
  vrrp_probe.py report FILE                the results table from FILE
      (lines "scenario<TAB>stack<TAB>gap_ms<TAB>failures").

Every loop is bounded by its time limit; only the addresses given are used.
"""

import http.server
import json
import socket
import statistics
import sys
import time

EVERY = 0.010
TIMEOUT = 0.050


def probe_once(addr, port):
    try:
        with socket.create_connection((addr, port), timeout=TIMEOUT) as s:
            s.settimeout(TIMEOUT)
            s.sendall(b"GET / HTTP/1.1\r\nHost: vip\r\nConnection: close\r\n\r\n")
            head = s.recv(64)
            return head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.0 200")
    except OSError:
        return False


def probe(addr, port, span):
    start = time.monotonic()
    last_ok = None
    gap = 0.0
    failures = successes = 0
    while time.monotonic() - start < span:
        t = time.monotonic()
        if probe_once(addr, port):
            if last_ok is not None:
                gap = max(gap, t - last_ok)
            last_ok = t
            successes += 1
        else:
            failures += 1
        rest = EVERY - (time.monotonic() - t)
        if rest > 0:
            time.sleep(rest)
    if successes == 0:
        gap = span
    print(f"{gap * 1000:.0f} {failures} {successes}")


def ok(addr, port, count, limit):
    end = time.monotonic() + limit
    streak = 0
    while time.monotonic() < end:
        streak = streak + 1 if probe_once(addr, port) else 0
        if streak >= count:
            return 0
        time.sleep(EVERY)
    return 1


def serve(port, name):
    body = (name + "\n").encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    http.server.ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()


def status(addr, port):
    try:
        with socket.create_connection((addr, port), timeout=1) as s:
            s.settimeout(2)
            s.sendall(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            end = time.monotonic() + 3
            while time.monotonic() < end:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        body = data.split(b"\r\n\r\n", 1)[1]
        print(json.loads(body)["vrrp"]["scheduling"])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        print("?")


def report(path):
    rows = {}
    order = []
    with open(path) as f:
        for line in f:
            scenario, stack, gap, failures = line.rstrip("\n").split("\t")
            key = (scenario, stack)
            if key not in rows:
                rows[key] = []
                order.append(key)
            rows[key].append((int(gap), int(failures)))
    medians = {k: statistics.median(g for g, _ in v) for k, v in rows.items()}
    head = f"{'scenario':<10} {'stack':<19} {'longest gaps (ms)':<22} {'median':>7} {'failed probes':<16} {'piha/ka':>7}"
    print(head)
    print("-" * len(head))
    for key in order:
        scenario, stack = key
        gaps = " ".join(str(g) for g, _ in rows[key])
        fails = " ".join(str(f) for _, f in rows[key])
        ratio = ""
        if stack == "piha":
            other = medians.get((scenario, "keepalived+haproxy"))
            if other:
                ratio = f"{medians[key] / other:.2f}"
            elif other == 0:
                ratio = "inf"
        print(f"{scenario:<10} {stack:<19} {gaps:<22} {medians[key]:>7.0f} {fails:<16} {ratio:>7}")


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "probe":
        probe(argv[2], int(argv[3]), float(argv[4]))
    elif cmd == "ok":
        return ok(argv[2], int(argv[3]), int(argv[4]), float(argv[5]))
    elif cmd == "serve":
        serve(int(argv[2]), argv[3])
    elif cmd == "status":
        status(argv[2], int(argv[3]))
    elif cmd == "report":
        report(argv[2])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
