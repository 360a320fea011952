#!/usr/bin/env bash
# Regenerate every *_pb2 module from proto/ (generated code is committed).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && PY=.venv/bin/python
find proto -name '*.proto' | while read -r p; do
  if grep -q '^service ' "$p"; then grpc=(--grpc_python_out=.); else grpc=(); fi
  "$PY" -m grpc_tools.protoc -I proto --python_out=. --pyi_out=. "${grpc[@]}" "$p"
done
