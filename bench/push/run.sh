#!/usr/bin/env bash
# run.sh: the push benchmark of issue 6 (figures in docs/push.md): pushes per
# second and peak RSS of ONE imtask-push process against the APNs double
# answering after 20 ms, then the same for FCM (and a mixed run).
#
#   bash bench/push/run.sh                 # apns, fcm, mixed; 400 tasks x 500 devices each
#   BENCH_TASKS=100 bash bench/push/run.sh apns
#
# Needs the local stack's Kafka and im-repo double (scripts/stack.sh up). The
# doubles it pushes to are a PRIVATE instance of tests/doubles/push started
# here (ports BENCH_PUSH_PORT, 19700..19703; -delay-ms BENCH_DELAY_MS (20),
# -record 0), stopped by its pid at the end; the stack's own doubles are
# not touched. Knobs: BENCH_TASKS (400), BENCH_DEVICES (500), BENCH_WORKERS (8),
# BENCH_MAX_IN_FLIGHT (1000, per app), BENCH_CONNS (2 connections per app, the
# in-flight bound split over them), BENCH_DOUBLE_WORKERS (2: the double as a
# Node cluster, connections spread over its processes, so that one Node event
# loop is not what is measured), BENCH_RUNS (1).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
eval "$(bash scripts/stack.sh env)"
port=${BENCH_PUSH_PORT:-19700}
delay=${BENCH_DELAY_MS:-20}
tasks=${BENCH_TASKS:-400}
devices=${BENCH_DEVICES:-500}
workers=${BENCH_WORKERS:-8}
inflight=${BENCH_MAX_IN_FLIGHT:-1000}
runs=${BENCH_RUNS:-1}
conns=${BENCH_CONNS:-2}
double_workers=${BENCH_DOUBLE_WORKERS:-2}
what=${*:-apns fcm mixed}

bazel build -c opt //tasks/push:imtask-push //bench/push:push_bench >/dev/null
bin=$(bazel info -c opt bazel-bin 2>/dev/null)
work=$(mktemp -d -t imtask-push-bench.XXXXXX)
double_pid=""
cleanup() {
  if [[ -n $double_pid ]] && kill -0 "$double_pid" 2>/dev/null; then
    kill -TERM "$double_pid" 2>/dev/null || true
    wait "$double_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
# private copies: other builds may replace bazel-bin's files while we run
cp "$bin/bench/push/push_bench" "$bin/tasks/push/imtask-push" "$work/"

# -max-streams above the client's bound: Node keeps counting a finished stream
# until its event loop got to it, which under load would refuse streams the
# client is entitled to (imtask-push itself keeps to apns.max_in_flight, 1000)
node tests/doubles/push/main.js -state-dir="$work/double" -port "$port" -delay-ms "$delay" \
  -record 0 -max-streams 4000 -workers "$double_workers" >"$work/double.log" 2>&1 &
double_pid=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$((port + 2))/healthz" >/dev/null 2>&1 && break
  kill -0 "$double_pid" 2>/dev/null || { cat "$work/double.log"; exit 1; }
  sleep 0.1
done

echo "# $(date -u +%FT%TZ) $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg); double answers after ${delay} ms, $double_workers processes"
for p in $what; do
  for _ in $(seq 1 "$runs"); do
    "$work/push_bench" "$work/imtask-push" --admin "http://127.0.0.1:$((port + 2))" \
      --provider "$p" --tasks "$tasks" --devices "$devices" --workers "$workers" \
      --max-in-flight "$inflight" --conns "$conns" --streams-per-conn $((inflight / conns)) \
      --brokers "$IMTASK_KAFKA_BROKERS" --imrepo "$IMTASK_IMREPO_ADDR"
  done
done
