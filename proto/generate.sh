#!/usr/bin/env bash
# Regenerates the committed Go code from proto/witness/v1/*.proto.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v protoc >/dev/null 2>&1; then
  echo "protoc not found: apt-get install -y protobuf-compiler" >&2
  exit 1
fi
gobin="$(go env GOPATH)/bin"
go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
PATH="$gobin:$PATH" protoc -I proto \
  --go_out=. --go_opt=module=github.com/sitewitness/witness \
  --go-grpc_out=. --go-grpc_opt=module=github.com/sitewitness/witness \
  proto/witness/v1/*.proto
