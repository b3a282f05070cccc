#!/usr/bin/env bash
# Regenerate connector/v1/*_pb2.py, *_pb2.pyi and *_pb2_grpc.py from proto/.
# Uses the pinned grpcio-tools of the project's environment (see pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python}
bin=$(dirname "$(command -v "$python")")
rm -f connector/v1/*_pb2.py connector/v1/*_pb2.pyi connector/v1/*_pb2_grpc.py connector/v1/*_pb2_grpc.pyi
# _pb2.pyi from protoc; typed _pb2_grpc.pyi from mypy-protobuf (both pinned in pyproject.toml).
"$python" -m grpc_tools.protoc -Iproto \
  --python_out=. --pyi_out=. --grpc_python_out=. \
  --plugin=protoc-gen-mypy_grpc="$bin/protoc-gen-mypy_grpc" --mypy_grpc_out=. \
  proto/connector/v1/*.proto
echo "generated: $(ls connector/v1/*_pb2*.py* | wc -l) files in connector/v1"
