#!/usr/bin/env bash
# build.sh builds the test kube-apiserver and etcd from their Go modules (this
# directory's go.mod) into a cache directory keyed by their versions and the Go
# version, and prints that directory on the last line of stdout. It builds only
# what is missing: a cached run takes well under a second.
#
#   hack/kube-tools/build.sh            # build if missing, print the directory
#   KUBE_TOOLS_CACHE=/dir build.sh      # cache root (default: $XDG_CACHE_HOME or ~/.cache, /fleetd/kube-tools)
#
# Progress goes to stderr: a cold build takes 9 to 15 minutes on 2 cores
# (about 11 minutes of CPU; measured 13m43s while other builds shared the cores).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

go_bin="${GO:-go}"
export GOFLAGS=-mod=mod
modver() { "$go_bin" list -m -f '{{.Version}}' "$1"; }
k8s_version="$(modver k8s.io/kubernetes)"
etcd_version="$(modver go.etcd.io/etcd/server/v3)"
go_version="$("$go_bin" env GOVERSION)"
# The key also covers go.sum, so any change of a dependency rebuilds.
sum_key="$(sha256sum go.mod go.sum | sha256sum | cut -c1-12)"
root="${KUBE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fleetd/kube-tools}"
dir="$root/kube-apiserver-${k8s_version}_etcd-${etcd_version}_${go_version}_${sum_key}"

if [[ -x "$dir/kube-apiserver" && -x "$dir/etcd" ]]; then
	echo "kube-tools: cached in $dir" >&2
	echo "$dir"
	exit 0
fi

mkdir -p "$root"
tmp="$(mktemp -d "$root/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

start=$(date +%s)
echo "kube-tools: building kube-apiserver $k8s_version and etcd $etcd_version with $go_version into $dir" >&2
echo "kube-tools: a cold build takes 9 to 15 minutes on 2 cores (about 11 minutes of CPU); later runs use the cache" >&2

# The build prints nothing for minutes; say that it is alive every 30 seconds.
(
	while sleep 30; do
		echo "kube-tools: still building ($(( $(date +%s) - start ))s)" >&2
	done
) &
ticker=$!
trap 'kill $ticker 2>/dev/null || true; rm -rf "$tmp"' EXIT

build() { # build NAME PACKAGE
	local t0=$(date +%s)
	echo "kube-tools: go build $2" >&2
	CGO_ENABLED=0 "$go_bin" build -trimpath -ldflags='-s -w' -o "$tmp/$1" "$2"
	echo "kube-tools: built $1 in $(( $(date +%s) - t0 ))s" >&2
}
build etcd go.etcd.io/etcd/server/v3
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver

kill $ticker 2>/dev/null || true
printf 'kube-apiserver %s\netcd %s\ngo %s\nbuilt %s\nseconds %s\n' \
	"$k8s_version" "$etcd_version" "$go_version" "$(date -u +%FT%TZ)" "$(( $(date +%s) - start ))" > "$tmp/VERSIONS"
# Rename last, so a killed build never leaves a directory that looks complete.
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
echo "kube-tools: done in $(( $(date +%s) - start ))s: $dir" >&2
echo "$dir"
