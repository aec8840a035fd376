#!/usr/bin/env bash
# instructions.sh: CPU instructions imtask-fanout executes for one fan-out,
# counted by valgrind's callgrind (every thread, librdkafka and the im-repo
# client included), with and without what a run of a 200-member group
# counts (the start, the bench's warm-up fan-outs and its metrics polling).
# Unlike a rate, the count does not depend on what else
# the machine is doing: it compares builds on a shared machine. Prints
# figures; asserts none. The stack must be up (bash scripts/stack.sh up).
#
#   bash bench/fanout/instructions.sh            # 100,000 members, all online
#   MEMBERS=10000 RATIO=0.3 bash bench/fanout/instructions.sh
#   FANOUT_ARGS="--walks 1" bash bench/fanout/instructions.sh   # more fanout_bench options
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
eval "$(bash scripts/stack.sh env)"
export IMTASK_STACK_DIR=${IMTASK_STACK_DIR:-${TMPDIR:-/tmp}/imtask-stack}
MEMBERS=${MEMBERS:-100000}
RATIO=${RATIO:-1}
command -v valgrind >/dev/null || { echo "instructions.sh: valgrind is not installed" >&2; exit 1; }
bazel build -c opt //tasks/fanout:imtask-fanout //bench/fanout:fanout_bench >/dev/null
bin=$(bazel info -c opt bazel-bin 2>/dev/null)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$bin/bench/fanout/fanout_bench" "$bin/tasks/fanout/imtask-fanout" "$work/"
cat >"$work/wrap.sh" <<WRAP
#!/bin/sh
exec valgrind --tool=callgrind --callgrind-out-file=$work/fanout.%p.cg $work/imtask-fanout "\$@"
WRAP
chmod +x "$work/wrap.sh"
# count one run of N members: prints "<recipients> <instructions>"
count() {
  rm -f "$work"/fanout.*.cg
  "$work/fanout_bench" "$work/wrap.sh" --kafka "linger.ms: 50;queue.buffering.max.messages: 4000" \
    --members "$1" --ratios "$RATIO" --procs 1 --workers 4 --no-ceiling ${FANOUT_ARGS:-} >"$work/bench.out"
  echo "$(awk -F'|' '/^\| [0-9]/ {gsub(/ /, "", $6); print $6}' "$work/bench.out")" \
    "$(awk '/^summary:/ {s += $2} END {print s}' "$work"/fanout.*.cg)"
}
read -r recipients total < <(count "$MEMBERS")
# the same run with a 200-member group: the process's start, the warm-up
# (12 fan-outs of 200 members per worker) and the clock's scrapes, taken off
read -r base_recipients base < <(count 200)
net=$((total - base))
echo "members $MEMBERS, online $RATIO, recipients $recipients, $(git rev-parse --short HEAD), $(date -u +%FT%TZ)${FANOUT_ARGS:+, $FANOUT_ARGS}"
echo "imtask-fanout instructions: $total ($((total / recipients)) per downlink, start and warm-up included)"
echo "without start and warm-up (minus a ${base_recipients}-recipient run's $base): $((net / (recipients - base_recipients))) per downlink"
