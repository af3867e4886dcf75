#!/usr/bin/env bash
# Times `fleetd validate` and Ajv + js-yaml on Node (schema only, one core)
# on the same generated fleet, side by side, best of 3 runs each, and prints
# both wall-clock figures and the ratio. Run through `make bench`.
set -euo pipefail
n=${1:-10000}
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
go run "$root/internal/testenv/benchfleet/genfleet" "$dir/fleet" "$n"

best() { # best wall-clock seconds of 3 runs of "$@"
	local b=
	for _ in 1 2 3; do
		local s e
		s=$(date +%s%N)
		"$@" >/dev/null 2>&1
		e=$(date +%s%N)
		if [ -z "$b" ] || [ $((e - s)) -lt "$b" ]; then b=$((e - s)); fi
	done
	awk -v ns="$b" 'BEGIN { printf "%.3f", ns / 1e9 }'
}

f=$(best "$root/bin/fleetd" validate "$dir/fleet")
a=$(best env NODE_PATH="$AJV_DIR/node_modules" node "$root/hack/ajv/validate.js" "$root/schema/jsonschema" dir "$dir/fleet")
awk -v n="$n" -v f="$f" -v a="$a" -v c="$(nproc)" 'BEGIN {
	printf "validate %d clusters: fleetd %.3fs, Ajv+js-yaml on node %.3fs: fleetd is %.2fx faster (%d cores)\n", n, f, a, a / f, c
}'
