#!/usr/bin/env bash
# demo.sh: the whole thing on this machine, in one command. Brings up the
# local stack (Kafka, etcd, and the test doubles), builds the binaries, starts
# the task runtime, runs a job end to end through it and prints what
# happened; then leaves everything running for you to play with.
#
#   bash scripts/demo.sh          # up, run, report
#   bash scripts/demo.sh down     # stop the demo's processes and the stack
#
# What runs today: the real runtime (consumption, dispatch, retries, DLQ)
# with imtask-testproc as the processor of task type "demo", because the
# fan-out, push, audit and archive processors are not written yet; the four
# task binaries start and serve health and metrics.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
state=${IMTASK_STACK_DIR:-${TMPDIR:-/tmp}/imtask-stack}
demo="$state/demo"
brokers=127.0.0.1:${IMTASK_KAFKA_PORT:-19092}
ctl=bazel-bin/tools/ctl/imtask-ctl

say() { echo "demo: $*"; }

stop_demo() {
    local f pid
    for f in "$demo"/*.pid; do
        [ -e "$f" ] || continue
        pid=$(cat "$f")
        if kill -0 "$pid" 2>/dev/null && grep -q imtask "/proc/$pid/cmdline" 2>/dev/null; then
            say "stopping $(basename "$f" .pid) (pid $pid)"
            kill -TERM "$pid"
            for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
            kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
        fi
        rm -f "$f"
    done
}

if [ "${1:-}" = "down" ]; then
    stop_demo
    bash scripts/stack.sh down
    exit 0
fi

bash scripts/install-deps.sh
bash scripts/stack.sh up
say "building"
bazel build //tasks/... //tools/ctl:imtask-ctl //tests/runtime:imtask-testproc 2>&1 | tail -1
mkdir -p "$demo"
stop_demo

start() { # name port binary [env...]
    local name=$1 port=$2 bin=$3
    shift 3
    env "$@" IMTASK_KAFKA_BROKERS="$brokers" IMTASK_HTTP_LISTEN="127.0.0.1:$port" \
        setsid "$bin" >"$demo/$name.log" 2>&1 </dev/null &
    echo $! >"$demo/$name.pid"
}

start fanout 19191 bazel-bin/tasks/fanout/imtask-fanout
start push 19192 bazel-bin/tasks/push/imtask-push
start audit 19193 bazel-bin/tasks/audit/imtask-audit
start archive 19194 bazel-bin/tasks/archive/imtask-archive
group="im-task-demo-$(date +%s)"
start runtime 19195 bazel-bin/tests/runtime/imtask-testproc TESTPROC_TASK_TYPE=demo \
    IMTASK_CONSUMER_GROUP_ID="$group" IMTASK_RETRY_BACKOFF_INITIAL=500ms \
    IMTASK_RETRY_MAX_ATTEMPTS=3 IMTASK_TESTPROC_RECORD_FILE="$demo/record.txt"

metric() { # port name -> sum of the samples of that metric
    curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 ~ "^"m"({|$)" {s += $2} END {print s + 0}'
}

for _ in $(seq 1 100); do
    curl -sf http://127.0.0.1:19195/readyz >/dev/null 2>&1 && break
    sleep 0.2
done
say "runtime ready: $(curl -s http://127.0.0.1:19195/readyz | tr '\n' ' ')"

n=2000
say "enqueueing $n tasks, one that fails twice before it succeeds, and one that is refused"
$ctl --brokers "$brokers" enqueue --type demo --count $n --payload-text ok 2>&1 | grep -v '^imtask-ctl: note' | tail -1
$ctl --brokers "$brokers" enqueue --type demo --id demo-flaky-$$ --payload-text fail-until:2 2>&1 | grep -v '^imtask-ctl: note'
$ctl --brokers "$brokers" enqueue --type demo --id demo-bad-$$ --payload-text perm 2>&1 | grep -v '^imtask-ctl: note'

want=$((n + 1))
for _ in $(seq 1 300); do
    done_n=$(metric 19195 imtask_tasks_succeeded_total)
    dead_n=$(metric 19195 imtask_tasks_dead_lettered_total)
    [ "$done_n" -ge "$want" ] && [ "$dead_n" -ge 1 ] && break
    sleep 0.2
done

echo
say "what happened"
echo "  tasks succeeded:        $(metric 19195 imtask_tasks_succeeded_total) (of $want that should)"
echo "  retried in process:     $(curl -s http://127.0.0.1:19195/metrics | awk '/^imtask_tasks_retried_total.*where="local"/ {s+=$2} END {print s+0}')"
echo "  retried via retry topic:$(curl -s http://127.0.0.1:19195/metrics | awk '/^imtask_tasks_retried_total.*where="topic"/ {s+=$2} END {print " " s+0}')"
echo "  dead-lettered:          $(metric 19195 imtask_tasks_dead_lettered_total)"
echo "  consumer lag:           $(metric 19195 imtask_consumer_lag)"
echo
say "dead-letter queue (imtask-ctl dlq list --type demo)"
$ctl --brokers "$brokers" dlq list --type demo 2>/dev/null | tail -4
echo
say "task binaries (health)"
for p in 19191 19192 19193 19194; do
    printf '  %-16s %s\n' "$(curl -s http://127.0.0.1:$p/metrics | sed -n 's/^imtask_build_info{.*component="\([a-z]*\)".*/imtask-\1/p')" \
        "$(curl -s -o /dev/null -w 'healthz %{http_code}' http://127.0.0.1:$p/healthz)"
done
echo
say "everything is still running: metrics on http://127.0.0.1:19191..19195/metrics,"
say "logs in $demo, more tasks with: $ctl enqueue --type demo --payload-text ok"
say "stop it all with: bash scripts/demo.sh down"
