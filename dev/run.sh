#!/usr/bin/env bash
# `make dev`: starts the local control plane + test kubelet + kube-proxy (ringcache-dev),
# installs the operator with the Helm chart, applies examples/cachecluster.yaml, waits
# until the CacheCluster is Ready, shows redis-cli sessions against it, and stays in the
# foreground until Ctrl-C, which tears everything down.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bin_dir="$(bash tests/k8s/build.sh | tail -n 1)"
kubectl="$bin_dir/kubectl"
helm="$bin_dir/helm"
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
cluster_dir="$(dirname "$KUBECONFIG")"   # the control plane's run dir: pod logs are under pods/
export HELM_CACHE_HOME="$run_dir/helm/cache" HELM_CONFIG_HOME="$run_dir/helm/config" HELM_DATA_HOME="$run_dir/helm/data"

echo "== helm install ringcache charts/ringcache (the operator, its RBAC, the CRD) =="
"$kubectl" create namespace ringcache-system
"$helm" install ringcache charts/ringcache --namespace ringcache-system --wait --timeout 180s
echo
echo "== kubectl apply -f examples/cachecluster.yaml =="
"$kubectl" apply -f examples/cachecluster.yaml
"$kubectl" wait --for=condition=Ready cachecluster/demo --timeout=240s
"$kubectl" get rcc demo
"$kubectl" get pods -l app.kubernetes.io/instance=demo -o wide

cluster_ip="$("$kubectl" get service demo -o jsonpath='{.spec.clusterIP}')"
pod_ip="$("$kubectl" get pod demo-0 -o jsonpath='{.status.podIP}')"
REDISCLI_AUTH="$("$kubectl" get secret demo-password -o jsonpath='{.data.password}' | base64 -d)"
export REDISCLI_AUTH
# Ready means the nodes serve; kube-proxy routes the Service once the EndpointSlice lists
# the Ready pods and its next rules sync (until then connections are refused).
for _ in $(seq 1 60); do
	[ "$(redis-cli -h "$cluster_ip" -p 6379 PING 2>/dev/null)" = PONG ] && break
	sleep 0.5
done
echo
echo "== redis-cli through the client Service demo ($cluster_ip:6379, any key on any pod) =="
( set -x; redis-cli -h "$cluster_ip" -p 6379 SET greeting "hello from ringcache"; redis-cli -h "$cluster_ip" -p 6379 GET greeting )
echo
echo "== redis-cli -c against pod demo-0 ($pod_ip:6379, following -MOVED) =="
( set -x; redis-cli -c -h "$pod_ip" -p 6379 SET user:1 alice; redis-cli -c -h "$pod_ip" -p 6379 GET user:1 )
redis-cli -h "$pod_ip" -p 6379 CLUSTER INFO | tr -d '\r' | head -3
cat <<MSG

ringcache runs on a real kube-apiserver, controller-manager and etcd, the operator as
pods installed by Helm, ClusterIPs routed by kube-proxy. In another shell:
  $export_line
  export PATH=$bin_dir:\$PATH            # kubectl and helm of the pinned release
  export REDISCLI_AUTH=\$(kubectl get secret demo-password -o jsonpath='{.data.password}' | base64 -d)
  kubectl get rcc -w                      # Replicas, Ready, Phase, Epoch, Hit rate, Progress
  kubectl describe rcc demo               # conditions, members, events
  redis-cli -h $cluster_ip                # the client Service (cluster-unaware clients)
  redis-cli -c -h $pod_ip                 # a pod (cluster-aware clients)
  kubectl scale rcc/demo --replicas=5     # slots move to the new pods in warm-up stages
  kubectl delete pod demo-1               # failover: its replicas are promoted, it rejoins
  tail -f $cluster_dir/pods/ringcache-system_*/operator.log   # the operators' logs (no kubectl logs here)
Ctrl-C stops everything.
MSG
wait "$dev_pid"
