#!/usr/bin/env bash
# Builds the pinned Kubernetes components used by ringcache's tests and `make dev`:
#   kube-apiserver, kube-controller-manager, kube-proxy, kubectl  (tests/k8s/kubernetes, k8s.io/kubernetes)
#   etcd                                             (tests/k8s/etcd, go.etcd.io/etcd/server/v3)
#   helm                                             (tests/k8s/helm, helm.sh/helm/v3)
# with plain `go build` from the Go module proxy.
#
# Binaries go to a cache dir outside the repo, keyed by a hash of the pins:
#   ${RINGCACHE_K8S_CACHE:-$HOME/.cache/ringcache/k8s}/<key>/bin
# A complete cache entry is reused; changing any go.mod/go.sum (or this script, or the Go version) changes the key.
#
# Progress goes to stderr; the last line on stdout is the bin dir.
# Usage: tests/k8s/build.sh [--print-bin-dir]   (--print-bin-dir: only print where the bin dir is/would be)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_root="${RINGCACHE_K8S_CACHE:-${HOME}/.cache/ringcache/k8s}"
# Two cores are shared with concurrent Rust builds: keep Go's parallelism low unless told otherwise.
jobs="${RINGCACHE_K8S_BUILD_JOBS:-2}"

log() { printf '[k8s-build] %s\n' "$*" >&2; }
die() { printf '[k8s-build] ERROR: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null 2>&1 || die "go not found on PATH (Go >= 1.24 is needed to build the pinned Kubernetes components)"

go_version="$(go env GOVERSION)"
key="$(
	{
		echo "$go_version"
		for m in kubernetes etcd helm; do
			echo "== $m"
			cat "$here/$m/go.mod" "$here/$m/go.sum"
			find "$here/$m" -name '*.go' -print0 | sort -z | xargs -0 cat
		done
		echo "== build.sh"
		cat "$here/build.sh"
	} | sha256sum | cut -c1-16
)"
entry="$cache_root/$key"
bin="$entry/bin"

if [[ "${1:-}" == "--print-bin-dir" ]]; then
	echo "$bin"
	exit 0
fi

binaries=(etcd kube-apiserver kube-controller-manager kube-proxy kubectl helm)

complete() {
	[[ -f "$entry/complete" ]] || return 1
	for b in "${binaries[@]}"; do [[ -x "$bin/$b" ]] || return 1; done
}

if complete; then
	log "up to date: $bin"
	echo "$bin"
	exit 0
fi

mkdir -p "$entry"
# One builder per cache entry: a concurrent `make dev` and test run wait for each other instead of both compiling.
exec 9>"$entry/.lock"
if ! flock -n 9; then
	log "another build of $key is running; waiting for it"
	flock 9
fi
if complete; then
	log "up to date: $bin"
	echo "$bin"
	exit 0
fi

export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=readonly"
export CGO_ENABLED=0
tmp="$entry/bin.partial"
rm -rf "$tmp"
mkdir -p "$tmp"

modver() { (cd "$here/$1" && go list -m -f '{{.Version}}' "$2"); }

# build MODULE_DIR OUTPUT PACKAGE LDFLAGS
build() {
	local dir="$1" out="$2" pkg="$3" ldflags="$4"
	local start=$SECONDS
	log "building $out ($pkg) ..."
	if ! (cd "$here/$dir" && go build -trimpath -p "$jobs" -ldflags "$ldflags" -o "$tmp/$out" "$pkg"); then
		die "building $out from $pkg (module tests/k8s/$dir) failed; see the go errors above"
	fi
	log "built $out in $((SECONDS - start))s"
}

total_start=$SECONDS
log "building pinned Kubernetes components into $bin (go $go_version, -p $jobs)"

# --- etcd ---
etcd_ver="$(modver etcd go.etcd.io/etcd/server/v3)" || die "cannot resolve go.etcd.io/etcd/server/v3 in tests/k8s/etcd"
build etcd etcd ./cmd/etcd "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=${etcd_ver}"

# --- kubernetes ---
kube_ver="$(modver kubernetes k8s.io/kubernetes)" || die "cannot resolve k8s.io/kubernetes in tests/k8s/kubernetes"
kube_info="$(cd "$here/kubernetes" && go mod download -json "k8s.io/kubernetes@$kube_ver")" || die "cannot download k8s.io/kubernetes@$kube_ver"
kube_time="$(printf '%s' "$kube_info" | sed -n 's/.*"Time": *"\([^"]*\)".*/\1/p' | head -n1)"
kube_time="${kube_time:-1970-01-01T00:00:00Z}"
kube_major="$(echo "${kube_ver#v}" | cut -d. -f1)"
kube_minor="$(echo "${kube_ver#v}" | cut -d. -f2)"
kube_ldflags="-s -w"
for p in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
	kube_ldflags+=" -X $p.gitVersion=$kube_ver -X $p.gitMajor=$kube_major -X $p.gitMinor=$kube_minor"
	kube_ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=$kube_time"
done
for c in kube-apiserver kube-controller-manager kube-proxy kubectl; do
	build kubernetes "$c" "k8s.io/kubernetes/cmd/$c" "$kube_ldflags"
done

# --- helm ---
helm_ver="$(modver helm helm.sh/helm/v3)" || die "cannot resolve helm.sh/helm/v3 in tests/k8s/helm"
helm_k8s="$(modver helm k8s.io/client-go)" || die "cannot resolve k8s.io/client-go in tests/k8s/helm"
helm_k8s_minor="$(echo "${helm_k8s#v}" | cut -d. -f2)"
helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_ver -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
helm_ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$helm_k8s_minor"
helm_ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$helm_k8s_minor"
build helm helm helm.sh/helm/v3/cmd/helm "$helm_ldflags"

rm -rf "$bin"
mv "$tmp" "$bin"
{
	echo "key=$key"
	echo "go=$go_version"
	echo "kubernetes=$kube_ver"
	echo "etcd=$etcd_ver"
	echo "helm=$helm_ver"
	echo "build_seconds=$((SECONDS - total_start))"
} >"$entry/versions"
touch "$entry/complete"
log "done in $((SECONDS - total_start))s: $bin"
echo "$bin"
