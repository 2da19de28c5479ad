# ringcache: the two commands are `make dev` and `make test` (see README.md).
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: dev test lint build k8s-bins bench bench-cluster bench-quick node redis-tools redis-server nftables maven client-tests clean

## dev: build, start a real local Kubernetes control plane with the test kubelet and
## kube-proxy, install the operator with Helm, apply the sample CacheCluster, wait for
## it to be Ready and show redis-cli sessions (Ctrl-C tears it all down).
dev: build k8s-bins redis-tools nftables
	bash dev/run.sh

## test: every check CI runs: formatting, clippy, unit, integration and e2e tests.
test: lint k8s-bins redis-server nftables
	$(CARGO) build -p ringcache-node -p ringcache-operator --bins
	$(CARGO) test --workspace --all-targets
	$(MAKE) client-tests

## client-tests: maintained Redis clients in other languages against the debug node
## (rueidis' client-side cache: CLIENT TRACKING invalidations; go-redis ReadOnly /
## RouteRandomly, ioredis scaleReads "slave", redis-py ROUND_ROBIN_REPLICAS and
## read_from_replicas, Lettuce ReadFrom.REPLICA: replica reads at the replica ports),
## Go modules from the Go proxy, npm packages from package-lock.json, redis-py from PyPI
## (pinned, in a venv), Lettuce and JUnit from Maven (pinned in pom.xml, into ~/.m2).
client-tests: maven
	cd tests/clients/rueidis && go test -count=1 ./...
	cd tests/clients/goredis && go test -count=1 ./...
	cd tests/clients/ioredis && npm ci --no-audit --no-fund && npm test
	cd tests/clients/redispy && { test -x .venv/bin/python || python3 -m venv .venv; } && \
	  .venv/bin/pip install -q -r requirements.txt && .venv/bin/python -W ignore::DeprecationWarning -m unittest -v
	cd tests/clients/lettuce && mvn -q -B test

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

build:
	$(CARGO) build --release -p ringcache-node -p ringcache-operator -p ringcache-tests --bins

## k8s-bins: kube-apiserver, kube-controller-manager, kube-proxy, kubectl, etcd and helm from
## pinned Go modules, cached outside the repo (first build takes a while).
k8s-bins:
	bash tests/k8s/build.sh

## node: run one standalone cache node in the foreground on 127.0.0.1:6379.
node:
	$(CARGO) run --release -p ringcache-node -- --port 6379

redis-tools:
	@command -v redis-cli >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-tools; }

## maven: Debian's Maven (with its Java runtime), which builds and runs the Lettuce client test.
maven:
	@command -v mvn >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq maven; }

## redis-server: Debian's Redis, the reference node/tests/against_redis.rs compares
## replies with (and the benchmarks' baseline).
redis-server:
	@command -v redis-server >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }

## nftables: Debian's `nft`, which the harness's kube-proxy (--proxy-mode=nftables) programs
## Services with (tests/README.md).
nftables:
	@command -v nft >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables; }

## bench: ringcache-node vs Debian's redis-server on this machine (run by hand), with one
## worker thread (like Redis) and with the default one per core.
bench:
	BENCH_NODE_THREADS=1 python3 bench/node_vs_redis.py
	BENCH_NO_BUILD=1 python3 bench/node_vs_redis.py

## bench-cluster: 3 ringcache nodes vs a 3-primary Redis Cluster, and the proxy port.
bench-cluster:
	python3 bench/cluster_vs_redis.py

bench-quick:
	python3 bench/node_vs_redis.py --quick --rounds 1 --keys 200000

## bench-feed: a social feed (lists: LPUSH, LTRIM, LRANGE; sorted sets: ZADD, ZREVRANGE)
## against redis-server in the same run, and bytes per feed; writes bench/out/feed.md.
bench-feed:
	python3 bench/feed.py

## bench-origin: cache failure modes counted at a simulated origin (avalanche: TTL jitter;
## penetration: a Bloom filter; hot keys on 3 nodes: a client cache of RINGCACHE.HOTKEYS,
## replica reads), ringcache with and without each defence and redis-server in the same
## run; writes bench/out/origin.md. BENCH_ARGS=--quick for a smoke run.
.PHONY: bench-origin
bench-origin: redis-server redis-tools
	python3 bench/origin.py $(BENCH_ARGS)

clean:
	$(CARGO) clean

## bench-handover: slot handover to a joining node under load, with and without copy
## (release build, run by hand); writes bench/out/handover.md.
.PHONY: bench-handover
bench-handover:
	bash bench/handover.sh

## crds: regenerate the CacheCluster CRD from operator/src/crd.rs into crds/ and the Helm
## chart's crds/ (operator/tests/crd_drift.rs fails when either copy is stale).
.PHONY: crds
crds:
	$(CARGO) run -q -p ringcache-operator -- crd > crds/cacheclusters.ringcache.io.yaml.tmp
	mv crds/cacheclusters.ringcache.io.yaml.tmp crds/cacheclusters.ringcache.io.yaml
	cp crds/cacheclusters.ringcache.io.yaml charts/ringcache/crds/cacheclusters.ringcache.io.yaml

## generate: every generated file, from one command: the CRD YAML (crds/ and the chart's
## copy) and the control API's gRPC code (node/proto/src/pb/); tests fail when either drifts.
.PHONY: generate
generate: crds
	$(CARGO) run -q -p ringcache-proto-codegen

## bench-rebalance: hit rate during a scale-out 3 -> 5, ringcache's operator (gated warm-up
## and stages: [100]) against a Redis Cluster grown with redis-cli --cluster (run by hand;
## starts the tests/ control plane); writes $(BENCH_OUT)/rebalance-* and rebalance.png.
.PHONY: bench-rebalance bench-failover bench-plot
bench-rebalance: k8s-bins redis-server nftables
	$(CARGO) build --release -p ringcache-node -p ringcache-operator --bins
	$(CARGO) run -q -p ringcache-bench-operator -- rebalance --out $(BENCH_OUT) $(BENCH_ARGS)
	$(MAKE) bench-plot

## bench-failover: write unavailability and lost writes after SIGKILL of a primary,
## ringcache (operator defaults, minReplicasToAck 1) against Redis Cluster with replicas.
bench-failover: k8s-bins redis-server nftables
	$(CARGO) build --release -p ringcache-node -p ringcache-operator --bins
	$(CARGO) run -q -p ringcache-bench-operator -- failover --out $(BENCH_OUT) $(BENCH_ARGS)
	$(MAKE) bench-plot

## The test kubelet runs the newest of target/{release,debug}/ringcache-{node,operator}: these
## targets build release binaries, so a debug build made afterwards (make test) must not be
## newer when they run. Results go to $(BENCH_OUT).
BENCH_OUT ?= bench/results/release
bench-plot:
	@python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install -q matplotlib || python3 -m pip install -q --break-system-packages matplotlib
	python3 bench/plot.py $(BENCH_OUT)
