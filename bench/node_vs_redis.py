#!/usr/bin/env python3
"""ringcache-node vs Debian's redis-server on this machine, measured in one run.

For GET and SET at pipeline 1 and 16 (50 clients, 64-byte values, random keys over
100k), and PING at pipeline 1 (a request that does no command work), it runs the same
redis-benchmark against each server in alternation, several rounds, and reports the
median ops/s, p50/p99 latency and server CPU time per request
(utime+stime of the server process from /proc, all threads). Then it loads 1M keys
with 64-byte values into each (keys `key:%012d`, the redis-benchmark key format) and
reports bytes per key from RSS and from the server's own used_memory.

At pipeline 1 it also measures request-floor (bench/floor): a Redis-protocol loop with no
store and no runtime, once on epoll like Redis and once on io_uring. Its CPU per request
is what the kernel alone charges any server here; Redis' CPU per request divided by it is
the highest CPU-efficiency ratio a server whose own work cost nothing could reach.

Usage: python3 bench/node_vs_redis.py [--rounds 3] [--quick] [--memory-only] [--keys N]
       BENCH_NODE_THREADS=1 python3 bench/node_vs_redis.py   (ringcache with one worker thread, like Redis)
       BENCH_NODE_BIN=path/to/ringcache-node ...              (measure that binary; no build)
Prints a Markdown table with ringcache/Redis ratios (also written to bench/out/node_vs_redis.md, or
node_vs_redis_threadsN.md with BENCH_NODE_THREADS=N).
--memory-only skips the throughput part and reports only the memory table (written to
bench/out/node_vs_redis_memory.md): memory hardly depends on the machine being busy, so
this is the quick way to check it while other benchmarks run.
"""

import argparse
import csv
import io
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# BENCH_NODE_BIN: another ringcache-node binary (for A/B runs of two builds).
NODE_BIN = os.environ.get("BENCH_NODE_BIN") or os.path.join(ROOT, "target", "release", "ringcache-node")
# BENCH_NODE_THREADS: ringcache's worker threads (unset: its default, one per CPU).
NODE_THREADS = os.environ.get("BENCH_NODE_THREADS")
FLOOR_BIN = os.path.join(ROOT, "target", "release", "request-floor")
FLOOR_MODES = ("epoll", "io-uring")
TICKS = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_split(pid):
    """User and kernel CPU seconds of process `pid` (all threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 (1-based); after ")" they are at 11, 12.
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


def cpu_seconds(pid):
    return sum(cpu_split(pid))


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def wait_port(port, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start")


class Server:
    def __init__(self, name, argv, port):
        self.name, self.port = name, port
        self.log = tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(port)

    def command(self, *args):
        return subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, check=True).stdout

    def info_field(self, field):
        for line in self.command("INFO", "memory").splitlines():
            if line.startswith(field + ":"):
                return int(line.split(":")[1])
        return 0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def run_benchmark(server, test, pipeline, requests):
    user0, sys0 = cpu_split(server.proc.pid)
    out = subprocess.run(
        ["redis-benchmark", "-p", str(server.port), "-c", "50", "-n", str(requests), "-d", "64",
         "-r", "100000", "-t", test, "-P", str(pipeline), "--csv", "-q"],
        capture_output=True, text=True, check=True).stdout
    user1, sys1 = cpu_split(server.proc.pid)
    cpu = (user1 - user0) + (sys1 - sys0)
    rows = list(csv.DictReader(io.StringIO(out)))
    row = rows[0]
    return {
        "rps": float(row["rps"]),
        "p50": float(row["p50_latency_ms"]),
        "p99": float(row["p99_latency_ms"]),
        "req_per_cpu_s": requests / cpu if cpu > 0 else float("inf"),
        "user_us": (user1 - user0) * 1e6 / requests,
        "sys_us": (sys1 - sys0) * 1e6 / requests,
        "cpu_us": cpu * 1e6 / requests,
    }


def load_keys(port, n, value_len=64, batch=10000):
    value = b"x" * value_len
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(60)
        sent = 0
        while sent < n:
            m = min(batch, n - sent)
            parts = []
            for i in range(sent, sent + m):
                key = b"key:%012d" % i
                parts.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, value_len, value))
            s.sendall(b"".join(parts))
            need, got = 5 * m, 0
            while got < need:
                chunk = s.recv(1 << 20)
                if not chunk:
                    raise RuntimeError("server closed the connection during load")
                got += len(chunk)
            sent += m


def ensure_tools():
    missing = [t for t in ("redis-server", "redis-benchmark", "redis-cli") if shutil.which(t) is None]
    if missing:
        print(f"installing redis-server and redis-tools (missing: {', '.join(missing)})", file=sys.stderr)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server", "redis-tools"], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if not (os.environ.get("BENCH_NO_BUILD") or os.environ.get("BENCH_NODE_BIN")):
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "ringcache-node"], cwd=ROOT, check=True)
    if not (os.environ.get("BENCH_NO_BUILD") and os.path.exists(FLOOR_BIN)):
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "ringcache-floor"], cwd=ROOT, check=True)


def start_servers():
    rp, np, ap = free_port(), free_port(), free_port()
    redis = Server("redis", ["redis-server", "--port", str(rp), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--protected-mode", "no"], rp)
    extra = ["--threads", NODE_THREADS] if NODE_THREADS else []
    node = Server("ringcache", [NODE_BIN, "--port", str(np), "--admin-port", str(ap), "--control-port", "0",
                                "--proxy-port", "0", "--replica-port", "0", "--maxmemory", "8gb", *extra], np)
    return node, redis


def start_floors():
    floors = []
    for mode in FLOOR_MODES:
        port = free_port()
        floors.append(Server(f"floor-{mode}", [FLOOR_BIN, mode, str(port)], port))
    return floors


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="fewer requests, for a smoke run")
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--memory-only", action="store_true", help="skip the throughput part; only load keys and report memory")
    args = ap.parse_args()
    ensure_tools()
    scale = 0.2 if args.quick else 1.0
    # PING (as a multibulk request, like GET) does no command work: its row is the floor
    # that reading, parsing, replying and the socket calls put under every request.
    cases = [("set", 1, int(200_000 * scale)), ("get", 1, int(200_000 * scale)),
             ("set", 16, int(2_000_000 * scale)), ("get", 16, int(2_000_000 * scale)),
             ("ping_mbulk", 1, int(200_000 * scale))]

    results = {}
    if not args.memory_only:
        measure_throughput(cases, args.rounds, results)

    # Memory is measured on freshly started servers, so allocator pages retained from
    # the throughput runs do not count.
    mem = measure_memory(args.keys)
    report = format_report(args, cases, results, mem)
    print(report)
    os.makedirs(os.path.join(ROOT, "bench", "out"), exist_ok=True)
    name = "node_vs_redis_memory.md" if args.memory_only else \
        f"node_vs_redis_threads{NODE_THREADS}.md" if NODE_THREADS else "node_vs_redis.md"
    with open(os.path.join(ROOT, "bench", "out", name), "w") as f:
        f.write(report + "\n")


def measure_throughput(cases, rounds, results):
    node, redis = start_servers()
    floors = start_floors()
    try:
        for test, pipeline, n in cases:
            servers = [node, redis] + (floors if pipeline == 1 else [])
            samples = {srv.name: [] for srv in servers}
            for r in range(rounds):
                # Each round starts with the next server, so none always runs first.
                for i in range(len(servers)):
                    srv = servers[(r + i) % len(servers)]
                    samples[srv.name].append(run_benchmark(srv, test, pipeline, n))
            for name, runs in samples.items():
                results[(test, pipeline, name)] = {k: statistics.median(x[k] for x in runs) for k in runs[0]}
            print(f"done {test.upper()} -P {pipeline}", file=sys.stderr)

    finally:
        for srv in [node, redis, *floors]:
            srv.stop()


def measure_memory(keys):
    node, redis = start_servers()
    mem = {}
    try:
        time.sleep(0.5)
        for srv in (node, redis):
            rss0 = rss_bytes(srv.proc.pid)
            load_keys(srv.port, keys)
            time.sleep(0.5)
            dbsize = int(srv.command("DBSIZE").strip())
            rss = rss_bytes(srv.proc.pid)
            mem[srv.name] = {"keys": dbsize, "rss_per_key": rss / dbsize, "rss_delta_per_key": (rss - rss0) / dbsize,
                             "used_per_key": srv.info_field("used_memory") / dbsize}
    finally:
        node.stop()
        redis.stop()
    return mem


def format_report(args, cases, results, mem):
    lines = []
    threads = NODE_THREADS or f"{os.cpu_count()} (default)"
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split(" sha")[0]
    if results:
        lines.append(f"ringcache worker threads: {threads}. Machine: {os.cpu_count()} CPUs; redis-benchmark -c 50 -d 64 -r 100000; "
                     f"median of {args.rounds} alternating rounds; " + redis_version)
        lines.append("")
        lines.append("| test | ringcache ops/s | Redis ops/s | ratio | ringcache p50/p99 ms | Redis p50/p99 ms | ringcache req/CPU-s | Redis req/CPU-s | CPU-efficiency ratio |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for test, pipeline, _ in cases:
            a, b = results[(test, pipeline, "ringcache")], results[(test, pipeline, "redis")]
            lines.append(f"| {test.upper()} -P {pipeline} | {a['rps']:,.0f} | {b['rps']:,.0f} | {a['rps']/b['rps']:.2f} | "
                         f"{a['p50']:.3f}/{a['p99']:.3f} | {b['p50']:.3f}/{b['p99']:.3f} | {a['req_per_cpu_s']:,.0f} | "
                         f"{b['req_per_cpu_s']:,.0f} | {a['req_per_cpu_s']/b['req_per_cpu_s']:.2f} |")
        lines.append("")
        lines.append("| test | ringcache user/kernel µs per request | Redis user/kernel µs per request |")
        lines.append("|---|---|---|")
        for test, pipeline, _ in cases:
            a, b = results[(test, pipeline, "ringcache")], results[(test, pipeline, "redis")]
            lines.append(f"| {test.upper()} -P {pipeline} | {a['user_us']:.2f} / {a['sys_us']:.2f} | {b['user_us']:.2f} / {b['sys_us']:.2f} |")
        lines.append("")
        lines.append("| test | Redis µs/req | ringcache µs/req | request-floor epoll µs/req (user/kernel) | "
                     "request-floor io_uring µs/req (user/kernel) | ceiling: Redis / lowest floor | ringcache's ratio |")
        lines.append("|---|---|---|---|---|---|---|")
        for test, pipeline, _ in cases:
            if pipeline != 1:
                continue
            a, b = results[(test, pipeline, "ringcache")], results[(test, pipeline, "redis")]
            fl = [results[(test, pipeline, f"floor-{m}")] for m in FLOOR_MODES]
            cells = " | ".join(f"{f['cpu_us']:.2f} ({f['user_us']:.2f}/{f['sys_us']:.2f})" for f in fl)
            lines.append(f"| {test.upper()} -P {pipeline} | {b['cpu_us']:.2f} | {a['cpu_us']:.2f} | {cells} | "
                         f"{b['cpu_us'] / min(f['cpu_us'] for f in fl):.2f} | {b['cpu_us'] / a['cpu_us']:.2f} |")
    else:
        lines.append(f"ringcache worker threads: {threads}. Machine: {os.cpu_count()} CPUs; memory only; " + redis_version)
    lines.append("")
    lines.append(f"| memory after {args.keys:,} SETs of 64-byte values | ringcache | Redis | ratio |")
    lines.append("|---|---|---|---|")
    a, b = mem["ringcache"], mem["redis"]
    for k, label in (("rss_per_key", "RSS bytes/key"), ("rss_delta_per_key", "RSS growth bytes/key"), ("used_per_key", "used_memory bytes/key")):
        lines.append(f"| {label} | {a[k]:.1f} | {b[k]:.1f} | {a[k]/b[k]:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
