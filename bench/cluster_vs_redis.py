#!/usr/bin/env python3
"""A 3-node ringcache cluster vs a 3-primary Redis Cluster on this machine, one run.

Both clusters run on loopback; the load generator is `redis-benchmark --cluster`
(cluster-aware: it reads CLUSTER NODES and routes each key to its primary). It also
measures the proxy port: a cluster-unaware redis-benchmark against one node's proxy
port (which forwards to the owners) vs the cluster-aware run against the same nodes.

Usage: python3 bench/cluster_vs_redis.py [--rounds 3] [--quick]
Prints a Markdown table (also written to bench/out/cluster_vs_redis.md).
"""

import argparse
import csv
import io
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from node_vs_redis import NODE_BIN, ROOT, Server, cpu_seconds, ensure_tools, free_port  # noqa: E402


def bench(port, test, pipeline, n, cluster):
    argv = ["redis-benchmark", "-p", str(port), "-c", "50", "-n", str(n), "-d", "64", "-r", "100000",
            "-t", test, "-P", str(pipeline), "--csv", "-q"]
    if cluster:
        argv.insert(1, "--cluster")
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    # With --cluster, redis-benchmark prints a few informational lines before the CSV.
    lines = [l for l in out.splitlines() if l.startswith('"')]
    row = list(csv.DictReader(io.StringIO("\n".join(lines))))[0]
    return {"rps": float(row["rps"]), "p50": float(row["p50_latency_ms"]), "p99": float(row["p99_latency_ms"])}


def free_cluster_port():
    """A free port whose Redis Cluster bus port (port + 10000) is valid and free too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 10000))
            return port
        except OSError:
            continue


def start_redis_cluster(workdir):
    servers = []
    for _ in range(3):
        port = free_cluster_port()
        d = tempfile.mkdtemp(dir=workdir)
        servers.append(Server("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                         "--appendonly", "no", "--cluster-enabled", "yes", "--dir", d,
                                         "--cluster-config-file", os.path.join(d, "nodes.conf"),
                                         "--protected-mode", "no"], port))
    subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{s.port}" for s in servers],
                    "--cluster-replicas", "0", "--cluster-yes"], check=True, capture_output=True)
    wait_cluster_ok(servers[0].port)
    return servers


def start_ringcache_cluster(replication_factor, extra=()):
    # The nodes and `cluster create` share a control token, from the environment.
    os.environ["RINGCACHE_CONTROL_TOKEN"] = secrets.token_hex(16)
    nodes, controls, proxies = [], [], []
    for i in range(3):
        port, admin, control, proxy = free_port(), free_port(), free_port(), free_port()
        nodes.append(Server("ringcache", [NODE_BIN, "--port", str(port), "--admin-port", str(admin),
                                          "--control-port", str(control), "--proxy-port", str(proxy),
                                          "--replica-port", "0",
                                          "--cluster-enabled", "--node-id", f"bench-{i}", "--maxmemory", "4gb",
                                          *extra],
                            port))
        nodes[-1].admin_port = admin
        controls.append(f"127.0.0.1:{control}")
        proxies.append(proxy)
    subprocess.run([NODE_BIN, "cluster", "create", "--replication-factor", str(replication_factor), *controls],
                   check=True, capture_output=True)
    wait_cluster_ok(nodes[0].port)
    return nodes, proxies


def wait_cluster_ok(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = subprocess.run(["redis-cli", "-p", str(port), "CLUSTER", "INFO"], capture_output=True, text=True).stdout
        if "cluster_state:ok" in out:
            return
        time.sleep(0.2)
    raise RuntimeError(f"cluster on port {port} not ok")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    ensure_tools()
    scale = 0.2 if args.quick else 1.0
    cases = [("set", 16, int(2_000_000 * scale)), ("get", 16, int(2_000_000 * scale)),
             ("set", 1, int(200_000 * scale)), ("get", 1, int(200_000 * scale))]
    workdir = tempfile.mkdtemp(prefix="ringcache-bench-")
    redis = start_redis_cluster(workdir)
    nodes, proxies = start_ringcache_cluster(1)
    results = {}
    try:
        for test, pipeline, n in cases:
            runs = {"ringcache": [], "redis": [], "proxy": []}
            for r in range(args.rounds):
                order = ["ringcache", "redis", "proxy"] if r % 2 == 0 else ["redis", "proxy", "ringcache"]
                for name in order:
                    if name == "ringcache":
                        cpu0 = sum(cpu_seconds(s.proc.pid) for s in nodes)
                        res = bench(nodes[0].port, test, pipeline, n, True)
                        res["cpu"] = sum(cpu_seconds(s.proc.pid) for s in nodes) - cpu0
                    elif name == "redis":
                        cpu0 = sum(cpu_seconds(s.proc.pid) for s in redis)
                        res = bench(redis[0].port, test, pipeline, n, True)
                        res["cpu"] = sum(cpu_seconds(s.proc.pid) for s in redis) - cpu0
                    else:
                        cpu0 = sum(cpu_seconds(s.proc.pid) for s in nodes)
                        res = bench(proxies[0], test, pipeline, n, False)
                        res["cpu"] = sum(cpu_seconds(s.proc.pid) for s in nodes) - cpu0
                    res["req_per_cpu_s"] = n / res["cpu"] if res["cpu"] > 0 else float("inf")
                    runs[name].append(res)
            for name, rs in runs.items():
                results[(test, pipeline, name)] = {k: statistics.median(x[k] for x in rs) for k in rs[0]}
            print(f"done {test.upper()} -P {pipeline}", file=sys.stderr)
    finally:
        for s in nodes + redis:
            s.stop()

    lines = [f"3 nodes each, R=1 (no replicas), 2 CPUs shared by servers and load generator; redis-benchmark -c 50 -d 64 "
             f"-r 100000; median of {args.rounds} alternating rounds", "",
             "| test | ringcache ops/s (cluster client) | Redis Cluster ops/s | ratio | ringcache req/CPU-s | Redis req/CPU-s "
             "| CPU ratio | via proxy port ops/s | proxy/direct |",
             "|---|---|---|---|---|---|---|---|---|"]
    for test, pipeline, _ in cases:
        a, b, p = (results[(test, pipeline, k)] for k in ("ringcache", "redis", "proxy"))
        lines.append(f"| {test.upper()} -P {pipeline} | {a['rps']:,.0f} | {b['rps']:,.0f} | {a['rps']/b['rps']:.2f} | "
                     f"{a['req_per_cpu_s']:,.0f} | {b['req_per_cpu_s']:,.0f} | {a['req_per_cpu_s']/b['req_per_cpu_s']:.2f} | "
                     f"{p['rps']:,.0f} | {p['rps']/a['rps']:.2f} |")
    report = "\n".join(lines)
    print(report)
    os.makedirs(os.path.join(ROOT, "bench", "out"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "out", "cluster_vs_redis.md"), "w") as f:
        f.write(report + "\n")


if __name__ == "__main__":
    main()
