// Lettuce, a maintained Java cluster client, learns the topology from CLUSTER NODES and
// with ReadFrom.REPLICA sends reads to the replicas it lists, on READONLY connections.
// Against a three-node cluster with two copies of every slot
// (`ringcache-node cluster create --replication-factor 2`), each node's replica port is
// listed as the replica of the ranges it copies; the reads must be served there, which
// the nodes' own counter (INFO cluster_replica_reads) shows, not just the values that
// come back, and writes must still reach the primaries. The node is the debug binary
// `make test` builds (RINGCACHE_NODE_BIN overrides it).
//
// Lettuce's model differs from go-redis' and ioredis' (CLUSTER SLOTS, a replica per
// slot range): a replica copies all of its primary's slots, so for a slot it may pick
// any replica its primary has. When ringcache's CLUSTER NODES lists a primary with more
// than one replica (its ranges are copied by different nodes), a pick that does not
// copy the key's slot is sent on to the primary, and only some reads are served by
// replicas. The test then asserts that some are, and every value is right; with one
// replica per primary it asserts that all are.
package ringcache;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.lettuce.core.ReadFrom;
import io.lettuce.core.RedisClient;
import io.lettuce.core.RedisURI;
import io.lettuce.core.api.StatefulRedisConnection;
import io.lettuce.core.cluster.RedisClusterClient;
import io.lettuce.core.cluster.api.StatefulRedisClusterConnection;
import io.lettuce.core.cluster.api.sync.RedisAdvancedClusterCommands;
import io.lettuce.core.cluster.models.partitions.Partitions;
import io.lettuce.core.cluster.models.partitions.RedisClusterNode;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

class ReplicaReadsTest {
    private static final String HOST = "127.0.0.1";
    private static final int KEYS = 300;

    /** One running ringcache-node's ports. */
    record Node(int port, int replica, int control) {}

    private final List<Process> children = new ArrayList<>();

    @AfterEach
    void stopNodes() {
        children.forEach(Process::destroyForcibly);
    }

    /** Asks the kernel for a free loopback port. */
    private static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getByName(HOST))) {
            return s.getLocalPort();
        }
    }

    private static void waitListening(int port) throws InterruptedException {
        long deadline = System.nanoTime() + 20_000_000_000L;
        while (System.nanoTime() < deadline) {
            try (Socket s = new Socket()) {
                s.connect(new InetSocketAddress(HOST, port), 1000);
                return;
            } catch (IOException notYet) {
                Thread.sleep(50);
            }
        }
        fail("nothing listens on port " + port);
    }

    private static String nodeBin() {
        String bin = System.getenv("RINGCACHE_NODE_BIN");
        if (bin != null && !bin.isEmpty()) {
            return bin;
        }
        // Maven runs the tests in the project directory, tests/clients/lettuce.
        return Path.of("..", "..", "..", "target", "debug", "ringcache-node").toAbsolutePath().normalize().toString();
    }

    /** Three cluster-mode nodes on free loopback ports, formed with two copies per slot. */
    private List<Node> startCluster() throws IOException, InterruptedException {
        String bin = nodeBin();
        byte[] secret = new byte[16];
        new SecureRandom().nextBytes(secret);
        String token = HexFormat.of().formatHex(secret);
        List<Node> nodes = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            Node n = new Node(freePort(), freePort(), freePort());
            ProcessBuilder pb = new ProcessBuilder(bin, "--cluster-enabled", "--node-id", "lettuce-" + i,
                    "--port", String.valueOf(n.port()), "--replica-port", String.valueOf(n.replica()),
                    "--control-port", String.valueOf(n.control()), "--admin-port", "0", "--proxy-port", "0",
                    "--maxmemory", "64mb");
            pb.environment().put("RINGCACHE_CONTROL_TOKEN", token);
            pb.redirectOutput(ProcessBuilder.Redirect.DISCARD).redirectError(ProcessBuilder.Redirect.DISCARD);
            children.add(pb.start());
            nodes.add(n);
        }
        for (Node n : nodes) {
            waitListening(n.port());
            waitListening(n.control());
        }
        // A node listens before it reports ready: retry until all are.
        List<String> create = new ArrayList<>(List.of(bin, "cluster", "create", "--replication-factor", "2"));
        nodes.forEach(n -> create.add(HOST + ":" + n.control()));
        for (int attempt = 0; ; attempt++) {
            ProcessBuilder pb = new ProcessBuilder(create).redirectErrorStream(true);
            pb.environment().put("RINGCACHE_CONTROL_TOKEN", token);
            Process p = pb.start();
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            if (p.waitFor() == 0) {
                return nodes;
            }
            if (attempt == 50) {
                fail("cluster create: " + out);
            }
            Thread.sleep(100);
        }
    }

    private static final Pattern REPLICA_READS = Pattern.compile("cluster_replica_reads:(\\d+)");

    /** Reads served from a replica copy, summed over the nodes (their INFO cluster). */
    private static long replicaReads(List<Node> nodes) {
        long sum = 0;
        for (Node n : nodes) {
            RedisClient c = RedisClient.create(RedisURI.create(HOST, n.port()));
            try (StatefulRedisConnection<String, String> conn = c.connect()) {
                String info = conn.sync().info("cluster");
                Matcher m = REPLICA_READS.matcher(info);
                assertTrue(m.find(), "no cluster_replica_reads in INFO of port " + n.port() + ":\n" + info);
                sum += Long.parseLong(m.group(1));
            } finally {
                c.shutdown();
            }
        }
        return sum;
    }

    /** Reads every key and reports whether each had its value. */
    private static boolean allThere(RedisAdvancedClusterCommands<String, String> cmd, List<String> keys) {
        boolean ok = true;
        for (int i = 0; i < keys.size(); i++) {
            if (!String.valueOf(i).equals(cmd.get(keys.get(i)))) {
                ok = false;
            }
        }
        return ok;
    }

    @Test
    void readFromReplicaReadsEveryKeyAtTheReplicaPorts() throws Exception {
        List<Node> nodes = startCluster();
        RedisClusterClient client = RedisClusterClient.create(
                nodes.stream().map(n -> RedisURI.create(HOST, n.port())).collect(Collectors.toList()));
        try (StatefulRedisClusterConnection<String, String> conn = client.connect()) {
            // The replicas Lettuce sees are the replica ports, one per slot range.
            Set<Integer> replicaPorts = nodes.stream().map(Node::replica).collect(Collectors.toSet());
            Partitions partitions = client.getPartitions();
            int primaries = 0;
            for (RedisClusterNode p : partitions) {
                int port = p.getUri().getPort();
                if (p.is(RedisClusterNode.NodeFlag.UPSTREAM)) {
                    primaries++;
                    assertFalse(replicaPorts.contains(port), "primary " + p.getUri() + " is a replica port");
                } else {
                    assertTrue(p.is(RedisClusterNode.NodeFlag.REPLICA), "neither primary nor replica: " + p);
                    assertTrue(replicaPorts.contains(port), "replica " + p.getUri() + " is not a replica port");
                }
            }
            assertEquals(3, primaries, "primaries in " + partitions);
            Set<Integer> listed = new HashSet<>();
            partitions.forEach(p -> listed.add(p.getUri().getPort()));
            assertTrue(listed.containsAll(replicaPorts), "every replica port is listed: " + partitions);
            // How many replicas Lettuce chooses from for each primary's slots.
            Map<String, Long> replicasOf = new TreeMap<>();
            for (RedisClusterNode p : partitions) {
                if (p.is(RedisClusterNode.NodeFlag.REPLICA)) {
                    replicasOf.merge(p.getSlaveOf(), 1L, Long::sum);
                }
            }
            boolean onePerPrimary = replicasOf.values().stream().allMatch(c -> c == 1);
            System.out.println("replicas per primary in CLUSTER NODES: " + replicasOf);

            // Keys over every slot range, written through the primaries (the default
            // connection reads and writes at the primaries).
            RedisAdvancedClusterCommands<String, String> cmd = conn.sync();
            List<String> keys = new ArrayList<>();
            for (int i = 0; i < KEYS; i++) {
                keys.add("user:" + i);
                assertEquals("OK", cmd.set(keys.get(i), String.valueOf(i)));
            }

            conn.setReadFrom(ReadFrom.REPLICA);
            // Replication is asynchronous: read until every copy has every key.
            for (int i = 0; !allThere(cmd, keys); i++) {
                assertTrue(i < 200, "replicas did not get every key");
                Thread.sleep(50);
            }
            long before = replicaReads(nodes);
            assertTrue(allThere(cmd, keys), "a read came back wrong");
            long served = replicaReads(nodes) - before;
            System.out.println(served + " of " + KEYS + " reads served by replicas");
            if (onePerPrimary) {
                assertEquals(KEYS, served, "every read was served by a replica");
            } else {
                // See the comment at the top: a pick of the wrong replica goes to the primary.
                assertTrue(served > 0, "no read was served by a replica");
                System.out.println("(a primary has several replicas in CLUSTER NODES, each copying part"
                        + " of its slots; Lettuce picks one per primary, so not every read can be)");
            }

            // Writes still go to the primaries, and reach the replicas.
            assertEquals("OK", cmd.set(keys.get(0), "w"));
            for (int i = 0; !"w".equals(cmd.get(keys.get(0))); i++) {
                assertTrue(i < 200, "the write did not reach the replica");
                Thread.sleep(50);
            }
        } finally {
            client.shutdown();
        }
    }
}
