#!/usr/bin/env bash
# Regenerates the Go stubs (modelyard/v1/*.pb.go) from proto/modelyard/v1/*.proto.
#
# The .proto files carry no `option go_package`, so the import path is given to
# protoc with M mappings instead. protoc is the one bundled in grpcio-tools (the
# project venv); the two Go plugins come from the Go module proxy at pinned versions.
#
# The stubs are committed (a Go module cannot run generators for its users).
# With --check nothing is written: the stubs are generated into a temporary
# directory and compared with the committed ones; it fails, naming the files,
# when they differ. The `protoc` version line in each file's header is left
# out of the comparison: it is grpcio-tools' bundled protoc, which scripts/setup
# does not pin, and it changes nothing else.
#
#   clients/go/generate.sh [--check]  (from anywhere; PYTHON overrides the interpreter)
set -euo pipefail

CHECK=0
case "${1:-}" in
  "") ;;
  --check) CHECK=1 ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

PROTOC_GEN_GO_VERSION=v1.36.12      # keep equal to google.golang.org/protobuf in go.mod
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
MODULE="$(cd "$HERE" && go list -m)"
GO_PKG="$MODULE/modelyard/v1"

# Plugins go to a private bin so they never shadow (or depend on) ones on PATH.
PLUGIN_BIN="$HERE/bin"
GOBIN="$PLUGIN_BIN" go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
GOBIN="$PLUGIN_BIN" go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"

WKT_INCLUDE="$("$PYTHON" -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')"

cd "$ROOT"
protos=(proto/modelyard/v1/*.proto)
go_opts=(--go_opt=module="$MODULE")
grpc_opts=(--go-grpc_opt=module="$MODULE")
for p in "${protos[@]}"; do
  rel="${p#proto/}"
  go_opts+=(--go_opt="M$rel=$GO_PKG;modelyardv1")
  grpc_opts+=(--go-grpc_opt="M$rel=$GO_PKG;modelyardv1")
done

DEST="$HERE"
if [[ $CHECK == 1 ]]; then
  DEST="$(mktemp -d)"
  trap 'rm -rf "$DEST"' EXIT
fi
rm -f "$DEST"/modelyard/v1/*.pb.go
mkdir -p "$DEST/modelyard/v1"
PATH="$PLUGIN_BIN:$PATH" "$PYTHON" -m grpc_tools.protoc \
  -I proto -I "$WKT_INCLUDE" \
  --go_out="$DEST" "${go_opts[@]}" \
  --go-grpc_out="$DEST" "${grpc_opts[@]}" \
  "${protos[@]}"

if [[ $CHECK == 0 ]]; then
  echo "generated $(ls "$HERE"/modelyard/v1/*.pb.go | wc -l) files in $HERE/modelyard/v1"
  exit 0
fi
# -r also reports a stub that only one side has (a .proto added or removed).
if ! diff -r -u -I '^// [-[:space:]]*protoc  *v' "$HERE/modelyard/v1" "$DEST/modelyard/v1" >&2; then
  echo "generate.sh: the committed Go stubs in $HERE/modelyard/v1 differ from what proto/ generates" \
    "(above: committed, then generated): run clients/go/generate.sh and commit the .pb.go files" >&2
  exit 1
fi
echo "the Go stubs in $HERE/modelyard/v1 match proto/"
