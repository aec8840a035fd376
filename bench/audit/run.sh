#!/usr/bin/env bash
# run.sh: audits per second of ONE imtask-audit process with the moderation
# double answering after 50 ms, against the local stack (scripts/stack.sh up;
# this script never runs `down`). Prints figures; asserts none.
#
#   bash bench/audit/run.sh
#   BENCH_CONFIGS="multi:128:192 easy:128:128" BENCH_TASKS=30000 bash bench/audit/run.sh
#
# For each configuration engine:in_flight:workers (audit_http.engine,
# audit_http.max_in_flight, consumer.workers) and each content mode of
# BENCH_CONTENT (ids: the content comes from im-repo with GetMessage; inline:
# in the task), BENCH_RUNS times:
#   1. fresh topics <id>-task (6 partitions), -retry, -dlq, -result;
#   2. a backlog of BENCH_TASKS content_audit tasks for messages m<n> whose
#      content is "message <n>" (im-repo's, or the same text inline);
#   3. a moderation-double scenario answering after BENCH_LATENCY_MS, where
#      n ending in 3 is review (10 %) and in 50 block (1 %): those also set
#      the audit status in im-repo;
#   4. imtask-audit (-c opt) with the generic provider against that scenario;
#      audit_bench watch measures the steady rate from 10 % to 90 % of the
#      backlog done (start-up, group join and the final drain, when lanes run
#      empty unevenly, left out; the drain and overall rates are printed too),
#      from the binary's /metrics;
#   5. SIGTERM, topics and group deleted.
# The ideal for a configuration is in_flight / latency (e.g. 128 / 50 ms =
# 2,560/s); the table shows the share reached.
#
# Environment (defaults in brackets):
#   BENCH_CONFIGS ["multi:128:192 easy:128:128"]
#   BENCH_CONTENT ["ids inline"]   BENCH_TASKS [30000]   BENCH_RUNS [1]
#   BENCH_LATENCY_MS [50]          BENCH_KEEP [0] (1: keep the run directory)
#   BENCH_MAX_IN_FLIGHT [20000]    consumer.max_in_flight (records held)
#   BENCH_KAFKA [""]               librdkafka properties for the binary, "key=value ..."
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

CONFIGS=${BENCH_CONFIGS:-multi:128:192 easy:128:128}
CONTENT=${BENCH_CONTENT:-ids inline}
TASKS=${BENCH_TASKS:-30000}
RUNS=${BENCH_RUNS:-1}
LATENCY=${BENCH_LATENCY_MS:-50}
HELD=${BENCH_MAX_IN_FLIGHT:-20000}
KAFKA_EXTRA=""
for kv in ${BENCH_KAFKA:-}; do KAFKA_EXTRA+="  ${kv%%=*}: ${kv#*=}"$'\n'; done
KEEP=${BENCH_KEEP:-0}
eval "$(bash scripts/stack.sh env)"
BROKERS=$IMTASK_KAFKA_BROKERS
MOD=$IMTASK_MODERATION_ADDR

bash scripts/stack.sh status >/dev/null || bash scripts/stack.sh up
# -c opt without touching the bazel-* convenience symlinks of the tree
bazel build -c opt --symlink_prefix=/ //tasks/audit:imtask-audit //bench/audit:audit_bench \
  >/dev/null 2>&1 ||
  bazel build -c opt --symlink_prefix=/ //tasks/audit:imtask-audit //bench/audit:audit_bench
run_dir=$(mktemp -d "${TMPDIR:-/tmp}/audit-bench.XXXXXX")
bin_dir=$(bazel info -c opt bazel-bin 2>/dev/null)
cp "$bin_dir/tasks/audit/imtask-audit" "$bin_dir/bench/audit/audit_bench" "$run_dir/"

child=""
watcher=""
prefix=""
scenario=""
cleanup() {
  [[ -n $watcher ]] && kill "$watcher" 2>/dev/null
  if [[ -n $child ]] && kill -0 "$child" 2>/dev/null; then
    kill -TERM "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
  if [[ -n $prefix ]]; then
    "$run_dir/audit_bench" topics-delete --brokers "$BROKERS" --prefix "$prefix" \
      --group "$prefix-group" >/dev/null 2>&1 || true
  fi
  [[ -n $scenario ]] && curl -s -X DELETE "$MOD/admin/scenarios/$scenario" >/dev/null || true
  if [[ $KEEP == 1 ]]; then echo "bench: run directory kept: $run_dir"; else rm -rf "$run_dir"; fi
}
trap cleanup EXIT

results=()
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
for r in $(seq 1 "$RUNS"); do
  for cfg in $CONFIGS; do
    IFS=: read -r engine inflight workers <<<"$cfg"
    for content in $CONTENT; do
      id="audit-bench-$(date +%s)-$$-$r-$engine-$content"
      prefix=$id
      scenario=$id
      port=$(free_port)
      "$run_dir/audit_bench" topics-create --brokers "$BROKERS" --prefix "$prefix"
      flag=""
      [[ $content == inline ]] && flag=--inline
      "$run_dir/audit_bench" produce --brokers "$BROKERS" --topic "$prefix-task" --count "$TASKS" $flag
      # "message <n>": n ending in 50 blocks (1 %), in 3 goes to review (10 %)
      curl -sf -X PUT "$MOD/admin/scenarios/$scenario" -d "{\"latency_ms\":$LATENCY,\"rules\":[
        {\"text\":\"50\",\"match\":\"suffix\",\"decision\":\"block\",\"label\":\"Abuse\"},
        {\"text\":\"3\",\"match\":\"suffix\",\"decision\":\"review\",\"label\":\"Ad\"}]}" >/dev/null
      cat >"$run_dir/$id.yaml" <<YAML
log:
  level: warn
http:
  listen: 127.0.0.1:$port
kafka:
  brokers: $BROKERS
$KAFKA_EXTRA
shutdown:
  grace: 10s
consumer:
  group_id: $prefix-group
  topic: $prefix-task
  retry_topic: $prefix-retry
  dlq_topic: $prefix-dlq
  workers: $workers
  max_in_flight: $HELD
audit:
  provider: generic
  result_topic: $prefix-result
imrepo:
  endpoints: $IMTASK_IMREPO_ADDR
audit_http:
  engine: $engine
  max_in_flight: $inflight
  max_idle_connections: $inflight
audit_generic:
  url: $MOD/s/$scenario/generic/moderate
  decision_path: result.decision
  score_path: result.score
  labels_path: result.labels
YAML
      "$run_dir/imtask-audit" --config "$run_dir/$id.yaml" >"$run_dir/$id.log" 2>&1 &
      child=$!
      "$run_dir/audit_bench" watch --metrics "http://127.0.0.1:$port/metrics" \
        --count "$TASKS" --timeout 600 >"$run_dir/watch.out" &
      watcher=$!
      wait "$watcher" || true
      watcher=""
      out=$(cat "$run_dir/watch.out")
      echo "$out"
      rss=$(awk '/VmHWM/ {print $2}' "/proc/$child/status" 2>/dev/null || echo 0)
      kill -TERM "$child"
      wait "$child" || true
      child=""
      rate=$(sed -n 's/.*audits\/s \([0-9]*\).*/\1/p' <<<"$out")
      lat=$(sed -n 's/.*provider latency mean \([0-9.]*\) ms.*/\1/p' <<<"$out")
      tsk=$(sed -n 's/.*outputs) mean \([0-9.]*\) ms.*/\1/p' <<<"$out")
      all=$(sed -n 's/.*overall \([0-9]*\)\/s.*/\1/p' <<<"$out")
      ideal=$(( inflight * 1000 / LATENCY ))
      # requests in flight on average (rate x latency) against the bound
      occ=$(awk -v r="$rate" -v l="$lat" -v n="$inflight" 'BEGIN { printf "%.0f", 100 * r * l / 1000 / n }')
      load=$(cut -d' ' -f1 /proc/loadavg)
      results+=("$(printf '| %d | %s | %d | %d | %s | %s | %s | %s | %s | %s %% | %s %% | %s | %s MiB |' \
        "$r" "$engine" "$inflight" "$workers" "$content" "$rate" "$all" "$lat" "$tsk" \
        "$(( rate * 100 / ideal ))" "$occ" "$load" "$(( rss / 1024 ))")")
      "$run_dir/audit_bench" topics-delete --brokers "$BROKERS" --prefix "$prefix" \
        --group "$prefix-group" >/dev/null 2>&1 || true
      curl -s -X DELETE "$MOD/admin/scenarios/$scenario" >/dev/null || true
      prefix=""
      scenario=""
    done
  done
done
echo
echo "imtask-audit, $TASKS tasks, double latency $LATENCY ms, $(nproc) cores, $(date -u +%F)${BENCH_KAFKA:+, kafka: $BENCH_KAFKA}"
echo "ideal = in flight / $LATENCY ms; slots busy = audits/s x provider ms / in flight"
echo "| run | engine | in flight | workers | content | audits/s (10-90 %) | overall/s | provider ms | task ms | of ideal | slots busy | load avg | peak RSS |"
echo "| ---: | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
printf '%s\n' "${results[@]}"
