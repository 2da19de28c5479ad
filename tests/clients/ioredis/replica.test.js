// ioredis, a maintained Node.js cluster client, keeps one role per address: with
// scaleReads "slave" it opens READONLY connections to the replicas CLUSTER SLOTS lists
// and sends reads there. Against a three-node cluster with two copies of every slot
// (`ringcache-node cluster create --replication-factor 2`), reads must be served at the
// nodes' replica ports, which the nodes' own counter (INFO cluster_replica_reads)
// shows, and writes must still reach the primaries. Before the replica port, the same
// client failed with "Too many Cluster redirections" (one address was both a primary
// and a replica). The node is the debug binary `make test` builds (RINGCACHE_NODE_BIN
// overrides it).
"use strict";

const { test, after } = require("node:test");
const assert = require("node:assert/strict");
const { spawn, spawnSync } = require("node:child_process");
const crypto = require("node:crypto");
const net = require("node:net");
const path = require("node:path");
const Redis = require("ioredis");

const BIN = process.env.RINGCACHE_NODE_BIN || path.join(__dirname, "..", "..", "..", "target", "debug", "ringcache-node");
const children = [];
after(() => children.forEach((c) => c.kill("SIGKILL")));

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function listening(port) {
  return new Promise((resolve) => {
    const c = net.connect(port, "127.0.0.1");
    c.once("connect", () => { c.destroy(); resolve(true); });
    c.once("error", () => resolve(false));
  });
}

async function waitListening(port) {
  for (let i = 0; i < 400; i++) {
    if (await listening(port)) return;
    await sleep(50);
  }
  throw new Error(`nothing listens on port ${port}`);
}

// Three cluster-mode nodes on free loopback ports, formed with two copies per slot.
async function startCluster() {
  const env = { ...process.env, RINGCACHE_CONTROL_TOKEN: crypto.randomBytes(16).toString("hex") };
  const nodes = [];
  for (let i = 0; i < 3; i++) {
    const [port, replica, control] = [await freePort(), await freePort(), await freePort()];
    const child = spawn(BIN, [
      "--cluster-enabled", "--node-id", `ioredis-${i}`,
      "--port", String(port), "--replica-port", String(replica), "--control-port", String(control),
      "--admin-port", "0", "--proxy-port", "0", "--maxmemory", "64mb",
    ], { env, stdio: "ignore" });
    children.push(child);
    nodes.push({ port, replica, control });
  }
  for (const n of nodes) {
    await waitListening(n.port);
    await waitListening(n.control);
  }
  // A node listens before it reports ready: retry until all are.
  const controls = nodes.map((n) => `127.0.0.1:${n.control}`);
  for (let attempt = 0; ; attempt++) {
    const r = spawnSync(BIN, ["cluster", "create", "--replication-factor", "2", ...controls], { env, encoding: "utf8" });
    if (r.status === 0) return nodes;
    if (attempt === 50) throw new Error(`cluster create: ${r.stderr}`);
    await sleep(100);
  }
}

// Reads served from a replica copy, summed over the nodes.
async function replicaReads(nodes) {
  let sum = 0;
  for (const n of nodes) {
    const c = new Redis(n.port, "127.0.0.1", { lazyConnect: true });
    await c.connect();
    const info = await c.info("cluster");
    c.disconnect();
    const m = /cluster_replica_reads:(\d+)/.exec(info);
    assert.ok(m, `no cluster_replica_reads in ${info}`);
    sum += Number(m[1]);
  }
  return sum;
}

test('scaleReads "slave" reads every key at the replica ports', async () => {
  const nodes = await startCluster();
  const cluster = new Redis.Cluster(
    nodes.map((n) => ({ host: "127.0.0.1", port: n.port })),
    { scaleReads: "slave", redisOptions: { enableOfflineQueue: true } },
  );
  try {
    // The replicas ioredis sees are the replica ports.
    const slots = await cluster.cluster("SLOTS");
    const replicaPorts = new Set(nodes.map((n) => n.replica));
    for (const [start, end, primary, ...replicas] of slots) {
      assert.ok(!replicaPorts.has(primary[1]), `${start}-${end}: the primary is a RESP port`);
      assert.equal(replicas.length, 1);
      assert.ok(replicaPorts.has(replicas[0][1]), `${start}-${end}: the replica is a replica port`);
    }

    const keys = Array.from({ length: 300 }, (_, i) => `user:${i}`);
    for (const [i, k] of keys.entries()) await cluster.set(k, String(i));
    // Replication is asynchronous: read until every copy has every key.
    const allThere = async () => {
      const values = await Promise.all(keys.map((k) => cluster.get(k)));
      return values.every((v, i) => v === String(i));
    };
    for (let i = 0; !(await allThere()); i++) {
      assert.ok(i < 200, "replicas did not get every key");
      await sleep(50);
    }
    const before = await replicaReads(nodes);
    assert.ok(await allThere());
    const served = (await replicaReads(nodes)) - before;
    console.log(`${served} of ${keys.length} reads served by replicas`);
    assert.equal(served, keys.length, "every read was served by a replica");

    // Writes still go to the primaries, and reach the replicas.
    await cluster.set(keys[0], "w");
    for (let i = 0; (await cluster.get(keys[0])) !== "w"; i++) {
      assert.ok(i < 200, "the write did not reach the replica");
      await sleep(50);
    }
  } finally {
    cluster.disconnect();
  }
});
