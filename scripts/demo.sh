#!/usr/bin/env bash
# demo.sh: the whole system on this machine, in one command. Installs what is
# missing, brings up the local stack (Kafka, etcd, the im-repo double, the
# moderation and APNs/FCM doubles), builds and starts the four task binaries
# with configurations pointing at it, then runs the main job end to end:
#
#   1. a fan-out of one message to a group of 100,000 members (the im-repo
#      double's group g100000-demo-<run>: members spread over 4 gateways, 20 %
#      online), which writes one downlink per online member to its gateway's
#      topic and hands the offline members to imtask-push as push tasks;
#   2. imtask-push sends those members' devices to the APNs and FCM doubles;
#   3. a content audit of another message through the moderation double;
#   4. an archive run and a report run, fired with `imtask-ctl schedule run` as
#      an operator would: the archive job moves the double's oldest messages
#      into zstd segments in a local store and deletes them from im-repo; the
#      report job writes the previous hour's activity and outcomes as JSON,
#      CSV and HTML. Both talk to a private im-repo double started by the demo
#      (the archive deletes messages: the stack's shared double keeps them);
#
# waits until all of it is done (bounded), prints what happened, and leaves
# everything running for you to play with.
#
#   bash scripts/demo.sh [up] [--members N]   everything above (default 100000)
#   bash scripts/demo.sh run [--members N]    the job only: the stack must be up;
#                                             (re)starts the binaries
#   bash scripts/demo.sh status               the binaries and the stack
#   bash scripts/demo.sh stop                 stop the task binaries only
#   bash scripts/demo.sh down                 stop the binaries and the stack
#
# Environment (defaults in brackets):
#   IMTASK_DEMO_MEMBERS [100000]  group size (--members wins)
#   IMTASK_DEMO_TIMEOUT [300]     seconds the job may take before the demo fails
#   IMTASK_DEMO_PORT [19191]      HTTP (metrics, health) of fanout; push, audit and
#                                 archive on the next three ports; the private
#                                 im-repo double on that port + 10 .. + 13
#   IMTASK_DEMO_NS [d<unix time>] the run's topics and consumer groups are its own
#                                 (im-task-topic-NS, im-downstream-NS-gw-1,
#                                 im-task-fanout-NS, ...), made by the demo: what
#                                 other users of the stack left on its topics never
#                                 mixes into the run. "none": the stack's own topics
#                                 (im-task-topic, ...) and groups (im-task-fanout, ...)
#   IMTASK_DEMO_BIN_DIR []        take the binaries from this directory instead of
#                                 building them with bazel
#   IMTASK_DEMO_DIR [$IMTASK_STACK_DIR/demo]  configs, logs, pid files
#   and the stack's: IMTASK_KAFKA_BROKERS, IMTASK_ETCD_ENDPOINTS, IMTASK_IMREPO_ADMIN,
#   IMTASK_MODERATION_ADDR, IMTASK_PUSH_ADMIN (default: `scripts/stack.sh env`).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

cmd=up
members=${IMTASK_DEMO_MEMBERS:-100000}
while [ $# -gt 0 ]; do
    case $1 in
        up | run | stop | down | status) cmd=$1 ;;
        --members) members=${2:?--members needs a number}; shift ;;
        --members=*) members=${1#--members=} ;;
        -h | --help | help)
            sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *) echo "demo: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done
case $members in
    '' | *[!0-9]*) echo "demo: --members wants a number of group members, got '$members'" >&2; exit 2 ;;
esac
if [ "$members" -lt 1 ] || [ "$members" -gt 10000000 ]; then
    echo "demo: --members must be within 1..10000000, got $members" >&2
    exit 2
fi

stack_dir=${IMTASK_STACK_DIR:-${TMPDIR:-/tmp}/imtask-stack}
demo=${IMTASK_DEMO_DIR:-$stack_dir/demo}
timeout_s=${IMTASK_DEMO_TIMEOUT:-300}
port=${IMTASK_DEMO_PORT:-19191}
ns=${IMTASK_DEMO_NS:-d$(date +%s)}
[ "$ns" != none ] || ns=""
BINS=(fanout push audit archive)

say() { echo "demo: $*"; }
t_start=$(date +%s)
fail() {
    echo "demo: FAILED after $(($(date +%s) - t_start)) s: $*" >&2
    if compgen -G "$demo/*.pid" >/dev/null; then
        echo "demo: logs of the task binaries are in $demo/logs; what runs is left up to look at (bash scripts/demo.sh stop: the binaries; down: everything)" >&2
    fi
    exit 1
}

# ------------------------------------------------------------ processes

stop_demo() {
    local f pid name
    for f in "$demo"/*.pid; do
        [ -e "$f" ] || continue
        pid=$(cat "$f")
        name=$(basename "$f" .pid)
        # only our own process: the pid file's pid, with this demo's directory
        # in its command line (its config or state directory)
        if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$demo/"; then
            say "stopping $name (pid $pid)"
            kill -TERM "$pid"
            for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
            if kill -0 "$pid" 2>/dev/null; then
                say "$name did not stop in 30 s: KILL"
                kill -KILL "$pid" 2>/dev/null || true
            fi
        fi
        rm -f "$f"
    done
}

status_demo() {
    local i name pid code
    for i in "${!BINS[@]}"; do
        name=${BINS[$i]}
        pid=$(cat "$demo/imtask-$name.pid" 2>/dev/null || true)
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$((port + i))/readyz" || true)
            printf 'demo: imtask-%-8s pid %-7s http://127.0.0.1:%s  readyz %s\n' "$name" "$pid" "$((port + i))" "$code"
        else
            printf 'demo: imtask-%-8s not running\n' "$name"
        fi
    done
}

case $cmd in
    stop)
        stop_demo
        exit 0
        ;;
    down)
        stop_demo
        bash scripts/stack.sh down
        exit 0
        ;;
    status)
        status_demo
        bash scripts/stack.sh status || true
        exit 0
        ;;
esac

# ---------------------------------------------------------------- setup

if [ "$cmd" = up ]; then
    bash scripts/install-deps.sh
    bash scripts/stack.sh up
fi
if [ -z "${IMTASK_KAFKA_BROKERS:-}" ]; then
    eval "$(bash scripts/stack.sh env)"
fi
for v in IMTASK_KAFKA_BROKERS IMTASK_ETCD_ENDPOINTS IMTASK_IMREPO_ADMIN IMTASK_MODERATION_ADDR IMTASK_PUSH_ADMIN; do
    [ -n "${!v:-}" ] || fail "$v is not set and scripts/stack.sh env does not give it"
done
brokers=$IMTASK_KAFKA_BROKERS
b1=${brokers%%,*}
(exec 3<>"/dev/tcp/${b1%:*}/${b1##*:}") 2>/dev/null ||
    fail "Kafka does not answer on $b1: is the stack up? (bash scripts/stack.sh up, or bash scripts/demo.sh)"
curl -sf --max-time 5 "$IMTASK_IMREPO_ADMIN/healthz" >/dev/null ||
    fail "the im-repo double does not answer on $IMTASK_IMREPO_ADMIN (is go installed? see scripts/stack.sh status)"
curl -sf --max-time 5 "$IMTASK_MODERATION_ADDR/healthz" >/dev/null ||
    fail "the moderation double does not answer on $IMTASK_MODERATION_ADDR (is node installed?)"
curl -sf --max-time 5 "$IMTASK_PUSH_ADMIN/healthz" >/dev/null ||
    fail "the push doubles do not answer on $IMTASK_PUSH_ADMIN (are node and openssl installed?)"

mkdir -p "$demo/bin" "$demo/conf" "$demo/logs"
stop_demo

if [ -n "${IMTASK_DEMO_BIN_DIR:-}" ]; then
    bindir=$IMTASK_DEMO_BIN_DIR
else
    say "building the task binaries, imtask-ctl and the demo's probe (bazel build)"
    targets=(//tasks/fanout:imtask-fanout //tasks/push:imtask-push //tasks/audit:imtask-audit
        //tasks/archive:imtask-archive //tools/ctl:imtask-ctl //tests/demo:imtask-demo-probe)
    bazel build "${targets[@]}" >"$demo/logs/build.log" 2>&1 ||
        { tail -30 "$demo/logs/build.log" >&2; fail "bazel build failed (log: $demo/logs/build.log)"; }
    out=$(bazel info bazel-bin 2>/dev/null)
    for t in "${targets[@]}"; do
        p=${t#//}
        # copies: another build (e.g. --config=asan) may replace bazel-bin meanwhile
        cp -f "$out/${p%%:*}/${p##*:}" "$demo/bin/"
    done
    bindir=$demo/bin
fi
for b in imtask-fanout imtask-push imtask-audit imtask-archive imtask-ctl imtask-demo-probe; do
    [ -x "$bindir/$b" ] || fail "$bindir/$b is missing"
done
ctl() { "$bindir/imtask-ctl" --brokers "$brokers" --task-topic "$t_task" --retry-topic "$t_retry" --dlq-topic "$t_dlq" "$@"; }
probe() { "$bindir/imtask-demo-probe" --brokers "$brokers" "$@"; }

# Topics and groups: the stack's own, or ones of this namespace.
if [ -n "$ns" ]; then
    case $ns in *[!a-zA-Z0-9._-]*) fail "IMTASK_DEMO_NS may hold only [a-zA-Z0-9._-], got '$ns'" ;; esac
    sfx="-$ns"
    gw_template="im-downstream-$ns-{gateway_id}"
else
    sfx=""
    gw_template="im-downstream-topic-{gateway_id}"
fi
t_task=im-task-topic$sfx
t_retry=im-task-retry-topic$sfx
t_dlq=im-task-dlq-topic$sfx
t_result=im-audit-result-topic$sfx
t_outcome=im-task-outcome-topic$sfx
gateways=$(curl -sf "$IMTASK_IMREPO_ADMIN/config" | python3 -c 'import json,sys; print(json.load(sys.stdin)["gateways"])') ||
    fail "cannot read the im-repo double's data knobs from $IMTASK_IMREPO_ADMIN/config"
gw_topics=()
for i in $(seq 1 "$gateways"); do gw_topics+=("${gw_template/\{gateway_id\}/gw-$i}"); done
if [ -n "$ns" ]; then
    say "creating the topics of namespace $ns"
    specs=("$t_task:6" "$t_retry:3" "$t_dlq:3" "$t_result:3" "$t_outcome:3")
    for t in "${gw_topics[@]}"; do specs+=("$t:3"); done
    probe topics-create "${specs[@]}" >/dev/null || fail "could not create the demo's topics"
fi

# A private im-repo double for imtask-archive (its archive job deletes
# messages; the stack's shared double must keep them for everyone else): the
# stack's own build of the double, on ports of the demo, not in etcd.
repo_port=$((port + 10))
stack_repo_pid=$(curl -sf "$IMTASK_IMREPO_ADMIN/info" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])') ||
    fail "no /info from the im-repo double at $IMTASK_IMREPO_ADMIN"
repo_bin=$(readlink "/proc/$stack_repo_pid/exe") || fail "cannot find the im-repo double's binary (pid $stack_repo_pid)"
for i in 0 1 2 3; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$((repo_port + i))") 2>/dev/null; then
        fail "127.0.0.1:$((repo_port + i)) (the private im-repo double) is in use: pick other ports with IMTASK_DEMO_PORT"
    fi
done
rm -rf "${demo:?}/imrepo" "${demo:?}/store"
mkdir -p "$demo/imrepo" "$demo/store"
setsid "$repo_bin" -host 127.0.0.1 -port "$repo_port" -etcd "" -state-dir="$demo/imrepo" \
    >"$demo/logs/imrepo-double.log" 2>&1 </dev/null &
echo $! >"$demo/imrepo-double.pid"
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$((repo_port + 1))/healthz" >/dev/null 2>&1 && break
    kill -0 "$(cat "$demo/imrepo-double.pid")" 2>/dev/null ||
        { tail -20 "$demo/logs/imrepo-double.log" >&2; fail "the private im-repo double exited"; }
    sleep 0.2
done
curl -sf "http://127.0.0.1:$((repo_port + 1))/healthz" >/dev/null || fail "the private im-repo double does not answer"

# ---------------------------------------------------------------- configs

push_info=$(curl -sf "$IMTASK_PUSH_ADMIN/info") || fail "no /info from the push doubles at $IMTASK_PUSH_ADMIN"
pi() { python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print(eval(sys.argv[2], {"j": j}))' "$push_info" "$1"; }
apns_url=$(pi 'j["apns"]')
fcm_url=$(pi 'j["fcm"]')
push_ca=$(pi 'j["ca_file"]')
apns_team=$(pi 'j["apns_keys"][0]["team_id"]')
apns_kid=$(pi 'j["apns_keys"][0]["key_id"]')
apns_key=$(pi 'j["apns_keys"][0]["key_file"]')
fcm_sa=$(pi 'j["fcm_credentials_file"]')

common() { # name index [extra kafka: lines]
    cat <<EOF
# generated by scripts/demo.sh for the local stack; docs/operations.md has every key
log:
  level: info
http:
  listen: 127.0.0.1:$((port + $2))
kafka:
  brokers: $brokers
  client.id: imtask-$1-demo
${3:-}shutdown:
  grace: 10s
outcomes:
  topic: $t_outcome
consumer:
  group_id: im-task-$1$sfx
  topic: $t_task
  retry_topic: $t_retry
  dlq_topic: $t_dlq
EOF
}

{
    # the fan-out's Kafka settings of deploy/config/fanout.yaml (docs/fanout.md)
    common fanout 0 "  linger.ms: 50
  queue.buffering.max.messages: 4000
  transaction.timeout.ms: 60000
"
    cat <<EOF
  workers: 4
retry_fanout:
  max_attempts: 25
  backoff_initial: 1s
  backoff_max: 30s
imrepo:
  etcd_endpoints: $IMTASK_ETCD_ENDPOINTS
  default_timeout: 5s
  max_attempts: 5
fanout:
  format: recipient
  topic_template: $gw_template
  batch_size: 200
  slice_pages: 250
  push_batch: 500
  # The double's messages are dated from 2025-01-01: with the default TTL of a
  # day their notifications would be expired before they are sent. 0: the
  # providers' default, no expiry of our own.
  push_ttl: 0
EOF
} >"$demo/conf/fanout.yaml"

{
    common push 1
    cat <<EOF
  workers: 8
retry_push:
  local_backoff_max: 5s
  max_attempts: 6
  backoff_initial: 1s
  backoff_max: 30s
imrepo:
  etcd_endpoints: $IMTASK_ETCD_ENDPOINTS
  default_timeout: 3s
push:
  followup_delay: 1s
apns:
  endpoint: $apns_url
  sandbox_endpoint: $apns_url
  ca_file: $push_ca
  apps: [main]
apns_app_main:
  topics: [com.gochat.im]
  auth: token
  team_id: $apns_team
  key_id: $apns_kid
  key_file: $apns_key
fcm:
  endpoint: $fcm_url
  ca_file: $push_ca
  apps: [main]
fcm_app_main:
  app_ids: ["*"]
  credentials_file: $fcm_sa
EOF
} >"$demo/conf/push.yaml"

{
    common audit 2
    cat <<EOF
  workers: 16
retry_content_audit:
  local_attempts: 2
  max_attempts: 10
  backoff_initial: 2s
  backoff_max: 1m
audit:
  provider: generic
  result_topic: $t_result
  on_exhausted: review
imrepo:
  etcd_endpoints: $IMTASK_ETCD_ENDPOINTS
  default_timeout: 2s
audit_http:
  max_in_flight: 16
  timeout: 3s
audit_generic:
  url: $IMTASK_MODERATION_ADDR/generic/moderate
  body_template: '{"text":{{content}},"kind":{{kind}},"data_id":{{data_id}},"user_id":{{sender_id}}}'
  decision_path: result.decision
  score_path: result.score
  labels_path: result.labels
  request_id_path: request_id
EOF
} >"$demo/conf/audit.yaml"

# The double's messages are m<i>, one a minute from 2025-01-01T00:00:00Z: a
# retention reaching back to 30 s before 01:40 that day archives m0..m99.
retention_ms=$(($(date +%s%3N) - (1735689600000 + 100 * 60000 - 30000)))
{
    common archive 3
    cat <<EOF
  workers: 2
imrepo:
  endpoints: 127.0.0.1:$repo_port
  default_timeout: 5s
storage:
  kind: local
  dir: $demo/store
archive:
  page_size: 50
report:
  settle: 1s
# The scheduler: jobs fired by the elected leader on their cron; the demo
# fires them at once with imtask-ctl schedule run.
schedule:
  jobs: [demo_archive, demo_report]
  etcd_endpoints: $IMTASK_ETCD_ENDPOINTS
  etcd_prefix: /imtask/schedule/demo$sfx/
  topic: $t_task
schedule_job_demo_archive:
  cron: "0 3 * * *"
  task_type: archive
schedule_params_demo_archive:
  retention: ${retention_ms}ms
schedule_job_demo_report:
  cron: "@hourly"
  task_type: report
schedule_params_demo_report:
  period: hour
EOF
} >"$demo/conf/archive.yaml"

for i in "${!BINS[@]}"; do
    name=${BINS[$i]}
    "$bindir/imtask-$name" --config "$demo/conf/$name.yaml" --check-config >"$demo/logs/$name.check" 2>&1 ||
        { cat "$demo/logs/$name.check" >&2; fail "imtask-$name refuses the configuration $demo/conf/$name.yaml"; }
done

# ---------------------------------------------------------------- start

for i in "${!BINS[@]}"; do
    name=${BINS[$i]}
    if (exec 3<>"/dev/tcp/127.0.0.1/$((port + i))") 2>/dev/null; then
        fail "127.0.0.1:$((port + i)) (imtask-$name's HTTP) is in use: pick other ports with IMTASK_DEMO_PORT"
    fi
    setsid "$bindir/imtask-$name" --config "$demo/conf/$name.yaml" >"$demo/logs/$name.log" 2>&1 </dev/null &
    echo $! >"$demo/imtask-$name.pid"
done

alive() { # name
    kill -0 "$(cat "$demo/imtask-$1.pid")" 2>/dev/null
}
check_alive() {
    local name
    for name in "${BINS[@]}"; do
        if ! alive "$name"; then
            echo "demo: ---- last 20 lines of $demo/logs/$name.log ----" >&2
            tail -20 "$demo/logs/$name.log" >&2
            fail "imtask-$name exited"
        fi
    done
}

say "waiting for the four task binaries to join their consumer groups (/readyz)"
deadline=$(($(date +%s) + 90))
for i in "${!BINS[@]}"; do
    until curl -sf "http://127.0.0.1:$((port + i))/readyz" >/dev/null 2>&1; do
        check_alive
        [ "$(date +%s)" -lt "$deadline" ] ||
            fail "imtask-${BINS[$i]} not ready after 90 s: $(curl -s "http://127.0.0.1:$((port + i))/readyz")"
        sleep 0.3
    done
done
status_demo

# metric PORT_INDEX NAME [LABEL_REGEX]: the sum of the samples of a metric
metric() {
    # a failed scrape counts 0 this round (pipefail would end the script)
    { curl -s --max-time 5 "http://127.0.0.1:$((port + $1))/metrics" || true; } |
        awk -v m="$2" -v l="${3:-}" '$1 ~ "^"m"({|$)" && (l == "" || $1 ~ l) {s += $NF} END {printf "%d\n", s}'
}

# ---------------------------------------------------------------- the job

run=$(date +%s)$$
group="g$members-demo-$run"
# The fan-out's message and the audited message are different ones: a blocked
# message is not fanned out (im-repo keeps its audit status).
# Both from the newest of the double's 100,000 messages: the oldest are what
# archive jobs delete.
fan_msg="m$((60000 + (RANDOM * 32768 + RANDOM) % 30000))"
audit_msg="m$((90000 + (RANDOM * 32768 + RANDOM) % 9999))"
trace=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
span=$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
since_ms=$(($(date +%s%3N) - 2000))
stats_before_apns=$(curl -s "$IMTASK_PUSH_ADMIN/stats?provider=apns")
stats_before_fcm=$(curl -s "$IMTASK_PUSH_ADMIN/stats?provider=fcm")

t_enqueue=$(date +%s)
echo
say "1. fan-out of message $fan_msg to group $group ($members members), trace $trace"
ctl enqueue --type fanout --id "demo-fanout-$run" --key "$group" --trace "00-$trace-$span-01" \
    --payload-json "{\"group_id\":\"$group\",\"message_id\":\"$fan_msg\"}" 2>&1 | grep -v '^imtask-ctl: note' |
    sed 's/^/     /' || fail "imtask-ctl enqueue (fanout) failed"
say "2. content audit of message $audit_msg"
ctl enqueue --type content_audit --id "demo-audit-$run" --key "$audit_msg" \
    --payload-json "{\"message_id\":\"$audit_msg\",\"content\":\"there is a bomb in the lobby\",\"kind\":\"CONTENT_KIND_TEXT\",\"sender_id\":\"u7\",\"conversation_id\":\"group:$group\"}" \
    2>&1 | grep -v '^imtask-ctl: note' | sed 's/^/     /' || fail "imtask-ctl enqueue (content_audit) failed"
# Activity of the previous hour in the private double: what the report reads
# from im-repo (GetActivityStats), beside the outcome events of the binaries.
seeded_hour_ms=$(python3 - "http://127.0.0.1:$((repo_port + 1))/activity" <<'PY'

import json, random, sys, time, urllib.request
hour = int(time.time()) // 3600 * 3600 - 3600
print(hour * 1000)
ev = [{"ts": (hour + random.randrange(3600)) * 1000, "message_type": random.choice([1, 1, 1, 2]),
       "sender_id": "u%d" % random.randrange(40), "conversation_id": "group:g%d" % random.randrange(6),
       "new_user": random.random() < 0.05} for _ in range(500)]
req = urllib.request.Request(sys.argv[1], json.dumps({"events": ev}).encode(), {"Content-Type": "application/json"})
urllib.request.urlopen(req, timeout=10).read()
PY
) || fail "cannot seed activity into the private im-repo double"
say "3. archive run (the private double's 100 oldest messages) and report run (the previous hour): imtask-ctl schedule run"
for job in demo_archive demo_report; do
    ctl schedule run "$job" --config "$demo/conf/archive.yaml" 2>&1 | sed 's/^/     /' ||
        fail "imtask-ctl schedule run $job failed"
done

say "waiting until the fan-out, its push tasks and the audit are done (at most $timeout_s s)"
deadline=$(($(date +%s) + timeout_s))
phase=fanout
last=""
while :; do
    check_alive
    dead=0
    for i in 0 1 2 3; do dead=$((dead + $(metric $i imtask_tasks_dead_lettered_total))); done
    if [ "$dead" -gt 0 ]; then
        ctl dlq list --since "$since_ms" >&2 || true
        fail "$dead task(s) were dead-lettered (above)"
    fi
    shards=$(metric 0 imtask_fanout_shards_total)
    shards_done=$(metric 0 imtask_fanout_shard_seconds_count)
    skipped=$(metric 0 imtask_fanout_skipped_total)
    [ "$skipped" -eq 0 ] || fail "the fan-out was skipped: message $fan_msg is deleted or blocked in im-repo (run the demo again: it picks another message)"
    fan_busy=$(metric 0 imtask_tasks_in_flight)
    push_tasks=$(metric 0 imtask_fanout_push_tasks_total)
    followups=$(metric 1 imtask_push_followups_total)
    push_done=$(metric 1 imtask_tasks_succeeded_total 'task_type="push"')
    push_busy=$(metric 1 imtask_consumer_in_flight)
    audit_done=$(metric 2 imtask_tasks_succeeded_total 'task_type="content_audit"')
    # find fails while a job has not made its directory yet (pipefail)
    archive_done=$({ find "$demo/store/archive/demo_archive" -name '*.manifest.json' 2>/dev/null || true; } | wc -l)
    report_done=$({ find "$demo/store/reports/demo_report" -name '*.json' 2>/dev/null || true; } | wc -l)
    need_shards=$((shards > 0 ? shards : 1))
    if [ "$shards_done" -ge "$need_shards" ] && [ "$fan_busy" -eq 0 ]; then
        phase=push
        if [ "$push_done" -ge $((push_tasks + followups)) ] && [ "$push_busy" -eq 0 ] && [ "$audit_done" -ge 1 ] &&
            [ "$archive_done" -ge 1 ] && [ "$report_done" -ge 1 ]; then
            break
        fi
    fi
    now="fanout shards $shards_done/$need_shards, push tasks $push_done/$((push_tasks + followups)), audit $audit_done/1, archive $archive_done/1, report $report_done/1"
    if [ "$now" != "$last" ]; then
        say "  $(($(date +%s) - t_enqueue)) s: $now"
        last=$now
    fi
    [ "$(date +%s)" -lt "$deadline" ] || fail "not done after $timeout_s s ($phase): $now"
    sleep 1
done
t_done=$(date +%s)

# ---------------------------------------------------------------- summary

probe_out=$(probe downlinks --since-ms "$since_ms" --trace-id "$trace" "${gw_topics[@]}") ||
    fail "could not read the gateway topics"
audit_out=$(probe audit --since-ms "$since_ms" --task-id "demo-audit-$run" "$t_result") ||
    fail "no audit result on $t_result"
stats_after_apns=$(curl -s "$IMTASK_PUSH_ADMIN/stats?provider=apns")
stats_after_fcm=$(curl -s "$IMTASK_PUSH_ADMIN/stats?provider=fcm")
delta() { # before after key
    python3 -c 'import json,sys; a=json.loads(sys.argv[1]); b=json.loads(sys.argv[2]); print(b.get(sys.argv[3],0)-a.get(sys.argv[3],0))' "$1" "$2" "$3"
}
apns_req=$(delta "$stats_before_apns" "$stats_after_apns" requests)
apns_ok=$(delta "$stats_before_apns" "$stats_after_apns" ok)
fcm_req=$(delta "$stats_before_fcm" "$stats_after_fcm" requests)
fcm_ok=$(delta "$stats_before_fcm" "$stats_after_fcm" ok)
dlq_out=$(ctl dlq list --since "$since_ms" 2>&1) || fail "imtask-ctl dlq list failed: $dlq_out"
dlq_n=$(echo "$dlq_out" | sed -n 's/^\([0-9][0-9]*\) matching records.*/\1/p' | tail -1)

recipients=$(metric 0 imtask_fanout_recipients_total)
offline=$(metric 0 imtask_fanout_offline_total)
excluded=$(metric 0 imtask_fanout_excluded_total)
read -r _ dl_records dl_users dl_dups <<<"$(echo "$probe_out" | grep '^total ')"

echo
say "what happened ($((t_done - t_enqueue)) s from the first enqueue to the last task done)"
echo "  fan-out of $fan_msg to $group: $members members"
echo "    online, downlinks written:   $recipients (imtask_fanout_recipients_total)"
echo "    offline, handed to push:     $offline in $push_tasks push tasks"
echo "    left out (sender):           $excluded"
printf '    %-32s %10s %10s %12s\n' "recipients per gateway topic" records users "(metrics)"
echo "$probe_out" | grep -v '^total ' | while read -r topic recs users; do
    gw=${topic##*-gw-}
    printf '    %-32s %10s %10s %12s\n' "$topic" "$recs" "$users" "$(metric 0 imtask_fanout_recipients_total "gateway=\"gw-$gw\"")"
done
printf '    %-32s %10s %10s   duplicates: %s\n' "total (read_committed)" "$dl_records" "$dl_users" "$dl_dups"
echo "  push: $push_done push tasks done ($followups follow-ups)"
echo "    sent (imtask_push_sent_total): $(metric 1 imtask_push_sent_total)   failed: $(metric 1 imtask_push_failed_total)"
echo "    APNs double: $apns_ok of $apns_req requests answered 200;  FCM double: $fcm_ok of $fcm_req"
echo "  content audit of $audit_msg: $audit_out"
echo "  archive run: $(metric 3 imtask_archive_messages_total) messages archived in $(metric 3 imtask_archive_segments_total) segment(s) ($(metric 3 imtask_archive_bytes_total 'form="zst"') bytes of zstd), deleted from the private im-repo double:"
find "$demo/store/archive" -type f 2>/dev/null | sort | sed 's/^/    /'
echo "  report run (the previous hour, UTC; 500 messages of activity seeded into it from $seeded_hour_ms):"
find "$demo/store/reports/demo_report" -type f 2>/dev/null | sort | sed 's/^/    /'
report_json=$(find "$demo/store/reports/demo_report" -name '*.json' 2>/dev/null | head -1)
if [ -n "$report_json" ]; then
    python3 - "$report_json" <<'PY' || true
import json, sys
j = json.load(open(sys.argv[1]))
def walk(o, path=""):
    if isinstance(o, dict):
        for k, v in o.items():
            p = path + "." + k if path else k
            if isinstance(v, (int, float)) and not isinstance(v, bool) and path.count(".") < 1:
                print("      %s: %s" % (p, v))
            walk(v, p)
walk(j)
PY
fi
echo "  topics of this run: $t_task, $t_retry, $t_dlq, $t_result, $t_outcome, ${gw_template/\{gateway_id\}/gw-N}"
echo "  dead-letter queue since the start (imtask-ctl dlq list --since $since_ms): ${dlq_n:-?} records"

problems=()
[ "$dl_records" -eq "$recipients" ] || problems+=("downlinks on the gateway topics ($dl_records) differ from the fan-out's count ($recipients)")
[ "$dl_dups" -eq 0 ] || problems+=("$dl_dups duplicate downlinks")
[ $((recipients + offline + excluded)) -eq "$members" ] || problems+=("online + offline + left out = $((recipients + offline + excluded)), not $members")
# The doubles count every client's requests: other users of the stack may add
# theirs meanwhile, never take ours away.
sent=$(metric 1 imtask_push_sent_total)
if [ "$sent" -gt $((apns_ok + fcm_ok)) ]; then
    problems+=("imtask-push counted $sent sent, the doubles only $((apns_ok + fcm_ok)) answered 200")
elif [ "$sent" -lt $((apns_ok + fcm_ok)) ]; then
    echo "  (the doubles answered $((apns_ok + fcm_ok - sent)) more requests than imtask-push sent: other users of the stack's push doubles)"
fi
[ "$(metric 1 imtask_push_tasks_expired_total)" -eq 0 ] || problems+=("$(metric 1 imtask_push_tasks_expired_total) push tasks expired before they were sent")
[ "${dlq_n:-x}" = 0 ] || problems+=("the dead-letter queue is not empty: $dlq_out")
case $audit_out in decision=BLOCK*) ;; *) problems+=("the audit decision is not BLOCK") ;; esac
[ "$(metric 3 imtask_archive_messages_total)" -eq 100 ] || problems+=("the archive run archived $(metric 3 imtask_archive_messages_total) messages, not the 100 oldest")
if [ -z "$report_json" ]; then
    problems+=("the report run wrote no JSON under $demo/store/reports")
else
    got=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["start_ms"], j["activity"]["messages"])' "$report_json")
    # (unless the hour turned between the seeding and the firing)
    [ "${got% *}" != "$seeded_hour_ms" ] || [ "${got#* }" = 500 ] ||
        problems+=("the report counts ${got#* } messages in the seeded hour, not 500")
fi
if [ ${#problems[@]} -gt 0 ]; then
    for p in "${problems[@]}"; do echo "demo: problem: $p" >&2; done
    fail "${#problems[@]} check(s) of the summary failed"
fi

echo
say "everything is still running (configs in $demo/conf, logs in $demo/logs):"
status_demo
say "this run's outcome events are in the next hour's report: the scheduler (leader in etcd) fires demo_report @hourly"
say "try: $bindir/imtask-ctl --task-topic $t_task enqueue --type fanout --payload-json '{\"group_id\":\"g5000\",\"message_id\":\"m95000\"}'"
say "     $bindir/imtask-ctl --dlq-topic $t_dlq dlq list;  curl http://127.0.0.1:$port/metrics"
say "     $bindir/imtask-ctl --task-topic $t_task --retry-topic $t_retry lag --group im-task-fanout$sfx --group im-task-push$sfx"
say "stop it all with: bash scripts/demo.sh down   (only the task binaries: bash scripts/demo.sh stop)"
