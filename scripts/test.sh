#!/usr/bin/env bash
# test.sh: the project's test command (the README's, and what .ci/run calls).
# Installs what is missing, starts the local stack (real Kafka and etcd on
# loopback), runs every test with `bazel test //...`, then again under
# AddressSanitizer + UndefinedBehaviorSanitizer (`--config=asan`), runs the
# unit tests under valgrind and the im-repo double's own Go tests, stops the
# stack, and exits non-zero if anything failed.
#
#   bash scripts/test.sh             # everything
#   IMTASK_TEST_ASAN=0 bash scripts/test.sh    # skip the sanitizer pass
#   IMTASK_TEST_VALGRIND=0 bash scripts/test.sh  # skip the valgrind pass
#   IMTASK_TEST_TARGETS=//libs/... bash scripts/test.sh
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
targets=${IMTASK_TEST_TARGETS:-//...}
logdir=$(mktemp -d)
started_stack=0

cleanup() {
    if [ "$started_stack" = 1 ]; then
        bash scripts/stack.sh down || true
    fi
    bazel shutdown >/dev/null 2>&1 || true
    rm -rf "$logdir"
}
trap cleanup EXIT

echo "== install-deps"
bash scripts/install-deps.sh

echo "== stack up"
if ! bash scripts/stack.sh status >/dev/null 2>&1; then
    started_stack=1
fi
bash scripts/stack.sh up
eval "$(bash scripts/stack.sh env)"
export IMTASK_STACK_DIR=${IMTASK_STACK_DIR:-${TMPDIR:-/tmp}/imtask-stack}
envflags=(--test_env=IMTASK_KAFKA_BROKERS --test_env=IMTASK_ETCD_ENDPOINTS
          --test_env=IMTASK_STACK_DIR --test_env=IMTASK_IMREPO_ADDR --test_env=IMTASK_IMREPO_ADMIN
          --test_env=IMTASK_MODERATION_ADDR --test_env=IMTASK_PUSH_ADMIN
          --test_env=IMTASK_S3_ENDPOINT)

status=0
echo "== bazel test $targets"
bazel test "${envflags[@]}" --test_output=all "$targets" 2>&1 | tee "$logdir/plain.log" || status=1

if [ "${IMTASK_TEST_ASAN:-1}" != 0 ]; then
    echo "== bazel test --config=asan $targets"
    bazel test --config=asan "${envflags[@]}" "$targets" 2>&1 | tee "$logdir/asan.log" || status=1
fi

if [ "${IMTASK_TEST_VALGRIND:-1}" != 0 ]; then
    echo "== bazel test under valgrind (the C unit tests: every cc_test not tagged integration)"
    mapfile -t unit < <(bazel query --noshow_progress \
        'kind(cc_test, //...) except attr(tags, "integration", //...)' 2>/dev/null)
    bazel test \
        --run_under='valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect' \
        "${unit[@]}" 2>&1 | tee "$logdir/valgrind.log" || status=1
fi

echo "== go test (the im-repo double's own tests: it answers as the contract says)"
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
    PATH="$PATH:/usr/local/go/bin"
fi
if (cd tests/doubles/imrepo && GOFLAGS=-buildvcs=false go test -count=1 ./...) 2>&1; then
    doubles_status=passed
else
    doubles_status=failed
    status=1
fi

# One closing line over all passes: each bazel test target counts once per
# pass (bazel prints a target's line while running and again in its summary).
count() { # log regex -> distinct targets with that status
    { grep -E "^//[^ ]+ +$2" "$1" || true; } | awk '{print $1}' | sort -u | wc -l
}
passed=0
failed=0
for log in "$logdir"/*.log; do
    passed=$((passed + $(count "$log" '(\(cached\) )?PASSED')))
    failed=$((failed + $(count "$log" '(FAILED|TIMEOUT|NO STATUS|FAILED TO BUILD|INCOMPLETE)')))
done
case $doubles_status in
    passed) passed=$((passed + 1)) ;;
    failed) failed=$((failed + 1)) ;;
esac
if [ "$status" != 0 ] && [ "$failed" = 0 ]; then
    failed=1 # the build itself failed
fi
echo
echo "== summary (bazel test targets: plain, asan and valgrind passes)"
for log in "$logdir"/*.log; do
    echo "-- $(basename "$log" .log)"
    { grep -E '^//[^ ]+ +(\(cached\) )?(PASSED|FAILED|TIMEOUT|NO STATUS|FAILED TO BUILD|INCOMPLETE)' "$log" || true; } | sort -u
done
echo "-- go test (im-repo double): $doubles_status"
echo "tests: $passed passed, $failed failed"
exit $status
