#!/usr/bin/env bash
# stack.sh — local service stack for im-task development and integration tests.
#
# Runs REAL services as plain processes on loopback (no docker):
#   * Apache Kafka (single-node KRaft, broker+controller in one JVM), from jars
#     fetched off Maven Central with scripts/kafka/pom.xml and cached outside
#     the repository;
#   * etcd (Debian's etcd-server);
#   * the im-repo test double (tests/doubles/imrepo, grpc-go), built with `go`
#     (modules from the Go module proxy) once per source version and cached,
#     registered in etcd under /services/im-repo/;
#   * the moderation API double (tests/doubles/moderation, Node's http module,
#     no packages), OpenAI, Tencent TMS and generic shapes, on one port;
#   * the push doubles (tests/doubles/push, Node's http2 module, no packages):
#     APNs and FCM (with its OAuth2 token endpoint) over TLS, an admin port;
#   * an S3-compatible server: moto's server mode (PyPI moto[server], in a
#     virtualenv in the cache unless moto_server is on PATH), for the archive
#     storage tests (docs/archive.md).
# and creates the Kafka topics im-task uses.
#
# Usage: scripts/stack.sh up|down|status|topics|env
#   up      install what is missing, start both services (skips running ones),
#           wait until they answer, create the topics
#   down    stop the processes this stack started, remove the state directory
#   status  print each service up/down; exit 1 if any is down
#   topics  create missing topics (stack must be up) and list them
#   env     print export lines:  eval "$(scripts/stack.sh env)"
#   imrepo-restart  stop and start the im-repo double alone (after editing it)
#   moderation-restart  the same for the moderation double
#   push-restart        the same for the push doubles
#   s3-restart          the same for the S3 server (moto)
#
# Environment (defaults in brackets):
#   IMTASK_KAFKA_PORT [19092]  IMTASK_KAFKA_CONTROLLER_PORT [19093]
#   IMTASK_ETCD_PORT [12379]   IMTASK_ETCD_PEER_PORT [12380]
#   IMTASK_IMREPO_PORT [19500] im-repo double gRPC (h2c); it also uses the next
#                              three ports: admin HTTP, misbehaving peer, TLS
#   IMTASK_MODERATION_PORT [19510] moderation double (API and /admin on one port)
#   IMTASK_PUSH_PORT [19600]   push doubles: APNs (TLS); +1 FCM and OAuth2 (TLS);
#                              +2 admin HTTP; +3 APNs with certificate auth (TLS)
#   IMTASK_S3_PORT [19700]     S3 server (moto), path-style, any credentials
#   IMTASK_STACK_DIR [${TMPDIR:-/tmp}/imtask-stack]  data, logs, pid files
#   IMTASK_CACHE [$HOME/.cache/imtask]               Kafka jars, im-repo double builds
#   IMTASK_EXTRA_TOPICS ["name:partitions name:partitions"]
#   IMTASK_STACK_TIMEOUT [90]  seconds each service gets to become ready
#   IMTASK_KAFKA_HEAP_OPTS [-Xms256m -Xmx512m]
set -euo pipefail

# Topics the project uses, as name:partitions (replication factor is 1).
IMTASK_TOPICS=(
  im-task-topic:6
  im-task-retry-topic:3
  im-task-dlq-topic:3
  im-audit-result-topic:3
  im-task-outcome-topic:3
  im-downstream-topic-gw-1:3
  im-downstream-topic-gw-2:3
  im-downstream-topic-gw-3:3
  im-downstream-topic-gw-4:3
)

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KAFKA_POM="$SCRIPT_DIR/kafka/pom.xml"

KAFKA_PORT=${IMTASK_KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${IMTASK_KAFKA_CONTROLLER_PORT:-19093}
ETCD_PORT=${IMTASK_ETCD_PORT:-12379}
ETCD_PEER_PORT=${IMTASK_ETCD_PEER_PORT:-12380}
IMREPO_PORT=${IMTASK_IMREPO_PORT:-19500}
MODERATION_PORT=${IMTASK_MODERATION_PORT:-19510}
PUSH_PORT=${IMTASK_PUSH_PORT:-19600}
S3_PORT=${IMTASK_S3_PORT:-19700}
STACK_DIR=${IMTASK_STACK_DIR:-${TMPDIR:-/tmp}/imtask-stack}
CACHE_DIR=${IMTASK_CACHE:-$HOME/.cache/imtask}
TIMEOUT=${IMTASK_STACK_TIMEOUT:-90}
KAFKA_HEAP_OPTS=${IMTASK_KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}
HOST=127.0.0.1

KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KAFKA_POM")
KAFKA_LIBS="$CACHE_DIR/kafka-$KAFKA_VERSION/libs"
KAFKA_DIR="$STACK_DIR/kafka"
ETCD_DIR="$STACK_DIR/etcd"
IMREPO_DIR="$STACK_DIR/imrepo"
IMREPO_SRC="$SCRIPT_DIR/../tests/doubles/imrepo"
IMREPO_ADDR="$HOST:$IMREPO_PORT"
IMREPO_ADMIN="http://$HOST:$((IMREPO_PORT + 1))"
MODERATION_DIR="$STACK_DIR/moderation"
MODERATION_SRC="$SCRIPT_DIR/../tests/doubles/moderation/server.js"
MODERATION_ADDR="http://$HOST:$MODERATION_PORT"
# The double checks TC3-HMAC-SHA256 signatures with this key (tests sign with it).
MODERATION_TENCENT_KEY=imtask-moderation-double-secret
PUSH_DIR="$STACK_DIR/push"
PUSH_SRC="$SCRIPT_DIR/../tests/doubles/push/main.js"
PUSH_ADMIN="http://$HOST:$((PUSH_PORT + 2))"
S3_DIR="$STACK_DIR/s3"
S3_ADDR="http://$HOST:$S3_PORT"
MOTO_VERSION=5.2.1
MOTO_VENV="$CACHE_DIR/moto-$MOTO_VERSION"
KAFKA_BOOTSTRAP="$HOST:$KAFKA_PORT"
ETCD_ENDPOINT="http://$HOST:$ETCD_PORT"
# Short-lived tool JVMs: favour start-up time over throughput.
TOOL_JVM_OPTS=(-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true)

log() { echo "stack: $*"; }
err() { echo "stack: error: $*" >&2; }
die() { err "$@"; exit 1; }
now_ms() { date +%s%3N; }
secs_since() { # start_ms -> "1.234s"
  local d=$(($(now_ms) - $1))
  printf '%d.%03ds' $((d / 1000)) $((d % 1000))
}

# ---------------------------------------------------------------- processes

pid_of() { # service -> pid from its pid file, or nothing
  local f="$STACK_DIR/$1.pid"
  [[ -s $f ]] && tr -dc '0-9' <"$f"
  return 0
}

cmdline_of() { # pid -> command line with spaces
  { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null || true
}

# True when pid is alive and is this stack's process for the service (so a
# stale pid file whose pid got reused never makes us signal a stranger).
is_ours() { # service pid
  local svc=$1 pid=$2 cmd
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
  cmd=$(cmdline_of "$pid")
  case $svc in
    kafka) [[ $cmd == *java*kafka.Kafka*" $KAFKA_DIR/server.properties"* ]] ;;
    etcd) [[ $cmd == *etcd*"--data-dir=$ETCD_DIR/data"* ]] ;;
    imrepo) [[ $cmd == *imrepo-double*"-state-dir=$IMREPO_DIR"* ]] ;;
    moderation) [[ $cmd == *node*server.js*"--state-dir=$MODERATION_DIR"* ]] ;;
    push) [[ $cmd == *node*push/main.js*"-state-dir=$PUSH_DIR"* ]] ;;
    s3) [[ $cmd == *moto_server*" -H $HOST -p $S3_PORT"* ]] ;;
    *) return 1 ;;
  esac
}

running_pid() { # service -> pid if our process is running
  local pid
  pid=$(pid_of "$1")
  if is_ours "$1" "$pid"; then echo "$pid"; fi
}

port_open() { # port
  (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

require_free_port() { # port what
  if port_open "$1"; then
    die "$HOST:$1 ($2) is already in use by another process; pick another port with the IMTASK_*_PORT variables"
  fi
}

show_log_tail() { # logfile
  if [[ -f $1 ]]; then
    echo "stack: ---- last 40 lines of $1 ----" >&2
    tail -n 40 "$1" >&2
    echo "stack: ----" >&2
  fi
}

# wait_for service pid logfile start_ms description check-command...
# Polls the check until it succeeds; fails (showing the log) when the process
# dies or TIMEOUT seconds have passed since the service was started.
wait_for() {
  local svc=$1 pid=$2 logf=$3 deadline=$(($4 / 1000 + TIMEOUT)) what=$5
  shift 5
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then
      err "$svc (pid $pid) exited while waiting for $what"
      show_log_tail "$logf"
      exit 1
    fi
    if "$@"; then return 0; fi
    if (($(date +%s) >= deadline)); then
      err "$svc not ready after ${TIMEOUT}s ($what); it is still running: '$0 down' stops it"
      show_log_tail "$logf"
      exit 1
    fi
    sleep 0.2
  done
}

# A service this run started (STARTED_AT: when; empty when it was running
# already) answers: wait_for its check, then make sure the pid is ours.
#   wait_started NAME STARTED_AT LOG WHAT CHECK...
wait_started() {
  local svc=$1 started=$2 logf=$3 what=$4 pid
  shift 4
  [[ -n $started ]] || return 0
  pid=$(pid_of "$svc")
  wait_for "$svc" "$pid" "$logf" "$started" "$what" "$@"
  is_ours "$svc" "$pid" || die "$svc: pid $pid is not the expected process"
  log "$svc: ready (pid $pid) in $(secs_since "$started")"
}

# Starts a detached process (own session, so it outlives this shell and its
# process group) and records its pid.
spawn() { # service logfile command...
  local svc=$1 logf=$2
  shift 2
  # 9>&- : the service must not inherit (and so hold forever) the stack lock.
  setsid "$@" </dev/null >>"$logf" 2>&1 9>&- &
  echo $! >"$STACK_DIR/$svc.pid"
}

stop_service() { # service
  local svc=$1 pid i
  pid=$(running_pid "$svc")
  if [[ -z $pid ]]; then
    if [[ -f $STACK_DIR/$svc.pid ]]; then log "$svc: not running (stale pid file)"; fi
    rm -f "$STACK_DIR/$svc.pid"
    return 0
  fi
  log "$svc: stopping pid $pid"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do # ~20s
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$svc: still alive after 20s, sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 25; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then die "$svc: pid $pid survived KILL"; fi
  fi
  rm -f "$STACK_DIR/$svc.pid"
}

# Safety net for down: processes whose command line names this stack's own
# state directory (e.g. started by an 'up' whose pid file was lost).
stray_pids() {
  local p cmd
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [[ $p == "$$" ]] && continue
    cmd=$(cmdline_of "$p")
    if [[ $cmd == *java*kafka.Kafka*" $KAFKA_DIR/server.properties"* ||
      $cmd == *etcd*"--data-dir=$ETCD_DIR/data"* ||
      $cmd == *imrepo-double*"-state-dir=$IMREPO_DIR"* ||
      $cmd == *node*server.js*"--state-dir=$MODERATION_DIR"* ||
      $cmd == *node*push/main.js*"-state-dir=$PUSH_DIR"* ||
      $cmd == *moto_server*" -H $HOST -p $S3_PORT"* ]]; then
      echo "$p"
    fi
  done
}

# --------------------------------------------------------------- installing

apt_install() { # packages...
  local sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null || die "need root or sudo to apt-get install $*"
    sudo=(sudo)
  fi
  log "installing $* (apt-get)"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

ensure_commands() {
  local pkgs=()
  command -v java >/dev/null || pkgs+=(openjdk-17-jre-headless)
  command -v etcd >/dev/null || pkgs+=(etcd-server)
  command -v curl >/dev/null || pkgs+=(curl)
  command -v setsid >/dev/null || pkgs+=(util-linux)
  command -v node >/dev/null || pkgs+=(nodejs)
  if [[ ! -f $KAFKA_LIBS/.complete ]] && ! command -v mvn >/dev/null; then
    pkgs+=(maven)
  fi
  ((${#pkgs[@]} == 0)) || apt_install "${pkgs[@]}"
}

# Copies the Kafka jars into the cache once; a marker file makes a partial
# download (interrupted mvn) count as missing.
ensure_kafka_jars() {
  if [[ -f $KAFKA_LIBS/.complete ]]; then
    log "kafka $KAFKA_VERSION jars: cached in $KAFKA_LIBS"
    return 0
  fi
  local t0 tmp
  t0=$(now_ms)
  tmp="$KAFKA_LIBS.tmp.$$"
  log "kafka $KAFKA_VERSION jars: downloading with maven into $KAFKA_LIBS (about a minute)"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  if ! mvn -q -B -f "$KAFKA_POM" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tmp" >"$tmp.log" 2>&1; then
    show_log_tail "$tmp.log"
    rm -rf "$tmp" "$tmp.log"
    die "maven could not fetch the Kafka jars"
  fi
  rm -f "$tmp.log"
  touch "$tmp/.complete"
  rm -rf "$KAFKA_LIBS"
  mv "$tmp" "$KAFKA_LIBS"
  log "kafka $KAFKA_VERSION jars: $(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars in $(secs_since "$t0")"
}

# -------------------------------------------------------------------- kafka

kafka_tool() { # main-class args...  (quiet logging, short-lived JVM)
  local main=$1
  shift
  java "${TOOL_JVM_OPTS[@]}" \
    -Dlog4j.configuration="file:$KAFKA_DIR/tools-log4j.properties" \
    -cp "$KAFKA_LIBS/*" "$main" "$@"
}

write_kafka_config() {
  mkdir -p "$KAFKA_DIR/data"
  cat >"$KAFKA_DIR/server.properties" <<EOF
# generated by scripts/stack.sh — single-node KRaft, loopback only
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DIR/data
num.partitions=3
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=3
group.initial.rebalance.delay.ms=0
log.retention.hours=24
log.segment.bytes=67108864
EOF
  cat >"$KAFKA_DIR/log4j.properties" <<'EOF'
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.org.apache.kafka.clients=WARN
EOF
  cat >"$KAFKA_DIR/tools-log4j.properties" <<'EOF'
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.appender.stderr.Target=System.err
log4j.logger.org.apache.kafka.clients.NetworkClient=ERROR
EOF
  cat >"$KAFKA_DIR/client.properties" <<'EOF'
request.timeout.ms=5000
default.api.timeout.ms=10000
EOF
}

# A 22-character base64url id, like kafka-storage random-uuid (whose ids never
# start with '-').
new_cluster_id() {
  local id
  while :; do
    id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    [[ $id != -* ]] && break
  done
  echo "$id"
}

format_kafka_storage() {
  if [[ -f $KAFKA_DIR/data/meta.properties ]]; then
    log "kafka: storage already formatted"
    return 0
  fi
  local id
  id=$(new_cluster_id)
  log "kafka: formatting storage (cluster id $id)"
  kafka_tool kafka.tools.StorageTool format -t "$id" \
    -c "$KAFKA_DIR/server.properties" >>"$KAFKA_DIR/format.log" 2>&1 ||
    {
      show_log_tail "$KAFKA_DIR/format.log"
      die "kafka storage format failed"
    }
}

kafka_list_topics() {
  kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BOOTSTRAP" \
    --command-config "$KAFKA_DIR/client.properties" --list
}

# Readiness probe; keeps the listing so create_topics need not list again.
kafka_answers() {
  port_open "$KAFKA_PORT" && KAFKA_LISTED_TOPICS=$(kafka_list_topics 2>/dev/null)
}

start_kafka() {
  local pid t0
  pid=$(running_pid kafka)
  if [[ -n $pid ]]; then
    log "kafka: already running (pid $pid) on $KAFKA_BOOTSTRAP"
    return 0
  fi
  t0=$(now_ms)
  write_kafka_config
  format_kafka_storage
  log "kafka: starting on $KAFKA_BOOTSTRAP (controller $HOST:$KAFKA_CONTROLLER_PORT)"
  # shellcheck disable=SC2086 # heap options are a word list
  spawn kafka "$KAFKA_DIR/kafka.log" java $KAFKA_HEAP_OPTS \
    -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$KAFKA_DIR/log4j.properties" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_DIR/server.properties"
  KAFKA_STARTED_AT=$t0
}

wait_kafka() {
  local pid
  [[ -n ${KAFKA_STARTED_AT:-} ]] || return 0
  pid=$(pid_of kafka)
  wait_for kafka "$pid" "$KAFKA_DIR/kafka.log" "$KAFKA_STARTED_AT" \
    "port $KAFKA_PORT" port_open "$KAFKA_PORT"
  wait_for kafka "$pid" "$KAFKA_DIR/kafka.log" "$KAFKA_STARTED_AT" \
    "a topic listing from $KAFKA_BOOTSTRAP" kafka_answers
  is_ours kafka "$pid" || die "kafka: pid $pid is not the expected process"
  log "kafka: ready (pid $pid) in $(secs_since "$KAFKA_STARTED_AT")"
}

# Fills WANTED_TOPICS with "name:partitions" (project list + extras).
parse_topics() {
  local t
  WANTED_TOPICS=()
  for t in "${IMTASK_TOPICS[@]}" ${IMTASK_EXTRA_TOPICS:-}; do
    [[ $t =~ ^[A-Za-z0-9._-]+:[1-9][0-9]*$ ]] ||
      die "bad topic spec '$t' in IMTASK_EXTRA_TOPICS (want name:partitions)"
    WANTED_TOPICS+=("$t")
  done
}

create_topics() {
  local t0 existing spec name parts created=0 pids=() p
  t0=$(now_ms)
  if [[ -n ${KAFKA_LISTED_TOPICS+set} ]]; then
    existing=$KAFKA_LISTED_TOPICS
  else
    existing=$(kafka_list_topics) || die "kafka: cannot list topics on $KAFKA_BOOTSTRAP"
  fi
  for spec in "${WANTED_TOPICS[@]}"; do
    name=${spec%%:*}
    parts=${spec##*:}
    grep -qxF "$name" <<<"$existing" && continue
    # Each TopicCommand is its own JVM: run two at a time.
    kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BOOTSTRAP" \
      --command-config "$KAFKA_DIR/client.properties" --create --if-not-exists \
      --topic "$name" --partitions "$parts" --replication-factor 1 >/dev/null &
    pids+=($!)
    created=$((created + 1))
    if ((${#pids[@]} >= 2)); then
      wait "${pids[0]}" || die "kafka: creating a topic failed"
      pids=("${pids[@]:1}")
    fi
  done
  for p in "${pids[@]}"; do wait "$p" || die "kafka: creating a topic failed"; done
  log "kafka: topics ready ($created created, ${#WANTED_TOPICS[@]} wanted) in $(secs_since "$t0")"
}

# --------------------------------------------------------------------- etcd

etcd_healthy() {
  curl -sf --max-time 2 "$ETCD_ENDPOINT/health" 2>/dev/null | grep -q '"health":[ ]*"\?true'
}

start_etcd() {
  local pid t0 unset_env=() v
  pid=$(running_pid etcd)
  if [[ -n $pid ]]; then
    log "etcd: already running (pid $pid) on $ETCD_ENDPOINT"
    return 0
  fi
  t0=$(now_ms)
  mkdir -p "$ETCD_DIR"
  # ETCD_* variables in the caller's environment would clash with the flags.
  for v in $(compgen -e | grep '^ETCD_' || true); do unset_env+=(-u "$v"); done
  log "etcd: starting on $ETCD_ENDPOINT (peer $HOST:$ETCD_PEER_PORT)"
  spawn etcd "$ETCD_DIR/etcd.log" env "${unset_env[@]}" etcd \
    --name=imtask \
    --data-dir="$ETCD_DIR/data" \
    --listen-client-urls="$ETCD_ENDPOINT" \
    --advertise-client-urls="$ETCD_ENDPOINT" \
    --listen-peer-urls="http://$HOST:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="http://$HOST:$ETCD_PEER_PORT" \
    --initial-cluster="imtask=http://$HOST:$ETCD_PEER_PORT" \
    --initial-cluster-state=new \
    --initial-cluster-token=imtask-stack \
    --logger=zap --log-outputs=stderr
  ETCD_STARTED_AT=$t0
}

wait_etcd() {
  wait_started etcd "${ETCD_STARTED_AT:-}" "$ETCD_DIR/etcd.log" "$ETCD_ENDPOINT/health" etcd_healthy
}

# ----------------------------------------------------------- im-repo double

# The double is a Go program (grpc-go); its generated protobuf code is checked
# in (tests/doubles/imrepo/gen.sh regenerates it), so building needs only `go`
# (>= the go.mod version) and the Go module proxy. One build per source
# version: the binary is cached under a hash of the sources.
imrepo_src_hash() {
  (cd "$IMREPO_SRC" && find . -name '*.go' -o -name go.mod -o -name go.sum | LC_ALL=C sort |
    xargs sha256sum | sha256sum | cut -c1-16)
}

# Without go (or when the build fails) the stack comes up without the double,
# with a warning: Kafka and etcd users are not held up by it.
build_imrepo() {
  local hash t0
  IMREPO_BIN=""
  if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
    PATH="$PATH:/usr/local/go/bin"
  fi
  if ! command -v go >/dev/null; then
    err "imrepo: go is not installed; the im-repo double will not run (see docs/imrepo.md)"
    return 0
  fi
  hash=$(imrepo_src_hash)
  IMREPO_BIN="$CACHE_DIR/imrepo-double/$hash/imrepo-double"
  if [[ -x $IMREPO_BIN ]]; then
    log "imrepo: double cached ($IMREPO_BIN)"
    return 0
  fi
  t0=$(now_ms)
  log "imrepo: building the double (go build; modules from the Go module proxy)"
  mkdir -p "$(dirname "$IMREPO_BIN")"
  if ! (cd "$IMREPO_SRC" && GOFLAGS=-buildvcs=false go build -o "$IMREPO_BIN.tmp" ./cmd/imrepo-double); then
    err "imrepo: go build failed; the im-repo double will not run"
    IMREPO_BIN=""
    return 0
  fi
  mv "$IMREPO_BIN.tmp" "$IMREPO_BIN"
  log "imrepo: built in $(secs_since "$t0")"
}

imrepo_healthy() {
  curl -sf --max-time 2 "$IMREPO_ADMIN/healthz" >/dev/null 2>&1 && port_open "$IMREPO_PORT"
}

start_imrepo() {
  local pid t0
  [[ -n ${IMREPO_BIN:-} ]] || return 0
  pid=$(running_pid imrepo)
  if [[ -n $pid ]]; then
    log "imrepo: already running (pid $pid) on $IMREPO_ADDR"
    return 0
  fi
  t0=$(now_ms)
  mkdir -p "$IMREPO_DIR"
  log "imrepo: starting on $IMREPO_ADDR (admin $IMREPO_ADMIN), registering in etcd"
  spawn imrepo "$IMREPO_DIR/imrepo.log" "$IMREPO_BIN" -host "$HOST" -port "$IMREPO_PORT" \
    -etcd "$ETCD_ENDPOINT" -state-dir="$IMREPO_DIR"
  IMREPO_STARTED_AT=$t0
}

wait_imrepo() {
  wait_started imrepo "${IMREPO_STARTED_AT:-}" "$IMREPO_DIR/imrepo.log" "$IMREPO_ADMIN/healthz" \
    imrepo_healthy
}

# ------------------------------------------------------- moderation double

# Node's own http module, no packages: nothing to build. Without node the
# stack comes up without it, with a warning.
moderation_healthy() {
  curl -sf --max-time 2 "$MODERATION_ADDR/healthz" >/dev/null 2>&1
}

start_moderation() {
  local pid t0
  if ! command -v node >/dev/null; then
    err "moderation: node is not installed; the moderation double will not run (see docs/audit.md)"
    return 0
  fi
  pid=$(running_pid moderation)
  if [[ -n $pid ]]; then
    log "moderation: already running (pid $pid) on $MODERATION_ADDR"
    return 0
  fi
  t0=$(now_ms)
  mkdir -p "$MODERATION_DIR"
  log "moderation: starting on $MODERATION_ADDR"
  spawn moderation "$MODERATION_DIR/moderation.log" node "$MODERATION_SRC" --host "$HOST" \
    --port "$MODERATION_PORT" --tencent-secret-key "$MODERATION_TENCENT_KEY" \
    --state-dir="$MODERATION_DIR"
  MODERATION_STARTED_AT=$t0
}

wait_moderation() {
  wait_started moderation "${MODERATION_STARTED_AT:-}" "$MODERATION_DIR/moderation.log" \
    "$MODERATION_ADDR/healthz" moderation_healthy
}

# ------------------------------------------------------------- push doubles

# APNs and FCM doubles in one Node process (http2 module, no packages). On
# first start they write into $PUSH_DIR a test CA (push-ca.pem), APNs .p8
# keys and an FCM service account JSON; the admin's /info names them. Without
# node or openssl the stack comes up without them, with a warning.
push_healthy() {
  curl -sf --max-time 2 "$PUSH_ADMIN/healthz" >/dev/null 2>&1
}

start_push() {
  local pid t0
  if ! command -v node >/dev/null || ! command -v openssl >/dev/null; then
    err "push: node or openssl is not installed; the push doubles will not run (see docs/push.md)"
    return 0
  fi
  pid=$(running_pid push)
  if [[ -n $pid ]]; then
    log "push: already running (pid $pid), admin $PUSH_ADMIN"
    return 0
  fi
  t0=$(now_ms)
  mkdir -p "$PUSH_DIR"
  log "push: starting the APNs and FCM doubles on $HOST:$PUSH_PORT and $((PUSH_PORT + 1)) (admin $PUSH_ADMIN)"
  spawn push "$PUSH_DIR/push.log" node "$PUSH_SRC" -host "$HOST" -port "$PUSH_PORT" \
    -state-dir="$PUSH_DIR"
  PUSH_STARTED_AT=$t0
}

wait_push() {
  wait_started push "${PUSH_STARTED_AT:-}" "$PUSH_DIR/push.log" "$PUSH_ADMIN/healthz" push_healthy
}

# --------------------------------------------------------------- S3 (moto)

# moto's server mode: an S3 implementation (not ours) for the archive storage
# tests. moto_server from PATH if there is one, else a virtualenv in the cache
# with moto[server] from PyPI (once). Without python3 the stack comes up
# without it, with a warning.
moto_bin() {
  if [[ -f $MOTO_VENV/.complete ]]; then
    echo "$MOTO_VENV/bin/moto_server"
  elif command -v moto_server >/dev/null; then
    command -v moto_server
  fi
}

# A marker file makes an interrupted install count as missing.
ensure_moto() {
  [[ -n $(moto_bin) ]] && return 0
  command -v python3 >/dev/null || return 0
  local t0
  t0=$(now_ms)
  log "s3: installing moto[server]==$MOTO_VERSION from PyPI into $MOTO_VENV"
  rm -rf "$MOTO_VENV"
  mkdir -p "$CACHE_DIR"
  if python3 -m venv "$MOTO_VENV" >"$MOTO_VENV.log" 2>&1 &&
    "$MOTO_VENV/bin/pip" install -q "moto[server]==$MOTO_VERSION" >>"$MOTO_VENV.log" 2>&1; then
    touch "$MOTO_VENV/.complete"
    rm -f "$MOTO_VENV.log"
    log "s3: moto installed in $(secs_since "$t0")"
  else
    show_log_tail "$MOTO_VENV.log"
    rm -rf "$MOTO_VENV"
    err "s3: could not install moto[server] (python3-venv missing?); the S3 server will not run"
  fi
}

s3_healthy() {
  curl -s -o /dev/null --max-time 2 "$S3_ADDR/" 2>/dev/null
}

start_s3() {
  local pid t0 bin
  bin=$(moto_bin)
  if [[ -z $bin ]]; then
    err "s3: moto_server is not available; the S3 server will not run (see docs/archive.md)"
    return 0
  fi
  pid=$(running_pid s3)
  if [[ -n $pid ]]; then
    log "s3: already running (pid $pid) on $S3_ADDR"
    return 0
  fi
  t0=$(now_ms)
  mkdir -p "$S3_DIR"
  log "s3: starting moto on $S3_ADDR"
  spawn s3 "$S3_DIR/s3.log" "$bin" -H "$HOST" -p "$S3_PORT"
  S3_STARTED_AT=$t0
}

wait_s3() {
  wait_started s3 "${S3_STARTED_AT:-}" "$S3_DIR/s3.log" "$S3_ADDR/" s3_healthy
}

# ----------------------------------------------------------------- commands

# Before starting anything: the ports of each service that is not running yet
# must be free (a clash would otherwise surface as a start-up timeout).
check_ports() {
  if [[ -z $(running_pid kafka) ]]; then
    require_free_port "$KAFKA_PORT" "kafka"
    require_free_port "$KAFKA_CONTROLLER_PORT" "kafka controller"
  fi
  if [[ -z $(running_pid etcd) ]]; then
    require_free_port "$ETCD_PORT" "etcd"
    require_free_port "$ETCD_PEER_PORT" "etcd peer"
  fi
  if [[ -z $(running_pid imrepo) ]]; then
    local i
    for i in 0 1 2 3; do require_free_port $((IMREPO_PORT + i)) "im-repo double"; done
  fi
  if [[ -z $(running_pid moderation) ]]; then
    require_free_port "$MODERATION_PORT" "moderation double"
  fi
  if [[ -z $(running_pid push) ]]; then
    local j
    for j in 0 1 2 3; do require_free_port $((PUSH_PORT + j)) "push doubles"; done
  fi
  if [[ -z $(running_pid s3) ]]; then
    require_free_port "$S3_PORT" "S3 server"
  fi
}

# Serialises up/down runs on the same state directory.
lock_stack() {
  mkdir -p "$(dirname "$STACK_DIR")"
  exec 9>"$STACK_DIR.lock"
  command -v flock >/dev/null || return 0
  flock -w "$TIMEOUT" 9 || die "another stack.sh holds $STACK_DIR.lock for over ${TIMEOUT}s"
}

cmd_up() {
  local t0
  t0=$(now_ms)
  parse_topics
  lock_stack
  ensure_commands
  ensure_kafka_jars
  build_imrepo
  ensure_moto
  check_ports
  mkdir -p "$STACK_DIR"
  # Both start in the background; wait for each afterwards.
  start_etcd
  start_kafka
  wait_etcd
  start_imrepo
  start_moderation
  start_push
  start_s3
  wait_kafka
  wait_imrepo
  wait_moderation
  wait_push
  wait_s3
  create_topics
  log "up in $(secs_since "$t0"): kafka $KAFKA_BOOTSTRAP, etcd $ETCD_ENDPOINT, im-repo $IMREPO_ADDR, moderation $MODERATION_ADDR, push $PUSH_ADMIN (state in $STACK_DIR)"
}

cmd_down() {
  local t0 p i left="" jobs_=()
  t0=$(now_ms)
  lock_stack
  stop_service kafka &
  jobs_+=($!)
  stop_service etcd &
  jobs_+=($!)
  stop_service imrepo &
  jobs_+=($!)
  stop_service moderation &
  jobs_+=($!)
  stop_service push &
  jobs_+=($!)
  stop_service s3 &
  jobs_+=($!)
  for p in "${jobs_[@]}"; do wait "$p" || die "could not stop the stack"; done
  for p in $(stray_pids); do
    log "stopping stray stack process $p: $(cmdline_of "$p" | cut -c1-120)"
    kill -TERM "$p" 2>/dev/null || true
  done
  for ((i = 0; i < 100; i++)); do
    left=$(stray_pids)
    [[ -z $left ]] && break
    sleep 0.2
  done
  if [[ -n $left ]]; then
    log "sending KILL to $left"
    # shellcheck disable=SC2086 # a list of pids
    kill -KILL $left 2>/dev/null || true
  fi
  rm -rf "$STACK_DIR"
  rm -f "$STACK_DIR.lock"
  log "down in $(secs_since "$t0")"
}

# One service's status line: up when its pid runs and its check answers.
#   status_of NAME CHECK UP_TEXT DOWN_TEXT   (CHECK: a command, e.g. etcd_healthy)
status_of() {
  local name=$1 check=$2 up=$3 down=$4 pid
  pid=$(running_pid "$name")
  if [[ -n $pid ]] && $check; then
    log "$(printf '%-10s' "$name") up    pid $pid  $up"
  else
    log "$(printf '%-10s' "$name") down  ${pid:+pid $pid (not answering)  }$down"
    return 1
  fi
}

kafka_port_open() { port_open "$KAFKA_PORT"; }

cmd_status() {
  local rc=0
  status_of kafka kafka_port_open "$KAFKA_BOOTSTRAP (controller $HOST:$KAFKA_CONTROLLER_PORT)" \
    "$KAFKA_BOOTSTRAP" || rc=1
  status_of etcd etcd_healthy "$ETCD_ENDPOINT" "$ETCD_ENDPOINT" || rc=1
  status_of imrepo imrepo_healthy "$IMREPO_ADDR (admin $IMREPO_ADMIN)" "$IMREPO_ADDR" || rc=1
  status_of moderation moderation_healthy "$MODERATION_ADDR" "$MODERATION_ADDR" || rc=1
  status_of push push_healthy \
    "APNs https://$HOST:$PUSH_PORT, FCM https://$HOST:$((PUSH_PORT + 1)) (admin $PUSH_ADMIN)" \
    "admin $PUSH_ADMIN" || rc=1
  status_of s3 s3_healthy "$S3_ADDR" "$S3_ADDR" || rc=1
  return $rc
}

cmd_topics() {
  parse_topics
  [[ -n $(running_pid kafka) ]] || die "kafka is not running (run: $0 up)"
  [[ -f $KAFKA_LIBS/.complete ]] || die "kafka jars missing in $KAFKA_LIBS"
  create_topics
  kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BOOTSTRAP" \
    --command-config "$KAFKA_DIR/client.properties" --describe --exclude-internal |
    awk '$5 == "PartitionCount:" { printf "stack:   %-28s partitions=%s\n", $2, $6 }'
}

cmd_env() {
  echo "export IMTASK_KAFKA_BROKERS=$KAFKA_BOOTSTRAP"
  echo "export IMTASK_ETCD_ENDPOINTS=$ETCD_ENDPOINT"
  echo "export IMTASK_IMREPO_ADDR=$IMREPO_ADDR"
  echo "export IMTASK_IMREPO_ADMIN=$IMREPO_ADMIN"
  echo "export IMTASK_MODERATION_ADDR=$MODERATION_ADDR"
  echo "export IMTASK_PUSH_ADMIN=$PUSH_ADMIN"
  echo "export IMTASK_S3_ENDPOINT=$S3_ADDR"
}

cmd_imrepo_restart() {
  lock_stack
  build_imrepo
  stop_service imrepo
  require_free_port "$IMREPO_PORT" "im-repo double"
  start_imrepo
  wait_imrepo
}

cmd_moderation_restart() {
  lock_stack
  stop_service moderation
  require_free_port "$MODERATION_PORT" "moderation double"
  start_moderation
  wait_moderation
}

cmd_push_restart() {
  lock_stack
  stop_service push
  local j
  for j in 0 1 2 3; do require_free_port $((PUSH_PORT + j)) "push doubles"; done
  start_push
  wait_push
}

cmd_s3_restart() {
  lock_stack
  ensure_moto
  stop_service s3
  require_free_port "$S3_PORT" "S3 server"
  start_s3
  wait_s3
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

main() {
  case ${1:-} in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    topics) cmd_topics ;;
    env) cmd_env ;;
    imrepo-restart) cmd_imrepo_restart ;;
    moderation-restart) cmd_moderation_restart ;;
    push-restart) cmd_push_restart ;;
    s3-restart) cmd_s3_restart ;;
    -h | --help | help) usage ;;
    *)
      usage >&2
      exit 2
      ;;
  esac
}

main "$@"
