"""redis-py's RedisCluster reading from replicas (load_balancing_strategy
ROUND_ROBIN_REPLICAS, and the older read_from_replicas=True) against a three-node ringcache
cluster with two copies of every slot (`ringcache-node cluster create
--replication-factor 2`): reads must be served at the nodes' replica ports (the
replicas CLUSTER SLOTS lists), which the nodes' own counter (INFO cluster
cluster_replica_reads) shows, and writes must still reach the primaries. The node is
the debug binary `make test` builds (RINGCACHE_NODE_BIN overrides it)."""

import os
import secrets
import socket
import subprocess
import time
import unittest

import redis
from redis.cluster import ClusterNode, LoadBalancingStrategy, RedisCluster

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("RINGCACHE_NODE_BIN") or os.path.join(HERE, "..", "..", "..", "target", "debug", "ringcache-node")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port):
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


class ReplicaReads(unittest.TestCase):
    def setUp(self):
        env = dict(os.environ, RINGCACHE_CONTROL_TOKEN=secrets.token_hex(16))
        self.nodes = []
        for i in range(3):
            port, replica, control = free_port(), free_port(), free_port()
            proc = subprocess.Popen(
                [BIN, "--cluster-enabled", "--node-id", f"redispy-{i}", "--port", str(port),
                 "--replica-port", str(replica), "--control-port", str(control),
                 "--admin-port", "0", "--proxy-port", "0", "--maxmemory", "64mb"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.addCleanup(proc.wait)
            self.addCleanup(proc.kill)
            self.nodes.append({"port": port, "replica": replica, "control": control})
        for n in self.nodes:
            wait_listening(n["port"])
            wait_listening(n["control"])
        controls = [f"127.0.0.1:{n['control']}" for n in self.nodes]
        # A node listens before it reports ready: retry until all are.
        for attempt in range(51):
            r = subprocess.run([BIN, "cluster", "create", "--replication-factor", "2", *controls],
                               env=env, capture_output=True, text=True)
            if r.returncode == 0:
                break
            if attempt == 50:
                self.fail(f"cluster create: {r.stderr}")
            time.sleep(0.1)

    def replica_reads(self):
        total = 0
        for n in self.nodes:
            info = redis.Redis(port=n["port"]).info("cluster")
            total += int(info["cluster_replica_reads"])
        return total

    def read_all_keys(self, **options):
        """Writes 300 keys, reads them back through a RedisCluster made with `options`
        once every copy has them, and returns how many reads replicas served."""
        rc = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", n["port"]) for n in self.nodes],
                          decode_responses=True, **options)
        self.addCleanup(rc.close)
        # The replicas redis-py sees are the replica ports.
        replica_ports = {n["replica"] for n in self.nodes}
        self.assertEqual(len(rc.get_primaries()), 3)
        self.assertTrue(rc.get_replicas())
        for node in rc.get_replicas():
            self.assertIn(node.port, replica_ports)

        keys = [f"user:{i}" for i in range(300)]
        for i, k in enumerate(keys):
            rc.set(k, i)

        def all_there():
            return all(rc.get(k) == str(i) for i, k in enumerate(keys))

        deadline = time.time() + 10
        while not all_there():
            self.assertLess(time.time(), deadline, "replicas did not get every key")
            time.sleep(0.05)
        before = self.replica_reads()
        self.assertTrue(all_there())
        served = self.replica_reads() - before
        print(f"{options}: {served} of {len(keys)} reads served by replicas")
        # Writes still reach the primaries (and then the replicas).
        rc.set(keys[0], "w")
        deadline = time.time() + 10
        while rc.get(keys[0]) != "w":
            self.assertLess(time.time(), deadline, "the write did not reach the replica")
            time.sleep(0.05)
        return served, len(keys)

    def test_round_robin_replicas_reads_only_at_the_replica_ports(self):
        served, reads = self.read_all_keys(load_balancing_strategy=LoadBalancingStrategy.ROUND_ROBIN_REPLICAS)
        self.assertEqual(served, reads)

    def test_read_from_replicas_alternates_primary_and_replica(self):
        # The older flag round-robins over each slot's primary and replicas: with one
        # replica, about half the reads go to it.
        served, reads = self.read_all_keys(read_from_replicas=True)
        self.assertGreater(served, 0)
        self.assertLess(served, reads)


if __name__ == "__main__":
    unittest.main()
