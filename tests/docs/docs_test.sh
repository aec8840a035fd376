#!/usr/bin/env bash
# docs_test.sh: docs/operations.md's configuration and metrics references
# against the task binaries (scripts/gen_docs.py --check): the configuration
# tables must equal what the binaries' --check-config prints; every metric
# name compiled into a binary must have a row, and every metric a binary
# exposes before any traffic must match its row's type, help and labels. No
# service needed (the binaries run against an unreachable broker).
# Arguments: gen_docs.py, operations.md, then NAME=BINARY for each binary.
set -euo pipefail
gen=$1 doc=$2
shift 2
args=()
for b in "$@"; do args+=(--bin "$b"); done
python3 "$gen" "${args[@]}" --check "$doc"
echo "docs_test: 1 passed, 0 failed"
