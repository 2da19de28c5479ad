// Package rueidis checks server-assisted client-side caching against a real
// ringcache-node with rueidis, a maintained Go client whose local cache relies on
// CLIENT TRACKING (OPTIN mode, RESP3 invalidation pushes): a value read through the
// cache must be dropped when another connection writes it, when it expires, and after
// a flush. The node is the debug binary `make test` builds (RINGCACHE_NODE_BIN
// overrides it).
package rueidis

import (
	"context"
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

// startNode runs ringcache-node on a free loopback port and returns its address.
func startNode(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("RINGCACHE_NODE_BIN")
	if bin == "" {
		bin = filepath.Join("..", "..", "..", "target", "debug", "ringcache-node")
	}
	for attempt := 0; attempt < 5; attempt++ {
		port := 20000 + rand.Intn(10000)
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			continue
		}
		cmd := exec.Command(bin, "--port", fmt.Sprint(port), "--admin-port", "0", "--proxy-port", "0", "--replica-port", "0", "--control-port", "0")
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting %s: %v", bin, err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				return addr
			}
		}
		_ = cmd.Process.Kill()
	}
	t.Fatal("ringcache-node did not start")
	return ""
}

func client(t *testing.T, addr string) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableRetry: true})
	if err != nil {
		t.Fatalf("connecting to %s: %v", addr, err)
	}
	t.Cleanup(c.Close)
	return c
}

// cachedGet reads key through rueidis' local cache: its value (empty when nil) and
// whether the local cache answered.
func cachedGet(t *testing.T, c rueidis.Client, key string) (string, bool) {
	t.Helper()
	resp := c.DoCache(context.Background(), c.B().Get().Key(key).Cache(), time.Minute)
	v, err := resp.ToString()
	if rueidis.IsRedisNil(err) {
		return "", resp.IsCacheHit()
	}
	if err != nil {
		t.Fatalf("GET %s: %v", key, err)
	}
	return v, resp.IsCacheHit()
}

// eventually polls until the cached read of key returns want from the server.
func eventually(t *testing.T, c rueidis.Client, key, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		v, hit := cachedGet(t, c, key)
		if v == want && !hit {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %q (cache hit %v), want %q fetched again", key, v, hit, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAWriteFromAnotherConnectionInvalidatesTheLocalCopy(t *testing.T) {
	addr := startNode(t)
	writer, reader := client(t, addr), client(t, addr)
	ctx := context.Background()
	if err := writer.Do(ctx, writer.B().Set().Key("user:1").Value("alice").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if v, hit := cachedGet(t, reader, "user:1"); v != "alice" || hit {
		t.Fatalf("first read: %q, cache hit %v", v, hit)
	}
	if v, hit := cachedGet(t, reader, "user:1"); v != "alice" || !hit {
		t.Fatalf("second read should come from the local cache: %q, cache hit %v", v, hit)
	}
	if err := writer.Do(ctx, writer.B().Set().Key("user:1").Value("bob").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	eventually(t, reader, "user:1", "bob")
}

func TestAnExpiredKeyLeavesTheLocalCache(t *testing.T) {
	addr := startNode(t)
	writer, reader := client(t, addr), client(t, addr)
	ctx := context.Background()
	if err := writer.Do(ctx, writer.B().Set().Key("session").Value("v").Px(200*time.Millisecond).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if v, _ := cachedGet(t, reader, "session"); v != "v" {
		t.Fatalf("first read: %q", v)
	}
	// rueidis also bounds an entry by the key's PTTL; the server's invalidation on
	// expiry is what a key without a client-side TTL relies on. Either way: gone.
	eventually(t, reader, "session", "")
}

func TestAFlushEmptiesTheLocalCache(t *testing.T) {
	addr := startNode(t)
	writer, reader := client(t, addr), client(t, addr)
	ctx := context.Background()
	if err := writer.Do(ctx, writer.B().Mset().KeyValue().KeyValue("a", "1").KeyValue("b", "2").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "b"} {
		cachedGet(t, reader, k)
		if _, hit := cachedGet(t, reader, k); !hit {
			t.Fatalf("%s not cached", k)
		}
	}
	if err := writer.Do(ctx, writer.B().Flushall().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	eventually(t, reader, "a", "")
	eventually(t, reader, "b", "")
}
