#!/usr/bin/env bash
# gen.sh: regenerates the checked-in Go code of proto/im_repo_v1/im_repo.proto
# (gen/imrepov1). Needs protoc (Debian protobuf-compiler) and the two plugins:
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
#   go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
# The generated files are committed so building the double needs only `go`.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
PATH="$PATH:$(go env GOPATH)/bin"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
protoc --proto_path="$root" --go_out="$out" --go-grpc_out="$out" \
  "$root/proto/im_repo_v1/im_repo.proto"
mkdir -p "$here/gen/imrepov1"
cp "$out"/imtask/imrepo-double/gen/imrepov1/*.go "$here/gen/imrepov1/"
echo "gen.sh: wrote $(ls "$here/gen/imrepov1")"
