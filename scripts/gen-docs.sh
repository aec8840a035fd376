#!/usr/bin/env bash
# gen-docs.sh: regenerate the configuration and metrics references in
# docs/operations.md from the task binaries (scripts/gen_docs.py says how).
# //tests/docs:docs_test fails when they drift, and //tests/demo:demo_test
# when a metric seen after the end-to-end run differs from its row.
#
#   bash scripts/gen-docs.sh
#
# Run it with the demo up (bash scripts/demo.sh): metrics that appear only with
# their first sample (per-gateway recipients, im-repo latencies, ...) are then
# read from the demo's binaries too (IMTASK_DEMO_PORT, 19191..19194).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
BINARIES=(fanout push audit archive)
targets=()
for b in "${BINARIES[@]}"; do targets+=("//tasks/$b:imtask-$b"); done
bazel build "${targets[@]}" >/dev/null 2>&1 || bazel build "${targets[@]}"
out=$(bazel info bazel-bin 2>/dev/null)
args=()
for b in "${BINARIES[@]}"; do args+=(--bin "$b=$out/tasks/$b/imtask-$b"); done
port=${IMTASK_DEMO_PORT:-19191}
for i in 0 1 2 3; do
    url="http://127.0.0.1:$((port + i))/metrics"
    page=$(curl -sf --max-time 2 "$url" || true)
    if grep -q '^imtask_build_info' <<<"$page"; then
        echo "gen-docs: also reading $url (the demo's imtask-${BINARIES[$i]})"
        args+=(--scrape "$url")
    fi
done
python3 scripts/gen_docs.py "${args[@]}" --repo-conf libs/repoclient/src/conf.c --write docs/operations.md
