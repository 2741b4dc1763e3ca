#!/bin/sh
# Regenerate the *_pb2.py / *_pb2_grpc.py modules beside these .proto files.
# Run from the repository root:  sh src/v2py/app/commander/proto/generate.sh
# (needs the lint extra: grpcio-tools). The generated modules are committed.
set -e
cd src
PY="${PYTHON:-../.venv/bin/python}"
[ -x "$PY" ] || PY=python3
"$PY" -m grpc_tools.protoc -I . --python_out=. --pyi_out=. \
  v2py/app/commander/proto/*.proto
"$PY" -m grpc_tools.protoc -I . --grpc_python_out=. \
  v2py/app/commander/proto/handler_command.proto \
  v2py/app/commander/proto/stats_command.proto \
  v2py/app/commander/proto/log_command.proto
