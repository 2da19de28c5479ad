#!/usr/bin/env bash
# Handover benchmark (run by hand): builds the example in release, runs it with a copy
# and without (read-through only), and writes both rows to bench/out/handover.md.
# Extra arguments go to both runs, e.g. `bash bench/handover.sh --keys 500000`.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
out=bench/out/handover.md
mkdir -p bench/out

$CARGO build --release -p ringcache-node --example handover_bench
bin=target/release/examples/handover_bench

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
"$bin" --copy "$@" >"$tmp/copy.md" || status=$?
"$bin" --no-copy "$@" >"$tmp/no-copy.md" || status=$?

{
    echo "# Handover benchmark"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(git rev-parse --short HEAD), $(nproc) CPUs," \
        "release build, 3 in-process nodes (R=1) + 1 joining;" \
        "args: ${*:-(defaults)}."
    echo
    cat "$tmp/copy.md"
    tail -n +3 "$tmp/no-copy.md"
} >"$out"
cat "$out"
if [ "$status" -ne 0 ]; then
    echo "handover bench: a run failed or saw client errors (see above)" >&2
fi
exit "$status"
