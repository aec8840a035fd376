#!/usr/bin/env bash
# example_test.sh: imtask-example (tasks/example, the `echo` task type of
# docs/adding-a-task-type.md) against the real broker of the local stack, on
# topics and a consumer group of its own:
#   - --check-config shows the echo section with its defaults;
#   - three tasks enqueued with imtask-ctl are echoed once each to the echo
#     topic, keyed by task id, payload unchanged, trace id in a header;
#   - an empty payload and one over echo.max_bytes are dead-lettered after
#     one attempt each, with their reasons (imtask-ctl dlq list);
#   - imtask_echo_bytes_total counts the echoed bytes;
#   - SIGTERM: exit 0.
# Arguments: imtask-example, imtask-ctl, imtask-demo-probe. Needs
# IMTASK_KAFKA_BROKERS (scripts/test.sh passes it).
set -uo pipefail

if [ -z "${IMTASK_KAFKA_BROKERS:-}" ]; then
    echo "example_test: IMTASK_KAFKA_BROKERS is not set: run through scripts/test.sh or bazel test --test_env=IMTASK_KAFKA_BROKERS" >&2
    exit 1
fi
bin=$1 ctl_bin=$2 probe_bin=$3
tmp=${TEST_TMPDIR:-$(mktemp -d)}
pass=0
fail=0
ok() { echo "ok - $*"; pass=$((pass + 1)); }
nok() { echo "not ok - $*"; fail=$((fail + 1)); }
check() { # description, command...
    local d=$1
    shift
    if "$@"; then ok "$d"; else nok "$d"; fi
}
finish() {
    [ -n "${pid:-}" ] && kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    if [ $fail -ne 0 ] && [ -f "$tmp/run.log" ]; then
        echo "# imtask-example log (last 30 lines):"
        tail -n 30 "$tmp/run.log" | sed 's/^/#   /'
    fi
    echo "example_test: $pass passed, $fail failed"
    [ $fail -eq 0 ]
}

ns="ex$$r$RANDOM"
t_task=im-task-topic-$ns t_retry=im-task-retry-topic-$ns t_dlq=im-task-dlq-topic-$ns t_echo=im-task-echo-topic-$ns
"$probe_bin" topics-create "$t_task:3" "$t_retry:1" "$t_dlq:1" "$t_echo:1" >/dev/null ||
    { nok "create the test's topics"; finish; exit 1; }
ctl() { "$ctl_bin" --task-topic "$t_task" --retry-topic "$t_retry" --dlq-topic "$t_dlq" "$@"; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

cat >"$tmp/example.yaml" <<YAML
http:
  listen: 127.0.0.1:$port
kafka:
  brokers: $IMTASK_KAFKA_BROKERS
shutdown:
  grace: 5s
consumer:
  group_id: im-task-example-$ns
  topic: $t_task
  retry_topic: $t_retry
  dlq_topic: $t_dlq
  workers: 2
echo:
  topic: $t_echo
  max_bytes: 16
YAML

"$bin" --config "$tmp/example.yaml" --check-config >"$tmp/check" 2>&1
check "--check-config accepts the config" test $? -eq 0
check "--check-config shows echo.topic from the file" grep -q "topic: \"$t_echo\"  # $tmp/example.yaml:" "$tmp/check"
IMTASK_KAFKA_BROKERS=x "$bin" --check-config >"$tmp/check-default" 2>&1
check "echo.max_bytes defaults to 65536" grep -q 'max_bytes: 65536  # default' "$tmp/check-default"
check "echo.topic defaults to im-task-echo-topic" grep -q 'topic: "im-task-echo-topic"  # default' "$tmp/check-default"

since=$(($(date +%s%3N) - 1000))
"$bin" --config "$tmp/example.yaml" >"$tmp/run.log" 2>&1 &
pid=$!
ready=0
for _ in $(seq 1 300); do
    if curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then ready=1; break; fi
    kill -0 $pid 2>/dev/null || break
    sleep 0.2
done
# (asserted on the wait itself: /readyz may turn 503 for a moment again while
# the group settles its first assignment)
check "imtask-example joins its group (/readyz 200 within 60 s)" test $ready -eq 1

traces=()
for i in 1 2 3; do
    out=$(ctl enqueue --type echo --id "echo-$ns-$i" --payload-text "hello $i" 2>&1)
    traces+=("$(echo "$out" | sed -n 's/.*trace \([0-9a-f]\{32\}\).*/\1/p')")
done
ctl enqueue --type echo --id "echo-$ns-empty" --payload-text '' >/dev/null 2>&1
ctl enqueue --type echo --id "echo-$ns-big" --payload-text "seventeen bytes!!" >/dev/null 2>&1

metric() { curl -s "http://127.0.0.1:$port/metrics" | awk -v m="$1" '$1 ~ "^"m"({|$)" {s += $NF} END {printf "%d\n", s}'; }
for _ in $(seq 1 300); do
    [ "$(metric imtask_tasks_succeeded_total)" -ge 3 ] && [ "$(metric imtask_tasks_dead_lettered_total)" -ge 2 ] && break
    sleep 0.2
done
check "three tasks done" test "$(metric imtask_tasks_succeeded_total)" -eq 3
check "two tasks dead-lettered" test "$(metric imtask_tasks_dead_lettered_total)" -eq 2
check "none retried" test "$(metric imtask_tasks_retried_total)" -eq 0
check "imtask_echo_bytes_total counts 3 x 7 bytes" test "$(metric imtask_echo_bytes_total)" -eq 21

"$probe_bin" records --since-ms "$since" "$t_echo" >"$tmp/echoed" 2>&1
for i in 1 2 3; do
    check "task $i echoed once, keyed by its id, payload and trace kept" \
        test "$(grep -cxF "$t_echo echo-$ns-$i hello\\x20$i ${traces[$((i - 1))]}" "$tmp/echoed")" -eq 1
done
check "nothing else echoed" test "$(wc -l <"$tmp/echoed")" -eq 3

ctl dlq list --type echo --wide >"$tmp/dlq" 2>&1
check "the empty payload is in the DLQ with its reason" grep -q "echo-$ns-empty .*permanent.*the payload is empty" "$tmp/dlq"
check "the large payload is in the DLQ with its reason" grep -q "echo-$ns-big .*permanent.*17 bytes, more than echo.max_bytes (16)" "$tmp/dlq"
check "the DLQ holds those two only" grep -q '^2 matching records' "$tmp/dlq"

kill -TERM $pid
rc=0
wait $pid || rc=$?
pid=
check "exit 0 after SIGTERM (got $rc)" test $rc -eq 0
finish
