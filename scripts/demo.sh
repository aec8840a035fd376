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
#   4. archive and report runs: PENDING (see below);
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
#                                 archive on the next three ports
#   IMTASK_DEMO_NS []             run on topics and consumer groups of its own
#                                 (im-task-topic-NS, im-task-fanout-NS, ...), made
#                                 by the demo: how tests/demo runs it
#   IMTASK_DEMO_BIN_DIR []        take the binaries from this directory instead of
#                                 building them with bazel
#   IMTASK_DEMO_DIR [$IMTASK_STACK_DIR/demo]  configs, logs, pid files
#   and the stack's: IMTASK_KAFKA_BROKERS, IMTASK_ETCD_ENDPOINTS, IMTASK_IMREPO_ADMIN,
#   IMTASK_MODERATION_ADDR, IMTASK_PUSH_ADMIN (default: `scripts/stack.sh env`).
#
# Archive and report: imtask-archive starts and serves health and metrics, but
# its processors are still placeholders that dead-letter every task (the
# archive/report jobs are being written in tasks/archive), so the demo does not
# enqueue them and says so in the summary.
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
ns=${IMTASK_DEMO_NS:-}
BINS=(fanout push audit archive)

say() { echo "demo: $*"; }
t_start=$(date +%s)
fail() {
    echo "demo: FAILED after $(($(date +%s) - t_start)) s: $*" >&2
    echo "demo: logs of the task binaries are in $demo/logs; the system is left up (bash scripts/demo.sh down stops it)" >&2
    exit 1
}

# ------------------------------------------------------------ processes

stop_demo() {
    local f pid name
    for f in "$demo"/*.pid; do
        [ -e "$f" ] || continue
        pid=$(cat "$f")
        name=$(basename "$f" .pid)
        # only our own process: the pid file's pid running our binary
        if kill -0 "$pid" 2>/dev/null && grep -q "imtask-$name" "/proc/$pid/cmdline" 2>/dev/null; then
            say "stopping imtask-$name (pid $pid)"
            kill -TERM "$pid"
            for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
            if kill -0 "$pid" 2>/dev/null; then
                say "imtask-$name did not stop in 30 s: KILL"
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
        pid=$(cat "$demo/$name.pid" 2>/dev/null || true)
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
gateways=$(curl -sf "$IMTASK_IMREPO_ADMIN/config" | python3 -c 'import json,sys; print(json.load(sys.stdin)["gateways"])') ||
    fail "cannot read the im-repo double's data knobs from $IMTASK_IMREPO_ADMIN/config"
gw_topics=()
for i in $(seq 1 "$gateways"); do gw_topics+=("${gw_template/\{gateway_id\}/gw-$i}"); done
if [ -n "$ns" ]; then
    say "creating the topics of namespace $ns"
    specs=("$t_task:6" "$t_retry:3" "$t_dlq:3" "$t_result:3")
    for t in "${gw_topics[@]}"; do specs+=("$t:3"); done
    probe topics-create "${specs[@]}" >/dev/null || fail "could not create the demo's topics"
fi

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
  queue.buffering.max.messages: 2000
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
  slice_pages: 50
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

{
    common archive 3
    echo "  workers: 2"
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
    echo $! >"$demo/$name.pid"
done

alive() { # name
    kill -0 "$(cat "$demo/$1.pid")" 2>/dev/null
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
    curl -s "http://127.0.0.1:$((port + $1))/metrics" |
        awk -v m="$2" -v l="${3:-}" '$1 ~ "^"m"({|$)" && (l == "" || $1 ~ l) {s += $NF} END {printf "%d\n", s}'
}

# ---------------------------------------------------------------- the job

run=$(date +%s)$$
group="g$members-demo-$run"
# The fan-out's message and the audited message are different ones: a blocked
# message is not fanned out (im-repo keeps its audit status).
fan_msg="m$((1 + (RANDOM * 32768 + RANDOM) % 49999))"
audit_msg="m$((50000 + (RANDOM * 32768 + RANDOM) % 49999))"
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
say "3. archive and report runs: PENDING, imtask-archive's processors are placeholders (tasks/archive)"

say "waiting until the fan-out, its push tasks and the audit are done (at most $timeout_s s)"
deadline=$(($(date +%s) + timeout_s))
phase=fanout
last=""
while :; do
    check_alive
    dead=0
    for i in 0 1 2; do dead=$((dead + $(metric $i imtask_tasks_dead_lettered_total))); done
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
    need_shards=$((shards > 0 ? shards : 1))
    if [ "$shards_done" -ge "$need_shards" ] && [ "$fan_busy" -eq 0 ]; then
        phase=push
        if [ "$push_done" -ge $((push_tasks + followups)) ] && [ "$push_busy" -eq 0 ] && [ "$audit_done" -ge 1 ]; then
            break
        fi
    fi
    now="fanout shards $shards_done/$need_shards, push tasks $push_done/$((push_tasks + followups)), audit $audit_done/1"
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
echo "  archive and report: PENDING (tasks/archive's processors are placeholders; not enqueued)"
echo "  dead-letter queue since the start (imtask-ctl dlq list --since $since_ms): ${dlq_n:-?} records"

problems=()
[ "$dl_records" -eq "$recipients" ] || problems+=("downlinks on the gateway topics ($dl_records) differ from the fan-out's count ($recipients)")
[ "$dl_dups" -eq 0 ] || problems+=("$dl_dups duplicate downlinks")
[ $((recipients + offline + excluded)) -eq "$members" ] || problems+=("online + offline + left out = $((recipients + offline + excluded)), not $members")
[ "$(metric 1 imtask_push_sent_total)" -eq $((apns_ok + fcm_ok)) ] || problems+=("imtask-push counted $(metric 1 imtask_push_sent_total) sent, the doubles $((apns_ok + fcm_ok))")
[ "$(metric 1 imtask_push_tasks_expired_total)" -eq 0 ] || problems+=("$(metric 1 imtask_push_tasks_expired_total) push tasks expired before they were sent")
[ "${dlq_n:-x}" = 0 ] || problems+=("the dead-letter queue is not empty: $dlq_out")
case $audit_out in decision=BLOCK*) ;; *) problems+=("the audit decision is not BLOCK") ;; esac
if [ ${#problems[@]} -gt 0 ]; then
    for p in "${problems[@]}"; do echo "demo: problem: $p" >&2; done
    fail "${#problems[@]} check(s) of the summary failed"
fi

echo
say "everything is still running (configs in $demo/conf, logs in $demo/logs):"
status_demo
say "try: $bindir/imtask-ctl --task-topic $t_task enqueue --type fanout --payload-json '{\"group_id\":\"g5000\",\"message_id\":\"m42\"}'"
say "     $bindir/imtask-ctl --dlq-topic $t_dlq dlq list;  $bindir/imtask-ctl lag;  curl http://127.0.0.1:$port/metrics"
say "stop it all with: bash scripts/demo.sh down   (only the task binaries: bash scripts/demo.sh stop)"
