#!/usr/bin/env bash
# runtime_instructions.sh: CPU instructions per task of the task runtime
# (imtask-testproc, a no-op processor) and of a plain librdkafka consumer
# reading the same backlog, counted by valgrind's callgrind. Unlike a rate,
# an instruction count does not depend on what else the machine is doing, so
# it compares builds on a shared machine. Prints figures; asserts none.
#
#   bash bench/runtime_instructions.sh          # 100,000 tasks
#   BENCH_TASKS=20000 bash bench/runtime_instructions.sh
#
# Counts every instruction of each process (start, group join and stop
# included: about 3-5% at 100,000 tasks), all threads, librdkafka included.
# The broker must be up (bash scripts/stack.sh up).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
TASKS=${BENCH_TASKS:-100000}
BROKERS=${BENCH_BROKERS:-${IMTASK_KAFKA_BROKERS:-127.0.0.1:19092}}
WORKERS=${BENCH_WORKERS:-2}
command -v valgrind >/dev/null || { echo "runtime_instructions: valgrind is not installed" >&2; exit 1; }

targets=(//bench:loadgen //bench:plain_consumer //bench:kadmin //tests/runtime:imtask-testproc)
bazel build -c opt "${targets[@]}" >/dev/null 2>&1 || bazel build -c opt "${targets[@]}"
bin=$(bazel info -c opt output_path 2>/dev/null)/k8-opt/bin
run=$(mktemp -d "${TMPDIR:-/tmp}/imtask-cg.XXXX")
id=cg$(date +%s)-$$
pid=
cleanup() {
  [[ -n $pid ]] && kill -KILL "$pid" 2>/dev/null || true
  "$run/kadmin" -b "$BROKERS" delete-group "$id-plain" "$id-rt" >/dev/null 2>&1 || true
  "$run/kadmin" -b "$BROKERS" delete "$id-tasks" "$id-retry" "$id-dlq" >/dev/null 2>&1 || true
  rm -rf "$run"
}
trap cleanup EXIT
for b in bench/loadgen bench/plain_consumer bench/kadmin tests/runtime/imtask-testproc; do
  cp -L "$bin/$b" "$run/"
done

"$run/kadmin" -b "$BROKERS" create "$id-tasks:6" "$id-retry:3" "$id-dlq:3" >/dev/null
"$run/loadgen" -b "$BROKERS" -t "$id-tasks" -n "$TASKS" -T rt_test >/dev/null

total() { # callgrind output file -> instructions (its "summary:" line)
  awk '/^summary:/ {print $2}' "$1"
}

timeout 600 valgrind --tool=callgrind --callgrind-out-file="$run/plain.cg" "$run/plain_consumer" \
  --brokers "$BROKERS" --topic "$id-tasks" --group "$id-plain" --count "$TASKS" \
  --task-type rt_test >"$run/plain.log" 2>&1

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$run/rt.yaml" <<YAML
kafka:
  brokers: $BROKERS
http:
  listen: 127.0.0.1:$port
consumer:
  group_id: $id-rt
  topic: $id-tasks
  retry_topic: $id-retry
  dlq_topic: $id-dlq
  workers: $WORKERS
  max_in_flight: 1000
YAML
env_args=()
for v in $(compgen -e | grep -E '^(IMTASK_|TESTPROC_)' || true); do env_args+=(-u "$v"); done
env "${env_args[@]}" TESTPROC_TASK_TYPE=rt_test valgrind --tool=callgrind \
  --callgrind-out-file="$run/rt.cg" "$run/imtask-testproc" --config "$run/rt.yaml" \
  >"$run/rt.log" 2>&1 &
pid=$!
done_n=0
for ((i = 0; i < 600; i++)); do
  done_n=$(curl -s "127.0.0.1:$port/metrics" 2>/dev/null |
    awk '/^imtask_tasks_succeeded_total\{task_type="rt_test"\}/ {print $2}' || true)
  [[ ${done_n:-0} == "$TASKS" ]] && break
  kill -0 "$pid" 2>/dev/null || { echo "imtask-testproc ended early:" >&2; tail "$run/rt.log" >&2; exit 1; }
  sleep 1
done
[[ ${done_n:-0} == "$TASKS" ]] || { echo "imtask-testproc did $done_n of $TASKS tasks in 600 s" >&2; exit 1; }
kill -TERM "$pid"
wait "$pid" || true
pid=

p=$(total "$run/plain.cg")
r=$(total "$run/rt.cg")
echo "tasks: $TASKS (noop payload, 6 partitions), runtime workers: $WORKERS, $(date -u +%Y-%m-%dT%H:%MZ), $(git rev-parse --short HEAD)"
printf '%-28s %15s %12s\n' consumer instructions "per task"
printf '%-28s %15d %12d\n' "plain librdkafka consumer" "$p" $((p / TASKS))
printf '%-28s %15d %12d\n' "imtask-testproc (runtime)" "$r" $((r / TASKS))
echo "runtime / plain: $(awk -v r="$r" -v p="$p" 'BEGIN {printf "%.2f", r / p}')"
