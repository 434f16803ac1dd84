#!/usr/bin/env bash
# Regenerates the cts.v1 Python messages, gRPC stubs and .pyi stubs into OUT
# (default clients/python). Only our own protos are generated: google.api and
# google.rpc modules come from googleapis-common-protos at run time.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here/clients/python}
venv=${VENV:-$here/.venv}
cd "$here"
rm -f "$out"/cts/v1/*_pb2*.py "$out"/cts/v1/*_pb2*.pyi
mkdir -p "$out/cts/v1"
"$venv/bin/python" -m grpc_tools.protoc \
  -I proto -I third_party/proto \
  --plugin=protoc-gen-mypy="$venv/bin/protoc-gen-mypy" \
  --plugin=protoc-gen-mypy_grpc="$venv/bin/protoc-gen-mypy_grpc" \
  --python_out="$out" --grpc_python_out="$out" \
  --mypy_out="$out" --mypy_grpc_out="$out" \
  proto/cts/v1/*.proto
