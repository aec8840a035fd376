#!/usr/bin/env bash
# run.sh: the archive job's benchmark (docs/archive.md): messages archived per
# second end to end (im-repo double -> verified zstd NDJSON segments on a
# local directory -> deleted from the double) and peak RSS, for 100k and 1M
# messages, each in a fresh process; then the double's ListMessagesBefore alone
# for 1M, to see how much of the time is the double's. Needs the local stack
# (scripts/stack.sh up). Prints figures; asserts none.
#   bash bench/archive/run.sh            # -c opt build
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
eval "$(bash scripts/stack.sh env)"
work=$(mktemp -d "${TMPDIR:-/tmp}/archive-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
bazel build -c opt //bench/archive:archive_bench >/dev/null 2>&1 || bazel build -c opt //bench/archive:archive_bench
# a copy: bazel-bin follows whatever the workspace built last
cp "$(bazel info -c opt bazel-bin 2>/dev/null)/bench/archive/archive_bench" "$work/archive_bench"
bin=$work/archive_bench
echo "machine: $(nproc) cores, $(uname -sr); store: $work (local directory, fsync on every put)"
for n in 100000 1000000; do
    "$bin" --messages "$n" --store "$work/s$n"
    rm -rf "$work/s$n"
done
"$bin" --messages 1000000 --store "$work/list" --list-only
