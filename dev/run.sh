#!/usr/bin/env bash
# `make dev`: starts the local control plane + test kubelet (ringcache-dev), applies
# dev/sample.yaml, waits for the pods, shows a redis-cli session against them, and
# stays in the foreground until Ctrl-C, which tears everything down.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bin_dir="$(bash tests/k8s/build.sh | tail -n 1)"
kubectl="$bin_dir/kubectl"
run_dir="$(mktemp -d -t ringcache-dev.XXXXXX)"
out="$run_dir/ringcache-dev.out"

./target/release/ringcache-dev >"$out" 2> >(tee "$run_dir/ringcache-dev.log" >&2) &
dev_pid=$!
stop() {
	trap - INT TERM EXIT
	echo "make dev: stopping the control plane..." >&2
	kill -TERM "$dev_pid" 2>/dev/null || true
	wait "$dev_pid" 2>/dev/null || true
}
trap stop INT TERM EXIT

for _ in $(seq 1 600); do
	grep -q '^export KUBECONFIG=' "$out" 2>/dev/null && break
	kill -0 "$dev_pid" 2>/dev/null || { echo "make dev: ringcache-dev exited; see $run_dir/ringcache-dev.log" >&2; exit 1; }
	sleep 0.5
done
export_line="$(grep '^export KUBECONFIG=' "$out")" || { echo "make dev: control plane not ready after 300 s" >&2; exit 1; }
eval "$export_line"

"$kubectl" apply -f dev/sample.yaml
"$kubectl" rollout status deployment/ringcache-sample --timeout=180s
ips=$("$kubectl" get pods -l app=ringcache-sample -o jsonpath='{.items[*].status.podIP}')
first="${ips%% *}"

echo
echo "== a redis-cli session against pod $first =="
redis-cli -h "$first" -p 6379 SET greeting "hello from ringcache" 
redis-cli -h "$first" -p 6379 GET greeting
redis-cli -h "$first" -p 6379 INFO keyspace | tr -d '\r'
cat <<MSG

ringcache is running on a real kube-apiserver, controller-manager and etcd.
  $export_line
  export PATH=$bin_dir:\$PATH        # kubectl and helm of the pinned release
  kubectl get pods -o wide
  redis-cli -h $first -p 6379        # pods: $ips
  curl http://$first:9121/metrics
Ctrl-C stops everything.
MSG
wait "$dev_pid"
