#!/bin/sh
# Regenerate the *_pb2.py / *_pb2_grpc.py modules beside these .proto files.
# Run from the repository root:  sh src/v2py/app/commander/proto/generate.sh
# (needs the lint extra: grpcio-tools). The generated modules are committed.
#
# router.proto and dns_app.proto import the geo list messages of
# src/v2py/app/geo_proto/geodata.proto, registered as "geodata.proto" (it is
# compiled with -I src/v2py/app/geo_proto); protoc writes that import as a
# top-level "import geodata_pb2", which the sed below points at its package.
set -e
cd src
PY="${PYTHON:-../.venv/bin/python}"
[ -x "$PY" ] || PY=python3
"$PY" -m grpc_tools.protoc -I . -I v2py/app/geo_proto --python_out=. --pyi_out=. \
  v2py/app/commander/proto/*.proto
"$PY" -m grpc_tools.protoc -I . --grpc_python_out=. \
  v2py/app/commander/proto/handler_command.proto \
  v2py/app/commander/proto/stats_command.proto \
  v2py/app/commander/proto/log_command.proto
for f in v2py/app/commander/proto/router_pb2.py v2py/app/commander/proto/dns_app_pb2.py; do
  sed -i 's/^import geodata_pb2 as /from v2py.app.geo_proto import geodata_pb2 as /' "$f"
done
for f in v2py/app/commander/proto/router_pb2.pyi v2py/app/commander/proto/dns_app_pb2.pyi; do
  sed -i 's/^import geodata_pb2 as /from v2py.app.geo_proto import geodata_pb2 as /' "$f"
done
# app_log.proto's LogType has a value named None, which no Python name can be:
# drop it from the stub (the module reaches it as LogType.Value("None")).
sed -i '/^ *None: /d' v2py/app/commander/proto/app_log_pb2.pyi
