#!/usr/bin/env bash
# runtime_bench.sh: the task runtime's throughput against a plain librdkafka
# consumer reading the same backlog from the same broker in the same run,
# and the runtime's peak memory. Prints figures; asserts none.
#
#   bash bench/runtime_bench.sh            # 1,000,000 tasks
#   BENCH_TASKS=100000 bash bench/runtime_bench.sh
#
# What it does (see bench/README.md for how to read the output):
#   1. builds the measured binaries with `bazel build -c opt` (no convenience
#      symlinks touched) and copies them into a private run directory;
#   2. creates a fresh topic set for this run: <id>-tasks (6 partitions),
#      <id>-retry and <id>-dlq (3 each), with bench/kadmin (Admin API);
#   3. fills <id>-tasks with BENCH_TASKS task records (bench/loadgen:
#      envelope, payload "noop", headers task_type/task_id/traceparent, keys
#      = task ids) and prints the produce rate;
#   4. BENCH_RUNS rounds, each: bench/plain_consumer in a new group reads the
#      backlog; then imtask-testproc, in a new group, with each worker count of
#      BENCH_WORKERS, processes the same backlog: timed through its /metrics
#      (bench/metrics_watch: first consumed task to succeeded == N), its
#      VmHWM read from /proc before SIGTERM, and its committed lag checked
#      after it stopped;
#   5. prints the table (medians over the rounds) with the machine and the
#      librdkafka and Kafka versions;
#   6. on exit, whatever happened: stops the processes it started, deletes
#      its consumer groups and topics, removes the run directory (kept with
#      BENCH_KEEP=1 or when something failed).
#
# Environment (defaults in brackets):
#   BENCH_TASKS [1000000]      records in the backlog
#   BENCH_WORKERS ["2 8"]      consumer.workers values to run
#   BENCH_MAX_IN_FLIGHT [1000] consumer.max_in_flight
#   BENCH_RUNS [3]             rounds (plain + each worker count per round)
#   BENCH_TIMEOUT [600]        seconds any one step may take
#   BENCH_BROKERS [$IMTASK_KAFKA_BROKERS or 127.0.0.1:19092]
#   BENCH_TASK_TYPE [rt_test]  task type written, and registered by
#                              imtask-testproc (TESTPROC_TASK_TYPE)
#   BENCH_KEEP [0]             1: keep the run directory (logs, config)
#   BENCH_KAFKA [""]           librdkafka properties for BOTH consumers, as
#                              "key=value key=value" (plain_consumer -X, the
#                              runtime's kafka: section), e.g.
#                              "queued.min.messages=1000000"
#   BENCH_RUNTIME_ENV [""]     extra VAR=value words for imtask-testproc only
# The broker must be up: `bash scripts/stack.sh up` (this script runs it
# when the default broker does not answer; it never runs `down`).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

TASKS=${BENCH_TASKS:-1000000}
WORKERS=${BENCH_WORKERS:-2 8}
MAX_IN_FLIGHT=${BENCH_MAX_IN_FLIGHT:-1000}
RUNS=${BENCH_RUNS:-3}
TIMEOUT=${BENCH_TIMEOUT:-600}
DEFAULT_BROKERS=127.0.0.1:19092
BROKERS=${BENCH_BROKERS:-${IMTASK_KAFKA_BROKERS:-$DEFAULT_BROKERS}}
TASK_TYPE=${BENCH_TASK_TYPE:-rt_test}
KEEP=${BENCH_KEEP:-0}
RUNTIME_ENV=${BENCH_RUNTIME_ENV:-}
KAFKA_PROPS=${BENCH_KAFKA:-}
PARTITIONS=6

log() { echo "bench: $*" >&2; }
die() {
  echo "bench: error: $*" >&2
  exit 1
}

[[ $TASKS =~ ^[1-9][0-9]*$ ]] || die "BENCH_TASKS must be a positive integer"
[[ $MAX_IN_FLIGHT =~ ^[1-9][0-9]*$ ]] || die "BENCH_MAX_IN_FLIGHT must be a positive integer"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer"
[[ $TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "BENCH_TIMEOUT must be a positive integer"
for w in $WORKERS; do [[ $w =~ ^[1-9][0-9]*$ ]] || die "BENCH_WORKERS: '$w' is not a count"; done
PLAIN_X=()
KAFKA_YAML=""
for kv in $KAFKA_PROPS; do
  [[ $kv =~ ^[a-z0-9.]+=[^[:space:]]+$ ]] || die "BENCH_KAFKA: '$kv' is not key=value"
  PLAIN_X+=(-X "$kv")
  KAFKA_YAML+="  ${kv%%=*}: \"${kv#*=}\""$'\n'
done

RUN_ID="bench-$(date +%Y%m%d%H%M%S)-$$"
TOPIC="$RUN_ID-tasks"
RETRY_TOPIC="$RUN_ID-retry"
DLQ_TOPIC="$RUN_ID-dlq"
RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/imtask-$RUN_ID.XXXX")
GROUPS_MADE=()
TOPICS_MADE=0
RT_PID=""
FAILED=1

# ------------------------------------------------------------------ cleanup

stop_runtime() { # graceful, bounded; then KILL
  local pid=$RT_PID i
  [[ -n $pid ]] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do # 60 s
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "imtask-testproc (pid $pid) still running 60 s after SIGTERM: KILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
  RT_PID=""
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_runtime
  if [[ -x $RUN_DIR/kadmin ]]; then
    if ((${#GROUPS_MADE[@]} > 0)); then
      timeout -k 5 60 "$RUN_DIR/kadmin" -b "$BROKERS" delete-group "${GROUPS_MADE[@]}" ||
        log "could not delete the consumer groups ${GROUPS_MADE[*]}"
    fi
    if ((TOPICS_MADE)); then
      timeout -k 5 60 "$RUN_DIR/kadmin" -b "$BROKERS" delete "$TOPIC" "$RETRY_TOPIC" "$DLQ_TOPIC" ||
        log "could not delete the topics $TOPIC $RETRY_TOPIC $DLQ_TOPIC"
    fi
  fi
  if [[ $KEEP == 1 || $FAILED == 1 ]]; then
    log "logs and config kept in $RUN_DIR"
  else
    rm -rf "$RUN_DIR"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ helpers

port_open() { # host:port
  (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null
}

free_port() {
  local p
  for ((p = 19180 + RANDOM % 500; p < 20000; p++)); do
    port_open "127.0.0.1:$p" || {
      echo "$p"
      return 0
    }
  done
  die "no free port for the metrics server"
}

field() { # RESULT-line key
  sed -n "s/.*[ ]$2=\([^ ]*\).*/\1/p" <<<"$1"
}

median() { # numbers... -> the median (the lower middle one for an even count)
  printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'
}

maxof() {
  printf '%s\n' "$@" | sort -g | tail -n 1
}

# ------------------------------------------------------------------ build

if [[ $BROKERS == "$DEFAULT_BROKERS" ]] && ! port_open "$BROKERS"; then
  log "no broker on $BROKERS: bash scripts/stack.sh up"
  bash scripts/stack.sh up >&2
fi
port_open "$BROKERS" || die "no broker answers on $BROKERS"

log "building (bazel build -c opt)"
targets=(//bench:loadgen //bench:plain_consumer //bench:kadmin //bench:metrics_watch
  //tests/runtime:imtask-testproc)
timeout -k 10 "$TIMEOUT" bazel build -c opt --symlink_prefix=/ "${targets[@]}" >"$RUN_DIR/build.log" 2>&1 ||
  {
    tail -n 30 "$RUN_DIR/build.log" >&2
    die "build failed"
  }
bin=$(bazel info -c opt bazel-bin 2>/dev/null)
# private copies: another build of the same targets cannot swap them mid-run
for b in bench/loadgen bench/plain_consumer bench/kadmin bench/metrics_watch; do
  cp "$bin/$b" "$RUN_DIR/"
done
cp "$bin/tests/runtime/imtask-testproc" "$RUN_DIR/"

# ------------------------------------------------------------------ machine

CPU_MODEL=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1)
NPROC=$(nproc)
MEM_GIB=$(awk '/^MemTotal:/ {printf "%.1f", $2 / 1048576}' /proc/meminfo)
RDKAFKA_VERSION=$("$RUN_DIR/imtask-testproc" --version | sed -n 's/.*(librdkafka \(.*\)).*/\1/p')
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' scripts/kafka/pom.xml)
if [[ $BROKERS != "$DEFAULT_BROKERS" ]]; then
  KAFKA_VERSION="? (not the stack's broker; the stack pins $KAFKA_VERSION)"
fi
# The stack's broker process, to tell its CPU from other load (0: unknown).
BROKER_PID=0
stack_pidfile="${IMTASK_STACK_DIR:-${TMPDIR:-/tmp}/imtask-stack}/kafka.pid"
if [[ $BROKERS == "$DEFAULT_BROKERS" && -s $stack_pidfile ]]; then
  p=$(tr -dc '0-9' <"$stack_pidfile")
  if [[ -n $p ]] && tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka'; then
    BROKER_PID=$p
  fi
fi

# ------------------------------------------------------------------ topics and backlog

log "run $RUN_ID: topics $TOPIC ($PARTITIONS partitions), $RETRY_TOPIC, $DLQ_TOPIC on $BROKERS"
TOPICS_MADE=1
timeout -k 5 120 "$RUN_DIR/kadmin" -b "$BROKERS" create "$TOPIC:$PARTITIONS" "$RETRY_TOPIC:3" \
  "$DLQ_TOPIC:3" || die "creating the topics failed"

log "filling $TOPIC with $TASKS tasks"
timeout -k 10 "$TIMEOUT" "$RUN_DIR/loadgen" -b "$BROKERS" -t "$TOPIC" -n "$TASKS" \
  -T "$TASK_TYPE" >"$RUN_DIR/loadgen.out" 2>"$RUN_DIR/loadgen.err" ||
  {
    cat "$RUN_DIR/loadgen.err" >&2
    die "loadgen failed"
  }
LOADGEN_LINE=$(cat "$RUN_DIR/loadgen.out")
log "$LOADGEN_LINE"
held=$(timeout -k 5 60 "$RUN_DIR/kadmin" -b "$BROKERS" count "$TOPIC")
[[ $held == "$TASKS" ]] || die "$TOPIC holds $held records, $TASKS expected"

# ------------------------------------------------------------------ consumers

declare -A RATE CPU RSS PAUSED BCPU OTHER
PLAIN_RATES=()
PLAIN_CPUS=()
PLAIN_RSS=()
PLAIN_BCPU=()
PLAIN_OTHER=()

per_million() { # cpu-seconds msgs -> cpu-seconds per 1M msgs
  awk -v c="$1" -v n="$2" 'BEGIN {printf "%.2f", (n > 0 ? c / n * 1e6 : 0)}'
}

other_cores() { # RESULT-line -> cores busy with neither this consumer nor the broker
  awk -v y="$(field "$1" sys_busy)" -v c="$(field "$1" cpu)" -v b="$(field "$1" broker_cpu)" \
    -v s="$(field "$1" secs)" 'BEGIN {o = (s > 0 ? (y - c - b) / s : 0); printf "%.2f", (o < 0 ? 0 : o)}'
}

run_plain() { # round
  local group="$RUN_ID-plain-$1" out line
  GROUPS_MADE+=("$group")
  out="$RUN_DIR/plain-$1.out"
  if ! timeout -k 10 "$TIMEOUT" "$RUN_DIR/plain_consumer" -b "$BROKERS" -t "$TOPIC" -g "$group" \
    -n "$TASKS" -T "$TASK_TYPE" -w "$TIMEOUT" --broker-pid "$BROKER_PID" "${PLAIN_X[@]}" \
    --machine >"$out" \
    2>"$RUN_DIR/plain-$1.err"; then
    cat "$RUN_DIR/plain-$1.err" >&2
    die "plain_consumer failed (round $1)"
  fi
  line=$(grep '^RESULT' "$out")
  [[ $(field "$line" matched) == "$TASKS" ]] || die "plain_consumer matched $(field "$line" matched) of $TASKS"
  PLAIN_RATES+=("$(field "$line" rate)")
  PLAIN_CPUS+=("$(per_million "$(field "$line" cpu)" "$(field "$line" msgs)")")
  PLAIN_BCPU+=("$(per_million "$(field "$line" broker_cpu)" "$(field "$line" msgs)")")
  PLAIN_OTHER+=("$(other_cores "$line")")
  PLAIN_RSS+=("$(field "$line" maxrss_kib)")
  log "round $1: plain_consumer: $(field "$line" rate) msgs/s ($(field "$line" secs) s, cpu $(field "$line" cpu) s, broker cpu $(field "$line" broker_cpu) s, other load $(other_cores "$line") cores)"
}

run_runtime() { # round workers
  local r=$1 w=$2 group="$RUN_ID-rt-w$2-$1" port conf logf line hwm lag i env_args=()
  GROUPS_MADE+=("$group")
  port=$(free_port)
  conf="$RUN_DIR/rt-w$w-$r.yaml"
  logf="$RUN_DIR/rt-w$w-$r.log"
  cat >"$conf" <<EOF
# imtask-testproc for bench/runtime_bench.sh round $r, $w workers
kafka:
  brokers: $BROKERS
${KAFKA_YAML}http:
  listen: 127.0.0.1:$port
log:
  level: info
consumer:
  group_id: $group
  topic: $TOPIC
  retry_topic: $RETRY_TOPIC
  dlq_topic: $DLQ_TOPIC
  workers: $w
  max_in_flight: $MAX_IN_FLIGHT
  max_delayed: $((MAX_IN_FLIGHT < 250 ? MAX_IN_FLIGHT : 250))
EOF
  # the caller's IMTASK_*/TESTPROC_* variables would override the file
  for v in $(compgen -e | grep -E '^(IMTASK_|TESTPROC_)' || true); do env_args+=(-u "$v"); done
  # shellcheck disable=SC2086 # BENCH_RUNTIME_ENV is a word list
  env "${env_args[@]}" TESTPROC_TASK_TYPE="$TASK_TYPE" $RUNTIME_ENV \
    "$RUN_DIR/imtask-testproc" --config "$conf" >"$logf" 2>&1 &
  RT_PID=$!
  for ((i = 0; i < 150; i++)); do # 30 s for the metrics server
    port_open "127.0.0.1:$port" && break
    kill -0 "$RT_PID" 2>/dev/null || break
    sleep 0.2
  done
  port_open "127.0.0.1:$port" || {
    tail -n 20 "$logf" >&2
    die "imtask-testproc did not open 127.0.0.1:$port"
  }
  if ! line=$(timeout -k 10 $((TIMEOUT + 30)) "$RUN_DIR/metrics_watch" --addr "127.0.0.1:$port" \
    --target "$TASKS" --pid "$RT_PID" --broker-pid "$BROKER_PID" --interval-ms 20 \
    --timeout "$TIMEOUT" --stall 60 --trace "$RUN_DIR/rt-w$w-$r.trace" \
    2>"$RUN_DIR/rt-w$w-$r.progress"); then
    tail -n 5 "$RUN_DIR/rt-w$w-$r.progress" >&2
    tail -n 20 "$logf" >&2
    die "imtask-testproc did not finish the backlog (round $r, $w workers)"
  fi
  hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$RT_PID/status")
  stop_runtime
  lag=$(timeout -k 5 60 "$RUN_DIR/kadmin" -b "$BROKERS" lag "$group" "$TOPIC" || echo "?")
  [[ $lag == 0 ]] || log "round $r, $w workers: committed lag after stop is $lag (expected 0)"
  RATE[$w]+="$(field "$line" rate) "
  CPU[$w]+="$(per_million "$(field "$line" cpu)" "$(field "$line" msgs)") "
  BCPU[$w]+="$(per_million "$(field "$line" broker_cpu)" "$(field "$line" msgs)") "
  OTHER[$w]+="$(other_cores "$line") "
  RSS[$w]+="$hwm "
  PAUSED[$w]+="$(field "$line" paused_frac) "
  log "round $r: imtask-testproc workers=$w: $(field "$line" rate) msgs/s ($(field "$line" secs) s, cpu $(field "$line" cpu) s, broker cpu $(field "$line" broker_cpu) s, other load $(other_cores "$line") cores, paused $(field "$line" paused_frac)), VmHWM $((hwm / 1024)) MiB, lag after stop $lag"
}

for ((round = 1; round <= RUNS; round++)); do
  run_plain "$round"
  for w in $WORKERS; do
    run_runtime "$round" "$w"
  done
done

# ------------------------------------------------------------------ report

plain_rate=$(median "${PLAIN_RATES[@]}")
row() { # name rate rss_kib cpu_per_1M broker_cpu_per_1M other_cores paused all-rates
  local pct
  pct=$(awk -v a="$2" -v b="$plain_rate" 'BEGIN {printf "%.0f%%", 100 * a / b}')
  printf '| %-26s | %8.0f | %7s | %8.1f | %7s | %7s | %6s | %6s | %-26s |\n' "$1" "$2" "$pct" \
    "$(awk -v k="$3" 'BEGIN {print k / 1024}')" "$4" "$5" "$6" "$7" "$8"
}

echo
echo "## im-task runtime benchmark: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "- machine: $NPROC CPUs ($CPU_MODEL), ${MEM_GIB} GiB; $(uname -sr)"
echo "- librdkafka $RDKAFKA_VERSION; Kafka $KAFKA_VERSION on $BROKERS"
echo "- backlog: $TASKS tasks on $PARTITIONS partitions; $LOADGEN_LINE"
echo "- runtime: imtask-testproc (payload noop), max_in_flight $MAX_IN_FLIGHT${RUNTIME_ENV:+, env $RUNTIME_ENV}"
echo "- librdkafka properties of both consumers: ${KAFKA_PROPS:-defaults}"
echo "- $RUNS round(s): medians, except peak RSS (the largest); msgs/s of each round in the last column"
echo
printf '| %-26s | %8s | %7s | %8s | %7s | %7s | %6s | %6s | %-26s |\n' consumer msgs/s "% plain" \
  "peak RSS" "CPU" "broker" "other" paused "msgs/s by round"
printf '| %-26s | %8s | %7s | %8s | %7s | %7s | %6s | %6s | %-26s |\n' "" "" "" "MiB" \
  "s/1M" "s/1M" "cores" "" ""
echo "|----------------------------|----------|---------|----------|---------|---------|--------|--------|----------------------------|"
row "plain librdkafka consumer" "$plain_rate" "$(maxof "${PLAIN_RSS[@]}")" \
  "$(median "${PLAIN_CPUS[@]}")" "$(median "${PLAIN_BCPU[@]}")" "$(median "${PLAIN_OTHER[@]}")" \
  "-" "${PLAIN_RATES[*]}"
for w in $WORKERS; do
  # shellcheck disable=SC2086 # lists of numbers
  row "imtask-testproc workers=$w" "$(median ${RATE[$w]})" "$(maxof ${RSS[$w]})" \
    "$(median ${CPU[$w]})" "$(median ${BCPU[$w]})" "$(median ${OTHER[$w]})" \
    "$(median ${PAUSED[$w]})" "${RATE[$w]% }"
done
echo
echo "CPU: the consumer's CPU seconds per million tasks (all its threads); broker: the Kafka"
echo "broker's over the same window; other: cores busy with anything else meanwhile (load"
echo "from other processes on this machine; high values make the rates unreliable)."
echo
FAILED=0
