// Package goredis checks replica reads with go-redis, a maintained Go cluster client
// that keeps one role per address: with ReadOnly it sends reads to the replicas that
// CLUSTER SLOTS lists. A three-node cluster with two copies of every slot
// (`ringcache-node cluster create --replication-factor 2`) lists each node's replica
// port as the replica of the ranges it copies; the reads must be served there, which
// the nodes' own counter (INFO cluster_replica_reads) shows, not just the values that
// come back. The node is the debug binary `make test` builds (RINGCACHE_NODE_BIN
// overrides it).
package goredis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// node is one running ringcache-node.
type node struct {
	resp, replica, control string
}

// freePort asks the kernel for a free loopback port.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
	}
	t.Fatalf("nothing listens on %s", addr)
}

// startCluster runs three cluster-mode nodes on free loopback ports and forms a
// cluster with two copies of every slot.
func startCluster(t *testing.T) []node {
	t.Helper()
	bin := os.Getenv("RINGCACHE_NODE_BIN")
	if bin == "" {
		bin = filepath.Join("..", "..", "..", "target", "debug", "ringcache-node")
	}
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "RINGCACHE_CONTROL_TOKEN="+hex.EncodeToString(secret))
	var nodes []node
	var controls []string
	for i := 0; i < 3; i++ {
		port, replica, control := freePort(t), freePort(t), freePort(t)
		cmd := exec.Command(bin, "--cluster-enabled", "--node-id", fmt.Sprintf("goredis-%d", i),
			"--port", strconv.Itoa(port), "--replica-port", strconv.Itoa(replica),
			"--control-port", strconv.Itoa(control), "--admin-port", "0", "--proxy-port", "0",
			"--maxmemory", "64mb")
		cmd.Env = env
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting %s: %v", bin, err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
		n := node{
			resp:    fmt.Sprintf("127.0.0.1:%d", port),
			replica: fmt.Sprintf("127.0.0.1:%d", replica),
			control: fmt.Sprintf("127.0.0.1:%d", control),
		}
		nodes = append(nodes, n)
		controls = append(controls, n.control)
	}
	for _, n := range nodes {
		waitListening(t, n.resp)
		waitListening(t, n.control)
	}
	// A node listens before it reports ready: retry until all are.
	for attempt := 0; ; attempt++ {
		create := exec.Command(bin, append([]string{"cluster", "create", "--replication-factor", "2"}, controls...)...)
		create.Env = env
		out, err := create.CombinedOutput()
		if err == nil {
			return nodes
		}
		if attempt == 50 {
			t.Fatalf("cluster create: %v\n%s", err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// replicaReads is a node's count of reads served from a replica copy.
func replicaReads(t *testing.T, addr string) int64 {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	info, err := c.Info(context.Background(), "cluster").Result()
	if err != nil {
		t.Fatalf("INFO cluster on %s: %v", addr, err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "cluster_replica_reads:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			return n
		}
	}
	t.Fatalf("no cluster_replica_reads in INFO of %s:\n%s", addr, info)
	return 0
}

func totalReplicaReads(t *testing.T, nodes []node) int64 {
	var sum int64
	for _, n := range nodes {
		sum += replicaReads(t, n.resp)
	}
	return sum
}

// readAll reads every key through c and reports whether each had its value.
func readAll(t *testing.T, c *redis.ClusterClient, keys []string) bool {
	t.Helper()
	ok := true
	for i, k := range keys {
		v, err := c.Get(context.Background(), k).Result()
		if err == redis.Nil {
			ok = false
			continue
		}
		if err != nil {
			t.Fatalf("GET %s: %v", k, err)
		}
		if v != strconv.Itoa(i) {
			ok = false
		}
	}
	return ok
}

func testReplicaReads(t *testing.T, opt *redis.ClusterOptions, wantAllOnReplicas bool) {
	nodes := startCluster(t)
	ctx := context.Background()
	for _, n := range nodes {
		opt.Addrs = append(opt.Addrs, n.resp)
	}
	c := redis.NewClusterClient(opt)
	defer c.Close()

	// The client sees each node's replica port as a replica.
	replicaPorts := map[string]bool{}
	for _, n := range nodes {
		replicaPorts[n.replica] = true
	}
	slots, err := c.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		if len(s.Nodes) != 2 || !replicaPorts[s.Nodes[1].Addr] || replicaPorts[s.Nodes[0].Addr] {
			t.Fatalf("slots %d-%d: want a primary and a replica port, got %+v", s.Start, s.End, s.Nodes)
		}
	}

	// Keys over every slot range, written through the primaries.
	keys := make([]string, 300)
	for i := range keys {
		keys[i] = fmt.Sprintf("user:%d", i)
		if err := c.Set(ctx, keys[i], i, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", keys[i], err)
		}
	}
	// Replication is asynchronous: read until every copy has every key.
	for deadline := time.Now().Add(10 * time.Second); !readAll(t, c, keys); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("replicas did not get every key")
		}
	}
	before := totalReplicaReads(t, nodes)
	if !readAll(t, c, keys) {
		t.Fatal("a read came back wrong")
	}
	served := totalReplicaReads(t, nodes) - before
	t.Logf("%d of %d reads served by replicas", served, len(keys))
	if wantAllOnReplicas && served != int64(len(keys)) {
		t.Fatalf("%d of %d reads were served by replicas, want all", served, len(keys))
	}
	if !wantAllOnReplicas && (served == 0 || served == int64(len(keys))) {
		t.Fatalf("%d of %d reads were served by replicas, want some but not all", served, len(keys))
	}
	// Writes still reach the primaries.
	if err := c.Set(ctx, keys[0], "w", 0).Err(); err != nil {
		t.Fatalf("SET after reads: %v", err)
	}
}

// ReadOnly: reads go to a replica of the key's slot.
func TestReadOnlyReadsFromTheReplicaPorts(t *testing.T) {
	testReplicaReads(t, &redis.ClusterOptions{ReadOnly: true}, true)
}

// RouteRandomly: reads go to the primary or the replica, at random.
func TestRouteRandomlySpreadsReadsOverPrimaryAndReplica(t *testing.T) {
	testReplicaReads(t, &redis.ClusterOptions{RouteRandomly: true}, false)
}
