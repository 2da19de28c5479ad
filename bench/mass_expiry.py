#!/usr/bin/env python3
"""GET latency while a million keys expire at once: ringcache-node vs redis-server, one run.

The issue's measurement: 1M keys set with `EX 4`, then `redis-benchmark -t get -c 20 -P 1`
while they expire (ringcache's p99 was 1.17 ms against Redis' 0.16 ms). For each server,
alternating, this script:

  1. baseline: loads 1M keys without a TTL and runs the benchmark (nothing expires);
  2. mass expiry: FLUSHALL, loads 1M keys that expire together 4 s (`--ttl`) after the
     load ends (one pipelined connection, the payload built before the clock starts),
     then at once runs the same benchmark until `--seconds` (6) after the keys' expiry
     time, so the whole expiry happens under it. Meanwhile a second connection polls
     DBSIZE every 100 ms: the table shows how long after the expiry time the server
     had reclaimed them all (both servers count an expired key nobody read until
     active expiry removes it).

The issue set the keys with `EX 4`; on this shared 2-core machine loading 1M keys can
take longer than 4 s (Redis took 6 s here with a load average of 14), and keys set with
`EX 4` would then expire during the load, one by one, instead of together. So the keys
carry `PXAT <deadline>`: the load's start plus twice the time the same server took to
load the keys without a TTL, plus 4 s. The table shows the load time and how long
before the deadline it ended (negative: some keys expired during the load).

It reports requests/s, p50/p99/max latency (redis-benchmark's --csv) and the server's CPU
seconds during the benchmark. `--random-keys` adds `-r 1000000`, so the GETs read the
expiring keys themselves (without it, as in the issue, they all read one absent key).

Usage: python3 bench/mass_expiry.py [--rounds 1] [--keys 1000000] [--ttl 4] [--random-keys]
       BENCH_NODE_BIN=path/to/ringcache-node ... (measure that binary; no build)
       BENCH_NO_BUILD=1 ...                      (use target/release/ringcache-node as is)
Prints a Markdown table (also written to bench/out/mass_expiry.md). A benchmark, not a
test: run it by hand, never from the test suite.
"""

import argparse
import csv
import io
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from node_vs_redis import NODE_BIN, ROOT, Server, cpu_seconds, free_port  # noqa: E402

CLIENTS = 20
VALUE = b"x" * 64


# Stands for the expiry time in the payload until it is known (13 digits, as unix ms).
PLACEHOLDER = b"9" * 13


def build_payload(n, pxat=None):
    """RESP for `SET key:%012d <value> [PXAT pxat]` for n keys, in batches of 10k."""
    batches = []
    at = b"" if pxat is None else pxat
    ex = b"" if pxat is None else b"$4\r\nPXAT\r\n$%d\r\n%s\r\n" % (len(at), at)
    head = b"*3\r\n" if pxat is None else b"*5\r\n"
    for start in range(0, n, 10_000):
        parts = []
        for i in range(start, min(n, start + 10_000)):
            key = b"key:%012d" % i
            parts.append(b"%s$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n%s" % (head, len(key), key, len(VALUE), VALUE, ex))
        batches.append((min(n, start + 10_000) - start, b"".join(parts)))
    return batches


def load(port, batches):
    """Sends the batches, each answered before the next; returns the seconds taken."""
    t0 = time.time()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(120)
        for m, data in batches:
            s.sendall(data)
            need, got = 5 * m, 0  # +OK\r\n each
            while got < need:
                chunk = s.recv(1 << 20)
                if not chunk:
                    raise RuntimeError("server closed the connection during load")
                got += len(chunk)
    return time.time() - t0


def benchmark(server, n, random_keys):
    argv = ["redis-benchmark", "-p", str(server.port), "-t", "get", "-c", str(CLIENTS), "-P", "1",
            "-n", str(n), "--csv"]
    if random_keys:
        argv += ["-r", "1000000"]
    cpu0, t0 = cpu_seconds(server.proc.pid), time.time()
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    cpu, secs = cpu_seconds(server.proc.pid) - cpu0, time.time() - t0
    row = list(csv.DictReader(io.StringIO(out)))[0]
    return {
        "rps": float(row["rps"]),
        "p50": float(row["p50_latency_ms"]),
        "p99": float(row["p99_latency_ms"]),
        "max": float(row["max_latency_ms"]),
        "cpu": cpu,
        "secs": secs,
    }


def dbsize(server):
    return int(server.command("DBSIZE").strip() or 0)


def watch_reclaim(port, deadline, stop, result):
    """Polls DBSIZE every 100 ms; stores the seconds after `deadline` (unix s) at which
    it first read 0."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(10)
        while not stop.is_set():
            s.sendall(b"*1\r\n$6\r\nDBSIZE\r\n")
            reply = s.recv(64)
            if reply.startswith(b":0\r\n"):
                result["reclaimed_after"] = time.time() - deadline
                return
            time.sleep(0.1)


def start(name):
    port = free_port()
    if name == "redis":
        return Server("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--protected-mode", "no"], port)
    return Server("ringcache", [NODE_BIN, "--port", str(port), "--admin-port", "0", "--control-port", "0",
                                "--proxy-port", "0", "--replica-port", "0", "--maxmemory", "4gb"], port)


def reclaimed(m):
    if "reclaimed" not in m:
        return ""
    if m["reclaimed"] is None:
        return "not during the run"
    return f"{m['reclaimed']:.1f} s after expiry"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--ttl", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=6.0,
                    help="how long a run lasts (baseline), and after the expiry time (mass expiry)")
    ap.add_argument("--random-keys", action="store_true")
    args = ap.parse_args()
    if not (os.environ.get("BENCH_NO_BUILD") or os.environ.get("BENCH_NODE_BIN")):
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "ringcache-node"], cwd=ROOT, check=True)
    persistent = build_payload(args.keys)
    expiring = build_payload(args.keys, PLACEHOLDER)
    servers = {name: start(name) for name in ("ringcache", "redis")}
    rows = []
    try:
        for r in range(args.rounds):
            order = ["ringcache", "redis"] if r % 2 == 0 else ["redis", "ringcache"]
            for name in order:
                srv = servers[name]
                srv.command("FLUSHALL")
                plain_load = load(srv.port, persistent)
                # Size the runs from a short probe, so each lasts about --seconds.
                probe = benchmark(srv, 20_000, args.random_keys)
                n = max(50_000, int(probe["rps"] * args.seconds))
                base = benchmark(srv, n, args.random_keys)
                rows.append((name, "baseline (no TTLs)", base, None, dbsize(srv)))
                srv.command("FLUSHALL")
                time.sleep(0.5)
                deadline = int(1000 * (time.time() + 2 * plain_load + args.ttl + 0.1))
                at = b"%013d" % deadline
                batches = [(m, data.replace(PLACEHOLDER, at)) for m, data in expiring]
                loaded = load(srv.port, batches)
                margin = deadline / 1000 - time.time()
                stop, watched = threading.Event(), {}
                watcher = threading.Thread(target=watch_reclaim, args=(srv.port, deadline / 1000, stop, watched))
                watcher.start()
                res = benchmark(srv, int(probe["rps"] * (max(margin, 0) + args.seconds)), args.random_keys)
                stop.set()
                watcher.join()
                res["reclaimed"] = watched.get("reclaimed_after")
                # Reclaimed by now? (A key past its TTL that no one read yet still counts
                # in DBSIZE on both servers until active expiry removes it.)
                phase = f"{args.keys // 1000}k keys expiring (load {loaded:.1f} s, {margin:.1f} s before the deadline)"
                rows.append((name, phase, res, loaded, dbsize(srv)))
                print(f"{name}: {rows[-2][2]} / {res} (load {loaded:.2f} s)", file=sys.stderr)
    finally:
        for srv in servers.values():
            srv.stop()
    key_note = "-r 1000000 (GETs read the expiring keys)" if args.random_keys else "no -r (every GET reads one absent key, as in the issue)"
    lines = [
        f"`redis-benchmark -t get -c {CLIENTS} -P 1` {key_note}; baseline runs about {args.seconds:.0f} s, "
        f"mass-expiry runs until {args.seconds:.0f} s after the expiry time; "
        f"{args.keys} keys of 64 bytes.",
        "",
        "| server | phase | req/s | p50 ms | p99 ms | max ms | server CPU s | run s | all reclaimed | keys left after |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, phase, m, loaded, left in rows:
        lines.append(
            f"| {name} | {phase} | {m['rps']:.0f} | {m['p50']:.3f} | "
            f"{m['p99']:.3f} | {m['max']:.3f} | {m['cpu']:.2f} | {m['secs']:.1f} | {reclaimed(m)} | {left} |"
        )
    table = "\n".join(lines)
    print(table)
    out = os.path.join(ROOT, "bench", "out")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "mass_expiry.md"), "w") as f:
        f.write(table + "\n")


if __name__ == "__main__":
    main()
