#!/usr/bin/env python3
"""Three cache failure modes measured at the origin (the database behind the cache):
ringcache with its defence, ringcache without it, and Debian's redis-server, one run.

The clients are plain cache-aside code over RESP sockets (stdlib only); the origin is
simulated in this process: it holds rows with ids 0..N-1, answers a query for an id with
its row or "not found", and counts every query with its time. What the table shows is
counts and ratios of those queries, which depend on the protocol, not on the machine's
speed (the read rate is paced; the achieved rate is shown, so a run that could not keep
it up is visible).

avalanche   N keys (`--keys`, 100k) are SET with the same `EX --ttl` (20 s) in one
            pipelined load; then `--readers` threads read random keys at `--rate`
            (20k/s in all) through the expiry: GET, on nil query the origin and SET the
            key again with the same TTL. Origin queries per second (1 s buckets from the
            start of the load), the peak and the total over the run (which includes the
            start of a second wave: refilled keys carry the same TTL). Defence: the node's
            `--ttl-jitter-percent` (`--jitter`, 20,50,100: a run each). Uniform
            random reads refill an expired key after about N / rate seconds (5 s
            here), so jitter lowers the peak only as far as it spreads the expiries
            over more than that. Every run reads for as long (the longest jitter's
            span), so the totals cover the same seconds.
penetration N ids exist (`--ids`, 100k); readers look up `--lookups` (200k) random ids
            that do not (ids >= 10^9): GET; on nil, with the defence, BF.EXISTS on a
            filter of the existing ids, and only a "maybe" goes to the origin. The
            filter is `BF.RESERVE ids 0.01 N` (RedisBloom's default, scaling: its first
            sub-filter is sized for 0.5 %) and, as another row, the same with
            NONSCALING (exactly 1 %). Its bytes per item are BF.INFO's Size over N
            (ringcache has no MEMORY USAGE; memory is charged as BF.INFO Size). Redis
            here has no RedisBloom module (BF.RESERVE answers "unknown command"), so it
            runs without the filter; the script records its answer.
hotkeys     3 nodes (started as bench/cluster_vs_redis.py starts them), `--hot-keys`
            (1M) keys loaded, then `--hot-seconds` (20) of GETs at `--hot-rate`
            (20k/s) of keys drawn from zipf(`--zipf`, 1.2) by a cluster-aware client
            (CLUSTER SLOTS, CRC16, pipelined batches grouped by node). Load of a node: the
            reads it served over the read phase (keyspace_hits + keyspace_misses in
            INFO stats, on any port; the mitigation's own GETs count). Mitigation: a
            client-side cache of the keys the nodes report hot: every
            `--hot-refresh` (0.5) s the client asks each node RINGCACHE.HOTKEYS COUNT
            `--hot-k` (10), reads those keys over a RESP3 connection with CLIENT
            TRACKING ON (so the node sends `invalidate` when one changes; pushes are
            drained before every batch) and answers them locally until they leave the
            hot list or are invalidated. The mitigated run goes first on a fresh
            cluster, so the detector's warm-up is in the figures. Also measured: replica
            reads on a cluster with R=2 (READONLY; each GET goes to the primary or the
            replica of its slot at random), and cluster-unaware clients through the
            nodes' proxy ports (each GET to a random node's proxy port) on R=2 clusters
            without and with the proxy's `--hot-key-replica-reads` (`--proxy-min-ops`,
            200 ops/s; 0 skips these rows). Node CPU seconds (/proc) are shown too:
            the proxy's forwarding work is CPU, not a command served. Redis Cluster
            (3 primaries) runs without mitigation.

Usage: python3 bench/origin.py [avalanche|penetration|hotkeys ...] [--quick] [options]
       (no scenario: all three; about 7 minutes, --quick about 2)
       BENCH_NODE_BIN=path/to/ringcache-node ...  (that binary; no build)
       BENCH_NO_BUILD=1 ...                       (target/release/ringcache-node as is)
Prints Markdown tables (also written to bench/out/origin.md). A benchmark, not a test:
run it by hand.
"""

import argparse
import itertools
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_vs_redis import start_redis_cluster, start_ringcache_cluster  # noqa: E402
from node_vs_redis import NODE_BIN, ROOT, Server, cpu_seconds, free_port  # noqa: E402

VALUE = b"v" * 64


# --- RESP over a socket -------------------------------------------------------------


def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class RespError(Exception):
    pass


class Push(list):
    """A RESP3 push frame (`>`), e.g. ["invalidate", [keys]]."""


class Conn:
    """One connection; pipelined sends and a reply parser for RESP2 and RESP3."""

    def __init__(self, port, host="127.0.0.1"):
        self.s = socket.create_connection((host, port))
        self.s.settimeout(60)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.pos = 0

    def close(self):
        self.s.close()

    def _fill(self):
        chunk = self.s.recv(1 << 20)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf = self.buf[self.pos:] + chunk
        self.pos = 0

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n", self.pos)
            if i >= 0:
                line = self.buf[self.pos:i]
                self.pos = i + 2
                return line
            self._fill()

    def reply(self):
        """The next reply; an error reply is returned as a RespError, not raised, so a
        pipeline's other replies are still read."""
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"$" or kind == b"=":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < self.pos + n + 2:
                self._fill()
            v = self.buf[self.pos:self.pos + n]
            self.pos += n + 2
            return v
        if kind == b"+":
            return rest
        if kind == b"-":
            return RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"_":
            return None
        if kind == b"#":
            return rest == b"t"
        if kind == b",":
            return float(rest)
        if kind in (b"*", b"~", b">"):
            n = int(rest)
            if n < 0:
                return None
            items = [self.reply() for _ in range(n)]
            return Push(items) if kind == b">" else items
        if kind == b"%":
            return {self.reply(): self.reply() for _ in range(int(rest))}
        raise ConnectionError(f"unexpected reply {line[:40]!r}")

    def pipeline(self, cmds):
        """Sends the encoded commands at once; returns their replies in order."""
        self.s.sendall(b"".join(cmds))
        return [self.reply() for _ in cmds]

    def call(self, *args):
        r = self.pipeline([encode(*args)])[0]
        if isinstance(r, RespError):
            raise r
        return r

    def info(self, section):
        text = self.call("INFO", section).decode()
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def start_node(extra=()):
    port = free_port()
    return Server("ringcache", [NODE_BIN, "--port", str(port), "--admin-port", "0", "--control-port", "0",
                                "--proxy-port", "0", "--maxmemory", "2gb", *extra], port)


def start_redis():
    port = free_port()
    return Server("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                            "--appendonly", "no", "--protected-mode", "no"], port)


# --- the origin ---------------------------------------------------------------------


class Origin:
    """The database behind the cache: rows 0..rows-1 exist. Counts each queried id, per
    `bucket` seconds since `t0`; sleeps `latency_ms` per query round trip (a batch of
    ids is one round trip, as a `WHERE id IN (...)`)."""

    def __init__(self, rows, latency_ms=1.0, bucket=1.0):
        self.rows, self.latency, self.bucket = rows, latency_ms / 1000, bucket
        self.lock = threading.Lock()
        self.t0 = time.time()
        self.queries = 0
        self.found = 0
        self.per_bucket = {}

    def query(self, ids):
        """Rows for `ids` (None where there is none)."""
        now = time.time()
        b = int((now - self.t0) / self.bucket)
        rows = [VALUE if 0 <= i < self.rows else None for i in ids]
        with self.lock:
            self.queries += len(ids)
            self.found += sum(r is not None for r in rows)
            self.per_bucket[b] = self.per_bucket.get(b, 0) + len(ids)
        if self.latency:
            time.sleep(self.latency)
        return rows

    def series(self, until):
        """Queries per bucket from t0 up to `until` seconds."""
        return [self.per_bucket.get(b, 0) for b in range(int(until / self.bucket) + 1)]


# --- 1. avalanche -------------------------------------------------------------------


def load_pipelined(port, cmds, batch=10_000):
    """Sends the commands in batches, each answered before the next; raises on an error reply."""
    c = Conn(port)
    for i in range(0, len(cmds), batch):
        for r in c.pipeline(cmds[i:i + batch]):
            if isinstance(r, RespError):
                raise r
    c.close()


def avalanche_readers(port, origin, args, stop_at, stats):
    """`args.readers` threads reading random keys at `args.rate` per second in all, in
    pipelined batches of `args.batch`, plain cache-aside."""
    per_thread = args.rate / args.readers

    def reader(seed):
        rnd = random.Random(seed)
        c = Conn(port)
        reads = misses = 0
        next_at = time.time()
        while time.time() < stop_at:
            ids = [rnd.randrange(args.keys) for _ in range(args.batch)]
            replies = c.pipeline([encode("GET", b"item:%d" % i) for i in ids])
            reads += len(ids)
            missed = [i for i, r in zip(ids, replies) if r is None]
            if missed:
                misses += len(missed)
                rows = origin.query(missed)
                sets = [encode("SET", b"item:%d" % i, row, "EX", args.ttl) for i, row in zip(missed, rows)]
                for r in c.pipeline(sets):
                    if isinstance(r, RespError):
                        raise r
            # Open loop at the given rate, but a reader that fell more than a second
            # behind does not burst to catch up (that would make a peak of its own).
            next_at = max(next_at + args.batch / per_thread, time.time() - 1.0)
            pause = next_at - time.time()
            if pause > 0:
                time.sleep(pause)
        c.close()
        with stats["lock"]:
            stats["reads"] += reads
            stats["misses"] += misses

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(args.readers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def avalanche_one(server, args):
    cmds = [encode("SET", b"item:%d" % i, VALUE, "EX", args.ttl) for i in range(args.keys)]
    origin = Origin(args.keys, args.origin_ms)
    t0 = time.time()
    origin.t0 = t0
    load_pipelined(server.port, cmds)
    loaded = time.time() - t0
    # Every run reads for as long (from the load's start until every key of the jittered
    # run has expired once, TTL plus its jitter, and `--tail` seconds more), so the
    # totals cover the same span.
    span = args.ttl * (1 + max(args.jitter) / 100) + args.tail
    stats = {"lock": threading.Lock(), "reads": 0, "misses": 0}
    started = time.time()
    avalanche_readers(server.port, origin, args, t0 + span, stats)
    elapsed = time.time() - started
    series = origin.series(span)[: int(span)]  # whole seconds only
    # Before the first expiry every read hits: a miss there would be a bug or a load
    # that lost keys, so it is reported.
    early = sum(series[: int(args.ttl) - 1])
    peak = max(series)
    return {
        "loaded": loaded,
        "total": origin.queries,
        "peak": peak,
        "peak_at": series.index(peak),
        "early": early,
        "rate": stats["reads"] / elapsed,
        "series": series,
    }


def avalanche(args):
    rows = []
    runs = [("ringcache, `--ttl-jitter-percent %d`" % j, ["--ttl-jitter-percent", str(j)]) for j in args.jitter]
    runs += [("ringcache, no jitter", []), ("redis-server", None)]
    for label, extra in runs:
        server = start_redis() if extra is None else start_node(extra)
        try:
            res = avalanche_one(server, args)
            if extra is not None:
                res["jittered"] = int(Conn(server.port).info("stats").get("jittered_ttls", "0"))
        finally:
            server.stop()
        print(f"avalanche {label}: {res}", file=sys.stderr)
        rows.append((label, res))
    base = rows[len(args.jitter)][1]["peak"] or 1
    span = args.ttl * (1 + max(args.jitter) / 100) + args.tail
    lines = [
        f"{args.keys:,} keys `SET ... EX {args.ttl}` in one pipelined load; {args.readers} cache-aside readers, "
        f"{args.rate:,} random GETs/s in all (batches of {args.batch}), origin query {args.origin_ms:g} ms "
        f"per batch of misses; every run reads for {span:g} s from the load's "
        f"start (until {args.tail} s after the last jittered expiry). Buckets of 1 s from the load's start.",
        "",
        f"| server | peak origin queries/s | at second | origin queries in {span:g} s | peak vs no jitter | "
        "misses before expiry | GETs/s achieved | load s | TTLs jittered (INFO) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, r in rows:
        lines.append(f"| {label} | {r['peak']:,} | {r['peak_at']} | {r['total']:,} | {r['peak'] / base:.2f} | "
                     f"{r['early']} | {r['rate']:,.0f} | {r['loaded']:.2f} | {r.get('jittered', '–')} |")
    first = max(0, args.ttl - 1)
    lines += ["", f"Origin queries per second, from second {first} (all earlier ones: 0 in every run):", ""]
    for label, r in rows:
        lines.append(f"- {label}: {', '.join(str(x) for x in r['series'][first:])}")
    return "\n".join(lines)


# --- 2. penetration -----------------------------------------------------------------


def bf_load(conn, ids, nonscaling):
    """Creates `ids` (BF.RESERVE 0.01 N) and adds 0..N-1; returns BF.INFO as a dict, or
    the error text if the server has no BF commands."""
    try:
        if nonscaling:
            conn.call("BF.RESERVE", "ids", "0.01", ids, "NONSCALING")
        else:
            conn.call("BF.RESERVE", "ids", "0.01", ids)
    except RespError as e:
        return str(e)
    for start in range(0, ids, 1000):
        conn.call("BF.MADD", "ids", *range(start, min(ids, start + 1000)))
    info = conn.call("BF.INFO", "ids")
    if isinstance(info, dict):
        return {k.decode(): v for k, v in info.items()}
    return {info[i].decode(): info[i + 1] for i in range(0, len(info), 2)}


def penetration_one(server, args, use_filter, nonscaling=False):
    conn = Conn(server.port)
    info = bf_load(conn, args.ids, nonscaling) if use_filter else None
    result = {"info": info}
    if use_filter and isinstance(info, dict):
        # Every existing id must answer "maybe": a Bloom filter has no false negatives.
        sample = random.Random(7).sample(range(args.ids), min(1000, args.ids))
        replies = conn.pipeline([encode("BF.EXISTS", "ids", i) for i in sample])
        result["false_negatives"] = sum(1 for r in replies if not r)
    filtering = use_filter and isinstance(info, dict)
    origin = Origin(args.ids, args.origin_ms)
    rnd = random.Random(11)
    done = 0
    filtered = 0
    t0 = time.time()
    while done < args.lookups:
        n = min(args.batch, args.lookups - done)
        ids = [rnd.randrange(10**9, 10**12) for _ in range(n)]
        replies = conn.pipeline([encode("GET", b"item:%d" % i) for i in ids])
        missed = [i for i, r in zip(ids, replies) if r is None]
        if filtering and missed:
            maybe = conn.pipeline([encode("BF.EXISTS", "ids", i) for i in missed])
            for r in maybe:
                if isinstance(r, RespError):
                    raise r
            filtered += sum(1 for r in maybe if not r)
            missed = [i for i, m in zip(missed, maybe) if m]
        if missed:
            origin.query(missed)
        done += n
    result.update(queries=origin.queries, found=origin.found, filtered=filtered,
                  rate=args.lookups / (time.time() - t0))
    conn.close()
    return result


def penetration(args):
    runs = ((f"ringcache, BF.EXISTS first (`BF.RESERVE ids 0.01 {args.ids}`, scaling)", "node", True, False),
            (f"ringcache, BF.EXISTS first (`BF.RESERVE ids 0.01 {args.ids} NONSCALING`)", "node", True, True),
            ("ringcache, no filter", "node", False, False),
            ("redis-server, no filter", "redis", True, False))
    rows = []
    for label, kind, use_filter, nonscaling in runs:
        server = start_redis() if kind == "redis" else start_node()
        try:
            res = penetration_one(server, args, use_filter, nonscaling)
        finally:
            server.stop()
        print(f"penetration {label}: { {k: v for k, v in res.items()} }", file=sys.stderr)
        rows.append((label, res))
    base = rows[2][1]["queries"] or 1
    lines = [
        f"{args.ids:,} existing ids (0..N-1); {args.lookups:,} lookups of random ids that do not exist "
        f"(10^9 .. 10^12), GET then (with the filter) BF.EXISTS, pipelined in batches of {args.batch}.",
        "",
        "| server | origin queries | per 1000 lookups | vs no filter | filter bytes (BF.INFO Size) | bytes per item "
        "| false negatives (1000 existing ids) |",
        "|---|---|---|---|---|---|---|",
    ]
    notes = []
    for label, r in rows:
        info = r["info"]
        if isinstance(info, dict):
            size = info.get("Size", 0)
            fb, bpi, fn = f"{size:,}", f"{size / args.ids:.2f}", str(r.get("false_negatives", ""))
        else:
            fb = bpi = fn = "–"
            if isinstance(info, str):
                notes.append(f"{label}: `BF.RESERVE` answered `{info.strip()}` (no RedisBloom module).")
        lines.append(f"| {label} | {r['queries']:,} | {1000 * r['queries'] / args.lookups:.2f} | "
                     f"{r['queries'] / base:.4f} | {fb} | {bpi} | {fn} |")
    if notes:
        lines += [""] + notes
    return "\n".join(lines)


# --- 3. hot keys --------------------------------------------------------------------


def _crc16_table():
    table = []
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


CRC16_TABLE = _crc16_table()


def key_slot(key):
    """Redis Cluster's slot: CRC16/XMODEM of the key (or of its {hash tag}) mod 16384."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1:end]
    crc = 0
    for b in key:
        crc = ((crc << 8) & 0xFFFF) ^ CRC16_TABLE[((crc >> 8) ^ b) & 0xFF]
    return crc & 0x3FFF


def hot_key(i):
    return b"user:%d" % i



def pipelined_gets(conns, groups, keys, where):
    """GETs `keys` grouped by port (`groups`: port → indices into `keys`), pipelined on
    `conns`; returns the values in `keys`' order. An error reply stops the run."""
    for port, idxs in groups.items():
        conns[port].s.sendall(b"".join(encode("GET", keys[i]) for i in idxs))
    out = [None] * len(keys)
    for port, idxs in groups.items():
        c = conns[port]
        for i in idxs:
            r = c.reply()
            if isinstance(r, RespError):
                raise RuntimeError(f"GET {keys[i]!r} on {where} {port}: {r}")
            out[i] = r
    return out

class ClusterClient:
    """Routes each key to its slot's primary (or, with `replica_reads`, to the primary or
    a replica of its slot at random, over connections that sent READONLY)."""

    def __init__(self, seed_port, replica_reads=False):
        seed = Conn(seed_port)
        self.owners = [None] * 16384  # slot -> list of ports, primary first
        for entry in seed.call("CLUSTER", "SLOTS"):
            ports = [int(n[1]) for n in entry[2:]]
            for slot in range(entry[0], entry[1] + 1):
                self.owners[slot] = ports if replica_reads else ports[:1]
        seed.close()
        self.ports = sorted({p for ps in self.owners for p in ps})
        self.conns = {p: Conn(p) for p in self.ports}
        if replica_reads:
            for c in self.conns.values():
                c.call("READONLY")
        self.rnd = random.Random(3)
        self.sent = {p: 0 for p in self.ports}

    def port_of(self, slot):
        ps = self.owners[slot]
        return ps[0] if len(ps) == 1 else self.rnd.choice(ps)

    def get_many(self, keys, slots):
        """GETs `keys` (their slots given), pipelined per node; returns the values in order."""
        groups = {}
        for idx, (k, s) in enumerate(zip(keys, slots)):
            groups.setdefault(self.port_of(s), []).append(idx)
        out = pipelined_gets(self.conns, groups, keys, "port")
        for port, idxs in groups.items():
            self.sent[port] += len(idxs)
        return out

    def close(self):
        for c in self.conns.values():
            c.close()


class ProxyClient:
    """A cluster-unaware client: every GET goes to one of the nodes' proxy ports, taken at
    random per key (as a load balancer in front of the nodes would spread connections)."""

    def __init__(self, proxy_ports):
        self.ports = list(proxy_ports)
        self.conns = {p: Conn(p) for p in self.ports}
        self.rnd = random.Random(3)

    def get_many(self, keys, slots):
        groups = {}
        for idx in range(len(keys)):
            groups.setdefault(self.rnd.choice(self.ports), []).append(idx)
        return pipelined_gets(self.conns, groups, keys, "proxy port")

    def close(self):
        for c in self.conns.values():
            c.close()


class HotKeyCache:
    """The mitigation: a local copy of the keys the nodes report in RINGCACHE.HOTKEYS,
    read over RESP3 connections with CLIENT TRACKING ON so the node invalidates them."""

    def __init__(self, cluster, k):
        self.cluster, self.k = cluster, k
        self.local = {}  # key -> value
        self.tracking = {}
        for port in cluster.ports:
            c = Conn(port)
            c.call("HELLO", "3")
            c.call("CLIENT", "TRACKING", "ON")
            c.s.setblocking(False)
            self.tracking[port] = c
        self.invalidated = 0
        self.fetched = 0
        self.invalidation_checked = None  # set by the check after a run

    def _tracked_call(self, port, *args):
        """A command on a tracking connection; pushes read before its reply are applied."""
        c = self.tracking[port]
        c.s.setblocking(True)
        c.s.sendall(encode(*args))
        while True:
            r = c.reply()
            if isinstance(r, Push):
                self._apply(r)
                continue
            c.s.setblocking(False)
            if isinstance(r, RespError):
                raise r
            return r

    def _apply(self, push):
        if push and push[0] == b"invalidate":
            keys = push[1]
            if keys is None:  # the node flushed: forget everything
                self.invalidated += len(self.local)
                self.local.clear()
                return
            for key in keys:
                if self.local.pop(key, None) is not None:
                    self.invalidated += 1

    def drain(self):
        """Applies the invalidations that arrived, without waiting for any."""
        for c in self.tracking.values():
            try:
                chunk = c.s.recv(1 << 16)
            except BlockingIOError:
                continue
            if not chunk:
                raise ConnectionError("tracking connection closed")
            c.buf = c.buf[c.pos:] + chunk
            c.pos = 0
            c.s.setblocking(True)
            # Whole pushes only: the rest of a frame follows promptly.
            while c.pos < len(c.buf):
                r = c.reply()
                if isinstance(r, Push):
                    self._apply(r)
            c.s.setblocking(False)

    def refresh(self):
        hot = set()
        for port in self.cluster.ports:
            conn = self.cluster.conns[port]
            for entry in conn.call("RINGCACHE.HOTKEYS", "COUNT", self.k):
                hot.add(bytes(entry[0]))
        for key in list(self.local):
            if key not in hot:
                del self.local[key]
        for key in hot - set(self.local):
            port = self.cluster.owners[key_slot(key)][0]
            value = self._tracked_call(port, "GET", key)
            self.cluster.sent[port] += 1
            self.fetched += 1
            if value is not None:
                self.local[key] = value

    def close(self):
        for c in self.tracking.values():
            c.close()


def zipf_cum_weights(n, s):
    return list(itertools.accumulate(k ** -s for k in range(1, n + 1)))


def hot_load(cluster, n):
    """SETs user:0..n-1 to their primaries, pipelined per node."""
    by_port = {}
    for i in range(n):
        key = hot_key(i)
        by_port.setdefault(cluster.owners[key_slot(key)][0], []).append(encode("SET", key, VALUE))
    threads = [threading.Thread(target=load_pipelined, args=(port, cmds)) for port, cmds in by_port.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def node_reads(servers):
    """Reads each server served (keyspace_hits + keyspace_misses: on its client port, as a
    replica, or on its proxy port; ringcache's total_commands_processed leaves out what
    the proxy port serves itself) and its CPU seconds (all threads, from /proc)."""
    out = []
    for srv in servers:
        c = Conn(srv.port)
        stats = c.info("stats")
        out.append((int(stats["keyspace_hits"]) + int(stats["keyspace_misses"]), cpu_seconds(srv.proc.pid)))
        c.close()
    return out


def hot_read(servers, args, cum, client, mitigate=False):
    """One read phase; `client` is "primary", "replica" (replica reads) or a list of
    proxy ports."""
    if isinstance(client, list):
        cluster = ProxyClient(client)
    else:
        cluster = ClusterClient(servers[0].port, client == "replica")
    cache = HotKeyCache(cluster, args.hot_k) if mitigate else None
    rnd = random.Random(5)
    population = range(args.hot_keys)
    slot_cache = {}
    local = 0
    before = node_reads(servers)
    t0 = last_refresh = time.time()
    if cache:
        cache.refresh()
    done = 0
    stop_at, next_at = t0 + args.hot_seconds, t0
    while time.time() < stop_at:
        # Paced like the avalanche readers, so the detector sees a steady rate for as
        # long in every run.
        next_at = max(next_at + args.batch / args.hot_rate, time.time() - 1.0)
        pause = next_at - time.time()
        if pause > 0:
            time.sleep(pause)
        n = args.batch
        ids = rnd.choices(population, cum_weights=cum, k=n)
        keys = []
        if cache:
            cache.drain()
            if time.time() - last_refresh >= args.hot_refresh:
                cache.refresh()
                last_refresh = time.time()
        for i in ids:
            key = hot_key(i)
            if cache and key in cache.local:
                local += 1
                continue
            keys.append(key)
        slots = []
        for key in keys:
            s = slot_cache.get(key)
            if s is None:
                s = slot_cache[key] = key_slot(key)
            slots.append(s)
        values = cluster.get_many(keys, slots)
        missing = sum(1 for v in values if v is None)
        if missing:
            raise RuntimeError(f"{missing} GETs of loaded keys answered nil (keys lost or replicas behind)")
        done += n
    elapsed = time.time() - t0
    after = node_reads(servers)
    if cache and cache.local:
        # The local copies must follow writes: overwrite one from another connection
        # and wait for the node's invalidation to drop it.
        key = next(iter(cache.local))
        writer = Conn(cluster.owners[key_slot(key)][0])
        writer.call("SET", key, VALUE)
        writer.close()
        deadline = time.time() + 2
        while key in cache.local and time.time() < deadline:
            time.sleep(0.01)
            cache.drain()
        cache.invalidation_checked = key not in cache.local
    load = [a[0] - b[0] for a, b in zip(after, before)]
    cpu = [a[1] - b[1] for a, b in zip(after, before)]
    res = {"load": load, "cpu": cpu, "local": local, "reads": done, "rate": done / elapsed, "secs": elapsed}
    if cache:
        res["fetched"], res["invalidated"], res["cached"] = cache.fetched, cache.invalidated, len(cache.local)
        res["invalidation_checked"] = cache.invalidation_checked
        cache.close()
    cluster.close()
    return res


def wait_replicated(ports, copies, timeout=300):
    """Waits until the nodes hold `copies` keys in all (primaries and replicas)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        total = 0
        for p in ports:
            c = Conn(p)
            total += c.call("DBSIZE")
            c.close()
        if total >= copies:
            return
        time.sleep(0.5)
    raise RuntimeError(f"replicas did not catch up: {total} of {copies} copies")


def hotkeys(args):
    t = time.time()
    cum = zipf_cum_weights(args.hot_keys, args.zipf)
    top = args.hot_k * 3
    share_top = cum[top - 1] / cum[-1]
    print(f"zipf weights in {time.time() - t:.1f} s; top {top} keys take {share_top:.1%} of reads", file=sys.stderr)
    rows = []

    def run_cluster(nodes, label_runs, replica_factor=1, proxies=None):
        seed = nodes[0].port
        probe = ClusterClient(seed)
        t0 = time.time()
        hot_load(probe, args.hot_keys)
        loaded = time.time() - t0
        probe.close()
        if replica_factor > 1:
            wait_replicated([n.port for n in nodes], replica_factor * args.hot_keys)
        print(f"loaded {args.hot_keys} keys in {loaded:.1f} s", file=sys.stderr)
        for label, mitigate, client in label_runs:
            res = hot_read(nodes, args, cum, proxies if client == "proxy" else client, mitigate)
            res["loaded"] = loaded
            print(f"hotkeys {label}: {res}", file=sys.stderr)
            rows.append((label, res))

    nodes, _ = start_ringcache_cluster(1)
    try:
        run_cluster(nodes, [
            (f"ringcache R=1, client cache of RINGCACHE.HOTKEYS (top {args.hot_k} per node, tracking)", True, "primary"),
            ("ringcache R=1, no mitigation", False, "primary")])
    finally:
        for s in nodes:
            s.stop()
    if args.replica_reads:
        nodes, _ = start_ringcache_cluster(2)
        try:
            run_cluster(nodes, [("ringcache R=2, replica reads (READONLY, primary or replica at random)", False,
                                 "replica")], 2)
        finally:
            for s in nodes:
                s.stop()
    if args.proxy_min_ops:
        # Cluster-unaware clients through the proxy ports, R=2, without and with the
        # proxy's own mitigation (a node start flag, so a cluster each).
        for label, extra in (("ringcache R=2, via proxy ports, no mitigation", []),
                             (f"ringcache R=2, via proxy ports, `--hot-key-replica-reads {args.proxy_min_ops}`",
                              ["--hot-key-replica-reads", str(args.proxy_min_ops)])):
            nodes, proxies = start_ringcache_cluster(2, extra)
            try:
                run_cluster(nodes, [(label, False, "proxy")], 2, proxies)
            finally:
                for s in nodes:
                    s.stop()
    workdir = tempfile.mkdtemp(prefix="ringcache-origin-")
    redis = start_redis_cluster(workdir)
    try:
        run_cluster(redis, [("Redis Cluster, 3 primaries, no mitigation", False, "primary")])
    finally:
        for s in redis:
            s.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    lines = [
        f"3 nodes; {args.hot_keys:,} keys loaded; {args.hot_seconds:g} s of GETs at {args.hot_rate:,}/s of "
        f"zipf({args.zipf}) keys (the top {top} take {share_top:.1%} of them) by one cluster-aware client, "
        f"pipelined batches of {args.batch}. "
        "Node load: the reads it served over the read phase (keyspace_hits + keyspace_misses), on any port.",
        "",
        "| cluster | max/mean node load | node loads | served by the nodes | answered by the client cache | GETs/s "
        "| max/mean node CPU | node CPU s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, r in rows:
        load = r["load"]
        mean = sum(load) / len(load)
        local = f"{r['local']:,} ({r['local'] / r['reads']:.1%})" if r["local"] else "0"
        lines.append(f"| {label} | {max(load) / mean:.2f} | {' / '.join(f'{x:,}' for x in sorted(load, reverse=True))} | "
                     f"{sum(load):,} | {local} | {r['rate']:,.0f} | {max(r['cpu']) / (sum(r['cpu']) / len(r['cpu'])):.2f} | "
                     f"{' / '.join(f'{x:.2f}' for x in sorted(r['cpu'], reverse=True))} |")
    for label, r in rows:
        if "fetched" in r:
            checked = {True: "dropped it", False: "did NOT drop it", None: "not run (nothing cached)"}
            lines += ["", f"{label}: {r['fetched']} hot-key reads over tracking connections "
                      f"({r['cached']} keys cached at the end); after the run a SET of a cached key from "
                      f"another connection {checked[r['invalidation_checked']]} from the local cache "
                      f"(the node's `invalidate` push)."]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenarios", nargs="*", metavar="avalanche|penetration|hotkeys", default=[])
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run (a minute or two)")
    ap.add_argument("--batch", type=int, default=100, help="GETs per pipelined round trip")
    ap.add_argument("--origin-ms", type=float, default=1.0, help="origin latency per round trip")
    ap.add_argument("--keys", type=int, default=100_000, help="avalanche: keys loaded with one TTL")
    ap.add_argument("--ttl", type=int, default=20, help="avalanche: their TTL, seconds")
    ap.add_argument("--jitter", default="20,50,100",
                    help="avalanche: --ttl-jitter-percent of the defended nodes, comma-separated (one run each)")
    ap.add_argument("--rate", type=int, default=20_000, help="avalanche: GETs per second, all readers")
    ap.add_argument("--readers", type=int, default=4, help="avalanche: reader threads")
    ap.add_argument("--tail", type=int, default=10, help="avalanche: seconds read after the last expiry")
    ap.add_argument("--ids", type=int, default=100_000, help="penetration: existing ids")
    ap.add_argument("--lookups", type=int, default=200_000, help="penetration: lookups of absent ids")
    ap.add_argument("--hot-keys", type=int, default=1_000_000, help="hotkeys: keys loaded")
    ap.add_argument("--hot-rate", type=int, default=20_000, help="hotkeys: GETs per second")
    ap.add_argument("--hot-seconds", type=float, default=20.0, help="hotkeys: seconds of GETs per run")
    ap.add_argument("--zipf", type=float, default=1.2, help="hotkeys: zipf exponent")
    ap.add_argument("--hot-k", type=int, default=10, help="hotkeys: RINGCACHE.HOTKEYS COUNT per node")
    ap.add_argument("--hot-refresh", type=float, default=0.5, help="hotkeys: seconds between hot-list reads")
    ap.add_argument("--no-replica-reads", dest="replica_reads", action="store_false",
                    help="hotkeys: skip the R=2 replica-read cluster")
    ap.add_argument("--proxy-min-ops", type=int, default=200,
                    help="hotkeys: --hot-key-replica-reads of the proxy-port run (0: skip the proxy clusters)")
    args = ap.parse_args()
    args.jitter = [int(j) for j in args.jitter.split(",")]
    if args.quick:
        args.keys, args.ttl, args.rate, args.tail = 20_000, 6, 5_000, 4
        args.ids, args.lookups = 20_000, 20_000
        args.hot_keys, args.hot_seconds = 100_000, 5.0
    known = ["avalanche", "penetration", "hotkeys"]
    unknown = [s for s in args.scenarios if s not in known]
    if unknown:
        ap.error(f"unknown scenario {', '.join(unknown)} (choose from {', '.join(known)})")
    scenarios = args.scenarios or known
    if not (os.environ.get("BENCH_NO_BUILD") or os.environ.get("BENCH_NODE_BIN")):
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "ringcache-node"], cwd=ROOT, check=True)
    sections = []
    for name in scenarios:
        t0 = time.time()
        table = {"avalanche": avalanche, "penetration": penetration, "hotkeys": hotkeys}[name](args)
        sections.append(f"### {name}\n\n{table}\n\n({time.time() - t0:.0f} s)")
        print(sections[-1] + "\n", flush=True)
    out = os.path.join(ROOT, "bench", "out")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "origin.md"), "w") as f:
        f.write("\n\n".join(sections) + "\n")


if __name__ == "__main__":
    main()
