#!/usr/bin/env python3
"""Draws bench-operator's CSVs (bench/results/) as PNGs next to them.

- rebalance-<variant>.csv -> rebalance.png: hit rate and origin reads per second
  against seconds since the scale command, one line per variant that ran.
- failover-<system>.csv -> failover.png: seconds until writable per repetition.

Usage: python3 bench/plot.py [results dir]
"""

import csv
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LABELS = {
    "gated": "ringcache, gated warm-up (10/25/50/100 %)",
    "ungated": "ringcache, stages: [100] (no gate)",
    "redis": "Redis Cluster, add-node + rebalance",
}


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def rebalance(out):
    runs = []
    for variant in ["gated", "ungated", "redis"]:
        path = os.path.join(out, f"rebalance-{variant}.csv")
        if os.path.exists(path):
            summary = {}
            jpath = os.path.join(out, f"rebalance-{variant}.json")
            if os.path.exists(jpath):
                with open(jpath) as f:
                    summary = json.load(f)
            runs.append((variant, read_csv(path), summary))
    if not runs:
        print("no rebalance-*.csv in", out)
        return
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    for variant, rows, summary in runs:
        t = [float(r["t_since_scale_s"]) for r in rows if r["hit_rate"]]
        hr = [float(r["hit_rate"]) for r in rows if r["hit_rate"]]
        origin = [int(r["origin_reads_per_s"]) for r in rows if r["hit_rate"]]
        (line,) = ax1.plot(t, hr, marker=".", label=LABELS.get(variant, variant))
        ax2.plot(t, origin, marker=".", color=line.get_color())
        ops = [int(r["hits"]) + int(r["origin_reads_per_s"]) for r in rows if r["hit_rate"]]
        ax3.plot(t, ops, marker=".", color=line.get_color())
        done = summary.get("time_to_complete_s")
        if done is not None:
            for ax in (ax1, ax2, ax3):
                ax.axvline(done, color=line.get_color(), linestyle=":", linewidth=1)
    for ax in (ax1, ax2, ax3):
        ax.axvline(0, color="grey", linestyle="--", linewidth=1)
        ax.grid(alpha=0.3)
    ax1.set_ylabel("hit rate (1 s samples)")
    ax1.set_title("Scale-out 3 -> 5 under a cache-aside load (dashed: scale command; dotted: complete)")
    ax1.legend(loc="lower left", fontsize=8)
    ax2.set_ylabel("origin reads / s")
    ax3.set_ylabel("reads / s (load throughput)")
    ax3.set_xlabel("seconds since the scale command")
    fig.tight_layout()
    path = os.path.join(out, "rebalance.png")
    fig.savefig(path, dpi=110)
    print("wrote", path)


def failover(out):
    systems = []
    for system in ["ringcache", "ringcache-sigstop", "redis"]:
        path = os.path.join(out, f"failover-{system}.csv")
        if os.path.exists(path):
            systems.append((system, read_csv(path)))
    if not systems:
        print("no failover-*.csv in", out)
        return
    fig, ax = plt.subplots(figsize=(9, 4))
    names = {
        "ringcache": "ringcache, SIGKILL (kubelet restarts the process)",
        "ringcache-sigstop": "ringcache, SIGSTOP (hung; detectionSeconds 2)",
        "redis": "Redis Cluster, SIGKILL (node-timeout 5000)",
    }
    for i, (system, rows) in enumerate(systems):
        xs = [float(r["writable_after_s"]) for r in rows if r["writable_after_s"]]
        ax.scatter(xs, [i] * len(xs), s=60, label=names.get(system, system))
        if xs:
            v = sorted(xs)
            text = f"min {v[0]:.2f} / median {v[len(v) // 2]:.2f} / max {v[-1]:.2f} s"
            ax.annotate(text, (v[len(v) // 2], i), textcoords="offset points", xytext=(0, 10), ha="center", fontsize=8)
    ax.axvline(3.0, color="green", linestyle="--", linewidth=1, label="ringcache target 3 s")
    ax.set_yticks(range(len(systems)))
    ax.set_yticklabels([s for s, _ in systems])
    ax.set_ylim(-0.7, len(systems) - 0.3)
    ax.set_xlim(left=0)
    ax.set_xlabel("seconds from the signal to a primary until its slots take writes again")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = os.path.join(out, "failover.png")
    fig.savefig(path, dpi=110)
    print("wrote", path)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "results")
    rebalance(out)
    failover(out)


if __name__ == "__main__":
    main()
