#!/usr/bin/env bash
# Regenerate connector/v1/*_pb2.py, *_pb2.pyi and *_pb2_grpc.py from proto/.
# Uses the pinned grpcio-tools of the project's environment (see pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python}
rm -f connector/v1/*_pb2.py connector/v1/*_pb2.pyi connector/v1/*_pb2_grpc.py
"$python" -m grpc_tools.protoc -Iproto \
  --python_out=. --pyi_out=. --grpc_python_out=. \
  proto/connector/v1/*.proto
echo "generated: $(ls connector/v1/*_pb2*.py* | wc -l) files in connector/v1"
