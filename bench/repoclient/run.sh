#!/usr/bin/env bash
# run.sh: benchmark libs/repoclient against a grpc-go reference client, both
# calling the same im-repo double (GetGroupMembers, 200-member page) with the
# same closed-loop workload, alternately, in one run. Needs the local stack
# (scripts/stack.sh up) or IMTASK_IMREPO_ADDR pointing at a double.
#
#   bash bench/repoclient/run.sh [concurrency=64] [seconds=10] [rounds=2]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
conc=${1:-64}
secs=${2:-10}
rounds=${3:-2}
addr=${IMTASK_IMREPO_ADDR:-127.0.0.1:19500}

bazel build -c opt //bench/repoclient:repo_bench >/dev/null 2>&1 ||
  bazel build -c opt //bench/repoclient:repo_bench
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Copied at once: another build may repoint bazel-bin meanwhile.
cp "$(bazel info -c opt bazel-bin 2>/dev/null)/bench/repoclient/repo_bench" "$tmp/repo_bench"
cbin="$tmp/repo_bench"
gobin="$tmp/goref"
(cd bench/repoclient/goref && GOFLAGS=-buildvcs=false go build -o "$gobin" .)

echo "# $(date -u +%FT%TZ) $(nproc) cores; double at $addr; concurrency $conc, ${secs}s x $rounds rounds"
for ((i = 1; i <= rounds; i++)); do
  "$gobin" "$addr" "$conc" "$secs"
  "$cbin" "$addr" "$conc" "$secs"
done
