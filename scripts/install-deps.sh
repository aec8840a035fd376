#!/usr/bin/env bash
# install-deps.sh: installs the Debian packages im-task builds, tests and runs
# with, only those missing. Safe to run again. Needs root (or sudo) for apt.
set -euo pipefail

# Build: Bazel (offline, see docs/building.md), compilers and the C libraries.
# Run: Java for the Kafka broker, etcd. Tools: clang-format, valgrind, curl.
PACKAGES=(
    bazel-bootstrap bazel-rules-java gcc g++ pkg-config
    librdkafka-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler libnghttp2-dev
    libcurl4-openssl-dev libcjson-dev libyaml-dev libcmocka-dev libmicrohttpd-dev
    libjwt-dev libssl-dev libzstd-dev
    openjdk-17-jre-headless maven etcd-server etcd-client
    # Run: the IANA zones the scheduler reads (/usr/share/zoneinfo, docs/schedule.md).
    tzdata
    clang-format valgrind curl ca-certificates python3
    # Test: a virtualenv for moto[server], the S3 server of the stack (scripts/stack.sh).
    python3-venv
    # Test: the headless browser that checks the report's HTML page (tests/report).
    chromium
    # Test: PyYAML for //tests/deploy and deploy/tools/k8s_schemas.py.
    python3-yaml
)

# Test: kubeconform, kustomize (Go module proxy) and the Kubernetes/KEDA JSON
# schemas that //tests/deploy:k8s_test validates deploy/k8s with, offline,
# cached under ~/.cache/imtask/k8s-tools (docs/deploy.md; about a minute the
# first time, instant after).
k8s_tools() {
    bash "$(dirname "${BASH_SOURCE[0]}")/../deploy/tools/fetch-k8s-tools.sh" ||
        echo "install-deps: warning: deploy/tools/fetch-k8s-tools.sh failed: //tests/deploy:k8s_test fails until it succeeds" >&2
}

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#PACKAGES[@]} packages present"
    k8s_tools
    exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
k8s_tools
