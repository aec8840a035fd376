#!/usr/bin/env bash
# lifecycle_test.sh: each task binary, run as an operator would: --version,
# --help, --check-config, refusing a broken config (naming file, line, key),
# serving /healthz, /readyz and /metrics over real HTTP, and stopping cleanly
# on SIGTERM. Arguments: the binaries to check.
set -uo pipefail

pass=0
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ok() { echo "ok - $*"; pass=$((pass + 1)); }
nok() { echo "not ok - $*"; fail=$((fail + 1)); }
check() { # description, command...
    local d=$1
    shift
    if "$@"; then ok "$d"; else nok "$d"; fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

for bin in "$@"; do
    name=$(basename "$bin")

    check "$name --version" bash -c "'$bin' --version | grep -q '^$name [0-9]'"
    check "$name --help" bash -c "'$bin' --help | grep -q -- '--check-config'"

    # A broken config: a bad value on line 4. The binary must refuse to start,
    # exit 2, and name the file, the line and the key.
    cat >"$tmp/bad.yaml" <<YAML
kafka:
  brokers: 127.0.0.1:1
http:
  listen: [not, a, string]
YAML
    "$bin" --config "$tmp/bad.yaml" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    check "$name refuses a bad value (exit $rc)" test $rc -eq 2
    check "$name names file, line and key" \
        grep -q "$tmp/bad.yaml:4: http.listen: expected a non-empty string, got a list" "$tmp/err"
    check "$name logs the config error as JSON" \
        python3 -c 'import json,sys; j=json.loads(open(sys.argv[1]).readline()); assert j["level"]=="error" and "http.listen" in j["msg"]' "$tmp/out"

    printf 'kafka:\n  brokers: 127.0.0.1:1\nhttp:\n  listen: 127.0.0.1:0\n  lisen: typo\n' >"$tmp/typo.yaml"
    "$bin" --config "$tmp/typo.yaml" >/dev/null 2>"$tmp/err"
    rc=$?
    check "$name refuses an unknown key (exit $rc)" test $rc -eq 2
    check "$name names the unknown key" grep -q "$tmp/typo.yaml:5: http.lisen: unknown key" "$tmp/err"

    check "$name refuses a missing file" bash -c "'$bin' --config '$tmp/none.yaml' 2>&1 >/dev/null | grep -q 'none.yaml: cannot open config file'"

    port=$(free_port)
    cat >"$tmp/good.yaml" <<YAML
kafka:
  brokers: 127.0.0.1:1
  sasl.password: very-secret-pw
http:
  listen: 127.0.0.1:$port
shutdown:
  grace: 2s
YAML
    "$bin" --config "$tmp/good.yaml" --check-config >"$tmp/check" 2>&1
    check "$name --check-config accepts a valid file" test $? -eq 0
    check "$name --check-config redacts secrets" bash -c "! grep -q very-secret-pw '$tmp/check' && grep -q 'sasl.password: \"\\[REDACTED\\]\"' '$tmp/check'"
    check "$name --check-config shows env overrides" bash -c "IMTASK_LOG_LEVEL=debug '$bin' --config '$tmp/good.yaml' --check-config | grep -q 'level: debug  # env IMTASK_LOG_LEVEL'"

    "$bin" --config "$tmp/good.yaml" >"$tmp/run.log" 2>&1 &
    pid=$!
    up=0
    for _ in $(seq 1 50); do
        if curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then up=1; break; fi
        sleep 0.1
    done
    check "$name serves /healthz" test $up -eq 1
    # 200, or 503 naming the check that is not ready: a binary running the
    # task runtime is not ready before it joins its consumer group, which it
    # cannot do with the unreachable broker of this config.
    check "$name serves /readyz" bash -c "code=\$(curl -sS -o '$tmp/ready' -w '%{http_code}' http://127.0.0.1:$port/readyz) && { [ \"\$code\" = 200 ] || { [ \"\$code\" = 503 ] && grep -q 'not ready: ' '$tmp/ready'; }; }"
    check "$name serves /metrics" bash -c "curl -fsS http://127.0.0.1:$port/metrics | grep -q '^imtask_build_info{'"
    kill -TERM $pid
    stopped=0
    for _ in $(seq 1 50); do
        if ! kill -0 $pid 2>/dev/null; then stopped=1; break; fi
        sleep 0.1
    done
    check "$name stops on SIGTERM within 5 s" test $stopped -eq 1
    wait $pid
    rc=$?
    check "$name exits 0 after SIGTERM (got $rc)" test $rc -eq 0
    check "$name logs JSON lines only" python3 -c '
import json, sys
lines = [l for l in open(sys.argv[1]) if l.strip()]
assert lines, "no output"
for l in lines:
    json.loads(l)
assert "very-secret-pw" not in open(sys.argv[1]).read()
' "$tmp/run.log"
    [ $stopped -eq 1 ] || kill -KILL $pid 2>/dev/null
    if [ $stopped -ne 1 ] || [ $rc -ne 0 ]; then
        echo "# $name run log (last 40 lines):"
        tail -n 40 "$tmp/run.log" | sed 's/^/#   /'
    fi
done

echo "lifecycle: $pass passed, $fail failed"
[ $fail -eq 0 ]
