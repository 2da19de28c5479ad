# ringcache: the two commands are `make dev` and `make test` (see README.md).
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: dev test lint build k8s-bins bench bench-cluster bench-quick node redis-tools redis-server clean

## dev: build, start a real local Kubernetes control plane with the test kubelet,
## run ringcache pods on it, and print how to connect (Ctrl-C tears it all down).
dev: build k8s-bins redis-tools
	bash dev/run.sh

## test: every check CI runs: formatting, clippy, unit, integration and e2e tests.
test: lint k8s-bins redis-server
	$(CARGO) build -p ringcache-node --bins
	$(CARGO) test --workspace --all-targets

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

build:
	$(CARGO) build --release -p ringcache-node -p ringcache-tests --bins

## k8s-bins: kube-apiserver, kube-controller-manager, kubectl, etcd and helm from
## pinned Go modules, cached outside the repo (first build takes a while).
k8s-bins:
	bash tests/k8s/build.sh

## node: run one standalone cache node in the foreground on 127.0.0.1:6379.
node:
	$(CARGO) run --release -p ringcache-node -- --port 6379

redis-tools:
	@command -v redis-cli >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-tools; }

## redis-server: Debian's Redis, the reference node/tests/against_redis.rs compares
## replies with (and the benchmarks' baseline).
redis-server:
	@command -v redis-server >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }

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

clean:
	$(CARGO) clean

## bench-handover: slot handover to a joining node under load, with and without copy
## (release build, run by hand); writes bench/out/handover.md.
.PHONY: bench-handover
bench-handover:
	bash bench/handover.sh
