#!/usr/bin/env python3
"""Cache stampede: origin queries per expiry of one hot key, ringcache with and without
miss coalescing, and redis-server.

N reader threads (`--readers`, 100), each with its own connection, run plain
cache-aside on one key: GET; on nil, "query the origin" (count it, sleep `--origin-ms`,
50) and SET the key with a TTL. Each wave starts with the key absent (it expired) and
all readers GET it at once (a barrier); the table shows the origin queries per wave,
averaged over `--waves` (5). The readers send nothing but GET and SET: ringcache
coalesces because it runs with `--coalesce-pattern 'hot*'`.

Expected: ringcache with coalescing 1 per wave; ringcache without and Redis about N
(every reader that misses before the first SET lands).

Usage: python3 bench/stampede.py [--readers 100] [--waves 5] [--origin-ms 50]
       BENCH_NODE_BIN=path/to/ringcache-node ... (that binary; no build)
Prints a Markdown table. A benchmark, not a test: run it by hand.
"""

import argparse
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from node_vs_redis import NODE_BIN, ROOT, Server, free_port  # noqa: E402


def command(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.settimeout(30)
        self.buf = b""

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def call(self, *args):
        """Sends one command; returns a bulk's bytes, None for nil, or the status line."""
        self.s.sendall(command(*args))
        head = self.line()
        if head.startswith(b"$"):
            n = int(head[1:])
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self.buf += self.s.recv(65536)
            v, self.buf = self.buf[:n], self.buf[n + 2:]
            return v
        if head.startswith(b"-"):
            raise RuntimeError(head.decode())
        return head


def waves(port, readers, n_waves, origin_ms):
    """Origin queries of each wave."""
    conns = [Conn(port) for _ in range(readers)]
    admin = Conn(port)
    counts = []
    for w in range(n_waves):
        admin.call("DEL", "hot")
        barrier = threading.Barrier(readers)
        queries = [0]
        lock = threading.Lock()

        def reader(c):
            barrier.wait()
            if c.call("GET", "hot") is None:
                with lock:
                    queries[0] += 1
                time.sleep(origin_ms / 1000)
                c.call("SET", "hot", "value-%d" % w, "PX", 60000)

        threads = [threading.Thread(target=reader, args=(c,)) for c in conns]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        counts.append(queries[0])
    for c in conns + [admin]:
        c.s.close()
    return counts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--readers", type=int, default=100)
    ap.add_argument("--waves", type=int, default=5)
    ap.add_argument("--origin-ms", type=int, default=50)
    args = ap.parse_args()
    if not os.environ.get("BENCH_NODE_BIN"):
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "ringcache-node"], cwd=ROOT, check=True)
    rows = []
    for name, extra in (("ringcache, --coalesce-pattern 'hot*'", ["--coalesce-pattern", "hot*"]),
                        ("ringcache, no coalescing", []),
                        ("redis-server", None)):
        port = free_port()
        if extra is None:
            server = Server("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--protected-mode", "no"], port)
        else:
            server = Server("ringcache", [NODE_BIN, "--port", str(port), "--admin-port", "0", "--control-port", "0",
                                          "--proxy-port", "0", "--replica-port", "0", *extra], port)
        try:
            counts = waves(port, args.readers, args.waves, args.origin_ms)
        finally:
            server.stop()
        rows.append((name, counts))
    print(f"{args.readers} readers, {args.waves} waves, origin query {args.origin_ms} ms\n")
    print("| server | origin queries per expiry (mean) | per wave |")
    print("|---|---|---|")
    for name, counts in rows:
        print(f"| {name} | {sum(counts) / len(counts):.1f} | {', '.join(map(str, counts))} |")


if __name__ == "__main__":
    main()
