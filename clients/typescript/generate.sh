#!/usr/bin/env bash
# Regenerates the TypeScript stubs (src/gen/) from proto/modelyard/v1/*.proto and
# the two google.rpc protos a failed call's status details are made of.
#
# The plugin is ts-proto (node_modules, pinned in package.json: run `npm ci`
# first); protoc is the one bundled in grpcio-tools (the project venv), as for
# the Go stubs. google/rpc/{status,error_details}.proto come from the venv's
# googleapis-common-protos (the package grpcio-status needs).
#
#   clients/typescript/generate.sh   (from anywhere; PYTHON overrides the interpreter)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
PLUGIN="$HERE/node_modules/.bin/protoc-gen-ts_proto"
[[ -x "$PLUGIN" ]] || { echo "generate.sh: $PLUGIN missing: run npm ci in $HERE" >&2; exit 1; }

read -r WKT_INCLUDE RPC_INCLUDE < <("$PYTHON" -c '
import os, grpc_tools, google.rpc
print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"),
      os.path.dirname(os.path.dirname(list(google.rpc.__path__)[0])))')

OUT="$HERE/src/gen"
rm -rf "$OUT"
mkdir -p "$OUT"
cd "$ROOT"
"$PYTHON" -m grpc_tools.protoc \
  -I proto -I "$RPC_INCLUDE" -I "$WKT_INCLUDE" \
  --plugin=protoc-gen-ts_proto="$PLUGIN" \
  --ts_proto_out="$OUT" \
  --ts_proto_opt=outputServices=grpc-js,env=node,esModuleInterop=true,useExactTypes=false \
  proto/modelyard/v1/*.proto google/rpc/status.proto google/rpc/error_details.proto

echo "generated $(find "$OUT" -name '*.ts' | wc -l) files in $OUT"
