#!/usr/bin/env python3
"""A social feed on ringcache-node and on Debian's redis-server, measured in one run.

Feeds are lists (LPUSH a post id, LTRIM 0 999 to keep the newest 1000, LRANGE 0 49 to
read a page) or sorted sets scored by time (ZADD, ZREVRANGE 0 49). First both servers
get the same 1000 feeds of 1000 16-byte ids each, lists then sorted sets; that gives
bytes per feed of each kind (used_memory and RSS growth over its load, per feed), and
bytes per user profile (10,000 hashes of 4 short fields: the objects a feed points to).
Then each
operation runs as a redis-benchmark custom command over those feeds (50 clients,
random feed per request, pipeline 1 and 16), alternating servers, several rounds:
median ops/s and server CPU time per request, and their ringcache/Redis ratios.

With --replication: bytes a primary ships to its replica per write to a feed of 1000
posts, on a 3-node cluster with two copies of each slot (the primary's
`ringcache_replication_shipped_bytes_total`), for LPUSH and LTRIM (shipped as the
command) and LMOVE (a multi-key write: ships the whole list), posts of 16 and 128 bytes.
A count, not a timing: it does not depend on the machine's load.

Usage: python3 bench/feed.py [--rounds 3] [--requests 200000] [--memory-only | --replication]
       BENCH_NODE_BIN=path/to/ringcache-node ...   (that binary; no build)
       BENCH_NODE_THREADS=1 ...                     (one worker thread, like Redis)
Prints a Markdown table (also written to bench/out/feed.md). Measure on a quiet machine:
the ratios come from one run, the absolute figures move with the machine's load.
"""

import argparse
import csv
import io
import os
import socket
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import node_vs_redis as nvr  # noqa: E402  (the servers, CPU readings and tools it sets up)

FEEDS = 1000
FEED_LEN = 1000
ID_LEN = 16

OPERATIONS = [
    ("LPUSH (post)", ["LPUSH", "feed:__rand_int__", "p" * ID_LEN]),
    ("LTRIM 0 999 (keep the newest 1000)", ["LTRIM", "feed:__rand_int__", "0", str(FEED_LEN - 1)]),
    ("LRANGE 0 49 (read a page)", ["LRANGE", "feed:__rand_int__", "0", "49"]),
    ("ZADD (post)", ["ZADD", "zfeed:__rand_int__", "__rand_int__", "p" * ID_LEN]),
    ("ZREVRANGE 0 49 (read a page)", ["ZREVRANGE", "zfeed:__rand_int__", "0", "49"]),
]


def resp(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def load_feeds(port, kind):
    """1000 feeds of 1000 ids each, lists (`kind` "list") or sorted sets scored by
    position ("zset"), named as redis-benchmark names keys (`feed:%012d`)."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(120)
        for f in range(FEEDS):
            ids = [b"%016d" % (f * FEED_LEN + i) for i in range(FEED_LEN)]
            if kind == "list":
                s.sendall(resp(b"RPUSH", b"feed:%012d" % f, *ids))
            else:
                pairs = []
                for i, post in enumerate(ids):
                    pairs += [str(i).encode(), post]
                s.sendall(resp(b"ZADD", b"zfeed:%012d" % f, *pairs))
            got = b""
            while b"\r\n" not in got:
                chunk = s.recv(1 << 16)
                if not chunk:
                    raise RuntimeError("server closed the connection during the load")
                got += chunk


PROFILES = 10000


def load_profiles(port):
    """10,000 user profiles, hashes of 4 short fields (about 50 bytes of text each)."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(120)
        for start in range(0, PROFILES, 500):
            batch = b"".join(
                resp(b"HSET", b"user:%d" % u, b"name", b"user%d" % u, b"email", b"user%d@example.com" % u,
                     b"age", b"33", b"city", b"Paris")
                for u in range(start, start + 500))
            s.sendall(batch)
            got = b""
            while got.count(b"\r\n") < 500:
                chunk = s.recv(1 << 16)
                if not chunk:
                    raise RuntimeError("server closed the connection during the load")
                got += chunk


def call(port, *args):
    """One command on a fresh connection; the raw reply."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(30)
        s.sendall(resp(*args))
        got = b""
        while not got.endswith(b"\r\n"):
            got += s.recv(1 << 16)
        return got


def shipped_bytes(node):
    import urllib.request
    page = urllib.request.urlopen(f"http://127.0.0.1:{node.admin_port}/metrics", timeout=10).read().decode()
    for line in page.splitlines():
        if line.startswith("ringcache_replication_shipped_bytes_total "):
            return int(line.split()[1])
    raise RuntimeError("no ringcache_replication_shipped_bytes_total on /metrics")


def replication_per_write():
    """Bytes shipped per write to a 1000-post feed, by command and post size."""
    import cluster_vs_redis as cvr
    nodes, _ = cvr.start_ringcache_cluster(2)
    rows = []
    try:
        for post_len in (16, 128):
            key = b"feed:%d" % post_len
            primary = next(n for n in nodes if not call(n.port, b"LLEN", key).startswith(b"-MOVED"))
            with socket.create_connection(("127.0.0.1", primary.port)) as s:
                s.settimeout(60)
                s.sendall(resp(b"RPUSH", key, *[b"%0*d" % (post_len, i) for i in range(FEED_LEN)]))
                s.recv(1 << 16)
            post = b"p" * post_len
            for name, command, n in [
                ("LPUSH (post)", [b"LPUSH", key, post], 1000),
                ("LTRIM 0 999", [b"LTRIM", key, b"0", str(FEED_LEN - 1).encode()], 1000),
                ("LMOVE (multi-key: whole list)", [b"LMOVE", key, key, b"RIGHT", b"LEFT"], 100),
            ]:
                before = shipped_bytes(primary)
                with socket.create_connection(("127.0.0.1", primary.port)) as s:
                    s.settimeout(60)
                    # The PING's reply comes after every reply of the batch.
                    s.sendall(resp(*command) * n + resp(b"PING"))
                    got = b""
                    while not got.endswith(b"+PONG\r\n"):
                        got += s.recv(1 << 16)
                per = (shipped_bytes(primary) - before) / n
                rows.append((post_len, name, per))
    finally:
        for n in nodes:
            n.stop()
    lines = [
        f"Replication bytes per write to a feed of {FEED_LEN} posts (3 nodes, 2 copies; `python3 bench/feed.py --replication`)",
        "",
        "| post bytes | write | bytes shipped per write | × the post |",
        "|---|---|---|---|",
    ]
    for post_len, name, per in rows:
        lines.append(f"| {post_len} | {name} | {per:,.0f} | {per / post_len:.1f} |")
    return "\n".join(lines)


def run(server, command, pipeline, requests):
    user0, sys0 = nvr.cpu_split(server.proc.pid)
    out = subprocess.run(
        ["redis-benchmark", "-p", str(server.port), "-c", "50", "-n", str(requests), "-r", str(FEEDS),
         "-P", str(pipeline), "--csv", "-q", *command],
        capture_output=True, text=True, check=True).stdout
    user1, sys1 = nvr.cpu_split(server.proc.pid)
    cpu = (user1 - user0) + (sys1 - sys0)
    row = list(csv.DictReader(io.StringIO(out)))[0]
    return float(row["rps"]), (cpu * 1e6 / requests if cpu > 0 else float("nan"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=200000)
    ap.add_argument("--memory-only", action="store_true", help="bytes per feed and per profile only")
    ap.add_argument("--replication", action="store_true", help="replication bytes per feed write only")
    args = ap.parse_args()
    if args.replication:
        nvr.ensure_tools()
        print(replication_per_write())
        return
    nvr.ensure_tools()
    node, redis = nvr.start_servers()
    servers = [node, redis]
    try:
        memory = {}
        for s in servers:
            for kind in ("list", "zset"):
                used0, rss0 = s.info_field("used_memory"), nvr.rss_bytes(s.proc.pid)
                load_feeds(s.port, kind)
                used1, rss1 = s.info_field("used_memory"), nvr.rss_bytes(s.proc.pid)
                memory[(s.name, kind)] = ((used1 - used0) / FEEDS, (rss1 - rss0) / FEEDS)
            used0, rss0 = s.info_field("used_memory"), nvr.rss_bytes(s.proc.pid)
            load_profiles(s.port)
            used1, rss1 = s.info_field("used_memory"), nvr.rss_bytes(s.proc.pid)
            memory[(s.name, "profile")] = ((used1 - used0) / PROFILES, (rss1 - rss0) / PROFILES)
        results = {}
        for name, command in [] if args.memory_only else OPERATIONS:
            for pipeline in (1, 16):
                samples = {s.name: [] for s in servers}
                for _ in range(args.rounds):
                    for s in servers:
                        samples[s.name].append(run(s, command, pipeline, args.requests))
                results[(name, pipeline)] = {
                    n: (statistics.median(r for r, _ in v), statistics.median(c for _, c in v))
                    for n, v in samples.items()
                }
        lines = [
            f"Feed workload, {FEEDS} feeds of {FEED_LEN} {ID_LEN}-byte ids, 50 clients, median of {args.rounds} "
            f"rounds of {args.requests} requests (`python3 bench/feed.py`)",
            "",
            "| operation | pipeline | ringcache ops/s | Redis ops/s | throughput ratio | ringcache CPU µs/req | "
            "Redis CPU µs/req | requests per CPU-s ratio |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for (name, pipeline), r in results.items():
            (nr, nc), (rr, rc) = r["ringcache"], r["redis"]
            lines.append(f"| {name} | {pipeline} | {nr:,.0f} | {rr:,.0f} | {nr / rr:.2f} | {nc:.2f} | {rc:.2f} | "
                         f"{rc / nc:.2f} |")
        lines += [
            "",
            f"| bytes per feed of {FEED_LEN} ids ({ID_LEN * FEED_LEN:,} bytes of ids), per profile hash "
            "(4 fields, ~50 bytes of text) | used_memory | RSS |",
            "|---|---|---|",
        ]
        for (n, kind), (used, rss) in memory.items():
            lines.append(f"| {n}, {kind} | {used:,.0f} | {rss:,.0f} |")
        report = "\n".join(lines)
        print(report)
        os.makedirs(os.path.join(nvr.ROOT, "bench", "out"), exist_ok=True)
        with open(os.path.join(nvr.ROOT, "bench", "out", "feed.md"), "w") as f:
            f.write(report + "\n")
    finally:
        for s in servers:
            s.stop()


if __name__ == "__main__":
    main()
