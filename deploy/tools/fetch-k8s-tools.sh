#!/usr/bin/env bash
# fetch-k8s-tools.sh: installs what //tests/deploy:k8s_test validates the
# Kubernetes manifests with, offline afterwards, into the project's cache
# ($IMTASK_CACHE, default ~/.cache/imtask, under k8s-tools/):
#   bin/kubeconform-<v>, bin/kustomize-<v>   built with `go install` from the
#                                            Go module proxy (versions.env)
#   schemas/<k8s>-<keda>-<gen>/*.json        JSON schemas made by k8s_schemas.py
#                                            from the OpenAPI spec in the
#                                            k8s.io/kubernetes module zip and the
#                                            KEDA CRDs (and the kafka scaler's
#                                            parameters) in the keda module zip
# Idempotent: what is there is kept (about 0.1 s then). The first run takes
# about a minute and a half (docs/deploy.md). Needs go and python3 with PyYAML.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
cache=${IMTASK_CACHE:-$HOME/.cache/imtask}/k8s-tools
log() { echo "fetch-k8s-tools: $*"; }

if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
    PATH=/usr/local/go/bin:$PATH
fi
command -v go >/dev/null || { log "go is not installed (the Go module proxy serves the tools)"; exit 1; }
python3 -c 'import yaml' 2>/dev/null || { log "python3 with PyYAML is needed (Debian python3-yaml)"; exit 1; }
# This machine's Go, never a toolchain download.
export GOTOOLCHAIN=local GOFLAGS=${GOFLAGS:--buildvcs=false}

mkdir -p "$cache/bin" "$cache/schemas"
tool() { # name package version
    local out="$cache/bin/$1-$3" tmp
    [ -x "$out" ] && return 0
    log "building $2@$3"
    tmp=$(mktemp -d)
    GOBIN=$tmp go install "$2@$3"
    mv "$tmp/$1" "$out"
    rm -rf "$tmp"
}
start=$(date +%s)
tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION"
tool kustomize sigs.k8s.io/kustomize/kustomize/v5 "$KUSTOMIZE_VERSION"

gen=$(sha256sum "$here/k8s_schemas.py" | cut -c1-12)
dir="$cache/schemas/$K8S_VERSION-keda-$KEDA_VERSION-$gen"
if [ ! -f "$dir/.complete" ]; then
    zipof() { go mod download -json "$1" | python3 -c 'import json,sys; j=json.load(sys.stdin); sys.exit(j.get("Error")) if j.get("Error") else print(j["Zip"])'; }
    log "schemas of Kubernetes $K8S_VERSION and KEDA $KEDA_VERSION"
    k8szip=$(zipof "k8s.io/kubernetes@$K8S_VERSION")
    kedazip=$(zipof "github.com/kedacore/keda/v2@$KEDA_VERSION")
    rm -rf "$dir.tmp"
    python3 "$here/k8s_schemas.py" "$dir.tmp" --swagger-zip "$k8szip" \
        --crd-zip "$kedazip" --crd-glob '*/config/crd/bases/keda.sh_*.yaml' \
        --scaler 'kafka=*/pkg/scalers/kafka_scaler.go'
    touch "$dir.tmp/.complete"
    rm -rf "$dir"
    mv "$dir.tmp" "$dir"
fi
log "ready in $cache ($(($(date +%s) - start)) s)"
